"""Kill the main job with SIGKILL, resume it, and get the bits of an uninterrupted run.

The kit's fault injection ``REPRO_FAULT_KILL_AT_STEP=N`` makes the process SIGKILL
itself right after step N is recorded (before any checkpoint of that step),
as a preempted job dies. With the quick config an epoch is 8 steps and
checkpoints are written every 5 steps and at each epoch end.
"""

from __future__ import annotations

import pytest

from conftest import QUICK, run_main

pytestmark = pytest.mark.slow
RUN = [*QUICK, "train.epochs=3", "train.checkpoint_every=5"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("ref") / "run", *RUN)


def assert_same_bits(run, reference):
    assert run.manifest["status"] == "completed"
    assert run.weights == reference.weights
    assert run.fingerprints() == reference.fingerprints()  # every step, once, in order
    assert run.metrics() == reference.metrics()


KILL = "REPRO_FAULT_KILL_AT_STEP"


def killed(run_dir, kill_at, *extra):
    run = run_main(run_dir, *RUN, *extra, check=False, env={KILL: str(kill_at)})
    assert run.proc.returncode == -9, run.proc.stderr  # SIGKILL
    assert run.manifest["status"] == "running"
    return run


def resume(run_dir, *extra, args=None, env=None):
    """``train.resume=RUN_DIR``: no hydra.run.dir; the run continues in its own directory."""
    import sys

    from conftest import Run, run_module

    cmd = [sys.executable, "-m", "experiment.train", f"train.resume={run_dir}", *extra]
    return Run(run_dir, run_module(cmd, cwd=run_dir.parent, env=env))


@pytest.mark.parametrize(
    ("kill_at", "workers"),
    [
        (8, ["repro.num_workers=2"]),  # last step of an epoch, before its checkpoint
        (
            11,
            ["repro.num_workers=2", "repro.persistent_workers=true"],
        ),  # mid-epoch, persistent workers
    ],
)
def test_sigkill_then_resume_gives_identical_bits(tmp_path, reference, kill_at, workers):
    run_dir = tmp_path / "run"
    killed(run_dir, kill_at, *workers)
    hydra_files = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir() if p.is_file()}
    run = resume(run_dir, *workers)
    assert run.proc.returncode == 0, run.proc.stderr
    assert_same_bits(run, reference)
    assert (
        run.manifest["resume_exact"] is True and run.manifest["resumes"][-1]["self_check"]["exact"]
    )
    assert {
        p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir() if p.is_file()
    } == hydra_files
    (entry,) = run.manifest["resumes"]
    assert (
        entry["from_step"] == max(s for s in (5, 10, 15, 20, 8, 16, 24) if s < kill_at)
        and entry["at"]
    )


def test_killed_twice_and_resumed_with_other_workers(tmp_path, reference):
    run_dir = tmp_path / "run"
    killed(run_dir, 6)
    second = resume(run_dir, "repro.num_workers=2", env={KILL: "17"})
    assert second.proc.returncode == -9
    run = resume(run_dir, "repro.num_workers=1")
    assert run.proc.returncode == 0, run.proc.stderr
    assert_same_bits(run, reference)
    assert [r["from_step"] for r in run.manifest["resumes"]] == [5, 16]


def test_auto_starts_fresh_then_resumes(tmp_path, reference):
    run_dir = tmp_path / "run"
    killed(run_dir, 3, "train.resume=auto")  # dies before its first checkpoint
    killed(
        run_dir, 12, "train.resume=auto"
    )  # the same command line: starts fresh, old attempt moved aside
    assert len(list((run_dir / ".abandoned").iterdir())) == 1
    run = run_main(run_dir, *RUN, "train.resume=auto")  # and again: resumes from step 10
    assert_same_bits(run, reference)
    assert [r["from_step"] for r in run.manifest["resumes"]] == [10]
    again = run_main(run_dir, *RUN, "train.resume=auto")
    assert "already holds a completed run" in again.proc.stderr


def test_auto_falls_back_from_a_corrupt_newest_checkpoint(tmp_path, reference):
    run_dir = tmp_path / "run"
    killed(run_dir, 12, "train.resume=auto")
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    assert newest.name == "step-000000010.ckpt"
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    newest.write_bytes(bytes(raw))
    run = run_main(run_dir, *RUN, "train.resume=auto")
    assert "skipping checkpoint step-000000010.ckpt" in run.proc.stdout + run.proc.stderr
    assert [r["from_step"] for r in run.manifest["resumes"]] == [8]
    assert_same_bits(run, reference)


def test_overrides_that_change_the_result_are_refused(tmp_path):
    run_dir = tmp_path / "run"
    killed(run_dir, 7)
    before = (run_dir / "run.json").read_bytes()
    for override in ("optimizer.lr=0.5", "repro.seed=9", "repro=fast", "data.train_size=512"):
        run = resume(run_dir, override)
        assert run.proc.returncode == 2
        line = run.proc.stderr.strip()
        assert (
            line.startswith("error: ")
            and "would change the result" in line
            and len(line.splitlines()) == 1
        )
    assert (run_dir / "run.json").read_bytes() == before


@pytest.mark.parametrize(
    ("target", "message"), [("missing", "no such directory"), ("empty", "not a run directory")]
)
def test_resume_of_something_that_is_not_a_run(tmp_path, target, message):
    path = tmp_path / target
    if target == "empty":
        path.mkdir()
    run = resume(path)
    assert run.proc.returncode == 2 and message in run.proc.stderr


def test_a_portable_run_resumes_with_its_own_pins(tmp_path):
    """The resumed run's profile decides the process pins, not the command line's default profile."""
    ref = run_main(tmp_path / "ref", *RUN, "repro=portable", "train.checkpoint_every=2")
    run_dir = tmp_path / "run"
    killed(run_dir, 5, "repro=portable", "train.checkpoint_every=2")
    run = resume(run_dir)  # no profile on the command line
    assert run.proc.returncode == 0, run.proc.stderr
    assert_same_bits(run, ref)
    assert [r["from_step"] for r in run.manifest["resumes"]] == [4]
    steps = sorted(int(p.name[5:14]) for p in (run_dir / "checkpoints").iterdir())
    assert steps == [20, 22, 24]  # the run's own checkpoint_every=2 and keep 3, not the defaults
