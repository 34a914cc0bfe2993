"""torchrun with 2 CPU processes (gloo): reproducible, rank-invariant data, one record, exact resume."""

from __future__ import annotations

import csv
import sys

import pytest

from conftest import QUICK, run_main, run_module, run_tool, torchrun

pytestmark = pytest.mark.slow
RUN = [*QUICK, "train.epochs=3", "train.checkpoint_every=5"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The reference 2-rank run, shared by the tests that compare with it."""
    return torchrun(tmp_path_factory.mktemp("ddp") / "run", *RUN)


def test_two_process_run_reproduces_itself(two_ranks, tmp_path):
    again = torchrun(tmp_path / "again", *RUN)
    assert again.weights == two_ranks.weights
    assert again.fingerprints() == two_ranks.fingerprints()
    m = two_ranks.manifest
    assert m["status"] == "completed" and m["distributed"] == {"world_size": 2, "backend": "gloo"}


def test_one_run_directory_written_by_rank_zero_only(two_ranks):
    run_dir = two_ranks.dir
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra",
        ".lock",
        "checkpoints",
        "config.yaml",
        "fingerprints.jsonl",
        "logs",
        "metrics.jsonl",
        "run.json",
        "train.log",
        "weights.pt",
    ]
    # The example's default logger (csv) writes on rank 0 only: each metrics row once.
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["metrics.csv"]
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        csv_steps = [(r["split"], int(r["step"])) for r in csv.DictReader(f)]
    assert csv_steps == [(r["split"], r["step"]) for r in two_ranks.metrics()]
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [
        "run"
    ]  # no stray outputs/ from other ranks
    steps = [r["step"] for r in two_ranks.fingerprints()]
    assert steps == list(range(1, 25))  # one row per step, not one per rank
    assert two_ranks.proc.stdout.count("weights sha256:") == 1


def test_each_global_step_sees_the_same_samples_as_one_process(two_ranks, tmp_path):
    """Same global batch size: per step, the same set of samples with the same augmented tensors."""
    one = run_main(tmp_path / "one", *RUN)
    a, b = one.fingerprints(), two_ranks.fingerprints()
    assert len(a) == len(b) == 24
    assert [r["batch"] for r in a] == [r["batch"] for r in b]
    other_seed = run_main(tmp_path / "other", *RUN, "train.max_steps=1", "repro.seed=99")
    assert other_seed.fingerprints()[0]["batch"] != a[0]["batch"]  # the digest does see the data


def test_sigkill_then_resume_under_torchrun_gives_identical_bits(two_ranks, tmp_path):
    run_dir = tmp_path / "run"
    killed = torchrun(run_dir, *RUN, check=False, env={"REPRO_FAULT_KILL_AT_STEP": "7"})
    assert killed.proc.returncode != 0 and killed.manifest["status"] == "running"
    before = (run_dir / "run.json").read_bytes()
    alone = run_module(  # one process for a 2-rank run
        [sys.executable, "-m", "experiment.train", f"train.resume={run_dir}"], cwd=tmp_path
    )
    assert alone.returncode == 2 and "written by 2 rank(s)" in alone.stderr
    assert (run_dir / "run.json").read_bytes() == before  # refused before anything was written
    resumed = torchrun(run_dir, f"train.resume={run_dir}")
    assert resumed.weights == two_ranks.weights
    assert resumed.fingerprints() == two_ranks.fingerprints()
    assert [r["from_step"] for r in resumed.manifest["resumes"]] == [5]
    assert (
        resumed.manifest["resume_exact"] is True
    )  # rank 0 checked the steps the dead job had recorded


def test_the_regression_example_under_torchrun_reproduces_itself(tmp_path):
    a = torchrun(tmp_path / "a", "experiment=regress", "train.epochs=2", "data.train_size=512")
    b = torchrun(tmp_path / "b", "experiment=regress", "train.epochs=2", "data.train_size=512")
    assert a.weights == b.weights and a.fingerprints() == b.fingerprints()
    assert {"val_mse", "val_r2"} <= set(a.manifest["result"])


def test_ranks_that_drift_apart_fail_the_run_naming_the_step(tmp_path):
    """perturb adds OS-entropy noise on each rank: different on each, so the replicas disagree."""
    run = torchrun(
        tmp_path / "run", *RUN, check=False, env={"REPRO_FAULT_PERTURB": "classifier.weight@4"}
    )
    assert run.proc.returncode != 0
    assert run.manifest["status"] == "failed"
    assert "step 4: the params digest differs across ranks" in run.manifest["error"]
    assert [r["step"] for r in run.fingerprints()] == [1, 2, 3]


def test_repro_verify_replays_a_torchrun_run_with_its_ranks(two_ranks, tmp_path):
    replay = tmp_path / "replay"
    out = run_tool("verify", two_ranks.dir, "--steps", 6, "--quiet", "--out", replay, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "IDENTICAL"
    assert "environment (recorded vs replay): no differences" in out.stdout


def test_a_null_seed_is_drawn_once_and_shared_by_every_rank(tmp_path):
    """Each rank drawing its own seed would build different models: the per-step rank check would fail."""
    run = torchrun(tmp_path / "run", *QUICK, "train.max_steps=3", "repro.seed=null")
    m = run.manifest
    assert (
        m["status"] == "completed" and m["seed_source"] == "entropy" and isinstance(m["seed"], int)
    )
    assert [r["step"] for r in run.fingerprints()] == [
        1,
        2,
        3,
    ]  # every step passed the cross-rank check
