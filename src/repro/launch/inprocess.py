"""Launching a run inside a running interpreter (a script or a Jupyter kernel): no command line, no relaunch.

What cannot hold in a running interpreter (pins fixed at process start) is recorded as such in the run.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from repro.base.config import register_configs, validate_run_config
from repro.base.errors import ReproError, RunDirectoryError
from repro.base.layout import RUN_FILE
from repro.launch.compose_errors import describe_compose_error

if TYPE_CHECKING:
    from repro.run.run import Run


def default_run_dir(root: str | Path = "outputs") -> Path:
    """``outputs/<date>/<time with microseconds>``, as the entry point names run directories."""
    now = dt.datetime.now()
    return Path(root) / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def start_run(
    config_dir: str | Path,
    config_name: str = "config",
    overrides: Iterable[str] = (),
    *,
    run_dir: str | Path | None = None,
    node: str = "train",
    safe_keys: Iterable[str] = (),
    check: Callable[[DictConfig], None] | None = None,
    register: Callable[[], None] | None = None,
) -> Run:
    """A run from Python (a script or a notebook), without the command line and without the relaunch.

    Composes ``config_name`` from ``config_dir`` with ``overrides`` (Hydra's override syntax), checks it
    as the entry point would, and opens the run in ``run_dir`` (default ``outputs/<date>/<time>``).
    Use it as a context manager so the record is completed or failed whatever happens::

        with repro.start_run("conf", overrides=["train.epochs=1"]) as run:
            train(run)

    Settings fixed at process start (``PYTHONHASHSEED``, ``ATEN_CPU_CAPABILITY``, ``MKL_CBWR``,
    ``ONEDNN_MAX_CPU_ISA``) cannot be applied to a running interpreter: each one not already in
    effect is recorded in ``run.json`` as not in effect, with the reason.
    """
    from hydra import compose, initialize_config_dir

    from repro.launch.targets import check_targets, check_typed_nodes, target_nodes
    from repro.run.start import open_run

    register_configs()
    if register is not None:
        register()
    overrides = list(overrides)
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except Exception as exc:  # Hydra and OmegaConf raise many types; all are the caller's input
        raise ReproError(describe_compose_error(exc)) from None
    if check is not None:
        check(cfg)
    validate_run_config(OmegaConf.select(cfg, node, default=None) or {}, prefix=node)
    # As the entry point does: typed nodes against their fields, each _target_ against its signature.
    check_typed_nodes(cfg)
    check_targets(target_nodes(cfg))
    resume = OmegaConf.select(cfg, f"{node}.resume", default=None)
    if resume not in (None, "auto"):
        run_dir = Path(str(resume))
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
    if resume is None and (run_dir / RUN_FILE).exists():
        raise RunDirectoryError(
            f"{run_dir} already holds a run (run.json exists) and is never overwritten; "
            "choose another run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    main = sys.modules.get("__main__")
    entry = {
        "module": getattr(getattr(main, "__spec__", None), "name", None),
        "config_name": config_name,
        "resume_key": f"{node}.resume",
        "launch": "in-process",
    }
    return open_run(
        cfg,
        run_dir,
        overrides=overrides,
        node=node,
        safe_keys=safe_keys,
        in_process=True,
        entry=entry,
    )
