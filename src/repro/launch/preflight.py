"""The check before a run starts: compose every job the command line asks for, and refuse bad ones.

Used by :func:`repro.launch.entry.entrypoint` before Hydra creates anything. A bad
override, an unknown key or profile, a value out of range, a run directory
that already holds a run, or a resume that would change the result stops the
program with one line naming the key; nothing is written. It also works out
the environment pins the jobs need (from the resumed run's own config when
resuming), for the entry point to put in place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repro.base.config import register_configs, to_repro_config, validate
from repro.base.envvars import wanted_environment
from repro.base.errors import ReproError
from repro.base.layout import CONFIG_FILE
from repro.base.overrides import override_key, split_override
from repro.launch.compose_errors import describe_compose_error, one_line, quote_override_value
from repro.launch.override_checks import LaunchError, check_job_overrides
from repro.launch.run_dirs import ExistingRunPolicy, check_run_dir, check_sweep_dir
from repro.launch.search_check import check_search, is_search
from repro.launch.targets import check_targets, check_typed_nodes, target_nodes
from repro.run.resume import RunCompleted

_MAX_SWEEP_CHECKS = 64
#: Called with the composed config of a single run whose directory already holds a run:
#: return True to let it proceed (a resume), False to refuse.
#: Checks a composed config (values a type cannot express); raises ReproError. Must not import torch.
ConfigCheck = Callable[[DictConfig], None]


@dataclass
class LaunchPlan:
    """What the pre-run check decided, handed to the task: one value, no module state.

    ``pins``: the environment the process must have (a resume: the resumed run's own); ``extra``: the
    overrides to add (a resume runs in the resumed run's directory, Hydra's files in ``.hydra/resume-N``);
    ``run_dir`` and ``run_dir_existed``: what the check saw, so a failed start removes only what it made;
    ``resume``: ``None`` (fresh), ``"resume"`` or ``"fresh-after-abandon"``; ``targets``: the config
    nodes with a ``_target_`` (``[key, node]``), for :func:`check_plan_targets` once the pins are set.
    """

    pins: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    run_dir: str | None = None
    run_dir_existed: bool | None = None
    resume: str | None = None
    targets: list[list[Any]] = field(default_factory=list)
    #: The composed config of a single run (not a sweep), when the check composed it with the entry
    #: point's own Hydra session: the run reuses it instead of composing again. Never serialised.
    config: DictConfig | None = field(default=None, repr=False, compare=False)

    #: What travels to a re-executed process (``config`` does not: it would be composed again there).
    _SERIALISED = ("pins", "extra", "run_dir", "run_dir_existed", "resume", "targets")

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self._SERIALISED})

    @classmethod
    def from_json(cls, text: str) -> LaunchPlan:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls._SERIALISED if k in data})


def _sweep_jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The jobs to check: every value of every swept key once (not the whole product)."""
    if not multirun:
        return [overrides]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # OverrideParseException and friends: the user's input
        raise LaunchError(one_line(str(exc))) from None
    options: list[list[str]] = []
    for o in parsed:
        if not o.is_sweep_override():
            options.append([o.input_line])
            continue
        try:
            options.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        except (
            Exception
        ):  # a sweep a sweeper plugin samples (interval(...)): nothing to enumerate here
            options.append([])
    firsts = [opts[0] for opts in options if opts]
    jobs = [firsts]
    for i, opts in enumerate(options):
        for value in opts[1:]:
            job = [value if j == i else (o[0] if o else None) for j, o in enumerate(options)]
            jobs.append([x for x in job if x is not None])
    return jobs[:_MAX_SWEEP_CHECKS]


def preflight(
    config_dir: str | Path,
    config_name: str,
    overrides: list[str],
    *,
    multirun: bool = False,
    existing_run_ok: ExistingRunPolicy | None = None,
    check: ConfigCheck | None = None,
    resume_key: str | None = None,
    resume_safe_keys: tuple[str, ...] = (),
    is_main: bool = True,
    compose: Callable[[list[str]], DictConfig] | None = None,
) -> LaunchPlan:
    """Compose and check every job the command line asks for; return the :class:`LaunchPlan`.

    ``compose`` composes one job's config with Hydra's node (the entry point's
    :class:`repro.launch.hydra_run.HydraSession`); a single run keeps that config in ``plan.config``.
    Without it each job is composed with ``hydra.initialize_config_dir``.

    Raises :class:`LaunchError` with a one-line message, or :class:`repro.run.resume.RunCompleted` when
    the run asked to be resumed has already completed.
    """
    plan = LaunchPlan()
    register_configs()
    pins: dict[str, str] | None = None
    for job in _sweep_jobs(overrides, multirun):
        try:
            cfg = (compose or _compose_in(config_dir, config_name))(job)
        except Exception as exc:  # Hydra and OmegaConf raise many types; all are the user's input
            raise LaunchError(describe_compose_error(exc)) from None
        check_job_overrides(cfg, job, config_dir, config_name)
        job_pins = {}
        try:
            if "repro" in cfg:
                job_pins = wanted_environment(validate(to_repro_config(cfg.repro)))
            if check is not None:
                check(cfg)
            check_typed_nodes(cfg)
            plan.targets += [t for t in target_nodes(cfg) if t not in plan.targets]
        except ReproError as exc:
            raise LaunchError(str(exc)) from None
        except (
            Exception
        ) as exc:  # a failing interpolation (${oc.env:NOPE}) and other OmegaConf errors
            raise LaunchError(describe_compose_error(exc)) from None
        if (
            pins is not None and pins != job_pins
        ):  # a null pin means "as the process started": not the same
            var = next(
                v for v in sorted(set(pins) | set(job_pins)) if pins.get(v) != job_pins.get(v)
            )
            raise LaunchError(
                f"the jobs of this sweep pin {var} differently ({pins.get(var) or 'unset'} and "
                f"{job_pins.get(var) or 'unset'}); it is fixed when the process starts, so run them as "
                "separate sweeps"
            )
        pins = job_pins
        resuming = False
        if resume_key is not None and OmegaConf.select(cfg, resume_key, default=None) is not None:
            if multirun:  # each job resumes in its own directory, decided when it runs
                if str(OmegaConf.select(cfg, resume_key)) != "auto":
                    raise LaunchError(
                        f"{resume_key}=RUN_DIR resumes a single run; a -m sweep takes "
                        f"{resume_key}=auto (each job resumes its own directory)"
                    )
                continue
            try:
                extra, resumed_pins = _plan_resume(
                    cfg, job, config_dir, config_name, resume_key, resume_safe_keys, is_main
                )
            except RunCompleted:
                raise
            except ReproError as exc:
                raise LaunchError(str(exc)) from None
            if extra:
                plan.extra, plan.resume = extra, "resume"
                pins = resumed_pins if resumed_pins is not None else pins
            resuming = bool(extra)
        if (
            not multirun and not resuming and is_main
        ):  # other ranks of a torchrun job share rank 0's directory
            plan.run_dir, plan.run_dir_existed = check_run_dir(cfg, existing_run_ok)
    if multirun:
        check_sweep_dir(cfg)
        # hparams_search=<name>: the extra, the searched keys and the settings, before Hydra starts.
        if is_search(cfg):
            try:
                check_search(cfg, overrides)
            except ReproError as exc:
                raise LaunchError(str(exc)) from None
    elif compose is not None:
        plan.config = cfg
    plan.pins = pins or {}
    return plan


def check_plan_targets(plan: LaunchPlan) -> None:
    """Check the plan's ``_target_`` nodes against their targets' signatures (imports their modules, so
    call it once the environment pins are in place); raises :class:`LaunchError` with one line."""
    try:
        check_targets(plan.targets)
    except ReproError as exc:
        raise LaunchError(str(exc)) from None


def _compose_in(config_dir: str | Path, config_name: str) -> Callable[[list[str]], DictConfig]:
    def composed(job: list[str]) -> DictConfig:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name=config_name, overrides=job, return_hydra_config=True)

    return composed


