"""``entrypoint``: Hydra's main, with a check before anything starts.

Before Hydra creates a run directory, the entry point composes the config
from the command line once (each job of a ``-m`` sweep too) and checks it
(:mod:`repro.launch.preflight`):

* a bad override, an unknown key or profile, or a value out of range stops
  the program with one line naming the key and what is allowed (exit 2),
  and nothing is written;
* a run directory that already holds a run is refused, so Hydra never
  overwrites another run's ``.hydra/`` files;
* settings that only work at process start are put in place before torch is
  imported: the ATen CPU capability, MKL's CBWR branch, oneDNN's ISA and
  cuBLAS' workspace in this process (no library has read them yet);
  ``PYTHONHASHSEED`` by re-executing the same command, which happens first
  thing with the kit's default seed when the shell set none (before the
  config is composed, so the second start costs only the imports).
  ``os.execve`` keeps the process id, so schedulers and ``torchrun`` see one
  process.

A plain single run composes its config once: the check's config is the run's
(:mod:`repro.launch.hydra_run`).

Errors raised by the kit inside the task (``ReproError``) are printed as
one line too.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from repro.base.config import register_configs, split_override
from repro.base.errors import ReproError, Terminated
from repro.base.hashseed import GUESS_ENV, PLAN_ENV, guess_hash_seed
from repro.base.hashseed import execute_again as _execute_again
from repro.base.layout import RUN_FILE
from repro.launch.helptext import register_help_resolvers
from repro.launch.hydra_run import HydraSession, single_run_mode
from repro.launch.preflight import (
    ConfigCheck,
    ExistingRunPolicy,
    LaunchError,
    LaunchPlan,
    _one_line,
    describe_compose_error,
    preflight,
)
from repro.launch.sweep import job_lines, remember_sweep
from repro.run.resume import RunCompleted

__all__ = [
    "LaunchError",
    "current_entry",
    "describe_compose_error",
    "entrypoint",
    "fail",
    "relaunch_if_needed",
    "PLAN_ENV",
]

# PLAN_ENV (the launch plan a re-executed process inherits) and GUESS_ENV (re-executed with the kit's
# default hash seed before composing) live in repro.base.hashseed, which runs before anything else.
#: How the entry point was launched, for jobs that launcher plugins run in worker processes.
ENTRY_ENV = "REPRO_ENTRY"
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
_SKIP_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")

#: The experiment: takes the run object (``repro.Run``), returns its result (a dict) or None.
TaskFn = Callable[[Any], Any]


_ENTRY: dict[str, Any] = {}


def current_entry() -> dict[str, Any]:
    """How this process was launched: the entry module and the resume key (for the ``repro`` tools)."""
    entry = dict(_ENTRY)
    if not entry and os.environ.get(
        ENTRY_ENV
    ):  # a job that a launcher (joblib, submitit) started for us
        try:
            entry = json.loads(os.environ[ENTRY_ENV])
        except ValueError:
            entry = {}
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    entry.setdefault("module", getattr(spec, "name", None))
    return entry


def relaunch_if_needed(
    plan: LaunchPlan, argv: list[str], *, hash_seed_guessed: bool = False
) -> None:
    """Put the plan's pins in place: in this process where they still can be, else by re-executing.

    Before torch is imported, the variables its libraries read once when they start (cuBLAS' workspace,
    the ATen CPU capability, MKL's CBWR branch, oneDNN's ISA) are set here: in effect as if the process
    had started with them (after torch is imported, only cuBLAS' workspace, and only where torch has
    no GPU backend: :func:`repro.base.startup.still_unread`). ``PYTHONHASHSEED`` is read by the interpreter
    itself: it needs a new one.
    ``os.execve`` keeps the process id (schedulers and torchrun see one process); the plan travels in
    the environment, so the new process starts the task at once. ``hash_seed_guessed``: this process was
    re-executed with the kit's default hash seed before the config was composed (see
    :func:`guess_hash_seed`); if the config leaves the seed unpinned, the guess is taken back.
    """
    from repro.base import startup

    missing = {k: v for k, v in plan.pins.items() if os.environ.get(k) != v}
    take_back = hash_seed_guessed and "PYTHONHASHSEED" not in plan.pins
    late = (
        "PYTHONHASHSEED" in missing
        or take_back
        or not all(startup.still_unread(var) for var in missing)
    )
    if not late:
        for var, value in missing.items():
            startup.set_before_libraries(var, value)
        return
    env = dict(os.environ, **plan.pins, **{PLAN_ENV: plan.to_json()})
    if take_back:
        env.pop("PYTHONHASHSEED", None)
    _execute_again(argv, env)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def entrypoint(
    config_dir: str | Path,
    config_name: str = "config",
    *,
    node: str = "train",
    safe_keys: tuple[str, ...] = (),
    check: ConfigCheck | None = None,
    existing_run_ok: ExistingRunPolicy | None = None,
) -> Callable[[TaskFn], Callable[[], Any]]:
    """Decorate an experiment ``task(run)`` like ``hydra.main``: it receives a :class:`repro.Run`.

    The run owns the record, ``setup_reproducibility``, the process group,
    checkpoints and resume; the task holds the experiment's own logic and
    returns its result (a dict, merged into ``run.json``'s ``result``).

    ``node`` is the config node holding the kit's run settings
    (:class:`repro.RunConfig`: ``epochs``, ``max_steps``, ``checkpoint_every``,
    ``keep_checkpoints``, ``resume``, ...); ``<node>.resume`` asks for a resume
    (a run directory or ``auto``), which runs in the resumed run's directory on
    its own config, with Hydra's files for it in ``.hydra/resume-N``.
    ``safe_keys`` adds the project's keys that may differ on resume (speed and
    bookkeeping only). ``check`` validates the project's own config values at
    preflight, before any directory is made. A ``ReproError`` raised before
    ``run.json`` was written removes the run directory Hydra made for it, so a
    bad input leaves nothing behind.
    """
    from repro.base.config import resume_safe_keys as _safe

    config_dir = str(Path(config_dir).resolve())
    resume_key = f"{node}.resume"
    resume_safe_keys = _safe(node, safe_keys)
    check = _with_run_check(check, node)

    def decorate(task: TaskFn) -> Callable[[], Any]:
        import hydra

        launch: dict[str, LaunchPlan] = {}  # this process's plan, from main() to the task

        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> Any:
            plan = launch.get("plan") or LaunchPlan()
            try:
                with job_lines():  # in a -m sweep: "sweep job i/N started ... completed"
                    return _run_task(task, cfg, node, safe_keys)
            except ReproError as exc:
                _remove_unused_run_dir(plan)
                _remove_unused_resume_subdir()
                if _in_multirun():  # let Hydra record this job as failed and go on with the others
                    print(f"error: {exc}", file=sys.stderr)
                    from hydra.errors import CompactHydraException

                    # A compact exception: at the end of the sweep Hydra prints its message, not a traceback.
                    raise CompactHydraException(f"error: {exc}") from None
                fail(str(exc))
            except KeyboardInterrupt:
                fail(
                    "interrupted; a started run is recorded as failed (resume it from its checkpoint)",
                    code=130,
                )
            except RuntimeError as exc:
                if (
                    int(os.environ.get("WORLD_SIZE", "1")) > 1
                    and type(exc).__name__
                    in ("DistBackendError", "DistNetworkError", "RuntimeError")
                    and _looks_like_peer_loss(exc)
                ):
                    fail(
                        f"lost contact with another rank ({_one_line(str(exc))[:160]}); it probably failed: see "
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

        hydra_main = hydra.main(
            config_path=config_dir, config_name=config_name, version_base="1.3"
        )(guarded)

        @functools.wraps(task)
        def main() -> Any:
            register_configs()
            register_help_resolvers()  # for --help (conf/hydra/help/repro.yaml)
            _ENTRY.update(
                module=getattr(
                    getattr(sys.modules.get("__main__"), "__spec__", None), "name", None
                ),
                config_name=config_name,
                resume_key=resume_key,
            )
            os.environ[ENTRY_ENV] = json.dumps(
                _ENTRY
            )  # for jobs a launcher plugin runs in other processes
            sys.argv = _absolute_config_path(sys.argv)
            args = _parse_args(sys.argv[1:])
            remember_sweep(args.overrides if args is not None and args.multirun else None)
            rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
            inherited = os.environ.pop(PLAN_ENV, None)
            guessed = os.environ.pop(GUESS_ENV, None) is not None
            if (
                inherited is not None
            ):  # re-executed by our parent: the plan is checked, the argv complete
                launch["plan"] = LaunchPlan.from_json(inherited)
                return hydra_main()
            if args is None or any(getattr(args, f, None) for f in _SKIP_FLAGS):
                return hydra_main()
            if not guessed:
                guess_hash_seed(sys.argv)
            ranks_extra = _torchrun_overrides(args, rank, world, resume_key)
            # Hydra's own files and log belong to rank 0
            rank_files = (
                [] if rank == 0 else ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
            )
            cdir = config_dir if args.config_path is None else str(Path(args.config_path).resolve())
            checked = [*args.overrides, *ranks_extra, *rank_files]
            if (
                args.config_dir
            ):  # --config-dir adds a directory to the search path: compose with it too
                checked.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
            # A plain single run composes once: the check's config is the run's (repro.launch.hydra_run)
            plain = not (args.multirun or args.config_dir or args.experimental_rerun)
            session = (
                HydraSession(guarded, cdir, args.config_name or config_name) if plain else None
            )
            try:
                plan = preflight(
                    cdir,
                    args.config_name or config_name,
                    checked,
                    multirun=args.multirun,
                    existing_run_ok=existing_run_ok,
                    check=check,
                    resume_key=resume_key,
                    resume_safe_keys=resume_safe_keys,
                    is_main=rank == 0,
                    compose=session.compose if session is not None else None,
                )
            except RunCompleted as exc:
                print(str(exc), file=sys.stderr)
                sys.exit(0)
            except LaunchError as exc:
                fail(str(exc))
            extra = [e for e in plan.extra if rank == 0 or not e.startswith("hydra.output_subdir=")]
            sys.argv = [*sys.argv, *ranks_extra, *rank_files, *extra]
            launch["plan"] = plan
            relaunch_if_needed(plan, sys.argv, hash_seed_guessed=guessed)
            if session is not None and not extra and single_run_mode(plan.config):
                return session.run(plan.config, guarded)
            return hydra_main()

        # How this entry runs, for the repro tools (they read it from the installed project, never a record).
        main.repro_entry = {
            "config_dir": config_dir,
            "config_name": config_name,
            "resume_key": resume_key,
            "resume_safe_keys": resume_safe_keys,
        }
        return main

    return decorate


def _with_run_check(check: ConfigCheck | None, node: str) -> ConfigCheck:
    """The project's check, after the kit's own check of its run settings at ``node``."""

    def checked(cfg: DictConfig) -> None:
        from omegaconf import OmegaConf

        from repro.base.config import check_logger_packages, logger_configs, validate_run_config

        validate_run_config(OmegaConf.select(cfg, node, default=None) or {}, prefix=node)
        check_logger_packages(logger_configs(OmegaConf.select(cfg, "logger", default=None)))
        if check is not None:
            check(cfg)

    return checked


def _run_task(task: TaskFn, cfg: DictConfig, node: str, safe_keys: tuple[str, ...]) -> Any:
    """Open the run (fresh or resumed), hand it to the task, and close it whatever happens."""
    import logging

    from hydra.core.hydra_config import HydraConfig

    from repro.run.start import open_run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.output_subdir is not None and int(os.environ.get("RANK", "0")) == 0:
        from repro.base.secrets import redact_yaml_files

        redact_yaml_files(run_dir / str(hc.output_subdir))  # Hydra wrote the overrides as given
    try:
        run = open_run(
            cfg,
            run_dir,
            overrides=list(hc.overrides.task),
            node=node,
            safe_keys=safe_keys,
            entry=current_entry(),
        )
    except RunCompleted as done:  # a requeued sweep job that had already finished
        logging.getLogger("repro.run").info("%s", done)
        return json.loads((run_dir / RUN_FILE).read_text()).get("result") or {}
    try:
        result = task(run)
    except (
        BaseException
    ) as exc:  # KeyboardInterrupt and SIGTERM too: the record must say the run failed
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


def _torchrun_overrides(args: Any, rank: int, world: int, resume_key: str | None) -> list[str]:
    """Under torchrun every rank must use one run directory: name it after the job, not the clock."""
    if world <= 1:
        return []
    if args.multirun:
        fail("-m sweeps and torchrun do not mix: launch one torchrun per job of the sweep")
    keys = dict(split_override(o) for o in args.overrides)
    if "hydra.run.dir" in keys or (resume_key in keys and keys[resume_key] not in ("auto", "null")):
        return []  # named by the user, or the resumed run's own directory
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id in ("", "none"):
        fail(
            "under torchrun without --standalone, name the run: hydra.run.dir=DIR (the same on every node), "
            "or torchrun --rdzv-id=JOB_ID"
        )
    return [f"hydra.run.dir=outputs/torchrun/{run_id}"]


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
    import re

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
    if resumes < int(match.group(1)):  # this attempt never reached the record
        shutil.rmtree(out / sub, ignore_errors=True)


def _absolute_config_path(argv: list[str]) -> list[str]:
    """Make ``--config-path``/``-cp`` absolute: Hydra reads a relative one against the entry module's file,
    which surprises everyone; here it means the current directory."""
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in ("--config-path", "-cp"):
            if arg == flag and i + 1 < len(out):
                out[i + 1] = str(Path(out[i + 1]).resolve())
            elif arg.startswith(flag + "="):
                out[i] = f"{flag}={Path(arg.split('=', 1)[1]).resolve()}"
    return out


def _parse_args(argv: list[str]) -> Any:
    from hydra._internal.utils import get_args_parser

    try:
        return get_args_parser().parse_args(argv)
    except SystemExit:  # let Hydra print its own usage error
        return None
