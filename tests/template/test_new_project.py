"""``repro new`` and copier: a new project is complete, renamed, installable and updatable.

Everything is generated under pytest's ``tmp_path``. The slow tests install a generated project
into a fresh virtual environment that sees this environment's packages (torch, Hydra, pytest)
through a ``.pth`` file, so nothing is downloaded, and run the project's own tests there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from repro.tools.cli import main as repro_main
from template_tools import scaffold

ROOT = Path(__file__).resolve().parents[2]
NAME = "demo_proj"
#: The template's scaffolding: the test's template repository needs it even before it is committed.
MACHINERY = [
    "copier.yml",
    ".copier-answers.yml.jinja",
    "scripts/copier_tasks.py",
    "src/template_tools/__init__.py",
    "src/template_tools/scaffold.py",
    "src/template_tools/project_README.md",
]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}
#: References to the example package that must not survive the rename.
LEFTOVER = re.compile(
    r"(?<![\w./-])experiment\.[A-Za-z_]|\b(?:src|tests)/experiment\b"
    r"|^\s*(?:from|import)\s+experiment\b|^name\s*=\s*\"experiment\""
    r"""|["'](?:src|tests)["']\s*/\s*["']experiment["']|(?<![\w./-])experiment-train\b""",
    re.MULTILINE,
)


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def project_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except ``.git``, by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def leftovers(root: Path) -> list[str]:
    """Paths and lines of ``root`` that still refer to the example package ``experiment``."""
    found = [
        rel for rel in project_files(root) if re.search(r"(^|/)(src|tests)/experiment(/|$)", rel)
    ]
    for rel, data in project_files(root).items():
        for m in LEFTOVER.finditer(data.decode("utf-8", errors="replace")):
            found.append(f"{rel}: {m.group(0)!r}")
    return found


def new_project(
    dest: Path, name: str = NAME, template: Path | None = None
) -> tuple[Path, list[str]]:
    lines: list[str] = []
    return scaffold.create_project(dest, name, template, log=lines.append), lines


def copier_command() -> list[str]:
    """How to run copier here, or skip the test."""
    if importlib.util.find_spec("copier") is not None:
        return [sys.executable, "-m", "copier"]
    exe = shutil.which("copier")
    if exe is None:
        pytest.skip("copier is not installed (pip install -e '.[template]')")
    return [exe]


def copier_copy(copier: list[str], template: Path, dest: Path, name: str = NAME):
    """``copier copy`` of ``template`` into ``dest``; the caller checks the result."""
    cmd = [*copier, "copy", "--trust", "--defaults", "--quiet", "--data", f"project_name={name}"]
    return subprocess.run(
        [*cmd, str(template), str(dest)], cwd=dest.parent, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def template_origin(tmp_path_factory) -> Path:
    """A git repository of this template (its tracked files and scaffolding), tagged 0.1.0."""
    if not scaffold.is_git_checkout(ROOT):
        pytest.skip("the template is not a git checkout")
    rels = set(git(ROOT, "ls-files").splitlines()) | set(MACHINERY)
    rels |= {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tests/template").glob("test_new_project*.py")
    }
    origin = tmp_path_factory.mktemp("template") / "origin"
    for rel in sorted(rels):
        if (ROOT / rel).is_file():
            (origin / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, origin / rel)
    git(origin, "init", "-q")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "template 0.1.0")
    git(origin, "tag", "0.1.0")
    return origin


