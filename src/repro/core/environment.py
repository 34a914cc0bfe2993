"""The environment fingerprint: what a rerun must match to promise the same bits.

Versions, devices, the CPU and its ATen capability, thread counts, the
environment variables that change numerics, and the git state of the
project. Variables whose names look like secrets are never recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
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
from repro.base.errors import ReproError
from repro.base.project import Project, read_project
from repro.base.project import find_project as _find_project

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


#: Names listed per group in the warning line about uncommitted code; the rest are counted.
_SHOWN_NAMES = 3


@dataclass(frozen=True)
class GitState:
    """What ``git status`` says about a checkout: its commit, changed tracked paths, untracked paths."""

    commit: str
    #: Tracked paths with uncommitted changes (modified, added, deleted, renamed), as git prints them.
    changed: tuple[str, ...]
    untracked: tuple[str, ...]
    diff_sha256: str | None

    @property
    def dirty(self) -> bool:
        return bool(self.changed or self.untracked)

    def to_dict(self) -> dict[str, Any]:
        """The ``environment.git`` section of ``run.json``."""
        return {
            "commit": self.commit,
            "dirty": self.dirty,
            "untracked_files": len(self.untracked),
            "diff_sha256": self.diff_sha256,
        }

    def dirty_line(self) -> str | None:
        """One line naming what is uncommitted (None for a clean checkout)."""
        if not self.dirty:
            return None

        def group(names: tuple[str, ...], word: str) -> str:
            shown = ", ".join(names[:_SHOWN_NAMES])
            more = f", +{len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
            return f"{len(names)} {word} ({shown}{more})"

        parts = [
            group(names, word)
            for names, word in ((self.changed, "modified"), (self.untracked, "untracked"))
            if names
        ]
        return f"uncommitted code: {', '.join(parts)}; the record keeps the diff's sha256, not the diff"


def read_git(cwd: str | Path = ".") -> GitState | None:
    """The git state of the checkout at ``cwd`` (None outside git); see :func:`git_state`."""
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
    lines = [line for line in status.splitlines() if len(line) > 3]
    untracked = sorted(line[3:] for line in lines if line.startswith("??"))
    # A rename reads "R  old -> new": the new name is the one in the checkout.
    changed = [line[3:].split(" -> ")[-1] for line in lines if not line.startswith(("??", "!!"))]
    h = hashlib.sha256(diff.encode())
    # A new module the run imports changes the code as much as an edit.
    for name in untracked:
        h.update(name.encode())
        # porcelain paths are relative to the top of the checkout
        with contextlib.suppress(OSError):
            h.update((top / name).read_bytes() if (top / name).is_file() else b"")
    return GitState(
        commit=commit.strip(),
        changed=tuple(changed),
        untracked=tuple(untracked),
        diff_sha256=h.hexdigest() if diff or untracked else None,
    )


def git_state(cwd: str | Path = ".") -> dict[str, Any] | None:
    """Commit, dirty flag and a sha256 of the diff (tracked changes) of the checkout at ``cwd``.

    Call it only on the project's own code directory, never on a directory a run record names:
    git is hardened against commands named in a repository's config (fsmonitor, hooks, external
    diff, text conversion, pager), but clean filters of a checkout's attributes still run. Git's
    own ``safe.directory`` check (a repository owned by another user is ignored) is kept.
    """
    state = read_git(cwd)
    return None if state is None else state.to_dict()


def find_project(
    start: str | Path | None = None, *, not_inside: tuple[Path, ...] = ()
) -> Project | None:
    """:func:`repro.base.project.find_project`, leniently: a ``[tool.repro]`` table with a bad value
    counts as no project (what the environment record and the tools' defaults need; the strict reader
    refuses it where its values are used: replaying a run, building a model)."""
    try:
        return _find_project(start, not_inside=not_inside)
    except ReproError:
        return None


def _read_project(folder: Path) -> Project | None:
    try:
        return read_project(folder)
    except ReproError:
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


def environment_fingerprint(
    cwd: str | Path | None = None, *, warn_dirty: bool = False
) -> dict[str, Any]:
    """Everything about this process and machine that can change a run's bits.

    The git state is read from ``cwd``, by default the running program's project (the directory of
    the nearest ``pyproject.toml`` with a ``[tool.repro]`` table above its code), else its code's folder.
    ``warn_dirty``: log one warning line naming what is uncommitted (from the same ``git status``).
    """
    import torch  # here, not at import: the tools read records and fail fast without it

    cwd = _code_dir() if cwd is None else cwd
    git = read_git(cwd)
    line = git.dirty_line() if git is not None and warn_dirty else None
    if line is not None:
        logging.getLogger("repro.run").warning("%s", line)
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
        "git": None if git is None else git.to_dict(),
        "argv": _secrets.redact_args(sys.argv),
    }
