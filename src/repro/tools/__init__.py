"""After the run: the ``repro`` command (verify, diff, env, report, audit, selftest) and the replays it
launches. Run directories are read as untrusted data."""