def fresh_venv(project: Path, where: Path) -> tuple[Path, dict[str, str]]:
    """A new virtual environment with ``project`` installed (editable), seeing this one's packages.

    This environment's site directories are added with a ``.pth`` file: torch, Hydra and pytest
    are reused, while the ``.pth`` files in them (such as this template's own editable install)
    are not run. Returns the new python and the environment to run it in.
    """
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed in this environment")
    venv = where / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=where)
    python = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(run([str(python), "-c", code], cwd=where).stdout.strip())
    ours = [
        *site.getsitepackages(),
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
    ]
    if site.ENABLE_USER_SITE:
        ours.append(site.getusersitepackages())
    ours = list(dict.fromkeys(d for d in ours if Path(d).is_dir()))
    # Named to sort last, so the project's own editable install comes first on sys.path.
    (purelib / "zz_reuse_base_packages.pth").write_text("\n".join(ours) + "\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REPRO_", "PYTHONHASHSEED", "PYTHONPATH", "PYTEST_", "VIRTUAL_ENV"))
    }
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    # Without setuptools here, pip fetches it into an isolated build environment (network).
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    install = ["-m", "pip", "install", "-q", "--no-deps", *isolation, "-e", str(project)]
    run([str(python), *install], cwd=where, env=env)
    code = f"import repro, {NAME}; print(repro.__file__); print({NAME}.__file__)"
    where_from = run([str(python), "-c", code], cwd=where, env=env).stdout.split()
    assert all(Path(p).is_relative_to(project) for p in where_from), where_from
    return python, env


