"""The ``main()`` that :func:`repro.entrypoint` returns: read the command line, check it before Hydra
creates anything (:mod:`repro.launch.preflight`), put the process-start pins in place, then run the
job: through the session that composed the check's config for a plain run, else through ``hydra.main``.

Imported only once the task is decorated (after the early restart for the hash seed): it imports
Hydra and OmegaConf, never torch.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from repro.base.config import register_configs
from repro.base.hashseed import GUESS_ENV, PLAN_ENV, guess_hash_seed
from repro.base.overrides import resume_safe_keys
from repro.base.secrets import redact_logging
from repro.launch.cmdline import (
    SKIP_FLAGS,
    absolute_config_path,
    fail,
    parse_args,
    torchrun_overrides,
)
from repro.launch.entry import TaskFn, remember_entry
from repro.launch.helptext import register_help_resolvers
from repro.launch.hydra_run import HydraSession, single_run_mode
from repro.launch.job import guard
from repro.launch.override_checks import LaunchError
from repro.launch.preflight import (
    ConfigCheck,
    ExistingRunPolicy,
    LaunchPlan,
    check_plan_targets,
    preflight,
)
from repro.launch.relaunch import relaunch_if_needed
from repro.launch.sweep import remember_sweep
from repro.run.resume import RunCompleted


def build_main(
    task: TaskFn,
    config_dir: str,
    config_name: str,
    *,
    node: str,
    safe_keys: tuple[str, ...],
    check: ConfigCheck | None,
    existing_run_ok: ExistingRunPolicy | None,
) -> Callable[[], Any]:
    """The program's ``main()`` for ``task``: see :func:`repro.entrypoint` for the arguments."""
    resume_key = f"{node}.resume"
    safe = resume_safe_keys(node, safe_keys)
    check = _with_run_check(check, node)
    # This process's plan, from main() to the task.
    launch: dict[str, LaunchPlan] = {}
    guarded = guard(task, node, safe_keys, launch)
    hydra_main = hydra.main(config_path=config_dir, config_name=config_name, version_base="1.3")(
        guarded
    )

    @functools.wraps(task)
    def main() -> Any:
        # Every log line of this process (the kit's, Hydra's) with its secrets hidden.
        redact_logging()
        register_configs()
        # For --help (conf/hydra/help/repro.yaml).
        register_help_resolvers()
        remember_entry(config_name=config_name, resume_key=resume_key)
        sys.argv = absolute_config_path(sys.argv)
        args = parse_args(sys.argv[1:])
        remember_sweep(args.overrides if args.multirun else None)
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        inherited = os.environ.pop(PLAN_ENV, None)
        guessed = os.environ.pop(GUESS_ENV, None) is not None
        # Re-executed by our parent: the plan is checked, the argv complete.
        if inherited is not None:
            launch["plan"] = LaunchPlan.from_json(inherited)
            try:
                # The _target_ nodes against their signatures: imports them, so after the pins.
                check_plan_targets(launch["plan"])
            except LaunchError as exc:
                fail(str(exc))
            return hydra_main()
        if any(getattr(args, f, None) for f in SKIP_FLAGS):
            return hydra_main()
        if not guessed:
            guess_hash_seed(sys.argv)
        ranks_extra = torchrun_overrides(args, rank, world, resume_key)
        # Hydra's own files and log belong to rank 0
        rank_files = [] if rank == 0 else ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
        cdir = config_dir if args.config_path is None else str(Path(args.config_path).resolve())
        checked = [*args.overrides, *ranks_extra, *rank_files]
        # --config-dir adds a directory to the search path: compose with it too.
        if args.config_dir:
            checked.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
        # A plain single run composes once: the check's config is the run's (repro.launch.hydra_run)
        plain = not (args.multirun or args.config_dir or args.experimental_rerun)
        session = HydraSession(guarded, cdir, args.config_name or config_name) if plain else None
        try:
            plan = preflight(
                cdir,
                args.config_name or config_name,
                checked,
                multirun=args.multirun,
                existing_run_ok=existing_run_ok,
                check=check,
                resume_key=resume_key,
                resume_safe_keys=safe,
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
        try:
            # The _target_ nodes against their signatures: imports them, so after the pins.
            check_plan_targets(plan)
        except LaunchError as exc:
            fail(str(exc))
        if session is not None and not extra and single_run_mode(plan.config):
            return session.run(plan.config, guarded)
        return hydra_main()

    # How this entry runs, for the repro tools (they read it from the installed project, never a record).
    main.repro_entry = {
        "config_dir": config_dir,
        "config_name": config_name,
        "resume_key": resume_key,
        "resume_safe_keys": safe,
    }
    return main


def _with_run_check(check: ConfigCheck | None, node: str) -> ConfigCheck:
    """The project's check, after the kit's own check of its run settings at ``node``."""

    def checked(cfg: DictConfig) -> None:
        from repro.base.config import check_logger_packages, logger_configs, validate_run_config

        validate_run_config(OmegaConf.select(cfg, node, default=None) or {}, prefix=node)
        check_logger_packages(logger_configs(OmegaConf.select(cfg, "logger", default=None)))
        if check is not None:
            check(cfg)

    return checked
