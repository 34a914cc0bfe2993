"""The project the tools and ``repro.load_run`` work for: the nearest ``pyproject.toml`` with a
``[tool.repro]`` table, read once into a typed :class:`Project`.

``[tool.repro]`` keys (all optional):

* ``entry``: the module that runs the project's experiment (``"experiment.train"``).
* ``packages``: the project's own top-level packages (``["experiment"]``); without it, the package of
  ``entry``. Code of these packages is the only code a record may name: the tools replay a recorded
  entry module of them, and ``build`` must lie in them.
* ``build``: ``"package.module:function"``, the function ``(cfg) -> torch.nn.Module`` that rebuilds
  the project's model from a run's config (a model sized from its data), for ``repro.load_run``.

A bad value is one :class:`~repro.base.errors.ConfigValueError` naming the file, the key, the value
and what is allowed. A run directory's files never add to any of these: a ``pyproject.toml`` inside a
run directory being read is data (``not_inside``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.base.errors import ConfigValueError

#: A dotted Python module name, as a record, a user or a project may name an entry module.
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
#: ``package.module:function``: how ``[tool.repro] build`` names the project's model builder.
BUILD_NAME = re.compile(rf"(?P<module>{MODULE_NAME.pattern}):(?P<function>[A-Za-z_][A-Za-z0-9_]*)")
_PACKAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Project:
    """The project the tools work for: the directory of a ``pyproject.toml`` with a ``[tool.repro]`` table."""

    root: Path
    #: ``[tool.repro] entry``: the module that runs the project's experiment (None when not set).
    entry: str | None
    #: The project's own top-level packages: ``[tool.repro] packages``, else the package of ``entry``.
    packages: tuple[str, ...] = ()
    #: ``[tool.repro] build``: ``package.module:function`` rebuilding the model from a run's config.
    build: str | None = None

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    def owns(self, module: str) -> bool:
        """Whether ``module`` is a well-formed module name of the project's own code: its entry module,
        or a module whose top-level package is one of :attr:`packages`."""
        if not MODULE_NAME.fullmatch(module):
            return False
        return module == self.entry or module.split(".", 1)[0] in self.packages

    def describe_packages(self) -> str:
        """The own packages for an error message: where they come from, and what to change."""
        if not self.packages:
            return f"none (set [tool.repro] packages in {self.pyproject})"
        return f"{', '.join(self.packages)} ([tool.repro] packages or entry in {self.pyproject})"


def _bad(path: Path, key: str, value: Any, allowed: str) -> ConfigValueError:
    return ConfigValueError(f"{path}: [tool.repro] {key}", value, allowed)


def project_from_table(folder: Path, table: dict[str, Any]) -> Project:
    """The :class:`Project` of ``folder`` from its ``[tool.repro]`` table, every value checked."""
    path = folder / "pyproject.toml"
    entry = table.get("entry")
    if entry is not None and not (isinstance(entry, str) and MODULE_NAME.fullmatch(entry)):
        raise _bad(path, "entry", entry, "a dotted module name like 'experiment.train'")
    declared = table.get("packages")
    if declared is None:
        packages = (entry.split(".", 1)[0],) if entry else ()
    elif isinstance(declared, list) and all(
        isinstance(p, str) and _PACKAGE_NAME.fullmatch(p) for p in declared
    ):
        packages = tuple(dict.fromkeys(declared))
    else:
        raise _bad(
            path, "packages", declared, "a list of top-level package names like ['experiment']"
        )
    build = table.get("build")
    if build is not None:
        match = BUILD_NAME.fullmatch(build) if isinstance(build, str) else None
        if match is None:
            raise _bad(
                path, "build", build, "'package.module:function', e.g. 'experiment.model:build'"
            )
        if match["module"].split(".", 1)[0] not in packages:
            own = ", ".join(packages) or "none: set [tool.repro] packages"
            raise _bad(path, "build", build, f"a function of the project's own packages ({own})")
    return Project(folder.resolve(), entry, packages, build)


def read_project(folder: Path) -> Project | None:
    """The project whose ``pyproject.toml`` is in ``folder``, or None when it has none, none with a
    ``[tool.repro]`` table, or cannot be read (Python 3.10 has no TOML reader: None)."""
    try:
        import tomllib
    except ModuleNotFoundError:
        return None
    path = folder / "pyproject.toml"
    try:
        if not path.is_file():
            return None
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("repro")
    except (OSError, ValueError):
        return None
    return project_from_table(folder, table) if isinstance(table, dict) else None


def find_project(
    start: str | Path | None = None, *, not_inside: tuple[Path, ...] = ()
) -> Project | None:
    """The nearest project at or above ``start`` (default: the current directory), else the one holding
    this kit's own source (a project made from the template carries the kit in its ``src/``), else None.

    A ``pyproject.toml`` at or below a directory of ``not_inside`` (the run directories being read:
    their files are data) is never taken.
    """
    untrusted = [p.resolve() for p in not_inside]
    here = Path(__file__).resolve().parent
    for begin in (Path.cwd() if start is None else Path(start), here):
        for folder in [begin.resolve(), *begin.resolve().parents]:
            if any(folder == u or u in folder.parents for u in untrusted):
                continue
            project = read_project(folder)
            if project is not None:
                return project
    return None
