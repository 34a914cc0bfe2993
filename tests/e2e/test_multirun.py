"""Sweeps (``-m``, Hydra's multirun): each job a complete, independent record; a job equals the same run
alone (nothing it pinned leaks into the next job of the process); a failing job is recorded and the
others still run; the sweep's progress lines; a sweep of the regression example and its ``repro report``.
Each sweep a ``python -m`` process. (How the kit runs a sweep's jobs, in-process:
tests/launch/test_sweep_jobs.py; reports: tests/tools/test_report.py.)"""

from __future__ import annotations

import json
import sys

import pytest

from conftest import QUICK, run_main, run_module, run_tool

pytestmark = pytest.mark.slow


def test_multirun_gives_independent_complete_records(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "-m",
            "repro.seed=0,1",
            *QUICK,
            "train.max_steps=3",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    # where the sweep stands, one plain line as each job starts and ends (no bar: not a terminal)
    for line in ("sweep job 1/2 started: repro.seed=0", "sweep job 1/2 completed in"):
        assert line in output, output
    assert output.index("sweep job 1/2 completed") < output.index("sweep job 2/2 started")
    assert "sweep job 2/2 completed in" in output and "%|" not in output
    manifests = [json.loads((sweep / str(i) / "run.json").read_text()) for i in (0, 1)]
    assert [m["seed"] for m in manifests] == [0, 1]
    assert all(m["status"] == "completed" for m in manifests)
    assert manifests[0]["weights_sha256"] != manifests[1]["weights_sha256"]


def test_sweep_job_equals_the_same_run_alone(tmp_path):
    """Jobs of one -m sweep share a process: a pinned thread count must not leak into the next job."""
    sweep = tmp_path / "sweep"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "-m",
            "repro.threads=1,null",
            *QUICK,
            "train.max_steps=6",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    alone = run_main(tmp_path / "alone", *QUICK, "train.max_steps=6", "repro.threads=null")
    second = json.loads((sweep / "1" / "run.json").read_text())
    assert second["weights_sha256"] == alone.manifest["weights_sha256"]
    assert (
        second["determinism"]["settings"]["torch.num_threads"]["applied"]
        == alone.manifest["determinism"]["settings"]["torch.num_threads"]["applied"]
    )


def test_a_failing_sweep_job_is_recorded_and_the_others_still_run(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "-m",
            *QUICK,
            "train.max_steps=2",
            "train.device=cpu,cuda:7,cpu",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1  # the sweep says something failed
    assert "Traceback" not in proc.stderr and "error: train.device='cuda:7'" in proc.stderr
    statuses = [
        json.loads((sweep / str(i) / "run.json").read_text())["status"]
        if (sweep / str(i) / "run.json").exists()
        else None
        for i in range(3)
    ]
    assert statuses == [
        "completed",
        None,
        "completed",
    ]  # refused before its record started: nothing written


def test_a_seed_sweep_and_its_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "-m",
            "experiment=regress",
            "train.max_steps=6",
            "data.train_size=256",
            "repro.seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = run_tool("report", sweep, "--json", "--no-plot", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["jobs"]) == 2
    assert "val_r2" in json.dumps(data["stats"])
