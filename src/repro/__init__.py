"""repro: the reproducibility kit of this template.

The public API: everything a project needs, nothing that knows the example
experiment. The package is laid out by the phases of a run, and every import
points down that story:

* ``repro.launch``: the entry point and the pre-run check (no torch),
* ``repro.core``: seeds, determinism flags, the loader factory, fingerprints,
  the process group, the environment fingerprint,
* ``repro.run``: the run object, its record, checkpoints and resume,
* ``repro.tools``: the ``repro`` command (verify, diff, env, report, audit, selftest),
* ``repro.ops``: deterministic replacements for ops that refuse strict mode.

Names load on first use, so ``from repro import entrypoint`` stays light enough to run before torch is
imported; type checkers and IDEs see the real definitions through the ``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from repro.base import startup as _startup  # noqa: F401  (snapshot the environment before anything changes it)

if TYPE_CHECKING:
    from repro.base.config import Determinism, ReproConfig, RunConfig, register_configs
    from repro.base.errors import (
        ConfigValueError,
        EnvironmentPinError,
        ReproError,
        RunDirectoryError,
    )
    from repro.base.files import atomic_write, sha256_file
    from repro.core.determinism import DeterminismReport
    from repro.core.distributed import DistInfo, RankMismatchError
    from repro.core.environment import environment_fingerprint
    from repro.core.fingerprint import float_bits, tensor_digest, tensors_digest
    from repro.core.loader import ReproDataLoader, make_dataloader
    from repro.core.setup import Repro, setup_reproducibility
    from repro.launch.entry import entrypoint
    from repro.launch.inprocess import start_run
    from repro.ops import audit, make_deterministic
    from repro.run.checkpoint import CheckpointError, load_checkpoint
    from repro.run.load import LoadedRun, LoadRunError, load_run
    from repro.run.record import RunRecord
    from repro.run.resume import ResumeConflictError, config_sha256
    from repro.run.run import Run, StateError, resolve_device

_EXPORTS = {
    "Run": "repro.run.run",
    "StateError": "repro.run.run",
    "resolve_device": "repro.run.run",
    "start_run": "repro.launch.inprocess",
    "entrypoint": "repro.launch.entry",
    "RunConfig": "repro.base.config",
    "ReproConfig": "repro.base.config",
    "Determinism": "repro.base.config",
    "register_configs": "repro.base.config",
    "ReproError": "repro.base.errors",
    "ConfigValueError": "repro.base.errors",
    "EnvironmentPinError": "repro.base.errors",
    "RunDirectoryError": "repro.base.errors",
    "Repro": "repro.core.setup",
    "setup_reproducibility": "repro.core.setup",
    "DeterminismReport": "repro.core.determinism",
    "ReproDataLoader": "repro.core.loader",
    "make_dataloader": "repro.core.loader",
    "environment_fingerprint": "repro.core.environment",
    "tensor_digest": "repro.core.fingerprint",
    "tensors_digest": "repro.core.fingerprint",
    "float_bits": "repro.core.fingerprint",
    "DistInfo": "repro.core.distributed",
    "RankMismatchError": "repro.core.distributed",
    "RunRecord": "repro.run.record",
    "atomic_write": "repro.base.files",
    "sha256_file": "repro.base.files",
    "CheckpointError": "repro.run.checkpoint",
    "load_checkpoint": "repro.run.checkpoint",
    "load_run": "repro.run.load",
    "LoadedRun": "repro.run.load",
    "LoadRunError": "repro.run.load",
    "config_sha256": "repro.run.resume",
    "ResumeConflictError": "repro.run.resume",
    "make_deterministic": "repro.ops",
    "audit": "repro.ops",
}

__all__ = [
    "CheckpointError",
    "ConfigValueError",
    "Determinism",
    "DeterminismReport",
    "DistInfo",
    "EnvironmentPinError",
    "LoadRunError",
    "LoadedRun",
    "RankMismatchError",
    "Repro",
    "ReproConfig",
    "ReproDataLoader",
    "ReproError",
    "ResumeConflictError",
    "Run",
    "RunConfig",
    "RunDirectoryError",
    "RunRecord",
    "StateError",
    "atomic_write",
    "audit",
    "config_sha256",
    "entrypoint",
    "environment_fingerprint",
    "float_bits",
    "load_checkpoint",
    "load_run",
    "make_dataloader",
    "make_deterministic",
    "register_configs",
    "resolve_device",
    "setup_reproducibility",
    "sha256_file",
    "start_run",
    "tensor_digest",
    "tensors_digest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'repro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
