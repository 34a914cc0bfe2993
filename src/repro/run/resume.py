"""Resuming a run in its own directory: which config, which checkpoint, which overrides are safe.

A resumed run uses the run's own ``config.yaml``. Command-line overrides that
would change the result are refused; keys listed as safe (loader workers, how
many checkpoints to keep, ...) may change. ``auto`` resumes when the run
directory holds a checkpoint and starts fresh when it holds none, so one
command line serves a cluster job's first start and every restart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repro.base.errors import ReproError, RunDirectoryError
from repro.base.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    FINGERPRINTS_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RUN_FILE,
)
from repro.base.overrides import flatten

AUTO = "auto"
ABANDONED_DIR = ".abandoned"


class ResumeConflictError(ReproError):
    """An override would change the result of the run being resumed."""


def _container(cfg: Any) -> Any:
    """Plain, resolved data without the ``hydra`` node (which only Hydra's runtime can resolve)."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return cfg


def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.get(p) if isinstance(tree, dict) else None  # type: ignore[assignment]
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def config_sha256(cfg: Any, ignore: Iterable[str] = ()) -> str:
    """sha256 of the resolved config without the ``hydra`` node and the ``ignore`` keys."""
    from repro.base.secrets import redact_tree

    tree = redact_tree(_container(cfg))  # as config.yaml holds it
    tree = json.loads(json.dumps(tree, default=str))  # a deep copy with plain types
    tree.pop("hydra", None)
    for key in ignore:
        _drop(tree, key)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def changed_keys(base: Any, full: Any) -> dict[str, Any]:
    """Leaf keys whose value differs between two configs (the ``hydra`` node ignored), with ``full``'s value."""
    b = flatten({k: v for k, v in _container(base).items() if k != "hydra"})
    f = flatten({k: v for k, v in _container(full).items() if k != "hydra"})
    return {
        k: f.get(k, "<deleted>")
        for k in sorted(set(b) | set(f))
        if b.get(k, "<absent>") != f.get(k, "<absent>")
    }


def check_overrides(base: Any, full: Any, saved: Any, safe_keys: Iterable[str]) -> None:
    """Refuse overrides (``full`` vs ``base``) that give a value other than the saved run's.

    A ``seed: null`` override is compatible with any recorded seed: the run
    drew its seed once and the record holds it.
    """
    safe = set(safe_keys)
    saved_leaves = flatten({k: v for k, v in _container(saved).items() if k != "hydra"})
    for key, value in changed_keys(base, full).items():
        if key in safe or any(key.startswith(f"{s}.") for s in safe):
            continue
        recorded = saved_leaves.get(key, "<absent>")
        if (
            value == "<deleted>" and recorded == "<absent>"
        ):  # a group choice without this key, as recorded
            continue
        if value == recorded or (
            key.endswith("seed") and value is None and isinstance(recorded, int)
        ):
            continue
        raise ResumeConflictError(
            f"{key}={value!r} would change the result of the run being resumed (it has {key}={recorded!r}); "
            f"drop the override, or start a new run. Allowed to change on resume: {', '.join(sorted(safe))}"
        )


def overridden_keys(base: Any, full: Any, saved: Any) -> list[str]:
    """Keys the command line sets (``full`` vs ``base``) to a value other than the saved run's, by the
    rules of :func:`check_overrides` (a ``seed: null`` matches any recorded seed)."""
    saved_leaves = flatten({k: v for k, v in _container(saved).items() if k != "hydra"})
    out = []
    for key, value in changed_keys(base, full).items():
        recorded = saved_leaves.get(key, "<absent>")
        if value == "<deleted>" and recorded == "<absent>":
            continue
        if value == recorded or (
            key.endswith("seed") and value is None and isinstance(recorded, int)
        ):
            continue
        out.append(key)
    return out


def merged_config(
    saved: DictConfig,
    current: DictConfig,
    safe_keys: Iterable[str],
    given: set[str] | None = None,
    reset: Iterable[str] = (),
) -> DictConfig:
    """The run's own config; a safe key changes only when this command line gives it.

    ``given`` holds the keys the command line overrides (None: take every safe key from
    ``current``); ``reset`` keys (one-shot test hooks) go back to null unless given.
    """
    out = OmegaConf.create(_container(saved))
    reset = set(reset)
    for key in safe_keys:
        if given is not None and not any(g == key or g.startswith(f"{key}.") for g in given):
            if key in reset and OmegaConf.select(out, key, default="<absent>") != "<absent>":
                OmegaConf.update(out, key, None, force_add=True)
            continue
        value = OmegaConf.select(current, key, default=None)
        if OmegaConf.select(current, key, default="<absent>") == "<absent>":
            continue
        OmegaConf.update(
            out, key, _container(value) if isinstance(value, DictConfig) else value, force_add=True
        )
    return out


@dataclass
class RunDirectoryState:
    """What a run directory holds, read without unpickling anything."""

    run_dir: Path
    has_record: bool
    status: str | None
    checkpoints: list[Path]


def inspect_run_dir(run_dir: str | Path) -> RunDirectoryState:
    from repro.base.layout import list_checkpoints

    run_dir = Path(run_dir)
    for name in (RUN_FILE, CONFIG_FILE, METRICS_FILE, FINGERPRINTS_FILE, LOCK_FILE, CHECKPOINT_DIR):
        if (run_dir / name).is_symlink():
            raise RunDirectoryError(
                f"{run_dir / name} is a symbolic link; a run's record files are never read "
                "or written through one (replace it with the file itself)"
            )
    run_json = run_dir / RUN_FILE
    status = None
    if run_json.is_file():
        try:
            loaded = json.loads(run_json.read_text())
            status = loaded.get("status") if isinstance(loaded, dict) else "unreadable"
        except (OSError, ValueError):
            status = "unreadable"
    return RunDirectoryState(run_dir, run_json.is_file(), status, list_checkpoints(run_dir))


def require_resumable(run_dir: str | Path, key: str = "train.resume") -> RunDirectoryState:
    """The state of ``run_dir``, or an error saying why it cannot be resumed."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"{key}={run_dir}: is a file, not a run directory")
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{key}={run_dir}: no such directory")
    state = inspect_run_dir(run_dir)
    if not state.has_record or not (run_dir / CONFIG_FILE).is_file():
        raise RunDirectoryError(
            f"{key}={run_dir}: not a run directory (no run.json and config.yaml)"
        )
    if not state.checkpoints:
        raise RunDirectoryError(f"{key}={run_dir}: the run holds no checkpoint to resume from")
    return state


def abandon_attempt(run_dir: Path) -> Path:
    """Move a started-but-never-checkpointed attempt aside (nothing is deleted); return where it went."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = run_dir / ABANDONED_DIR / stamp
    target.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name not in (ABANDONED_DIR, ".lock"):
            shutil.move(str(entry), target / entry.name)
    return target


def remove_stale_partials(run_dir: Path) -> list[Path]:
    """Delete the temp files an interrupted atomic write left (``.NAME.XXXX.tmp``) in the run directory and
    its checkpoints; call only while holding the run's lock. Returns what was removed."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in folder.glob(".*.tmp"):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
        # the shards of a sharded checkpoint that was being written (train.strategy=fsdp)
        for path in folder.glob(".step-*.shards.partial"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def next_resume_subdir(run_dir: Path) -> str:
    """A fresh ``.hydra/resume-N`` for Hydra's files of this resume (the original's stay untouched)."""
    n = 1
    while (run_dir / ".hydra" / f"resume-{n}").exists():
        n += 1
    return f".hydra/resume-{n}"


@dataclass
class Resumption:
    """A resume the task is about to perform: the run's directory and its own config (safe keys updated)."""

    run_dir: Path
    config: DictConfig
    ignore: tuple[str, ...]

    def config_sha256(self) -> str:
        return config_sha256(self.config, self.ignore)

    def load_latest(self) -> tuple[Any, dict[str, Any]]:
        """The newest intact checkpoint written under this config; older ones are tried, with a warning, if
        the newest is corrupt. Raises CheckpointError when none can be used."""
        from repro.run.checkpoint import CheckpointError, latest_valid_checkpoint

        found = latest_valid_checkpoint(self.run_dir, config_sha256=self.config_sha256())
        if found is None:
            raise CheckpointError(
                f"no usable checkpoint in {self.run_dir / 'checkpoints'} (each one skipped is named in a warning "
                "above); the run cannot be resumed"
            )
        return found


