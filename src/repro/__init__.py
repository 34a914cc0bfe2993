"""repro: the reproducibility kit of this template.

Public API (everything a project needs; nothing here knows the example
experiment). Names load on first use, so ``from repro import entrypoint``
stays light enough to run before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from repro import startup as _startup  # noqa: F401  (snapshot the environment before anything changes it)

_EXPORTS = {
    "Run": "repro.run",
    "StateError": "repro.run",
    "resolve_device": "repro.run",
    "start_run": "repro.start",
    "RunConfig": "repro.config",
    "ReproConfig": "repro.config",
    "Determinism": "repro.config",
    "register_configs": "repro.config",
    "ReproError": "repro.errors",
    "ConfigValueError": "repro.errors",
    "EnvironmentPinError": "repro.errors",
    "RunDirectoryError": "repro.errors",
    "Repro": "repro.setup",
    "setup_reproducibility": "repro.setup",
    "DeterminismReport": "repro.determinism",
    "ReproDataLoader": "repro.loader",
    "make_dataloader": "repro.loader",
    "RunRecord": "repro.record",
    "sha256_file": "repro.record",
    "atomic_write": "repro.record",
    "environment_fingerprint": "repro.environment",
    "tensor_digest": "repro.fingerprint",
    "tensors_digest": "repro.fingerprint",
    "float_bits": "repro.fingerprint",
    "entrypoint": "repro.launch",
    "CheckpointError": "repro.checkpoint",
    "save_checkpoint": "repro.checkpoint",
    "load_checkpoint": "repro.checkpoint",
    "latest_valid_checkpoint": "repro.checkpoint",
    "config_sha256": "repro.resume",
    "find_resumption": "repro.resume",
    "Resumption": "repro.resume",
    "ResumeConflictError": "repro.resume",
    "RunCompleted": "repro.resume",
    "DistInfo": "repro.distributed",
    "RankMismatchError": "repro.distributed",
    "wrap_model": "repro.distributed",
    "all_reduce_sum": "repro.distributed",
    "gather_objects": "repro.distributed",
    "shutdown_distributed": "repro.distributed",
    "make_deterministic": "repro.ops",
    "audit": "repro.ops",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'repro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
