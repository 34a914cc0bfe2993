"""Gradient accumulation, clipping, best checkpoint and early stopping on the classifier example: workers
0 and 2 give the same bits, and a SIGKILL in the middle of an accumulation window, after the best epoch and
before the stop, resumes to the same bits, the same stop and the same ``best.pt``. (Each setting alone,
with ``repro verify``, in tests/e2e/test_step_options.py on the fixture experiment; the mechanics do not
depend on the example, so the regression example is not run here again.)"""

from __future__ import annotations

import pytest

from conftest import run_main

pytestmark = pytest.mark.slow
KILL = "REPRO_FAULT_KILL_AT_STEP"
CASES = {
    # 8 batches an epoch, windows of 3, 3 and 2; a checkpoint every other window.
    "quick": (
        "experiment=quick",
        "train.epochs=4",
        "train.accumulate_grad_batches=3",
        "train.gradient_clip_val=1.0",
        "train.checkpoint_every=2",
        "train.monitor=val_acc",
        "train.monitor_mode=max",
        "train.early_stopping_patience=1",
    ),
}


def same_bits(a, b):
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()
    assert (a.dir / "checkpoints" / "best.pt").read_bytes() == (
        b.dir / "checkpoints" / "best.pt"
    ).read_bytes()
    assert a.manifest["best"] == b.manifest["best"]


@pytest.mark.parametrize("case", CASES)
def test_accumulation_and_early_stopping_keep_the_guarantees(case, tmp_path):
    overrides = CASES[case]
    ref = run_main(tmp_path / "ref", *overrides)
    steps = ref.manifest["result"]["steps"]
    best = ref.manifest["best"]
    assert ref.manifest["training"]["accumulate_grad_batches"] == 3
    assert best["stopped_early"] is True
    epochs = [r for r in ref.metrics() if r["split"] == "epoch"]
    # a window's step: fewer optimizer steps than batches
    assert steps < len(epochs) * (8 if case == "quick" else 4)
    same_bits(ref, run_main(tmp_path / "workers", *overrides, "repro.num_workers=2"))
    # Killed after the best epoch's last step and one more window, before the run ends.
    best_step = next(r["step"] for r in reversed(ref.fingerprints()) if r["epoch"] == best["epoch"])
    at = min(best_step + 1, steps - 1)
    killed = run_main(tmp_path / "killed", *overrides, env={KILL: str(at)}, check=False)
    assert killed.proc.returncode == -9, killed.proc.stderr
    run_main(tmp_path / "killed", "train.resume=auto")
    assert killed.manifest["resumes"][-1]["self_check"]["exact"] is True
    same_bits(ref, killed)
    assert killed.manifest["result"]["steps"] == steps
