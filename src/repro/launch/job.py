"""One job of the entry point, inside Hydra: open the run, hand it to the task, close it; what the task
raises becomes one line on stderr, and a run directory or ``.hydra/resume-N`` that no run was recorded
in is removed, so a bad input leaves nothing behind."""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from repro.base.errors import ReproError, Terminated
from repro.base.layout import RUN_FILE
from repro.launch.cmdline import fail
from repro.launch.compose_errors import one_line
from repro.launch.entry import TaskFn, current_entry
from repro.launch.preflight import LaunchPlan
from repro.launch.sweep import job_lines
from repro.run.resume import RunCompleted

#: Storage errors a user can act on (disk full, read-only, no permission): one line, no traceback.
_STORAGE_ERRORS = (
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.ELOOP,
)


def guard(
    task: TaskFn, node: str, safe_keys: tuple[str, ...], launch: dict[str, LaunchPlan]
) -> Callable[[DictConfig], Any]:
    """The function Hydra runs for each job: ``task`` on a run, its errors as one line.

    ``launch`` holds this process's plan under ``"plan"`` once the entry point has checked the command
    line (empty for ``--help`` and the like).
    """

    @functools.wraps(task)
    def guarded(cfg: DictConfig) -> Any:
        plan = launch.get("plan") or LaunchPlan()
        try:
            # In a -m sweep: "sweep job i/N started ... completed".
            with job_lines():
                return run_task(task, cfg, node, safe_keys)
        except ReproError as exc:
            _remove_unused_run_dir(plan)
            _remove_unused_resume_subdir()
            # Let Hydra record this job as failed and go on with the others.
            if _in_multirun():
                from hydra.errors import CompactHydraException

                from repro.base.secrets import redact_text

                line = f"error: {redact_text(str(exc))}"
                print(line, file=sys.stderr)
                # A compact exception: at the end of the sweep Hydra prints its message, not a traceback.
                raise CompactHydraException(line) from None
            fail(str(exc))
        except KeyboardInterrupt:
            fail(
                "interrupted; a started run is recorded as failed (resume it from its checkpoint)",
                code=130,
            )
        except RuntimeError as exc:
            if (
                int(os.environ.get("WORLD_SIZE", "1")) > 1
                and type(exc).__name__ in ("DistBackendError", "DistNetworkError", "RuntimeError")
                and _looks_like_peer_loss(exc)
            ):
                fail(
                    f"lost contact with another rank ({one_line(str(exc))[:160]}); it probably failed: see "
                    "its output. The run is recorded as failed; resume it from its checkpoint",
                    code=1,
                )
            raise
        except Terminated:
            fail(
                "terminated by SIGTERM; the run is recorded as failed (resume it from its checkpoint)",
                code=143,
            )
        except OSError as exc:
            if exc.errno not in _STORAGE_ERRORS:
                raise
            _remove_unused_run_dir(plan)
            where = exc.filename or "the run directory"
            fail(
                f"cannot write {where}: {exc.strerror} (the run is recorded as failed if it had started)"
            )

    return guarded


def run_task(task: TaskFn, cfg: DictConfig, node: str, safe_keys: tuple[str, ...]) -> Any:
    """Open the run (fresh or resumed), hand it to the task, and close it whatever happens."""
    import logging

    from hydra.core.hydra_config import HydraConfig

    from repro.run.start import open_run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.output_subdir is not None and int(os.environ.get("RANK", "0")) == 0:
        from repro.base.secrets import redact_yaml_files

        # Hydra wrote the overrides as given (in a sweep escaped, and multirun.yaml in the sweep's folder).
        redact_yaml_files(run_dir / str(hc.output_subdir))
        if _in_multirun():
            redact_yaml_files(Path(hc.sweep.dir))
    try:
        run = open_run(
            cfg,
            run_dir,
            overrides=list(hc.overrides.task),
            node=node,
            safe_keys=safe_keys,
            entry=current_entry(),
        )
    except RunCompleted as done:
        # A requeued sweep job that had already finished.
        logging.getLogger("repro.run").info("%s", done)
        return json.loads((run_dir / RUN_FILE).read_text()).get("result") or {}
    try:
        result = task(run)
    except BaseException as exc:
        # KeyboardInterrupt and SIGTERM too: the record must say the run failed.
        run.close(error=exc)
        raise
    return run.close(result=result)


def _looks_like_peer_loss(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        w in text
        for w in (
            "connection reset",
            "connection closed",
            "broken pipe",
            "gloo",
            "nccl",
            "peer",
            "timed out",
        )
    )


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def _remove_unused_run_dir(plan: LaunchPlan) -> None:
    """Delete this job's output directory if Hydra made it just now and no run record was started in it."""
    from hydra.core.hydra_config import HydraConfig

    try:
        out = Path(HydraConfig.get().runtime.output_dir).resolve()
    except Exception:
        return
    made_now = (
        plan.run_dir is not None and Path(plan.run_dir) == out and plan.run_dir_existed is False
    )
    if not made_now or not out.is_dir() or (out / RUN_FILE).exists():
        return
    if all(p.name in (".hydra", ".lock") or p.suffix == ".log" for p in out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)


def _remove_unused_resume_subdir() -> None:
    """Delete the ``.hydra/resume-N`` Hydra made for a resume that was refused before it was recorded."""
    from hydra.core.hydra_config import HydraConfig

    try:
        hc = HydraConfig.get()
        out, sub = Path(hc.runtime.output_dir), str(hc.output_subdir or "")
    except Exception:
        return
    match = re.fullmatch(r"\.hydra/resume-(\d+)", sub)
    if match is None or not (out / sub).is_dir():
        return
    try:
        resumes = len(json.loads((out / RUN_FILE).read_text()).get("resumes") or [])
    except (OSError, ValueError, AttributeError):
        return
    # This attempt never reached the record.
    if resumes < int(match.group(1)):
        shutil.rmtree(out / sub, ignore_errors=True)
