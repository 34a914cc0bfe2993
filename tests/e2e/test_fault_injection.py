"""The kit's fault injection (``REPRO_FAULT_KILL_AT_STEP``, ``REPRO_FAULT_PERTURB``, which the resume
and ``repro diff`` tests use): its hooks live in the kit, never in the project's code or config, and a
bad value is one line naming what is allowed, in a ``python -m`` process of the fixture experiment.
(What the faults do: tests/e2e/test_resume.py, tests/tools/test_cli.py.)"""

from __future__ import annotations

import subprocess

import pytest

from conftest import REPO, run_fixture

pytestmark = pytest.mark.slow


def test_fault_hooks_live_in_the_kit_not_in_the_project():
    found = subprocess.run(
        ["grep", "-rE", "kill_at_step|perturb", "conf", "src/experiment"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    # grep: 1 means nothing found
    assert found.returncode == 1, found.stdout


def test_a_bad_fault_variable_is_one_line(tmp_path):
    out = run_fixture(tmp_path / "run", env={"REPRO_FAULT_PERTURB": "nope@3"}, check=False)
    assert out.proc.returncode == 2 and "Traceback" not in out.proc.stderr
    assert (
        "REPRO_FAULT_PERTURB='nope' is not allowed: expected a parameter of the model"
        in out.proc.stderr
    )
