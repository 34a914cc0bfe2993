"""The in-process (notebook) API: ``repro.start_run`` called from Python, with no relaunch, gives the
bits of the command line's run of the same config and records what an in-process run cannot hold (the
hash-seed pin), in a fresh interpreter that is not started through the kit's entry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FIXTURE_PATH, clean_env

pytestmark = pytest.mark.slow

NOTEBOOK = """
import sys
from repro import start_run
from repro_fixture.loop import train
from repro_fixture.train import register
with start_run(sys.argv[1], overrides=sys.argv[3:], run_dir=sys.argv[2], register=register) as run:
    train(run)
"""


def test_start_run_from_python_gives_the_cli_bits_and_records_what_cannot_hold(
    default_fixture_run, tmp_path
):
    conf = FIXTURE_PATH / "repro_fixture" / "conf"
    # no PYTHONHASHSEED: a running interpreter cannot take the pin
    env = clean_env()
    out = subprocess.run(
        [sys.executable, "-c", NOTEBOOK, str(conf), str(tmp_path / "nb")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "nb"
    # this model's bits ignore hash order
    assert (run_dir / "weights.pt").read_bytes() == default_fixture_run.weights
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["launch"] == "in-process"
    pin = manifest["determinism"]["settings"]["env.PYTHONHASHSEED"]
    assert pin["took_effect"] is False and pin["note"].startswith("in-process run (no relaunch)")
    assert manifest["determinism"]["in_process"] is True
    # the lock file names the pid that held it
    assert (run_dir / ".lock").read_text() != ""
