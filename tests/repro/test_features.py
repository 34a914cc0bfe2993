"""How an optimizer step is taken (gradient accumulation, clipping), on the kit's fixture experiment:
reruns, worker counts, SIGKILL + resume in the middle of an epoch and `repro verify`, in separate processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import FIXTURE, clean_env, run_fixture

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


@pytest.mark.slow
def test_verify_of_an_accumulating_run_is_identical(accumulated, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "repro",
            "verify",
            str(accumulated.dir),
            "--out",
            str(tmp_path / "replay"),
            "--quiet",
            "--entry",
            FIXTURE,
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "IDENTICAL"


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("train.accumulate_grad_batches=0", "an int in [1, 1000000]"),
        ("train.gradient_clip_val=0", "a finite float > 0 or null"),
        ("train.gradient_clip_val=-1.5", "a finite float > 0 or null"),
    ],
)
def test_bad_step_settings_are_one_line_naming_the_key(tmp_path, override, allowed):
    out = run_fixture(tmp_path / "run", override, check=False)
    assert out.proc.returncode == 2 and "Traceback" not in out.proc.stderr, out.proc.stderr
    key = override.split("=")[0]
    assert key in out.proc.stderr and allowed in out.proc.stderr
