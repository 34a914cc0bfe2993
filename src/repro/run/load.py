"""A finished run's model, for evaluation and inference: ``repro.load_run(RUN_DIR)``.

The run directory is untrusted data: ``config.yaml`` is parsed as YAML, the weights are loaded with
``torch.load(weights_only=True)`` (no pickled code runs) after their sha256 is checked against
``run.json`` where it records one, and the model is built by the caller's ``build`` function, else by
the function the project declares once in its ``pyproject.toml`` (``[tool.repro] build``, only inside
the project's own packages: :mod:`repro.base.project`), else through the config's ``_target_``, only
when that target starts with one of the prefixes the caller allows: a run directory never decides
which code is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from repro.base.errors import ConfigValueError, ReproError
from repro.base.files import sha256_file
from repro.base.layout import CHECKPOINT_DIR, CONFIG_FILE, RUN_FILE, WEIGHTS_FILE
from repro.base.project import Project, find_project
from repro.base.records import read_config, read_manifest
from repro.base.trusted import check_targets
from repro.run.checkpointing import BEST_FILE

#: ``which`` -> the weights file, relative to the run directory.
WEIGHTS = {"final": WEIGHTS_FILE, "best": f"{CHECKPOINT_DIR}/{BEST_FILE}"}


class LoadRunError(ReproError):
    """A run directory does not hold what loading its model needs."""


@dataclass
class LoadedRun:
    """A run's config (its own ``config.yaml``), its model in eval mode with the chosen weights, and
    where those weights came from."""

    dir: Path
    cfg: DictConfig
    model: torch.nn.Module
    weights: Path
    which: str


def load_run(
    run_dir: str | Path,
    which: str = "final",
    *,
    build: Callable[[DictConfig], torch.nn.Module] | None = None,
    targets: tuple[str, ...] = (),
    node: str = "model",
    map_location: str | torch.device = "cpu",
) -> LoadedRun:
    """Load the model of the run in ``run_dir`` with its ``final`` (``weights.pt``, a completed run
    only) or ``best`` (``checkpoints/best.pt``, from ``train.monitor``) weights.

    The model is made from the run's config by ``build(cfg)``; without it, by the project's
    ``[tool.repro] build = "package.module:function"`` when the nearest ``pyproject.toml`` (from the
    current directory up, never inside ``run_dir``) declares one (every ``_target_`` of the run's
    config must then name the project's own code or start with one of ``targets``); else the config's ``node`` is
    instantiated through its ``_target_``, which must start with one of ``targets`` (e.g.
    ``("experiment.model.",)``). The weights must match the model's parameters exactly.
    """
    run_dir = Path(run_dir)
    if which not in WEIGHTS:
        raise ConfigValueError("which", which, " or ".join(WEIGHTS))
    for name in (RUN_FILE, CONFIG_FILE):
        if not (run_dir / name).is_file():
            raise LoadRunError(f"{run_dir} holds no {name}: not a run directory")
    todo = "restore it from a copy of the run, or load another run"
    manifest = read_manifest(run_dir, todo=todo)
    weights = run_dir / WEIGHTS[which]
    if which == "final" and manifest.get("status") != "completed":
        raise LoadRunError(
            f"{run_dir} has status {manifest.get('status')!r}: final weights exist only "
            "for a completed run (resume it with train.resume=RUN_DIR, or load which='best')"
        )
    if not weights.is_file():
        raise LoadRunError(
            f"{weights} does not exist"
            + (" (set train.monitor to keep the best weights)" if which == "best" else "")
        )
    recorded = manifest.get("weights_sha256") if which == "final" else None
    if recorded is not None and sha256_file(weights) != recorded:
        raise LoadRunError(f"{weights} is not the file run.json records (sha256 {recorded})")
    cfg = read_config(run_dir, todo=todo)
    project = find_project(not_inside=(run_dir,)) if build is None else None
    if build is not None:
        model = build(cfg)
    elif project is not None and project.build is not None:
        model = _build_with(project, cfg, run_dir, targets, node)
    else:
        model = _instantiate(cfg, node, targets)
    _load_weights(model, weights, map_location)
    model.eval()
    return LoadedRun(dir=run_dir, cfg=cfg, model=model, weights=weights, which=which)


def _load_weights(model: torch.nn.Module, weights: Path, map_location: str | torch.device) -> None:
    """``weights`` into ``model`` (weights-only: no pickled code runs); one line when they do not fit."""
    todo = "load weights this run wrote, or restore the file from a copy of the run"
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    # Truncated, not a torch file, or a pickle the weights-only loader refuses: torch's text is not shown
    # (it suggests loading without weights_only, which would run the file's code).
    except Exception as exc:
        raise LoadRunError(
            f"{weights} is damaged or not weights this kit wrote ({type(exc).__name__}); {todo}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise LoadRunError(f"{weights} does not hold a model's state dict; {todo}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        missing = sorted(set(model.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(model.state_dict()))
        shapes = [
            f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
            for k, v in model.state_dict().items()
            if isinstance(state.get(k), torch.Tensor) and state[k].shape != v.shape
        ]
        what = (
            f"other shapes ({', '.join(shapes[:3])})"
            if shapes
            else f"missing {missing[:3]}, unexpected {unexpected[:3]}"
            if missing or unexpected
            else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        )
        raise LoadRunError(
            f"{weights} does not fit the model the run's config builds: {what}; {todo}"
        ) from None


def _plain(cfg: DictConfig, node: str) -> object:
    """The run config's ``node`` as plain containers (what :func:`check_targets` walks), or None."""
    value = OmegaConf.select(cfg, node, default=None)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _build_with(
    project: Project, cfg: DictConfig, run_dir: Path, targets: tuple[str, ...], node: str
) -> torch.nn.Module:
    """The model from the project's ``[tool.repro] build`` function (its name checked, where it was
    read, to lie in the project's own packages).

    The function gets the run's config, which is data: before it runs, every ``_target_`` of the
    model's ``node`` must name code of the project's own packages or start with one of ``targets``,
    so instantiating the model never follows a target the run chose. Any other node the function
    instantiates (the data's settings, say) is the function's to check, as the example's does.
    """
    name = project.build
    allowed = (*targets, *(f"{p}." for p in project.packages))
    plain = _plain(cfg, node)
    own = ", ".join(f"{t}*" for t in allowed) or "none"
    check_targets(
        plain,
        f"{node}.",
        allowed,
        f"a target of the project's own packages ({own}) before [tool.repro] build {name!r} runs",
    )
    where = f"[tool.repro] build={name!r} in {project.pyproject}"
    module_name, _, function = str(name).partition(":")
    try:
        module = importlib.import_module(module_name)
    # The project's own module failing to import: one line naming the key that named it.
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise LoadRunError(
            f"{where}: {module_name} cannot be imported ({type(exc).__name__}: {first})"
        ) from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise LoadRunError(f"{where}: {module_name} has no function {function}")
    try:
        model = fn(cfg)
    # The function's own refusal of a value (a ConfigValueError naming the key) is already one line.
    except ReproError:
        raise
    # The project's own function on the run's values: one line, the cause kept for a debugger.
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise LoadRunError(
            f"[tool.repro] build {name!r} cannot build the model of {run_dir / CONFIG_FILE} "
            f"({type(exc).__name__}: {first}); fix the function, or restore the file from a copy "
            "of the run"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise LoadRunError(
            f"[tool.repro] build {name!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _instantiate(cfg: DictConfig, node: str, targets: tuple[str, ...]) -> torch.nn.Module:
    from hydra.utils import instantiate

    target = OmegaConf.select(cfg, f"{node}._target_", default=None)
    allowed = ", ".join(f"{t}*" for t in targets) or (
        "none (pass build=..., or declare [tool.repro] build in pyproject.toml)"
    )
    if not isinstance(target, str):
        raise ConfigValueError(f"{node}._target_", target, f"a target the caller allows: {allowed}")
    check_targets(_plain(cfg, node), f"{node}.", targets, f"a target the caller allows: {allowed}")
    try:
        model = instantiate(OmegaConf.select(cfg, node))
    # The run's own arguments to its own class: whatever the class raises, the record is at fault.
    except Exception as exc:
        cause = exc.__cause__ or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise LoadRunError(
            f"{node} of the run's {CONFIG_FILE} cannot be built ({first[:160]}); restore the file "
            "from a copy of the run, or pass build=..."
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise LoadRunError(
            f"{node}._target_={target!r} built a {type(model).__name__}, not a torch.nn.Module"
        )
    return model
