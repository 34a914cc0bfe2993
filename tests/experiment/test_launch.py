"""``python -m experiment.train --help`` and ``--cfg job`` answer before torch is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import clean_env

PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("TORCH-IMPORTED" if "torch" in sys.modules else "NO-TORCH"))
sys.argv = ["prog", *sys.argv[2:]]
runpy.run_module("experiment.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["experiment=quikc"]])
def test_the_example_answers_without_torch(args, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "-", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH", out.stdout[-500:] + out.stderr[-500:]
