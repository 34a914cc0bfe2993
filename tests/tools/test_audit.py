"""`repro audit`: builds the project's model and batch from its config and audits one strict step."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURE, run_tool

REPO = Path(__file__).resolve().parents[2]


def repro(*args):
    return run_tool(*args, "--entry", FIXTURE, cwd=REPO, timeout=300)


def test_audit_of_the_fixture_on_cpu_says_what_it_cannot_know():
    out = repro("audit", "train.batch_size=8", "train.device=cpu")
    assert out.returncode == 0, out.stderr
    assert "checked on CPU: this says nothing about CUDA" in out.stdout
    data = json.loads(repro("audit", "train.batch_size=8", "train.device=cpu", "--json").stdout)
    assert data["device"] == "cpu" and data["checked_on_cuda"] is False and data["clean"] is True


def test_audit_with_a_bad_override_is_a_one_line_error():
    out = repro("audit", "train.batch_size=abc")
    assert out.returncode == 2
    assert (
        out.stderr.strip().startswith("error: train.batch_size=abc")
        and "Traceback" not in out.stderr
    )