def check_records(state: RunDirectoryState, key: str) -> None:
    """Before a resume writes anything: ``run.json`` and ``config.yaml`` parse and have their shapes
    (``repro.base.records``), and one checkpoint's envelope is intact (nothing is unpickled)."""
    from repro.base.layout import CheckpointError, read_header
    from repro.base.records import read_config, read_manifest

    todo = f"restore it from a copy of the run, or start a new run without {key}"
    read_manifest(state.run_dir, todo=todo)
    read_config(state.run_dir, todo=todo)
    errors = []
    for path in reversed(state.checkpoints):
        try:
            read_header(path)
            return
        except CheckpointError as exc:
            errors.append(str(exc))
    raise RunDirectoryError(
        f"{key}={state.run_dir}: no checkpoint of the run is intact ({errors[0]}); {todo}"
    )


class RunCompleted(ReproError):
    """``auto`` found a completed run in its directory: nothing to do."""


def decide(
    value: str | None, run_dir: str | Path, *, key: str, is_main: bool = True
) -> RunDirectoryState | None:
    """The one resume decision, for the pre-run check and for each job of a sweep at its start.

    ``value`` is what ``key`` asks for (``auto`` or a run directory, ``run_dir`` being where it points).
    Returns the state of a run to resume, or None to start fresh: ``auto`` on a directory with no
    checkpoint (a started attempt there is moved aside by rank 0). Raises :class:`RunCompleted` for a
    completed run and :class:`RunDirectoryError` when an explicit directory cannot be resumed.
    """
    if value is None:
        return None
    run_dir = Path(run_dir)
    state = inspect_run_dir(run_dir) if str(value) == AUTO else require_resumable(run_dir, key)
    if state.status == "completed":
        raise RunCompleted(f"{run_dir} already holds a completed run; nothing to resume")
    if state.checkpoints:
        check_records(state, key)
    if not state.checkpoints:
        if state.has_record and is_main:  # rank 0 alone moves files
            moved = abandon_attempt(run_dir)
            import sys

            print(
                f"{key}=auto: {run_dir} holds an attempt with no checkpoint; moved it to {moved} and "
                "starting fresh",
                file=sys.stderr,
            )
        return None
    return state


def find_resumption(
    cfg: DictConfig,
    run_dir: str | Path,
    *,
    key: str,
    safe_keys: Iterable[str],
    is_main: bool = True,
    given: set[str] | None = None,
    reset: Iterable[str] = (),
) -> Resumption | None:
    """What ``cfg[key]`` asks for in ``run_dir`` (see :func:`decide`): a :class:`Resumption` on the run's
    own config, or None to start fresh."""
    value = OmegaConf.select(cfg, key, default=None)
    if decide(None if value is None else str(value), run_dir, key=key, is_main=is_main) is None:
        return None
    run_dir = Path(run_dir)
    ignore = (key, *safe_keys)
    saved = OmegaConf.load(run_dir / CONFIG_FILE)
    return Resumption(
        run_dir,
        merged_config(saved, cfg, ignore, None if given is None else {*given, key}, reset),
        ignore,
    )
