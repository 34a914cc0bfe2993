"""``repro new``: start a project of your own from this template.

    repro new DEST --name NAME [--template DIR]

Copies the template's files (those git tracks, as they are in the working
tree; no history, run outputs, virtual environments or caches, and not this
tooling) into DEST, writes the project's own README and renames the example
package to NAME with the template's own rules (its ``scripts/copier_tasks.py``,
the same code copier runs), writes copier's answers file so the project can
take later template changes with ``copier update``, and makes a fresh git
repository with one commit. Files and directories follow the user's umask
(0644 and 0755 by default), as a git checkout would.

Nothing is half-written: the project is built in a temporary directory next
to DEST and renamed into place at the end, or removed on failure. The kit
itself knows nothing of the example package: which names and paths change is
the template's business (``copier.yml`` and ``scripts/copier_tasks.py``).
"""

from __future__ import annotations

import argparse
import errno
import fnmatch
import importlib.util
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from repro.base.errors import ReproError

#: The template's copier settings; ``_exclude`` lists what a project never gets.
COPIER_CONFIG = "copier.yml"
#: The template's rename rules and first commit (also copier's task).
RULES_SCRIPT = "scripts/copier_tasks.py"
ANSWERS_HEADER = "# Changes here will be overwritten by Copier; NEVER EDIT MANUALLY\n"


class ScaffoldError(ReproError, ValueError):
    """A bad argument to ``repro new``, or a template it cannot copy."""


def default_template() -> Path:
    """The checkout this package is installed from (``src/template_tools/../..``)."""
    return Path(__file__).resolve().parents[2]


def load_rules(template: Path) -> ModuleType:
    """Import the template's rename rules from its ``scripts/copier_tasks.py``."""
    for needed in (COPIER_CONFIG, RULES_SCRIPT):
        if not (template / needed).is_file():
            raise ScaffoldError(
                f"--template={template} is not a template checkout: it has no {needed} "
                "(repro new works from a clone of the template, installed with pip install -e)"
            )
    spec = importlib.util.spec_from_file_location("_repro_template_rules", template / RULES_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_copier_config(template: Path) -> dict[str, Any]:
    """The template's ``copier.yml`` as a dict."""
    import yaml

    return yaml.safe_load((template / COPIER_CONFIG).read_text()) or {}


def is_excluded(rel: str, patterns: Sequence[str]) -> bool:
    """Whether ``rel`` (posix, relative) is excluded by gitignore-style ``patterns``.

    A subset of copier's matching, enough for the template's list: a pattern without ``/``
    matches any path component, one with ``/`` matches the path (or a parent directory) from
    the root; ``!pattern`` takes a path back; the last pattern that matches wins.
    """
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        candidates = prefixes if "/" in pattern else parts
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def is_git_checkout(template: Path) -> bool:
    """True when ``template`` lies in a git work tree."""
    proc = _git(template, "rev-parse", "--is-inside-work-tree")
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def template_files(template: Path, exclude: Sequence[str]) -> list[str]:
    """The template's files to copy (posix, relative): tracked by git, or all of them outside git.

    Files git tracks are taken as they are in the working tree (a tracked file deleted there is
    skipped); ``exclude`` (copier's ``_exclude``) is applied on top.
    """
    if is_git_checkout(template):
        listed = _git(template, "ls-files", "-z", "--cached").stdout.split("\0")
        rels = [r for r in listed if r and (template / r).is_file()]
    else:
        rels = []
        for dirpath, dirnames, filenames in os.walk(template):
            base = Path(dirpath).relative_to(template)
            dirnames[:] = [d for d in dirnames if not is_excluded((base / d).as_posix(), exclude)]
            rels.extend((base / f).as_posix() for f in filenames)
    return sorted(r for r in rels if not is_excluded(r, exclude))


def template_commit(template: Path) -> tuple[str | None, bool]:
    """(``git describe --tags --always``, as copier records it; whether tracked files changed)."""
    if not is_git_checkout(template):
        return None, False
    described = _git(template, "describe", "--tags", "--always")
    dirty = _git(template, "status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
    return (described.stdout.strip() or None) if described.returncode == 0 else None, dirty


def answers_text(template: Path, name: str, commit: str | None) -> str:
    """The answers file copier writes for this template and name (so ``copier update`` works)."""
    import yaml

    answers: dict[str, str] = {"_src_path": str(template)}
    if commit is not None:
        answers["_commit"] = commit
    answers["project_name"] = name
    return ANSWERS_HEADER + yaml.safe_dump(
        answers, default_flow_style=False, allow_unicode=True, sort_keys=True
    )


def check_name(rules: ModuleType, name: str) -> None:
    """Refuse a project name the template's rules refuse, naming the argument and the rule."""
    try:
        rules.check_name(name)
    except ValueError as exc:
        raise ScaffoldError(f"--name={name!r} is not allowed: {exc}") from None


def check_dest(dest: Path, template: Path) -> Path:
    """DEST made absolute; refused unless it is new (with an existing parent) or empty."""
    dest = Path(os.path.abspath(dest))
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir():
            raise ScaffoldError(
                f"DEST={str(dest)!r} exists and is not a directory: "
                "expected a new path or an empty directory"
            )
        entries = sorted(p.name for p in dest.iterdir())
        if entries:
            raise ScaffoldError(
                f"DEST={str(dest)!r} is not empty ({len(entries)} entries, e.g. "
                f"{entries[0]!r}): expected a new path or an empty directory"
            )
    elif not dest.parent.is_dir():
        raise ScaffoldError(
            f"DEST={str(dest)!r}: its parent directory does not exist; create it first"
        )
    real, root = dest.resolve(), template.resolve()
    if real == root or root in real.parents:
        raise ScaffoldError(
            f"DEST={str(dest)!r} is inside the template at {str(root)!r}: "
            "expected a place outside it"
        )
    return dest


def create_project(
    dest: Path, name: str, template: Path | None = None, log: Callable[[str], None] = print
) -> Path:
    """Create the project ``name`` at ``dest`` from ``template``; returns ``dest`` (absolute).

    Every check runs before anything is written; the project is built next to ``dest`` and
    renamed into place, so on any failure ``dest`` is left as it was.
    """
    template = Path(os.path.abspath(template or default_template()))
    if not template.is_dir():
        raise ScaffoldError(f"--template={str(template)!r} is not a directory")
    rules = load_rules(template)
    check_name(rules, name)
    dest = check_dest(dest, template)
    if shutil.which("git") is None:
        raise ScaffoldError(
            "git was not found on PATH: repro new makes a git repository; install git"
        )
    config = read_copier_config(template)
    suffix = config.get("_templates_suffix", ".jinja")
    answers_file = config.get("_answers_file", ".copier-answers.yml")
    rels = template_files(template, config.get("_exclude", []))
    rendered = [r for r in rels if r.endswith(suffix)]
    if rendered != [answers_file + suffix] * len(rendered):
        raise ScaffoldError(
            f"the template at {template} has files only copier can render "
            f"({', '.join(rendered)}): use copier copy"
        )
    rels = [r for r in rels if not r.endswith(suffix)]
    in_git = is_git_checkout(template)
    commit, dirty = template_commit(template)

    where = f"git {commit or 'without commits'}" if in_git else "not a git checkout"
    changed = "; its uncommitted changes are copied too" if dirty else ""
    log(f"repro new: project {name!r} from the template at {template} ({where}{changed})")
    umask = current_umask()
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".repro-new", dir=dest.parent))
    try:
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700: follow the umask as mkdir would
        for rel in rels:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(template / rel, target, follow_symlinks=False)
            if not target.is_symlink():  # as git checks a file out: executable or not, then umask
                executable = os.stat(template / rel).st_mode & stat.S_IXUSR
                os.chmod(target, (0o777 if executable else 0o666) & ~umask)
        log(
            f"  copy     {len(rels)} files ({'tracked by git' if in_git else 'all but excluded'}; "
            "no history, outputs or caches)"
        )
        if rules.write_readme(staging, name, template):
            log(f"  readme   README.md: the project's own (from {rules.PROJECT_README})")
        moved, edited = rules.rename_tree(staging, name)
        log(
            f"  rename   {rules.OLD} -> {name}: {len(moved)} directories moved, "
            f"{len(edited)} files edited"
        )
        (staging / answers_file).write_text(answers_text(template, name, commit))
        log(f"  answers  {answers_file} (for copier update)")
        try:
            first = rules.init_repo(
                staging,
                f"New project {name} from the repro template" + (f" ({commit})" if commit else ""),
            )
        except RuntimeError as exc:
            raise ScaffoldError(str(exc)) from None
        log(f"  git      new repository, first commit {first}")
        existed = dest.is_dir()
        if existed:
            dest.rmdir()
        try:
            os.rename(staging, dest)
        except OSError:
            if existed:
                dest.mkdir()
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"created {dest}")
    log(f"next: cd {dest} and follow the Quickstart in its README.md")
    return dest


