"""The language-model example (``experiment=lm``) keeps every guarantee the classifier keeps, against one
shared uninterrupted run: its metrics (perplexity, tokens/s) reach the record, a rerun and loader
workers give the same bits, a SIGKILL + resume is exact, ``repro verify`` says IDENTICAL, and the
sampler prints the same text every time. (Under torchrun: test_torchrun.py.)"""

from __future__ import annotations

import sys

import pytest

from conftest import run_main, run_module, verify_identical

pytestmark = pytest.mark.slow
# 2 epochs of 15 steps: small text, the same model
RUN = [
    "experiment=lm",
    "train.epochs=2",
    "data.train_chars=30000",
    "data.val_chars=3000",
    "train.checkpoint_every=5",
    "train.warmup_steps=5",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("lm") / "run", *RUN)


def same_bits(a, b):
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()


def test_its_metrics_reach_the_record_and_perplexity_falls(reference):
    result = reference.manifest["result"]
    assert {"val_loss", "val_ppl", "train_loss", "train_ppl", "train_acc"} <= set(result)
    epochs = [r for r in reference.metrics() if "val_ppl" in r]
    assert len(epochs) == 2 and epochs[1]["val_ppl"] < epochs[0]["val_ppl"]
    # throughput counts tokens, and the epoch line says so
    assert all("tokens_per_s" in r and "samples_per_s" not in r for r in epochs)
    assert "tokens/s" in reference.proc.stdout + reference.proc.stderr
    assert "sampled text (seed 0):" in reference.proc.stdout + reference.proc.stderr
    # the corpus's content is in the record
    assert set(reference.manifest["data"]) == {"train", "val"}


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


def sample(run_dir, *args):
    cmd = [sys.executable, "-m", "experiment.sample", f"run={run_dir}", *args]
    return run_module(cmd, cwd=run_dir.parent)


def test_the_sampler_prints_the_same_text_every_time(reference):
    first, second = sample(reference.dir, "tokens=60"), sample(reference.dir, "tokens=60")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.startswith("the ")
    other = sample(reference.dir, "tokens=60", "seed=1")
    assert other.returncode == 0 and other.stdout != first.stdout
    for bad, key in (("prompt=XYZ", "prompt='XYZ'"), ("tokens=0", "tokens='0'")):
        refused = sample(reference.dir, bad)
        assert refused.returncode == 2 and refused.stderr.startswith(f"error: {key} is not allowed")
