"""Which module the tools replay a run with (``repro.tools.replay_entry.resolve_entry``): ``--entry``,
else the module the record names when it belongs to the project's own packages, else the project's
entry; a record naming anything else is refused in one line, before anything is imported."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import run_main, run_tool, verify_identical
from repro.base.errors import ReproError
from repro.tools.replay_entry import resolve_entry
from repro.tools.runs import Run

SECOND = "repro_fixture.second"
#: The fixture as a project: its entry is repro_fixture.train, so its own package is repro_fixture.
PROJECT = '[tool.repro]\nentry = "repro_fixture.train"\n'


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    (tmp_path / "pyproject.toml").write_text(PROJECT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_of(project: Path, module: object, name: str = "run") -> Run:
    return Run(project / name, {"entry": {} if module is None else {"module": module}}, {})


def test_a_recorded_module_of_the_own_package_is_replayed_as_recorded(project):
    assert resolve_entry([run_of(project, SECOND)]) == SECOND
    # Only named, not imported: whether it exists is the replay's business.
    assert resolve_entry([run_of(project, "repro_fixture.nowhere")]) == "repro_fixture.nowhere"
    assert "repro_fixture.nowhere" not in sys.modules


def test_without_a_recorded_module_the_project_entry_replays(project):
    assert resolve_entry([run_of(project, None)]) == "repro_fixture.train"


def test_declared_packages_widen_what_is_own(project):
    (project / "pyproject.toml").write_text(PROJECT + 'packages = ["repro_fixture", "lab"]\n')
    assert resolve_entry([run_of(project, "lab.lm.train")]) == "lab.lm.train"


def test_a_module_outside_the_own_packages_is_refused_in_one_line(project):
    with pytest.raises(ReproError) as refused:
        resolve_entry([run_of(project, "json.tool")])
    message = str(refused.value)
    assert "\n" not in message and message == (
        f"{project / 'run'}: the run was made by entry module 'json.tool', which is not in this "
        f"project's own packages: repro_fixture ([tool.repro] packages or entry in "
        f"{project.resolve() / 'pyproject.toml'}); to replay it with 'json.tool' anyway, "
        "pass --entry json.tool"
    )
    assert resolve_entry([run_of(project, "json.tool")], "json.tool") == "json.tool"


@pytest.mark.parametrize(
    "module", ["repro_fixture.second; import os", "repro_fixture..second", "../x", 5]
)
def test_a_malformed_recorded_module_is_refused_before_any_import(project, module):
    before = set(sys.modules)
    with pytest.raises(ReproError, match=r"run\.json entry\.module .*: not a module name"):
        resolve_entry([run_of(project, module)])
    assert set(sys.modules) == before


def test_runs_of_two_entry_modules_need_entry(project):
    runs = [run_of(project, SECOND, "a"), run_of(project, "repro_fixture.train", "b")]
    with pytest.raises(ReproError, match="different entry modules .*pass --entry MODULE"):
        resolve_entry(runs)
    assert resolve_entry(runs, SECOND) == SECOND


def test_a_pyproject_inside_the_run_does_not_make_its_module_own(project):
    run = run_of(project, "evil.train")
    run.dir.mkdir()
    (run.dir / "pyproject.toml").write_text('[tool.repro]\nentry = "evil.train"\n')
    with pytest.raises(ReproError, match="not in this project's own packages: repro_fixture"):
        resolve_entry([run])


@pytest.mark.slow
def test_a_run_of_a_second_entry_module_verifies_without_entry(tmp_path):
    """Made by ``python -m repro_fixture.second``; ``repro verify`` in the project replays that module."""
    (tmp_path / "pyproject.toml").write_text(PROJECT)
    run = run_main(tmp_path / "run", "train.epochs=1", module=SECOND, cwd=tmp_path)
    assert json.loads((run.dir / "run.json").read_text())["entry"]["module"] == SECOND
    verify_identical(run.dir, tmp_path / "replay")
    replayed = json.loads((tmp_path / "replay" / "run.json").read_text())
    assert replayed["entry"]["module"] == SECOND

    other = tmp_path / "other"
    shutil.copytree(run.dir, other)
    manifest = json.loads((other / "run.json").read_text())
    manifest["entry"]["module"] = "json.tool"
    (other / "run.json").write_text(json.dumps(manifest))
    refused = run_tool("verify", other, "--out", tmp_path / "refused", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "pass --entry json.tool" in refused.stderr
    assert not (tmp_path / "refused").exists()
    typed = run_tool(
        "verify",
        other,
        "--steps",
        "2",
        "--quiet",
        "--out",
        tmp_path / "r",
        "--entry",
        SECOND,
        cwd=tmp_path,
    )
    assert typed.returncode == 0 and typed.stdout.strip().splitlines()[-1] == "IDENTICAL", (
        typed.stdout + typed.stderr
    )
