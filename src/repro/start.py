"""Opening a run: fresh or resumed, from the entry point or from a notebook.

:func:`open_run` is what :func:`repro.entrypoint` calls inside Hydra's task:
it takes the lock on the run directory, decides fresh or resume (a resume runs
on the run's own config), calls ``setup_reproducibility`` and starts or
continues the record. :func:`start_run` does the same from a Python session
(a script or a Jupyter kernel) without Hydra's command line and without the
relaunch; what cannot hold in a running interpreter is recorded as such.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from repro.config import register_configs, resume_safe_keys
from repro.errors import ReproError, RunDirectoryError
from repro.lock import RunLock
from repro.record import RunRecord
from repro.resume import config_sha256, find_resumption, remove_stale_partials
from repro.run import Run, resolve_device, settings_of
from repro.setup import setup_reproducibility


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def open_run(cfg: DictConfig, run_dir: str | Path, *, overrides: Iterable[str] = (), node: str = "train",
             safe_keys: Iterable[str] = (), in_process: bool = False) -> Run:
    """Open the run of ``cfg`` in ``run_dir``: a resume when ``cfg[node].resume`` asks for one.

    Raises :class:`repro.resume.RunCompleted` when ``auto`` finds a completed run.
    """
    run_dir = Path(run_dir)
    overrides = list(overrides)
    resume_key = f"{node}.resume"
    safe = resume_safe_keys(node, safe_keys)
    is_main = int(os.environ.get("RANK", "0")) == 0
    lock = RunLock.acquire(run_dir) if is_main else None
    try:
        given = {_override_key(o) for o in overrides}
        resumption = find_resumption(cfg, run_dir, key=resume_key, safe_keys=safe, is_main=is_main, given=given)
        if resumption is not None:
            cfg = resumption.config
            if is_main:
                remove_stale_partials(run_dir)  # half-written files of the attempt that died
        settings = settings_of(cfg, node)
        device = resolve_device(settings.device, int(os.environ.get("LOCAL_RANK", "0")), key=f"{node}.device")
        repro = setup_reproducibility(cfg, in_process=in_process)  # before anything draws a random number
        config_hash = config_sha256(cfg, ignore=(resume_key, *safe))
        state, pending = None, []
        if resumption is not None:
            info, state = resumption.load_latest()
            record = RunRecord.resume(run_dir, repro, from_step=info.step, checkpoint=info.path,
                                      overrides=overrides)
            pending = record.interrupted_rows
            if repro.dist.is_main:
                import logging

                logging.getLogger("repro.run").info("resuming %s from %s (step %d)", run_dir, info.path.name,
                                                    info.step)
        else:
            record = RunRecord.start(run_dir, cfg, repro, overrides=overrides,
                                     extra={"launch": "in-process"} if in_process else None)
        try:
            run = Run(cfg, run_dir, settings, repro, record, config_hash=config_hash, resume_state=state,
                      pending_check=pending, node=node, device=device)
        except BaseException as exc:  # the record is started: it must say how this attempt ended
            record.finish("failed", error=f"{type(exc).__name__}: {exc}")
            raise
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.lock = lock
    return run


def default_run_dir(root: str | Path = "outputs") -> Path:
    """``outputs/<date>/<time with microseconds>``, as the entry point names run directories."""
    now = dt.datetime.now()
    return Path(root) / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def start_run(config_dir: str | Path, config_name: str = "config", overrides: Iterable[str] = (), *,
              run_dir: str | Path | None = None, node: str = "train", safe_keys: Iterable[str] = (),
              check: Callable[[DictConfig], None] | None = None,
              register: Callable[[], None] | None = None) -> Run:
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

    from repro.preflight import describe_compose_error

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
    settings_of(cfg, node)
    resume = OmegaConf.select(cfg, f"{node}.resume", default=None)
    if resume not in (None, "auto"):
        run_dir = Path(str(resume))
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
    if resume is None and (run_dir / "run.json").exists():
        raise RunDirectoryError(f"{run_dir} already holds a run (run.json exists) and is never overwritten; "
                                "choose another run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    return open_run(cfg, run_dir, overrides=overrides, node=node, safe_keys=safe_keys, in_process=True)
