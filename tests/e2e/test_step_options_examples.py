"""The step settings keep the guarantees on the examples, each run a ``python -m`` process:

- mixed precision and torch.compile on both examples (the classifier and ``experiment=regress``): loader
  workers 0 and 2 give the same bits and ``repro verify`` (a rerun in a new process, compared step by
  step) says IDENTICAL. Paired to keep the suite short: compile with bf16-mixed on one, with 16-mixed on
  the other.
- gradient accumulation, clipping, the best checkpoint and early stopping on the classifier: workers 0
  and 2 give the same bits, and a SIGKILL in the middle of an accumulation window, after the best epoch
  and before the stop, resumes to the same bits, the same stop and the same ``best.pt``. The mechanics
  do not depend on the example, so the regression example is not run here again.

Each setting alone, with SIGKILL + resume and ``repro verify``: tests/e2e/test_step_options.py (the
kit's fixture experiment)."""

from __future__ import annotations

import pytest

from conftest import run_main, verify_identical

pytestmark = pytest.mark.slow
KILL = "REPRO_FAULT_KILL_AT_STEP"


def same_bits(a, b):
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()


QUICK = ["experiment=quick", "train.epochs=1"]  # 8 steps
REGRESS = ["experiment=regress", "train.epochs=1", "data.train_size=256"]  # 4 steps
#: Compile on both examples, each precision on one (each alone, on the fixture: test_step_options.py).
PRECISION_CASES = {
    "quick-bf16-compile": [*QUICK, "train.precision=bf16-mixed", "train.compile=true"],
    "regress-16-compile": [*REGRESS, "train.precision=16-mixed", "train.compile=true"],
}


@pytest.mark.parametrize("case", PRECISION_CASES)
def test_precision_and_compile_with_workers_and_verify_give_the_same_bits(case, tmp_path):
    overrides = PRECISION_CASES[case]
    ref = run_main(tmp_path / "ref", *overrides)
    training = ref.manifest["training"]
    assert training["precision"] == next(o for o in overrides if "precision" in o).split("=")[1]
    assert training["compile"] is ("train.compile=true" in overrides)
    same_bits(ref, run_main(tmp_path / "workers", *overrides, "repro.num_workers=2"))
    verify_identical(ref.dir, tmp_path / "replay")


ACCUMULATION_CASES = {
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


def same_bits_and_best(a, b):
    same_bits(a, b)
    assert (a.dir / "checkpoints" / "best.pt").read_bytes() == (
        b.dir / "checkpoints" / "best.pt"
    ).read_bytes()
    assert a.manifest["best"] == b.manifest["best"]


@pytest.mark.parametrize("case", ACCUMULATION_CASES)
def test_accumulation_and_early_stopping_keep_the_bits_with_workers_and_a_sigkill(case, tmp_path):
    overrides = ACCUMULATION_CASES[case]
    ref = run_main(tmp_path / "ref", *overrides)
    steps = ref.manifest["result"]["steps"]
    best = ref.manifest["best"]
    assert ref.manifest["training"]["accumulate_grad_batches"] == 3
    assert best["stopped_early"] is True
    epochs = [r for r in ref.metrics() if r["split"] == "epoch"]
    # a window's step: fewer optimizer steps than batches
    assert steps < len(epochs) * (8 if case == "quick" else 4)
    same_bits_and_best(ref, run_main(tmp_path / "workers", *overrides, "repro.num_workers=2"))
    # Killed after the best epoch's last step and one more window, before the run ends.
    best_step = next(r["step"] for r in reversed(ref.fingerprints()) if r["epoch"] == best["epoch"])
    at = min(best_step + 1, steps - 1)
    killed = run_main(tmp_path / "killed", *overrides, env={KILL: str(at)}, check=False)
    assert killed.proc.returncode == -9, killed.proc.stderr
    run_main(tmp_path / "killed", "train.resume=auto")
    assert killed.manifest["resumes"][-1]["self_check"]["exact"] is True
    same_bits_and_best(ref, killed)
    assert killed.manifest["result"]["steps"] == steps