def _plan_resume(
    cfg: DictConfig,
    job: list[str],
    config_dir: str | Path,
    config_name: str,
    resume_key: str,
    safe_keys: tuple[str, ...],
    is_main: bool = True,
) -> tuple[list[str], dict[str, str] | None]:
    """Check a resume request; return the overrides that point Hydra at the resumed run's directory and
    the resumed run's own environment pins.

    An empty list means: start fresh (``auto`` found no checkpoint).
    """
    from hydra import compose, initialize_config_dir

    from repro.run.resume import AUTO, check_overrides, decide, next_resume_subdir

    value = str(OmegaConf.select(cfg, resume_key))
    given_dir = next(
        (split_override(o)[1] for o in job if override_key(o) == "hydra.run.dir"), None
    )
    run_dir = Path(str(cfg.hydra.run.dir) if value == AUTO else value).resolve()
    keep = (resume_key, *safe_keys)
    base_job = [o for o in job if override_key(o).startswith("hydra.") or override_key(o) in keep]
    try:
        state = decide(value, run_dir, key=resume_key, is_main=is_main)
    except RunCompleted:
        # A completed run resumes nothing: an override that asks for something else would be ignored.
        ignored = _ignored_by_completed(cfg, job, resume_key, config_dir, config_name, run_dir)
        if ignored:
            raise LaunchError(
                f"{resume_key}={value}: {run_dir} holds a completed run, so nothing is resumed and "
                f"these overrides would be ignored: {', '.join(ignored)}; drop them, or start a new "
                f"run without {resume_key} (a completed run is never extended)"
            ) from None
        raise
    if value != AUTO and given_dir is not None and Path(given_dir).resolve() != run_dir:
        raise LaunchError(
            f"{resume_key}={value} and hydra.run.dir={given_dir} disagree; a resumed run "
            f"continues in its own directory (use {resume_key}=auto with hydra.run.dir to "
            "name it once)"
        )
    if state is None:
        return [], None
    extra = (
        []
        if value == AUTO or given_dir is not None
        else [f"hydra.run.dir={quote_override_value(str(run_dir))}"]
    )
    saved = OmegaConf.load(run_dir / CONFIG_FILE)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        base = compose(config_name=config_name, overrides=base_job, return_hydra_config=True)
    check_overrides(base, cfg, saved, keep)
    _check_world_size(state.checkpoints[-1], resume_key, value)
    pins = wanted_environment(validate(to_repro_config(saved.repro))) if "repro" in saved else None
    return [
        *extra,
        f"hydra.output_subdir={next_resume_subdir(run_dir) if is_main else 'null'}",
    ], pins


