"""Turn a copy of this template into a project of its own: the template's rename rules.

    python scripts/copier_tasks.py NAME [--template DIR] [--init-git] [--update]

Run inside the new project's directory. It gives the project its own
``README.md`` (from ``src/template_tools/project_README.md``, in place of the
template's README) and renames the example package ``experiment`` to NAME:
the directories ``src/experiment`` and ``tests/experiment``, module
references (``experiment.train``, ``from experiment.config import ...``,
``import experiment``, ``"src" / "experiment"``), the console script
``experiment-train``, and the distribution name and description in
``pyproject.toml``. The Hydra config group ``experiment``
(``conf/experiment/``, ``experiment=quick``) and prose keep their words.
``pyproject.toml`` also loses its template-only blocks (from a line
``# template-only: begin`` to a line ``# template-only: end``): what only the
template's own tests need. Running it again changes nothing.

``--template DIR`` limits the text edits to the files that come from the
template at DIR, so a project's own files are never touched (copier runs it
this way, also during ``copier update``). ``--init-git`` makes the first
commit when the directory is not inside a git work tree yet. ``--update``
(copier update) checks the name's form only: it was accepted when the
project was made, and an installed package of that name is the project
itself (its own environment, where ``[dev]`` installs copier).

Both ``copier`` (as its task) and ``repro new`` (which imports this file)
use these rules. Standard library only: copier runs it with its own Python.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import keyword
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: The template's example package, renamed in every generated project.
OLD = "experiment"
#: Directories that are named after the package.
PACKAGE_DIRS = ("src", "tests")
#: Names a project may not take, with the reason.
RESERVED = {
    OLD: "it is the template's own example package; give your project its own name",
    "repro": "it is the reproducibility kit every project keeps",
    "template_tools": "it is the template's own tooling (repro new)",
    **{
        d: "it is a directory of the project layout"
        for d in ("src", "tests", "test", "conf", "scripts", "outputs", "docs", "build", "dist")
    },
    **{
        p: "it would shadow a package the project depends on"
        for p in (
            "torch",
            "torchvision",
            "torchaudio",
            "numpy",
            "hydra",
            "omegaconf",
            "yaml",
            "antlr4",
            "pytest",
            "_pytest",
            "ruff",
            "setuptools",
            "pkg_resources",
            "pip",
            "wheel",
            "copier",
            "jinja2",
            "packaging",
            "typing_extensions",
        )
    },
}
#: The template's README template: a generated project's README.md, with ``{{ project_name }}``.
PROJECT_README = "src/template_tools/project_README.md"
#: The template's own description in pyproject.toml, which a project replaces with its own.
TEMPLATE_DESCRIPTION = "A reproducibility-first Hydra + PyTorch experiment template"
NAME_RULE = "lower-case letters, digits and underscores, starting with a letter (e.g. my_project)"
DEFAULT_AUTHOR = ("repro new", "repro-new@localhost")

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def check_name(name: str, installed: bool = True) -> None:
    """Raise ``ValueError`` (the reason, without the name) unless ``name`` can name the project.

    ``installed=False`` skips the check against installed packages (for an existing project,
    whose own installed package has the name).
    """
    if not _NAME.match(name):
        raise ValueError(f"expected a Python package name: {NAME_RULE}")
    if keyword.iskeyword(name):
        raise ValueError("it is a Python keyword")
    if name in RESERVED:
        raise ValueError(RESERVED[name])
    if name in sys.stdlib_module_names:
        raise ValueError(f"it would shadow the standard-library module {name!r}")
    owners = importlib.metadata.packages_distributions().get(name) if installed else None
    if owners:
        raise ValueError(
            f"it would shadow the installed package {name!r} "
            f"(from {', '.join(sorted(set(owners)))})"
        )


def text_rules(name: str) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, replacement) pairs that turn references to the example package into ``name``."""
    old = re.escape(OLD)
    dirs = "|".join(PACKAGE_DIRS)
    return [
        # src/experiment, tests/experiment (but not conf/experiment: the Hydra group)
        (re.compile(rf"(?<![\w./-])({dirs})/{old}(?![\w-])"), rf"\1/{name}"),
        # experiment.train, [experiment.loop], "experiment.config"
        (re.compile(rf"(?<![\w./-]){old}(?=\.[A-Za-z_])"), name),
        # from experiment import x, import experiment
        (re.compile(rf"^(\s*)(from|import)(\s+){old}\b", re.MULTILINE), rf"\1\2\3{name}"),
        # paths joined in Python: ROOT / "src" / "experiment" / "loop.py"
        (
            re.compile(rf"""(["'])({dirs})\1(\s*/\s*)(["']){old}\4"""),
            rf"\1\2\1\3\4{name}\4",
        ),
        # the console script: experiment-train -sc install=bash
        (re.compile(rf"(?<![\w./-]){old}-train(?![\w-])"), f"{name}-train"),
    ]


_DIST_NAME = re.compile(rf'^(name\s*=\s*"){re.escape(OLD)}(")', re.MULTILINE)
_DESCRIPTION = re.compile(
    rf'^(description\s*=\s*"){re.escape(TEMPLATE_DESCRIPTION)}(")', re.MULTILINE
)


#: Lines of the template's pyproject.toml that a project does not get (what only the template's tests need).
TEMPLATE_ONLY = re.compile(
    r"^[ \t]*# template-only: begin\b.*?^[ \t]*# template-only: end\b[^\n]*\n",
    re.MULTILINE | re.DOTALL,
)


def project_description(name: str) -> str:
    """A generated project's description in ``pyproject.toml``."""
    return f"{name}: PyTorch experiments with reproducible runs (Hydra configs, the repro kit)"


