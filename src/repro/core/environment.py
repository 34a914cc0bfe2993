"""The environment fingerprint: what a rerun must match to promise the same bits.

Versions, devices, the CPU and its ATen capability, thread counts, the
environment variables that change numerics, and the git state of the
project. Variables whose names look like secrets are never recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from repro.base import secrets as _secrets
from repro.base import startup
from repro.base.envvars import RECORDED_ENV

#: Variables recorded when set: they change numerics, kernels or hashing.
RELEVANT_ENV = RECORDED_ENV  # one list, in repro.base.config
_PACKAGES = ("torch", "numpy", "hydra-core", "omegaconf")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name looks like it holds a credential."""
    return _secrets.is_secret_env_name(name)


def relevant_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The numerics-relevant variables that are set, secrets never included."""
    environ = dict(os.environ) if environ is None else environ
    return {k: environ[k] for k in RELEVANT_ENV if k in environ and not is_secret_name(k)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Git never runs a command that a repository's own config or hooks name (core.fsmonitor would run
#: one on ``git status``), nor an external diff or text conversion, nor a pager.
_GIT_HARDENING = (
    "-c",
    "core.fsmonitor=",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.pager=cat",
    "--no-pager",
)


def _git(args: list[str], cwd: Path) -> str | None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_")
    }  # no GIT_DIR from elsewhere
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    try:
        out = subprocess.run(
            ["git", *_GIT_HARDENING, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode(errors="replace") if out.returncode == 0 else None


def git_state(cwd: str | Path = ".") -> dict[str, Any] | None:
    """Commit, dirty flag and a sha256 of the diff (tracked changes) of the checkout at ``cwd``.

    Call it only on the project's own code directory, never on a directory a run record names:
    git is hardened against commands named in a repository's config (fsmonitor, hooks, external
    diff, text conversion, pager), but clean filters of a checkout's attributes still run. Git's
    own ``safe.directory`` check (a repository owned by another user is ignored) is kept.
    """
    cwd = Path(cwd)
    head = (_git(["rev-parse", "--show-toplevel", "HEAD"], cwd) or "").splitlines()
    if len(head) != 2:
        return None
    top, commit = Path(head[0]), head[1]
    status = _git(["status", "--porcelain", "--untracked-files=normal"], cwd) or ""
    # A clean status has no tracked change to hash: one git process less at every start.
    diff = (
        _git(["diff", "HEAD", "--binary", "--no-ext-diff", "--no-textconv"], cwd) or ""
        if status.strip()
        else ""
    )
    untracked = sorted(line[3:] for line in status.splitlines() if line.startswith("??"))
    h = hashlib.sha256(diff.encode())
    for name in untracked:  # a new module the run imports changes the code as much as an edit
        h.update(name.encode())
        with contextlib.suppress(
            OSError
        ):  # porcelain paths are relative to the top of the checkout
            h.update((top / name).read_bytes() if (top / name).is_file() else b"")
    return {
        "commit": commit.strip(),
        "dirty": bool(status.strip()),
        "untracked_files": len(untracked),
        "diff_sha256": h.hexdigest() if diff or untracked else None,
    }


@dataclass(frozen=True)
class Project:
    """The project the tools work for: the directory of a ``pyproject.toml`` with a ``[tool.repro]`` table."""

    root: Path
    #: ``[tool.repro] entry``: the module that runs the project's experiment (None when not set).
    entry: str | None

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"


def _read_project(folder: Path) -> Project | None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: no TOML reader in the standard library
        return None
    path = folder / "pyproject.toml"
    try:
        if not path.is_file():
            return None
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("repro")
    except (OSError, ValueError):
        return None
    if not isinstance(table, dict):
        return None
    entry = table.get("entry")
    return Project(folder.resolve(), entry if isinstance(entry, str) else None)


def find_project(
    start: str | Path | None = None, *, not_inside: tuple[Path, ...] = ()
) -> Project | None:
    """The nearest project at or above ``start`` (default: the current directory), else the one holding
    this kit's own source (a project made from the template carries the kit in its ``src/``), else None.

    A ``pyproject.toml`` at or below a directory of ``not_inside`` (the run directories being checked:
    their files are data) is never taken.
    """
    untrusted = [p.resolve() for p in not_inside]
    here = Path(__file__).resolve().parent
    for begin in (Path.cwd() if start is None else Path(start), here):
        for folder in [begin.resolve(), *begin.resolve().parents]:
            if any(folder == u or u in folder.parents for u in untrusted):
                continue
            project = _read_project(folder)
            if project is not None:
                return project
    return None


def _code_dir() -> Path:
    """Where the running program's code lives: its project's root, else the program's folder, else the cwd."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return Path.cwd()
    folder = Path(path).resolve().parent
    for candidate in [folder, *folder.parents]:
        if _read_project(candidate) is not None:
            return candidate
    return folder


def environment_fingerprint(cwd: str | Path | None = None) -> dict[str, Any]:
    """Everything about this process and machine that can change a run's bits.

    The git state is read from ``cwd``, by default the running program's project (the directory of
    the nearest ``pyproject.toml`` with a ``[tool.repro]`` table above its code), else its code's folder.
    """
    import torch  # here, not at import: the tools read records and fail fast without it

    cwd = _code_dir() if cwd is None else cwd
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "torch": {
            "version": torch.__version__,
            "git_version": getattr(torch.version, "git_version", None),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "debug": torch.version.debug,
        },
        "cpu": {
            "model": _cpu_model(),
            "logical_cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "aten_capability": torch.backends.cpu.get_cpu_capability(),
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available(),
        },
        "gpus": [
            {
                "name": torch.cuda.get_device_name(i),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
            }
            for i in range(torch.cuda.device_count())
        ]
        if cuda
        else [],
        "env": relevant_environment(),
        "env_at_start": relevant_environment(startup.ENVIRON),
        "code_dir": str(Path(cwd).resolve()),
        "git": git_state(cwd),
        "argv": _secrets.redact_args(sys.argv),
    }
