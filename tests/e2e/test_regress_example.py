"""The regression example (``experiment=regress``) keeps every guarantee the classifier keeps, against one
shared uninterrupted run: its own metrics reach the record, a rerun and loader workers give the same
bits, a SIGKILL + resume is exact, ``repro verify`` says IDENTICAL. (Its seed sweep and report:
tests/e2e/test_multirun.py; under torchrun: test_torchrun.py; with mixed precision and compile:
test_step_options_examples.py.)"""

from __future__ import annotations

import pytest

from conftest import run_main, verify_identical

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
