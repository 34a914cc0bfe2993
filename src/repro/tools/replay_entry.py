"""Which module replays a recorded run, and how it runs: the one ``--entry`` names, else the entry module
the record names when it is the project's own code (``[tool.repro] packages``, else the package of
``[tool.repro] entry``, in the nearest ``pyproject.toml``), else the project's entry module; never a
module the project does not own because a record says so. Its settings are read from the
``repro.entrypoint`` function it holds, imported from installed code only."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.base.errors import ReproError
from repro.base.project import MODULE_NAME, find_project
from repro.tools.runs import Run


@dataclass(frozen=True)
class EntrySettings:
    """How the project's entry module runs, read from the project's code (never from a record)."""

    module: str
    config_dir: Path | None
    config_name: str
    resume_key: str | None
    safe_keys: tuple[str, ...]


def _module_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not MODULE_NAME.fullmatch(name):
        raise ReproError(
            f"{what} {name!r}: not a module name (expected a dotted name like experiment.train)"
        )
    return name


def resolve_entry(runs: list[Run], explicit: str | None = None) -> str:
    """The module that replays ``runs``: ``explicit`` (the user's ``--entry``), else the entry module
    their records name when it belongs to the project's own packages, else the project's entry.

    Without ``--entry``, a record naming a module outside the project's own packages, or runs made
    by different modules, are refused with one line, before anything is imported.
    """
    if explicit is not None:
        return _module_name(explicit, "--entry")
    project = find_project(not_inside=tuple(r.dir for r in runs))
    if project is None:
        raise ReproError(
            "no project found: no pyproject.toml with a [tool.repro] table in the current directory "
            "or above it; run the command inside your project, or pass --entry MODULE"
        )
    recorded: dict[str, None] = {}
    for run in runs:
        module = run.entry.get("module")
        if module is None:
            continue
        # The record is data: a name checked before it is compared with anything, never imported.
        _module_name(module, f"{run.dir}: run.json entry.module")
        if not project.owns(module):
            raise ReproError(
                f"{run.dir}: the run was made by entry module {module!r}, which is not in this "
                f"project's own packages: {project.describe_packages()}; to replay it with "
                f"{module!r} anyway, pass --entry {module}"
            )
        recorded[module] = None
    if len(recorded) > 1:
        raise ReproError(
            f"the runs were made by different entry modules ({', '.join(map(repr, recorded))}); "
            "pass --entry MODULE to replay both with one"
        )
    if recorded:
        return next(iter(recorded))
    if project.entry is None:
        raise ReproError(
            f"no entry module: the run records none and {project.pyproject} sets no [tool.repro] "
            "entry; set it, or pass --entry MODULE"
        )
    return project.entry


@contextlib.contextmanager
def _without_cwd_on_path() -> Any:
    """Import from installed code only: the current directory (``python -m repro`` puts it first) is out."""
    cwd = os.getcwd()
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    try:
        yield
    finally:
        sys.path[:] = saved


def entry_settings(module_name: str) -> EntrySettings:
    """Import the project's entry module and read how its ``repro.entrypoint`` runs.

    Read from the ``repro_entry`` attribute :func:`repro.entrypoint` sets on the function it returns;
    ReproError when the module has no ``repro.entrypoint`` function.
    """
    with _without_cwd_on_path():
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:
            # The project's own code failing to import: one line.
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ReproError(
                f"entry module {module_name!r} cannot be imported ({type(exc).__name__}: "
                f"{first[:160]})"
            ) from None
    for value in vars(module).values():
        settings = getattr(value, "repro_entry", None)
        if not isinstance(settings, dict):
            continue
        return EntrySettings(
            module_name,
            Path(settings["config_dir"]) if settings.get("config_dir") else None,
            str(settings.get("config_name") or "config"),
            settings.get("resume_key"),
            tuple(settings.get("resume_safe_keys") or ()),
        )
    raise ReproError(
        f"entry module {module_name!r} has no function decorated with repro.entrypoint; "
        "pass --entry naming the module that runs your experiment"
    )
