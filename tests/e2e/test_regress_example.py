"""The regression example (``experiment=regress``) keeps every guarantee the classifier keeps: rerun, loader
workers, SIGKILL + resume, ``repro verify``, a sweep and its report (torchrun: test_distributed.py)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import run_main, run_module, run_tool, verify_identical

pytestmark = pytest.mark.slow
RUN = ["experiment=regress", "train.epochs=3", "data.train_size=512", "train.checkpoint_every=5"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("regress") / "run", *RUN)


def same_bits(a, b):
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()


def test_its_own_metrics_reach_the_record(reference):
    result = reference.manifest["result"]
    assert {"val_mse", "val_r2", "train_loss", "train_mae"} <= set(
        result
    ) and "val_acc" not in result
    assert 0.5 < result["val_r2"] <= 1.0  # it learns the table
    assert "val_r2" in reference.proc.stdout


def test_rerun_and_workers_give_the_same_bits(reference, tmp_path):
    same_bits(reference, run_main(tmp_path / "again", *RUN))
    same_bits(reference, run_main(tmp_path / "workers", *RUN, "repro.num_workers=2"))


def test_sigkill_then_resume_is_exact(reference, tmp_path):
    run_dir = tmp_path / "run"
    killed = run_main(run_dir, *RUN, check=False, env={"REPRO_FAULT_KILL_AT_STEP": "12"})
    assert killed.proc.returncode == -9
    resumed = run_main(run_dir, *RUN, "train.resume=auto")
    same_bits(reference, resumed)
    assert resumed.manifest["resume_exact"] is True


def test_verify_says_identical(reference, tmp_path):
    verify_identical(reference.dir, tmp_path / "replay")


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