# --- names and destinations ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "MyProject",
        "1project",
        "my-project",
        "",
        "_private",
        "café",
        "class",
        "json",
        "sys",
        "test",
        "tests",
        "src",
        "conf",
        "scripts",
        "torch",
        "hydra",
        "omegaconf",
        "numpy",
        "repro",
        "experiment",
        "pytest",
    ],
)
def test_a_bad_name_is_refused_with_one_line_and_nothing_written(bad, tmp_path, capsys):
    assert repro_main(["new", str(tmp_path / "proj"), "--name", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --name={bad!r} is not allowed: ") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("good", ["my_project", "demo2", "speech_model_v2", "my_experiment"])
def test_a_good_name_is_accepted(good):
    scaffold.check_name(scaffold.load_rules(ROOT), good)


def test_dest_must_be_new_or_empty(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    before = project_files(tmp_path)
    cases = {
        "full": "is not empty (1 entries, e.g. 'keep.txt')",
        "file": "exists and is not a directory",
        "missing/proj": "its parent directory does not exist",
    }
    for dest, why in cases.items():
        assert repro_main(["new", str(tmp_path / dest), "--name", NAME]) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith(f"error: DEST='{tmp_path / dest}'")
            and why in err
            and err.count("\n") == 1
        ), err
    assert repro_main(["new", str(ROOT / "outputs" / "proj"), "--name", NAME]) == 2
    assert "is inside the template" in capsys.readouterr().err
    assert project_files(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "file",
        "full",
    ]
    assert not (ROOT / "outputs" / "proj").exists()


def test_not_a_template_is_refused(tmp_path, capsys):
    assert (
        repro_main(["new", str(tmp_path / "proj"), "--name", NAME, "--template", str(tmp_path)])
        == 2
    )
    assert "is not a template checkout: it has no copier.yml" in capsys.readouterr().err


def test_the_rename_rules_touch_module_references_only():
    rules = scaffold.load_rules(ROOT)
    cases = {
        "python -m experiment.train experiment=quick": "python -m demo_proj.train experiment=quick",
        "from experiment.config import X\nimport experiment\n": (
            "from demo_proj.config import X\nimport demo_proj\n"
        ),
        "[2026][experiment.loop][INFO] - epoch 1": "[2026][demo_proj.loop][INFO] - epoch 1",
        "see src/experiment/train.py and tests/experiment/": (
            "see src/demo_proj/train.py and tests/demo_proj/"
        ),
        '"-m", "experiment.train",': '"-m", "demo_proj.train",',
        "conf/experiment/quick.yaml; `experiment/` files; optional experiment: null": None,
        "The example experiment. An experiment is a run; my_experiment.train stays.": None,
        'name = "experiment"': None,  # the distribution name changes in pyproject.toml only
    }
    for text, want in cases.items():
        assert rules.rename_text(text, NAME) == (text if want is None else want), text
    assert (
        rules.rename_text('[project]\nname = "experiment"\n', NAME, "pyproject.toml")
        == f'[project]\nname = "{NAME}"\n'
    )
    script = (
        'experiment-train = "experiment.train:main"\neval "$(experiment-train -sc install=bash)"'
    )
    assert rules.rename_text(script, NAME) == (
        f'{NAME}-train = "{NAME}.train:main"\neval "$({NAME}-train -sc install=bash)"'
    )
    assert rules.rename_text("my_experiment-train", NAME) == "my_experiment-train"
    joined = 'REPO / "src" / "experiment" / "loop.py", ROOT / \'tests\'/\'experiment\''
    assert rules.rename_text(joined, NAME) == (
        f'REPO / "src" / "{NAME}" / "loop.py", ROOT / \'tests\'/\'{NAME}\''
    )
    assert rules.rename_text('"conf" / "experiment"', NAME) == '"conf" / "experiment"'
    block = 'a = 1\n  # template-only: begin (why)\nb = ["x"]\n  # template-only: end\nc = 2\n'
    assert rules.rename_text(block, NAME, "pyproject.toml") == "a = 1\nc = 2\n"
    assert rules.rename_text(block, NAME, "other.toml") == block  # pyproject.toml only


def test_a_projects_pyproject_keeps_what_its_own_tests_need():
    """The template-only blocks of pyproject.toml go; what is left is valid TOML and installs the
    project's test runner (pytest, pytest-xdist: ``-n auto`` in addopts)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    rules = scaffold.load_rules(ROOT)
    template = (ROOT / "pyproject.toml").read_text()
    assert template.count("# template-only: begin") == template.count("# template-only: end") >= 1
    project = tomllib.loads(rules.rename_text(template, NAME, "pyproject.toml"))
    dev = [re.split(r"[<>=!~ ]", d)[0] for d in project["project"]["optional-dependencies"]["dev"]]
    assert {"pytest", "pytest-xdist", "copier"} <= set(dev), dev
    assert "template-only" not in rules.rename_text(template, NAME, "pyproject.toml")
    # the fixture experiment (tests/fixture) stays with the template
    assert "pythonpath" not in project["tool"]["pytest"]["ini_options"]


def test_the_rules_know_the_templates_description():
    description = re.search(r'(?m)^description = "(.*)"$', (ROOT / "pyproject.toml").read_text())
    rules = scaffold.load_rules(ROOT)
    assert description and description.group(1) == rules.TEMPLATE_DESCRIPTION, (
        "pyproject.toml's description changed: set TEMPLATE_DESCRIPTION in scripts/copier_tasks.py"
    )


# --- repro new -----------------------------------------------------------------------------


def test_repro_new_makes_a_renamed_project_with_one_commit(tmp_path):
    dest, lines = new_project(tmp_path / "proj")
    assert dest == tmp_path / "proj" and sorted(p.name for p in tmp_path.iterdir()) == ["proj"]
    assert [line.split()[0] for line in lines] == [
        "repro",
        "copy",
        "readme",
        "rename",
        "answers",
        "git",
        "created",
        "next:",
    ]
    files = project_files(dest)
    # Exactly the template's tracked files (renamed), minus its scaffolding, plus copier's answers.
    config = scaffold.read_copier_config(ROOT)
    rules = scaffold.load_rules(ROOT)
    want = {
        rules.target_path(r, NAME)
        for r in scaffold.template_files(ROOT, config["_exclude"])
        if not r.endswith(".jinja")
    }
    assert set(files) == want | {".copier-answers.yml"}
    assert "outputs/.gitkeep" in files and not any(
        r.startswith("outputs/") and r != "outputs/.gitkeep" for r in files
    )
    assert not any(r in files for r in MACHINERY) and not any(
        "test_new_project" in r for r in files
    )
    assert not any(r.startswith("src/template_tools/") for r in files)
    assert "src/repro/cli.py" not in files and "src/repro/tools/cli.py" in files
    assert "conf/experiment/quick.yaml" in files
    assert f"src/{NAME}/train.py" in files and f"tests/{NAME}" in {
        str(Path(r).parent) for r in files
    }
    for rel in files:  # the kit is copied as it is, but for references to the example's modules
        if rel.startswith("src/repro/"):
            assert files[rel].decode() == rules.rename_text((ROOT / rel).read_text(), NAME), rel
    assert leftovers(dest) == []
    assert f'name = "{NAME}"' in files["pyproject.toml"].decode()
    assert f"python -m {NAME}.train" in files["README.md"].decode()
    assert os.stat(dest / ".ci/run").st_mode & stat.S_IXUSR
    answers = files[".copier-answers.yml"].decode()
    assert f"_src_path: {ROOT}\n" in answers and f"project_name: {NAME}\n" in answers
    assert git(dest, "rev-list", "--count", "HEAD") == "1"
    assert git(dest, "status", "--porcelain") == ""
    assert git(dest, "ls-files").splitlines() == sorted(files)


def test_a_generated_project_has_its_own_readme_and_description(tmp_path):
    dest, _ = new_project(tmp_path / "proj")
    readme = (dest / "README.md").read_text()
    assert readme.startswith(f"# {NAME}\n"), readme.splitlines()[0]
    assert quickstart_command(readme) == f"python -m {NAME}.train"
    assert "```bash\npython -m pytest\n```" in readme
    for template_only in ("repro new", "copier copy", "Start your own project", "Update from"):
        assert template_only not in readme, f"the project's README has {template_only!r}"
    assert "{{" not in readme and "{%" not in readme
    for link in re.findall(r"\]\(([^)#]+)", readme):  # the kit's docs travel with the project
        assert (dest / link).is_file(), f"README.md links to {link}, which the project lacks"
    assert (dest / "docs/index.md").is_file() and "](docs/index.md)" in readme
    description = re.search(r'(?m)^description = "(.*)"$', (dest / "pyproject.toml").read_text())
    assert description and "template" not in description.group(1) and NAME in description.group(1)
    assert f'{NAME}-train = "{NAME}.train:main"' in (dest / "pyproject.toml").read_text()
    rules = scaffold.load_rules(ROOT)
    assert not rules.write_readme(dest, NAME, ROOT)  # the project's own README is never replaced


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_generated_project_follows_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        dest, _ = new_project(tmp_path / "proj")
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((dest / ".ci/run").stat().st_mode) == 0o777 & ~umask
    wrong = []
    for path in [dest, *dest.rglob("*")]:
        rel = path.relative_to(dest)
        if path.is_symlink() or ".git" in rel.parts:
            continue
        executable = (ROOT / rel).is_file() and os.stat(ROOT / rel).st_mode & stat.S_IXUSR
        want = (0o777 if path.is_dir() or executable else 0o666) & ~umask
        if stat.S_IMODE(path.lstat().st_mode) != want:
            wrong.append(f"{rel}: {stat.S_IMODE(path.lstat().st_mode):o}, expected {want:o}")
    assert wrong == [], f"umask {umask:03o}: {len(wrong)} paths, e.g. {wrong[:3]}"


def test_repro_new_outside_the_template_says_where_it_is(monkeypatch, tmp_path, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "template_tools" else find_spec(name, *a),
    )
    assert repro_main(["new", str(tmp_path / "proj"), "--name", NAME]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: repro new is available in the template repository") and (
        err.count("\n") == 1
    ), err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_dest_directory_is_used(tmp_path):
    (tmp_path / "proj").mkdir()
    dest, _ = new_project(tmp_path / "proj")
    assert (dest / "pyproject.toml").is_file() and sorted(p.name for p in tmp_path.iterdir()) == [
        "proj"
    ]


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_leaves_nothing_behind(tmp_path, monkeypatch, existing):
    if existing:
        (tmp_path / "proj").mkdir()
    copied = []

    def flaky_copy(src, dst, **kwargs):
        if len(copied) == 20:
            raise OSError(28, "No space left on device")
        copied.append(dst)
        return shutil.copyfile(src, dst)

    monkeypatch.setattr(scaffold.shutil, "copy2", flaky_copy)
    with pytest.raises(OSError, match="No space left"):
        new_project(tmp_path / "proj")
    assert [p.name for p in tmp_path.iterdir()] == (["proj"] if existing else [])
    assert not existing or list((tmp_path / "proj").iterdir()) == []


def test_a_full_disk_is_one_line_from_the_command(tmp_path, monkeypatch, capsys):
    copied = []

    def flaky_copy(src, dst, **kwargs):
        if len(copied) == 5:
            raise OSError(28, "No space left on device", str(dst))
        copied.append(dst)
        return shutil.copyfile(src, dst)

    monkeypatch.setattr(scaffold.shutil, "copy2", flaky_copy)
    assert repro_main(["new", str(tmp_path / "proj"), "--name", "okname"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot create the project (No space left on device)"), err
    assert err.count("\n") == 1 and "free some space" in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_rename_is_idempotent_and_spares_the_projects_own_files(tmp_path):
    dest, _ = new_project(tmp_path / "proj")
    mine = dest / "notes.md"
    mine.write_text("I ran python -m experiment.train in the template once.\n")
    rules = scaffold.load_rules(ROOT)
    assert rules.rename_tree(dest, NAME, ROOT) == ([], [])
    assert "experiment.train" in mine.read_text()


# --- a generated project, installed and tested -------------------------------------------------


def quickstart_command(readme: str) -> str:
    """The last command of the README's Quickstart (the training run)."""
    section = readme.split("## Quickstart", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return block.strip().split("&&")[-1].strip()


def readme_test_command(project: Path) -> str:
    """The README's test command, as ``.ci/run`` reads it (``.ci/readme-test-command``)."""
    script = project / ".ci" / "readme-test-command"
    return run([str(script), "README.md"], cwd=project).stdout.strip()


def test_ci_runs_the_readme_test_command_and_a_new_projects():
    """``.ci/run`` reads the test command from the README, the template's and a project's alike, and in
    the template makes a project and runs its README's command in a fresh environment of its own."""
    assert readme_test_command(ROOT) == "python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in ci
    assert ci.count('test_command="$(.ci/readme-test-command README.md)"') == 2
    assert ci.count('eval "$test_command"') == 2 and "repro new " in ci
    assert 'python -m pip install -q -e ".[dev]" -c constraints.txt' in ci.split("repro new ")[1]


def test_a_readme_without_a_test_command_is_refused(tmp_path):
    (tmp_path / "README.md").write_text("# x\n\nRun the tests:\n\n```bash\nA\nB\n```\n")
    script = ROOT / ".ci" / "readme-test-command"
    done = subprocess.run([str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == "" and "no one-line test command" in done.stderr


def test_a_generated_project_carries_its_experiments_tests_not_the_kits(tmp_path):
    dest, _ = new_project(tmp_path / "proj")
    tests = sorted(p.relative_to(dest).as_posix() for p in (dest / "tests").rglob("*.py"))
    assert "tests/conftest.py" in tests and f"tests/{NAME}/test_guarantees.py" in tests
    assert f"tests/{NAME}/test_evaluate.py" in tests and f"tests/{NAME}/test_config.py" in tests
    assert not [
        t for t in tests if not t.startswith(f"tests/{NAME}/") and t != "tests/conftest.py"
    ], tests
    assert readme_test_command(dest) == "python -m pytest"


@pytest.mark.slow
def test_a_generated_project_installs_and_collects_its_tests(tmp_path):
    """The project installs, every one of its tests imports and is collected under the renamed package,
    and its entry points run. Its whole suite (the README's test command) runs in CI, in a virtual
    environment made from nothing (``.ci/run``): here it would repeat those two minutes."""
    dest, _ = new_project(tmp_path / "proj")
    python, env = fresh_venv(dest, tmp_path)
    command = readme_test_command(dest)
    assert command == "python -m pytest"
    collect = ["--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"]
    listed = run([str(python), "-m", "pytest", *collect], cwd=dest, env=env)
    collected = re.search(r"(\d+) tests? collected", listed.stdout)
    assert collected and int(collected.group(1)) >= 50, listed.stdout[-3000:]
    assert f"tests/{NAME}/test_guarantees.py::" in listed.stdout
    command = quickstart_command((dest / "README.md").read_text())
    assert command == f"python -m {NAME}.train"
    # the README's command as written, shortened by an override (the full default run is the example's
    # own, tested in tests/experiment): what is checked here is that it runs in the renamed project
    train = run([str(python), *command.split()[1:], "experiment=quick"], cwd=dest, env=env)
    assert "weights sha256:" in train.stdout
    run_dir = Path(train.stdout.split("run directory:")[1].split()[0])
    assert (run_dir / "run.json").is_file()
    # its evaluate entry builds the renamed package's classes from the run's config
    run([str(python), "-m", f"{NAME}.evaluate", f"run={run_dir}"], cwd=dest, env=env)
    assert "val_acc" in json.loads((run_dir / "eval-val.json").read_text())
    assert git(dest, "status", "--porcelain") == ""  # outputs and build files are git-ignored


# --- copier ------------------------------------------------------------------------------------


def test_copier_copy_gives_what_repro_new_gives(template_origin, tmp_path):
    copier = copier_command()
    template = tmp_path / "template"
    git(tmp_path, "clone", "-q", str(template_origin), str(template))
    by_copier = tmp_path / "by_copier"
    done = copier_copy(copier, template, by_copier)
    assert done.returncode == 0, done.stderr
    by_repro, _ = new_project(tmp_path / "by_repro", template=template)
    assert project_files(by_copier) == project_files(by_repro)
    for rel in project_files(by_repro):
        assert os.stat(by_copier / rel).st_mode == os.stat(by_repro / rel).st_mode, rel
    assert (
        git(by_copier, "rev-list", "--count", "HEAD") == "1"
        and git(by_copier, "status", "--porcelain") == ""
    )
    # A bad name leaves nothing behind under copier either.
    bad = copier_copy(copier, template, tmp_path / "bad", "json")
    assert bad.returncode != 0 and "project_name='json' is not allowed" in bad.stderr
    assert not (tmp_path / "bad").exists()


def _the_projects_own_work(project: Path) -> None:
    """An edit to an example file and a new module, committed."""
    pkg = project / "src" / NAME
    with (pkg / "model.py").open("a") as f:
        f.write("# my own change\n")
    (pkg / "extra.py").write_text("MINE = 1\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "my work")


def _the_template_improves(template: Path) -> None:
    """A kit docstring, a new kit module, a changed and a new example file: tagged 0.2.0."""
    seeding = template / "src/repro/core/seeding.py"
    seeding.write_text(
        seeding.read_text().replace(
            "cheap per-sample seeding.", "cheap per-sample seeding (v2).", 1
        )
    )
    (template / "src/repro/update_marker.py").write_text('"""Added in 0.2.0."""\n\nVALUE = 2\n')
    train = template / "src/experiment/train.py"
    train.write_text(train.read_text().replace("Thin on purpose", "Thin on purpose (v2)", 1))
    (template / "src/experiment/extras.py").write_text(
        '"""Added in 0.2.0."""\n\nfrom experiment.model import SmallCNN\n'
    )
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "template 0.2.0")
    git(template, "tag", "0.2.0")


def _assert_updated(project: Path) -> None:
    """The template's changes arrived, renamed; the project's own work is kept; no conflicts."""
    pkg = project / "src" / NAME
    assert "cheap per-sample seeding (v2)." in (project / "src/repro/core/seeding.py").read_text()
    assert (project / "src/repro/update_marker.py").is_file()
    assert "Thin on purpose (v2)" in (pkg / "train.py").read_text()
    assert f"from {NAME}.model import SmallCNN" in (pkg / "extras.py").read_text()
    assert (pkg / "model.py").read_text().endswith("# my own change\n") and (
        pkg / "extra.py"
    ).is_file()
    assert not (project / "src/experiment").exists() and not (project / "tests/experiment").exists()
    assert "_commit: 0.2.0" in (project / ".copier-answers.yml").read_text()
    status = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert not any(line.endswith(".rej") for line in status), status
    assert not [
        r for r, d in project_files(project).items() if re.search(rb"(?m)^<<<<<<< ", d)
    ]  # markers
    assert leftovers(project) == []


@pytest.mark.slow
def test_copier_update_brings_template_changes(template_origin, tmp_path):
    """A project made by copier and one made by ``repro new`` take the same update to the same files,
    and the updated project passes its tests (run once: the two projects are byte for byte equal)."""
    copier = copier_command()
    template = tmp_path / "template"
    git(tmp_path, "clone", "-q", str(template_origin), str(template))
    by_copier, by_repro = tmp_path / "by_copier", tmp_path / "by_repro"
    done = copier_copy(copier, template, by_copier)
    assert done.returncode == 0, done.stderr
    new_project(by_repro, template=template)
    for project in (by_copier, by_repro):
        _the_projects_own_work(project)
    _the_template_improves(template)

    for project in (by_copier, by_repro):
        run([*copier, "update", "--defaults", "--trust", "--quiet"], cwd=project)
        _assert_updated(project)
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "update from the template 0.2.0")
    assert project_files(by_copier) == project_files(by_repro)

    # The updated project installs and imports its merged package and kit; its tests are those a new
    # project passes in test_a_generated_project_installs_and_passes_its_tests, with this test's edits.
    python, env = fresh_venv(by_repro, tmp_path)
    run([str(python), "-c", f"import repro.update_marker, {NAME}.extras"], cwd=by_repro, env=env)
    run([str(python), "-m", f"{NAME}.train", "--help"], cwd=by_repro, env=env)


@pytest.mark.slow
def test_copier_update_runs_from_the_projects_own_environment(template_origin, tmp_path):
    copier_command()  # skips when copier is not installed
    template = tmp_path / "template"
    git(tmp_path, "clone", "-q", str(template_origin), str(template))
    project, _ = new_project(tmp_path / "proj", template=template)
    readme = template / "README.md"
    readme.write_text(readme.read_text() + "\nA template-only line.\n")
    kit = template / "src/repro/update_marker.py"
    kit.write_text('"""Added in 0.2.0."""\n')
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "template 0.2.0")
    git(template, "tag", "0.2.0")

    # The project's environment, as `pip install -e ".[dev]"` makes it: its package is installed.
    python, env = fresh_venv(project, tmp_path)
    code = f"import importlib.metadata as m; print({NAME!r} in m.packages_distributions())"
    assert run([str(python), "-c", code], cwd=project, env=env).stdout.strip() == "True"
    assert git(project, "status", "--porcelain") == ""  # the install's files are git-ignored

    run([str(python), "-m", "copier", "update", "--trust", "--defaults", "--quiet"], project, env)
    assert (project / "src/repro/update_marker.py").is_file()
    assert "_commit: 0.2.0" in (project / ".copier-answers.yml").read_text()
    readme = (project / "README.md").read_text()
    assert readme.startswith(f"# {NAME}\n") and "A template-only line." not in readme
