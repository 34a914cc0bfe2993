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

The public API is listed once: the ``TYPE_CHECKING`` imports below. Type checkers and IDEs read them
as they are; at run time the same lines are read (``_exports``) so that each name loads from its module
on first use, and ``from repro import entrypoint`` stays light enough to run before torch is imported.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.base import startup as _startup  # noqa: F401  (snapshot the environment before anything changes it)

if TYPE_CHECKING:
    from repro.base.checks import OneOf as OneOf
    from repro.base.checks import Range as Range
    from repro.base.config import Determinism as Determinism
    from repro.base.config import ReproConfig as ReproConfig
    from repro.base.config import RunConfig as RunConfig
    from repro.base.config import register_configs as register_configs
    from repro.base.errors import ConfigValueError as ConfigValueError
    from repro.base.errors import EnvironmentPinError as EnvironmentPinError
    from repro.base.errors import ReproError as ReproError
    from repro.base.errors import RunDirectoryError as RunDirectoryError
    from repro.base.files import atomic_write as atomic_write
    from repro.base.files import sha256_file as sha256_file
    from repro.base.trusted import check_targets as check_targets
    from repro.core.determinism import DeterminismReport as DeterminismReport
    from repro.core.distributed import DistInfo as DistInfo
    from repro.core.distributed import RankMismatchError as RankMismatchError
    from repro.core.environment import environment_fingerprint as environment_fingerprint
    from repro.core.fingerprint import float_bits as float_bits
    from repro.core.fingerprint import tensor_digest as tensor_digest
    from repro.core.fingerprint import tensors_digest as tensors_digest
    from repro.core.loader import ReproDataLoader as ReproDataLoader
    from repro.core.loader import make_dataloader as make_dataloader
    from repro.core.setup import Repro as Repro
    from repro.core.setup import setup_reproducibility as setup_reproducibility
    from repro.core.windows import TokenWindows as TokenWindows
    from repro.launch.entry import entrypoint as entrypoint
    from repro.launch.inprocess import start_run as start_run
    from repro.ops import audit as audit
    from repro.ops import make_deterministic as make_deterministic
    from repro.run.checkpoint import CheckpointError as CheckpointError
    from repro.run.checkpoint import load_checkpoint as load_checkpoint
    from repro.run.load import LoadedRun as LoadedRun
    from repro.run.load import LoadRunError as LoadRunError
    from repro.run.load import load_run as load_run
    from repro.run.record import RunRecord as RunRecord
    from repro.run.resume import ResumeConflictError as ResumeConflictError
    from repro.run.resume import config_sha256 as config_sha256
    from repro.run.run import Run as Run
    from repro.run.run import StateError as StateError
    from repro.run.run import resolve_device as resolve_device


#: One public name: ``from repro.x import Name as Name`` (the alias marks a re-export).
_EXPORT_LINE = re.compile(r"^\s+from (repro[\w.]*) import (\w+) as \2$", re.MULTILINE)


def _exports() -> dict[str, str]:
    """``{name: module}`` read from this file's ``TYPE_CHECKING`` block, the one list (a regular
    expression over its lines, one name each, not an ``ast`` parse: this runs on every start)."""
    text = Path(__file__).read_text(encoding="utf-8")
    block = text[text.index("if TYPE_CHECKING:") : text.index("def _exports")]
    return {name: module for module, name in _EXPORT_LINE.findall(block)}


_EXPORTS = _exports()
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
