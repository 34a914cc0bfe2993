"""The run and sweep directories a command line names, checked before Hydra makes them: usable (no file,
dangling link or link loop on the way; a folder that takes a new entry) and holding no run already."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from repro.base.layout import RUN_FILE
from repro.base.search_record import SEARCH_FILE, SEARCH_SWEEPER
from repro.launch.override_checks import LaunchError

#: ``existing_run_ok(cfg, run_dir)``: may this command line run in a directory that holds a run?
ExistingRunPolicy = Callable[[DictConfig, Path], bool]


def check_path_is_usable(key: str, path: Path) -> None:
    """Refuse, before Hydra makes it, a directory that cannot be made: a file, a dangling link or a
    link loop on the way, or a first existing folder that refuses a new entry (read-only, /proc)."""
    import errno
    import tempfile

    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise LaunchError(f"{key}={path}: {p} is a file, not a directory")
        if p.is_symlink() and not p.exists():
            try:
                p.stat()
            except OSError as exc:
                kind = "a symlink loop" if exc.errno == errno.ELOOP else "a dangling symlink"
                raise LaunchError(
                    f"{key}={path}: {p} is {kind}; name a directory that exists or can be made"
                ) from None
    first = next((p for p in (path, *path.parents) if p.is_dir()), None)
    if first is None or (first == path and os.access(path, os.W_OK | os.X_OK)):
        return
    # Root may write where permission bits say no: only making a folder really tells.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".repro-check-", dir=first))
    except OSError as exc:
        raise LaunchError(
            f"{key}={path}: cannot make it in {first} ({exc.strerror}); name a directory on a "
            "writable disk"
        ) from None


def check_run_dir(
    cfg: DictConfig, existing_run_ok: ExistingRunPolicy | None
) -> tuple[str | None, bool | None]:
    """Refuse an unusable run directory or one that holds a run; return it and whether it existed."""
    try:
        text = str(cfg.hydra.run.dir)
    except Exception:  # an interpolation only Hydra's runtime can resolve: it checks again later
        return None, None
    if not text.strip():
        raise LaunchError(
            "hydra.run.dir='' is not allowed: expected a directory for the run (an empty value "
            "would write the run into the current directory)"
        )
    run_dir = Path(text)
    check_path_is_usable("hydra.run.dir", run_dir)
    existed = run_dir.exists()
    if (run_dir / RUN_FILE).exists() and not (existing_run_ok and existing_run_ok(cfg, run_dir)):
        raise LaunchError(
            f"hydra.run.dir={run_dir} already holds a run (run.json exists) and is never overwritten; "
            "choose another hydra.run.dir"
        )
    return str(run_dir.resolve()), existed


def check_sweep_dir(cfg: DictConfig) -> None:
    try:
        sweep_dir = Path(str(cfg.hydra.sweep.dir))
    except Exception:
        return
    check_path_is_usable("hydra.sweep.dir", sweep_dir)
    # A hyperparameter search resumes in its own sweep directory (repro.launch.search checks its record).
    search = OmegaConf.select(cfg, "hydra.sweeper._target_", default=None) == SEARCH_SWEEPER
    if search and (sweep_dir / SEARCH_FILE).is_file():
        return
    if sweep_dir.is_dir() and any(sweep_dir.glob("*/run.json")):
        raise LaunchError(
            f"hydra.sweep.dir={sweep_dir} already holds runs and they are never overwritten; "
            "choose another hydra.sweep.dir"
        )
