"""Phase 2, the process: seeds and named streams, determinism flags, the loader factory, fingerprints,
the process group, the environment fingerprint. ``setup_reproducibility`` ties them together."""