def rename_text(text: str, name: str, filename: str = "") -> str:
    """``text`` with references to the example package renamed (``filename``: per-file rules)."""
    for pattern, repl in text_rules(name):
        text = pattern.sub(repl, text)
    if filename == "pyproject.toml":
        text = _DIST_NAME.sub(rf"\g<1>{name}\g<2>", text)
        text = _DESCRIPTION.sub(lambda m: m.group(1) + project_description(name) + m.group(2), text)
        text = TEMPLATE_ONLY.sub("", text)
    return text


def target_path(rel: str, name: str) -> str:
    """Where the template's file ``rel`` (posix, relative) lives in a project called ``name``."""
    for d in PACKAGE_DIRS:
        if rel == f"{d}/{OLD}" or rel.startswith(f"{d}/{OLD}/"):
            return f"{d}/{name}" + rel[len(f"{d}/{OLD}") :]
    return rel


def _move_package_dirs(root: Path, name: str) -> list[str]:
    """Move ``src/experiment`` and ``tests/experiment`` into their renamed places, file by file."""
    moved = []
    for d in PACKAGE_DIRS:
        old_dir = root / d / OLD
        if not old_dir.is_dir():
            continue
        for path in sorted(p for p in old_dir.rglob("*") if p.is_file() or p.is_symlink()):
            dest = root / target_path(path.relative_to(root).as_posix(), name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        shutil.rmtree(old_dir)
        moved.append(f"{d}/{OLD}")
    return moved


def _template_files(template: Path) -> list[str]:
    """Files of the template at ``template`` (posix, relative), without ``.git``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(template):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        base = Path(dirpath).relative_to(template)
        out.extend((base / f).as_posix() for f in filenames)
    return out


def rename_tree(
    root: Path, name: str, template: Path | None = None, installed: bool = True
) -> tuple[list[str], list[str]]:
    """Rename the example package in the project at ``root``; returns (moved dirs, edited files).

    With ``template``, only files that come from the template are edited; without it, every
    file under ``root`` (except ``.git``) is. ``installed``: as for :func:`check_name`.
    """
    check_name(name, installed)
    moved = _move_package_dirs(root, name)
    rels = _template_files(template) if template is not None else _template_files(root)
    edited = []
    for rel in sorted({target_path(r, name) for r in rels}):
        path = root / rel
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        new = rename_text(text, name, path.name)
        if new != text:
            path.write_bytes(new.encode("utf-8"))
            edited.append(rel)
    return moved, edited


def render_readme(template: Path, name: str) -> str:
    """The README of a project called ``name``, from the template's ``PROJECT_README``."""
    text = (
        (template / PROJECT_README).read_text(encoding="utf-8").replace("{{ project_name }}", name)
    )
    if "{{" in text or "{%" in text:
        raise ValueError(
            f"{PROJECT_README}: only {{{{ project_name }}}} is filled in; found another tag"
        )
    return text


def write_readme(root: Path, name: str, template: Path) -> bool:
    """Replace the template's README in ``root`` by the project's own; True when it was replaced.

    Only a README that is the template's, byte for byte (as copier or ``repro new`` just copied
    it), is replaced: a project's own README, edited or not, stays as it is.
    """
    readme, original = root / "README.md", template / "README.md"
    if not (template / PROJECT_README).is_file() or not readme.is_file() or not original.is_file():
        return False
    if readme.is_symlink() or readme.read_bytes() != original.read_bytes():
        return False
    readme.write_text(render_readme(template, name), encoding="utf-8")
    return True


def _git(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def inside_git_work_tree(root: Path) -> bool:
    """True when ``root`` already belongs to a git work tree."""
    proc = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True
    )
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def init_repo(root: Path, message: str) -> str:
    """``git init`` and one commit of everything in ``root``; returns the commit's short hash.

    Without a configured git identity the commit is made as ``repro new`` (for that commit only;
    nothing is written to the repository's config).
    """
    _git(root, "init", "-q")
    _git(root, "symbolic-ref", "HEAD", "refs/heads/main")
    _git(root, "add", "-A")
    env = dict(os.environ)
    for role in ("AUTHOR", "COMMITTER"):
        for key, field, default in (
            ("NAME", "user.name", DEFAULT_AUTHOR[0]),
            ("EMAIL", "user.email", DEFAULT_AUTHOR[1]),
        ):
            if not env.get(f"GIT_{role}_{key}"):
                configured = subprocess.run(
                    ["git", "config", field], cwd=root, capture_output=True, text=True
                ).stdout.strip()
                if not configured:
                    env[f"GIT_{role}_{key}"] = default
    _git(root, "commit", "-q", "--no-verify", "-m", message, env=env)
    return _git(root, "rev-parse", "--short", "HEAD")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the project's package name")
    parser.add_argument(
        "--template", type=Path, help="edit only files that come from this template"
    )
    parser.add_argument(
        "--init-git", action="store_true", help="git init and commit, unless already in git"
    )
    parser.add_argument(
        "--update", action="store_true", help="an existing project: check the name's form only"
    )
    args = parser.parse_args(argv)
    root = Path.cwd()
    try:
        check_name(args.name, installed=not args.update)
    except ValueError as exc:
        print(f"error: project_name={args.name!r} is not allowed: {exc}", file=sys.stderr)
        return 2
    if write_readme(root, args.name, args.template or Path(__file__).resolve().parents[1]):
        print("README.md: the project's own")
    moved, edited = rename_tree(root, args.name, args.template, installed=not args.update)
    print(
        f"renamed {OLD} -> {args.name}: {len(moved)} directories moved, {len(edited)} files edited"
    )
    if args.init_git and not inside_git_work_tree(root):
        commit = init_repo(root, f"New project {args.name} from the repro template")
        print(f"git: initialised, first commit {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
