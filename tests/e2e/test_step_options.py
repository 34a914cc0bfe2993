"""What an optimizer step is, setting by setting (gradient accumulation, clipping, mixed precision,
compile, the best checkpoint and early stopping), on the kit's fixture experiment: each setting is live
(it changes the bits and is recorded), a bad value is one line naming the key, and each keeps the
guarantees: a rerun and loader workers 0 and 2 give the same bits, ``repro verify`` says IDENTICAL, and a
SIGKILL in the middle of an accumulation window or an epoch resumes to the same bits (each setting's
reference run is shared by its checks here). Each run a ``python -m`` process. On the examples:
tests/e2e/test_step_options_examples.py."""

from __future__ import annotations

import pytest
import torch

from conftest import FIXTURE, run_fixture, verify_identical
from repro import load_checkpoint

KILL = "REPRO_FAULT_KILL_AT_STEP"
#: 12 batches an epoch: windows of 5, 5 and 2 batches (a short last window), clipped hard enough to bite.
ACCUMULATE = (
    "train.accumulate_grad_batches=5",
    "train.gradient_clip_val=0.5",
    "train.checkpoint_every=2",
)


def same_bits(a, b) -> None:
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()


@pytest.fixture(scope="module")
def accumulated(tmp_path_factory):
    return run_fixture(tmp_path_factory.mktemp("acc") / "run", *ACCUMULATE)


@pytest.mark.slow
def test_accumulation_takes_one_step_per_window_and_is_recorded(accumulated):
    steps = [r["step"] for r in accumulated.fingerprints()]
    assert steps == list(range(1, 10))  # 3 epochs x 3 windows
    assert accumulated.manifest["training"] == {
        "accumulate_grad_batches": 5,
        "gradient_clip_val": 0.5,
        "precision": "32-true",
        "compile": False,
        "monitor": None,
        "monitor_mode": "min",
        "early_stopping_patience": None,
    }
    assert accumulated.manifest["result"]["steps"] == 9


@pytest.mark.slow
def test_accumulation_and_clipping_change_the_bits(accumulated, tmp_path):
    """Each setting is live: without clipping (same windows) the weights differ."""
    unclipped = run_fixture(tmp_path / "noclip", *ACCUMULATE[:1], ACCUMULATE[2])
    assert [r["batch"] for r in unclipped.fingerprints()] == [
        r["batch"] for r in accumulated.fingerprints()
    ]
    assert unclipped.weights != accumulated.weights


@pytest.mark.slow
def test_accumulation_reruns_and_other_worker_counts_give_the_same_bits(accumulated, tmp_path):
    same_bits(accumulated, run_fixture(tmp_path / "again", *ACCUMULATE))
    same_bits(accumulated, run_fixture(tmp_path / "workers", *ACCUMULATE, "repro.num_workers=2"))


@pytest.mark.slow
def test_sigkill_in_an_accumulating_epoch_resumes_to_the_same_bits(accumulated, tmp_path):
    """The checkpoint of step 4 sits after batch 5 of epoch 1; the kill comes after step 5 (a full window
    later), so the resume restarts that window at its first batch and then takes the short last window."""
    killed = run_fixture(tmp_path / "run", *ACCUMULATE, env={KILL: "5"}, check=False)
    assert killed.proc.returncode == -9
    run_fixture(tmp_path / "run", "train.resume=auto")
    same_bits(accumulated, killed)
    assert killed.manifest["resumes"][-1]["self_check"] == {
        "exact": True,
        "steps_checked": 1,
        "steps_pending": 1,
    }
    assert killed.manifest["resumes"][-1]["from_step"] == 4


def verify_is_identical(run, tmp_path) -> None:
    """``repro verify`` of ``run`` (a full replay in a new process) says IDENTICAL."""
    verify_identical(run.dir, tmp_path / "replay", entry=FIXTURE)


@pytest.mark.slow
def test_verify_of_an_accumulating_run_is_identical(accumulated, tmp_path):
    verify_is_identical(accumulated, tmp_path)


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("train.accumulate_grad_batches=0", "an int in [1, 1000000]"),
        ("train.gradient_clip_val=0", "a finite float > 0 or null"),
        ("train.gradient_clip_val=-1.5", "a finite float > 0 or null"),
        ("train.precision=bf16", "32-true, bf16-mixed or 16-mixed"),
        ("train.monitor_mode=up", "min or max"),
        ("train.early_stopping_patience=3", "null while train.monitor is null"),
        ("train.monitor=nope", "a metric of the epoch rows (train_acc, train_loss, val_acc)"),
    ],
)
def test_bad_step_settings_are_one_line_naming_the_key(tmp_path, override, allowed):
    out = run_fixture(tmp_path / "run", override, check=False)
    assert out.proc.returncode == 2 and "Traceback" not in out.proc.stderr, out.proc.stderr
    key = override.split("=")[0]
    assert key in out.proc.stderr and allowed in out.proc.stderr