def cmd_new(args: argparse.Namespace) -> int:
    """``repro new DEST --name NAME``: exit status 0, or a ScaffoldError for the CLI to print."""
    dest = Path(args.dest)
    try:
        create_project(dest, args.name, Path(args.template) if args.template else None)
    # The disk or the destination refused a write (full, read-only, a name too long, no such folder):
    # nothing is left behind (the staging folder is removed), and the error is one line.
    except OSError as exc:
        hint = {
            errno.ENAMETOOLONG: "use a shorter --name or DEST",
            errno.ENOSPC: "free some space or choose another DEST",
            errno.EDQUOT: "free some space or choose another DEST",
            errno.EROFS: "choose a DEST on a writable disk",
        }.get(exc.errno, "choose a DEST you can write to")
        where = exc.filename if exc.filename is not None else dest
        raise ScaffoldError(
            f"cannot create the project ({exc.strerror or type(exc).__name__}), "
            f"{str(where)[:120]}, {hint}"
        ) from None
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``repro new`` on the ``repro`` command's subparsers."""
    p = sub.add_parser(
        "new",
        help="create a new project from this template",
        description="Create a new project from this template: copy it, rename the "
        "example package to NAME, and make a git repository with one commit.",
    )
    p.add_argument(
        "dest", metavar="DEST", help="where to create the project (new, or an empty directory)"
    )
    p.add_argument(
        "--name",
        required=True,
        metavar="NAME",
        help="the project's Python package name: lower-case letters, digits and underscores",
    )
    p.add_argument(
        "--template",
        metavar="DIR",
        help="the template checkout to copy (default: the one repro is installed from)",
    )
    p.set_defaults(func=cmd_new)
