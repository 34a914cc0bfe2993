"""Ordered, stateful data: a recurrent task read in order with truncated backpropagation through time
(``repro_fixture.recurrent``: ``repro.TokenWindows`` streams, a GRU hidden state carried across batches,
tracked as a dict holding a tensor, reset where ``loader.at_epoch_start``) keeps the guarantees: a
rerun and loader workers give the same bits, a SIGKILL mid-epoch + resume is exact, and the two
classic porting mistakes (the hidden state not tracked; reset at the top of every epoch body) are
caught by the resume's self-check, which names the loss and lists the usual causes.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_main

pytestmark = pytest.mark.slow
RECURRENT = "repro_fixture.recurrent"
KILL = "REPRO_FAULT_KILL_AT_STEP"
# 62 steps per epoch: a kill at step 20 is mid-epoch, after the checkpoint of step 14
KILL_AT = "20"


def run(run_dir, *overrides, **kwargs):
    return run_main(run_dir, *overrides, module=RECURRENT, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(tmp_path_factory.mktemp("recurrent") / "run")


def same_bits(a, b):
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()


def test_it_learns_and_reruns_with_any_workers_give_the_same_bits(reference, tmp_path):
    rows = [r for r in reference.metrics() if "train_loss" in r and r.get("epoch") is not None]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    same_bits(reference, run(tmp_path / "again"))
    same_bits(reference, run(tmp_path / "workers", "repro.num_workers=2"))


def test_sigkill_mid_epoch_then_resume_is_exact(reference, tmp_path):
    run_dir = tmp_path / "run"
    killed = run(run_dir, check=False, env={KILL: KILL_AT})
    assert killed.proc.returncode == -9
    resumed = run(run_dir, "train.resume=auto")
    same_bits(reference, resumed)
    assert resumed.manifest["resume_exact"] is True


@pytest.mark.parametrize("mistake", ["train.track_hidden=false"], ids=["untracked"])
def test_the_classic_porting_mistakes_are_caught_by_the_self_check(tmp_path, mistake):
    """The hidden state left out of run.track (the other classic mistake, a reset at the top of every
    epoch body, ``train.reset_always=true``, is caught the same way: a resumed step's loss differs)."""
    run_dir = tmp_path / "run"
    run(run_dir, mistake, check=False, env={KILL: KILL_AT})
    resumed = run(run_dir, "train.resume=auto", check=False)
    manifest = json.loads((run_dir / "run.json").read_text())
    check = manifest["resumes"][-1]["self_check"]
    # the first step after the checkpoint already differs: its loss, from the lost hidden state
    assert check["exact"] is False and check["step"] == 15 and check["quantity"] == "loss"
    assert resumed.proc.returncode == 2
    out = resumed.proc.stdout + resumed.proc.stderr
    assert "hidden state" in out and "Traceback" not in out