def kill_and_resume(tmp_path, *overrides, at: int = 8):
    """Kill after step ``at`` (the checkpoint of step 5 is mid-epoch), resume, return the run."""
    killed = run_fixture(tmp_path / "killed", *overrides, env={KILL: str(at)}, check=False)
    assert killed.proc.returncode == -9
    run_fixture(tmp_path / "killed", "train.resume=auto")
    assert killed.manifest["resumes"][-1]["self_check"]["exact"] is True
    return killed


# Each setting: workers 0 and 2 give the same bits, `repro verify` (a rerun in a new process, compared
# step by step and by the final weights) says IDENTICAL, and a SIGKILL mid-epoch resumes to the same bits.
@pytest.mark.slow
def test_bf16_mixed_keeps_the_guarantees_and_differs_from_32_true(default_fixture_run, tmp_path):
    bf16 = run_fixture(tmp_path / "bf16", "train.precision=bf16-mixed")
    assert bf16.manifest["training"]["precision"] == "bf16-mixed"
    assert (
        bf16.fingerprints()[0]["loss"] != default_fixture_run.fingerprints()[0]["loss"]
    )  # autocast is live
    same_bits(
        bf16, run_fixture(tmp_path / "w2", "train.precision=bf16-mixed", "repro.num_workers=2")
    )
    verify_is_identical(bf16, tmp_path)
    same_bits(bf16, kill_and_resume(tmp_path, "train.precision=bf16-mixed"))


FP16 = ("train.precision=16-mixed", "train.gradient_clip_val=1.0")


@pytest.mark.slow
def test_16_mixed_tracks_its_grad_scaler_and_keeps_the_guarantees(tmp_path):
    """The loss scale is kit state: in every checkpoint, restored on resume."""
    fp16 = run_fixture(tmp_path / "fp16", *FP16)
    ckpt = sorted((fp16.dir / "checkpoints").iterdir())[-1]
    _, state = load_checkpoint(ckpt)
    assert state["objects"]["grad_scaler"]["scale"] > 0
    same_bits(fp16, run_fixture(tmp_path / "w2", *FP16, "repro.num_workers=2"))
    verify_is_identical(fp16, tmp_path)
    same_bits(fp16, kill_and_resume(tmp_path, *FP16))


@pytest.mark.slow
def test_compile_keeps_the_guarantees(tmp_path):
    """torch.compile on CPU (inductor, random ops left to the eager RNG that checkpoints save): a
    SIGKILL + resume gives the bits of the uninterrupted run. Loader workers 0/2 and ``repro verify``
    of compiled runs: tests/e2e/test_step_options_examples.py, on both examples."""
    compiled = run_fixture(tmp_path / "compiled", "train.compile=true")
    assert compiled.manifest["training"]["compile"] is True
    same_bits(compiled, kill_and_resume(tmp_path, "train.compile=true"))


@pytest.mark.slow
def test_a_compiler_that_does_not_work_is_one_line(tmp_path):
    env = {"CXX": "/bin/false", "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    out = run_fixture(tmp_path / "run", "train.compile=true", env=env, check=False)
    assert out.proc.returncode == 2 and "Traceback" not in out.proc.stderr, out.proc.stderr
    assert (
        "train.compile=True is not allowed: expected false: torch.compile does not work here"
        in (out.proc.stderr)
    )


#: Best by val_acc, patience 2: val_acc peaks at epoch 3 (steps 25..36) and the run stops after epoch 5.
EARLY = (
    "train.epochs=10",
    "train.monitor=val_acc",
    "train.monitor_mode=max",
    "train.early_stopping_patience=2",
)


@pytest.mark.slow
def test_best_checkpoint_and_early_stopping_survive_a_sigkill(tmp_path):
    """Killed in epoch 5 (after the best epoch 3, before the stop), the resumed run restores the best
    value and the patience counter: it stops after the same epoch with the same best.pt bytes."""
    ref = run_fixture(tmp_path / "ref", *EARLY)
    best = ref.manifest["best"]
    epochs = [r for r in ref.metrics() if r["split"] == "epoch"]
    assert len(epochs) == 5 and best["value"] == epochs[2]["val_acc"] and best["epoch"] == 2
    assert best["stopped_early"] is True and ref.manifest["result"]["steps"] == 60
    assert (
        ref.dir / "checkpoints" / "best.pt"
    ).read_bytes() != ref.weights  # epoch 3's, not the last
    killed = run_fixture(tmp_path / "killed", *EARLY, env={KILL: "52"}, check=False)
    assert killed.proc.returncode == -9
    run_fixture(tmp_path / "killed", "train.resume=auto")
    same_bits(ref, killed)
    assert killed.manifest["best"] == best
    best_pt = (killed.dir / "checkpoints" / "best.pt").read_bytes()
    assert best_pt == (ref.dir / "checkpoints" / "best.pt").read_bytes()
    weights = torch.load(killed.dir / "checkpoints" / "best.pt", weights_only=True)
    assert set(weights) == {"0.weight", "0.bias", "3.weight", "3.bias"}
