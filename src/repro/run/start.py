"""Opening a run: fresh or resumed.

:func:`open_run` is what the entry point (and ``repro.start_run`` in a
notebook) calls once the config is composed: it takes the lock on the run
directory, decides fresh or resume (a resume runs on the run's own config),
calls ``setup_reproducibility`` and starts or continues the record.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repro.base.config import RunConfig, check_logger_packages, logger_configs, validate_run_config
from repro.base.overrides import override_key, resume_safe_keys
from repro.core.setup import setup_reproducibility
from repro.run.lock import RunLock
from repro.run.logger_group import Loggers
from repro.run.record import RunRecord
from repro.run.resume import config_sha256, find_resumption, remove_stale_partials
from repro.run.run import Run, resolve_device

log = logging.getLogger("repro.run")


def open_run(
    cfg: DictConfig,
    run_dir: str | Path,
    *,
    overrides: Iterable[str] = (),
    node: str = "train",
    safe_keys: Iterable[str] = (),
    in_process: bool = False,
    entry: dict[str, Any] | None = None,
) -> Run:
    """Open the run of ``cfg`` in ``run_dir``: a resume when ``cfg[node].resume`` asks for one.

    Raises :class:`repro.run.resume.RunCompleted` when ``auto`` finds a completed run.
    """
    run_dir = Path(run_dir)
    overrides = list(overrides)
    resume_key = f"{node}.resume"
    safe = resume_safe_keys(node, safe_keys)
    is_main = int(os.environ.get("RANK", "0")) == 0
    lock = RunLock.acquire(run_dir) if is_main else None
    try:
        given = {override_key(o) for o in overrides}
        resumption = find_resumption(
            cfg, run_dir, key=resume_key, safe_keys=safe, is_main=is_main, given=given
        )
        if resumption is not None:
            cfg = resumption.config
            if is_main:
                remove_stale_partials(run_dir)  # half-written files of the attempt that died
        settings = settings_of(cfg, node)
        logger_settings = logger_configs(cfg.get("logger")) if is_main else {}
        check_logger_packages(logger_settings)  # before anything is written
        device = resolve_device(
            settings.device, int(os.environ.get("LOCAL_RANK", "0")), key=f"{node}.device"
        )
        repro = setup_reproducibility(
            cfg, in_process=in_process
        )  # before anything draws a random number
        config_hash = config_sha256(cfg, ignore=(resume_key, *safe))
        state, pending, from_step = None, [], None
        if resumption is not None:
            info, state = resumption.load_latest()
            record = RunRecord.resume(
                run_dir, repro, from_step=info.step, checkpoint=info.path, overrides=overrides
            )
            pending, from_step = record.interrupted_rows, info.step
            if repro.dist.is_main:
                log.info("resuming %s from %s (step %d)", run_dir, info.path.name, info.step)
        else:
            record = RunRecord.start(
                run_dir,
                cfg,
                repro,
                overrides=overrides,
                entry=entry,
                extra={"launch": "in-process"} if in_process else None,
            )
        loggers = Loggers()
        try:
            loggers = Loggers.open(
                logger_settings,
                run_dir,
                from_step=from_step,
                recorded=record.manifest.get("loggers"),
            )
            if loggers.recorded:
                record.update(loggers=loggers.recorded)
            run = Run(
                cfg,
                run_dir,
                settings,
                repro,
                record,
                config_hash=config_hash,
                resume_state=state,
                pending_check=pending,
                node=node,
                device=device,
                loggers=loggers,
            )
        except BaseException as exc:  # the record is started: it must say how this attempt ended
            loggers.close("failed")
            record.finish("failed", error=f"{type(exc).__name__}: {exc}")
            raise
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    run.lock = lock
    return run


def settings_of(cfg: DictConfig, node: str) -> RunConfig:
    """The typed run settings at ``cfg[node]`` (ranges checked)."""
    return validate_run_config(OmegaConf.select(cfg, node, default=None) or {}, prefix=node)