def _ignored_by_completed(
    cfg: DictConfig,
    job: list[str],
    resume_key: str,
    config_dir: str | Path,
    config_name: str,
    run_dir: Path,
) -> list[str]:
    """The keys this command line sets to a value the completed run in ``run_dir`` does not have (those
    allowed to change on resume too: nothing runs that would use them)."""
    from hydra import compose, initialize_config_dir

    from repro.run.resume import overridden_keys

    base_job = [
        o for o in job if override_key(o).startswith("hydra.") or override_key(o) == resume_key
    ]
    given = [o for o in job if o not in base_job]
    if not given:
        return []
    try:
        saved = OmegaConf.load(run_dir / CONFIG_FILE)
    except Exception:  # no readable config: every override is one a resume would not apply
        return list(dict.fromkeys(override_key(o) for o in given))
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        base = compose(config_name=config_name, overrides=base_job, return_hydra_config=True)
    return overridden_keys(base, cfg, saved)


def _check_world_size(checkpoint: Path, resume_key: str, value: str) -> None:
    """Refuse, before anything is written, to resume a checkpoint of N ranks with another number."""
    from repro.base.layout import CheckpointError, read_header

    try:
        written = int(read_header(checkpoint).header.get("world_size", 1))
    except (CheckpointError, ValueError, TypeError):
        return  # the task picks the newest intact checkpoint and reports on it
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if written != world:
        how = (
            f"torchrun --nproc_per_node={written} -m ..."
            if written > 1
            else "one process (no torchrun)"
        )
        raise LaunchError(
            f"{resume_key}={value}: its checkpoints were written by {written} rank(s), this "
            f"launch has {world}; resume with {how}"
        )
