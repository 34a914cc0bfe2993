"""A run made from uncommitted code says so in one warning line at its start; a clean checkout, or code
outside git, gets no such line. The line comes from the ``git status`` the record runs anyway."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import FIXTURE_PATH, run_fixture

WARNING = "uncommitted code:"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def project(tmp_path: Path, *, in_git: bool) -> Path:
    """A copy of the fixture experiment, committed to a new repository when ``in_git``."""
    repo = tmp_path / "project"
    shutil.copytree(
        FIXTURE_PATH / "repro_fixture",
        repo / "repro_fixture",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    if in_git:
        git(repo, "init", "-q")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "fixture")
    return repo


def start(repo: Path, name: str) -> tuple[str, str, dict]:
    """One step of the copied fixture (its code imported from ``repo``): what the console showed (Hydra
    logs to stdout), the run's ``train.log`` and its ``environment.git``."""
    run = run_fixture(repo.parent / name, "train.max_steps=1", env={"PYTHONPATH": str(repo)})
    log = (run.dir / "train.log").read_text()
    return run.proc.stdout + run.proc.stderr, log, run.manifest["environment"]["git"]


def test_a_dirty_checkout_is_named_in_one_warning_line(tmp_path):
    repo = project(tmp_path, in_git=True)
    with (repo / "repro_fixture" / "loop.py").open("a") as f:
        f.write("# an edit\n")
    for i in range(5):
        (repo / f"notes{i}.txt").write_text("x")
    console, log, recorded = start(repo, "run")
    lines = [line for line in console.splitlines() if WARNING in line]
    assert len(lines) == 1, console[-2000:]
    assert [line for line in log.splitlines() if WARNING in line] == lines
    assert "WARNING" in lines[0]
    assert "1 modified (repro_fixture/loop.py)" in lines[0]
    # The names are capped: three shown, the rest counted.
    assert "5 untracked (notes0.txt, notes1.txt, notes2.txt, +2 more)" in lines[0]
    assert "the record keeps the diff's sha256, not the diff" in lines[0]
    assert recorded["dirty"] is True and recorded["untracked_files"] == 5
    assert recorded["diff_sha256"]


def test_a_clean_checkout_or_code_outside_git_gets_no_warning(tmp_path):
    clean = project(tmp_path / "clean", in_git=True)
    console, log, recorded = start(clean, "run")
    assert WARNING not in console + log and recorded["dirty"] is False
    outside = project(tmp_path / "outside", in_git=False)
    console, log, recorded = start(outside, "run")
    assert WARNING not in console + log and recorded is None
