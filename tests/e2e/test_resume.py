"""A run killed with SIGKILL and resumed gives the bits of an uninterrupted run, and says whether it did
(the resume self-check); what resume refuses (a changed result, something that is not a run, a record
file that is a planted link) and what it skips (a corrupt or junk checkpoint, stale partial files). On the kit's
fixture experiment and the classifier example, each run a ``python -m`` process.

The kit's fault injection ``REPRO_FAULT_KILL_AT_STEP=N`` makes the process SIGKILL itself right after
step N is recorded (before any checkpoint of that step), as a preempted job dies. The fixture's config:
3 epochs of 12 steps, a checkpoint every 5 steps. The classifier's quick config here: 3 epochs of 8
steps, a checkpoint every 5 steps and at each epoch end.

Resume with each step setting (accumulation windows, mixed precision, compile, best checkpoint and early
stopping): tests/e2e/test_step_options.py and test_step_options_examples.py; of the regression example:
test_regress_example.py; under torchrun: test_torchrun.py; with loggers: test_loggers.py; a locked run
directory: test_run_directory.py."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import FIXTURE, QUICK, Run, run_fixture, run_main, run_module

pytestmark = pytest.mark.slow
KILL = "REPRO_FAULT_KILL_AT_STEP"


def same_bits(a, b) -> None:
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()


# The fixture experiment.


def test_sigkill_then_resume_gives_the_bits_and_checks_itself(default_fixture_run, tmp_path):
    killed = run_fixture(tmp_path / "run", env={KILL: "8"}, check=False)
    assert killed.proc.returncode == -9
    assert [r["step"] for r in killed.fingerprints()][-1] == 8  # it died after recording steps 6..8
    resumed = run_fixture(tmp_path / "run", "train.resume=auto")
    assert resumed.proc.returncode == 0
    run = killed  # the resume continues in the run's own directory
    same_bits(default_fixture_run, run)
    check = run.manifest["resumes"][-1]["self_check"]
    assert check == {"exact": True, "steps_checked": 3, "steps_pending": 3}
    assert run.manifest["resume_exact"] is True and run.manifest["status"] == "completed"


def test_a_resume_of_too_little_state_is_reported_not_exact(tmp_path):
    """The scheduler is left out of run.track on purpose: its step count restarts on resume, so the
    learning rate of step 9 differs and the self-check names that step."""
    run_dir = tmp_path / "run"
    run_fixture(run_dir, "train.track_scheduler=false", env={KILL: "10"}, check=False)
    resumed = run_fixture(run_dir, "train.resume=auto", check=False)
    manifest = json.loads((run_dir / "run.json").read_text())
    check = manifest["resumes"][-1]["self_check"]
    assert (
        check["exact"] is False and check["step"] == 9 and check["quantity"] in ("params", "loss")
    )
    assert manifest["resume_exact"] is False
    assert "RESUME IS NOT EXACT: at step 9" in resumed.proc.stdout + resumed.proc.stderr
    # The run completed and is recorded, but the command fails: a cluster script can tell.
    assert manifest["status"] == "completed"
    assert resumed.proc.returncode == 2, resumed.proc.stdout + resumed.proc.stderr
    last = resumed.proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the resume is not exact: at step 9"), resumed.proc.stderr
    assert "train.accept_inexact_resume=true" in last
    assert "Traceback" not in resumed.proc.stdout + resumed.proc.stderr


def test_an_inexact_resume_the_user_accepts_exits_0(tmp_path):
    """``train.accept_inexact_resume=true`` on the resume's command line (a key allowed to change on
    resume): the same inexact resume, recorded as such, and exit status 0."""
    run_dir = tmp_path / "run"
    run_fixture(run_dir, "train.track_scheduler=false", env={KILL: "10"}, check=False)
    resumed = run_fixture(run_dir, "train.resume=auto", "train.accept_inexact_resume=true")
    assert resumed.proc.returncode == 0
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["resume_exact"] is False and manifest["status"] == "completed"


def test_a_run_directory_with_non_ascii_characters_resumes_exactly(default_fixture_run, tmp_path):
    run_dir = tmp_path / "rün-über_é"
    # Hydra's grammar takes such a path quoted; the kit must keep it quoted when it points Hydra at the run
    quoted = "'" + str(run_dir) + "'"
    killed = run_module(
        [sys.executable, "-m", FIXTURE, f"hydra.run.dir={quoted}"], cwd=tmp_path, env={KILL: "7"}
    )
    assert killed.returncode == -9, killed.stderr
    proc = run_module([sys.executable, "-m", FIXTURE, f"train.resume={quoted}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((run_dir / "run.json").read_text())
    assert (run_dir / "weights.pt").read_bytes() == default_fixture_run.weights and manifest[
        "resume_exact"
    ] is True


def test_record_files_are_never_written_through_a_planted_link(tmp_path):
    run_dir = tmp_path / "run"
    run_fixture(run_dir, env={KILL: "7"}, check=False)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    kept = (run_dir / "fingerprints.jsonl").read_text()
    (run_dir / "fingerprints.jsonl").unlink()
    os.symlink(outside, run_dir / "fingerprints.jsonl")
    out = run_fixture(run_dir, "train.resume=auto", check=False)
    assert out.proc.returncode == 2 and "Traceback" not in out.proc.stderr
    assert outside.read_text() == "keep me"
    assert "symbolic link" in out.proc.stderr
    assert kept  # the run had recorded steps before the link was planted


def test_stale_partial_files_are_removed_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    run_fixture(run_dir, env={KILL: "7"}, check=False)
    stale = [
        run_dir / ".run.json.abc123.tmp",
        run_dir / "checkpoints" / ".step-000000010.ckpt.xyz.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    run_fixture(run_dir, "train.resume=auto")
    assert not any(p.exists() for p in stale)


def test_a_huge_junk_checkpoint_is_refused_without_reading_it(tmp_path):
    """A 2 GB sparse file named like the newest checkpoint: refused after its first bytes, the older one used."""
    run_dir = tmp_path / "run"
    run_fixture(run_dir, env={KILL: "7"}, check=False)
    junk = run_dir / "checkpoints" / "step-000000006.ckpt"
    with open(junk, "wb") as f:
        f.truncate(2 << 30)
    out = run_fixture(run_dir, "train.resume=auto")
    assert "skipping checkpoint step-000000006.ckpt" in out.proc.stdout + out.proc.stderr
    assert [r["from_step"] for r in json.loads((run_dir / "run.json").read_text())["resumes"]] == [
        5
    ]


# The classifier example (``python -m experiment.train``), against one uninterrupted run.

RUN = [*QUICK, "train.epochs=3", "train.checkpoint_every=5"]


@pytest.fixture(scope="module")
def classifier_reference(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("ref") / "run", *RUN)


def assert_same_bits(run, reference):
    assert run.manifest["status"] == "completed"
    assert run.weights == reference.weights
    assert run.fingerprints() == reference.fingerprints()  # every step, once, in order
    assert run.metrics() == reference.metrics()


def killed(run_dir, kill_at, *extra):
    run = run_main(run_dir, *RUN, *extra, check=False, env={KILL: str(kill_at)})
    assert run.proc.returncode == -9, run.proc.stderr  # SIGKILL
    assert run.manifest["status"] == "running"
    return run


def resume(run_dir, *extra, args=None, env=None):
    """``train.resume=RUN_DIR``: no hydra.run.dir; the run continues in its own directory."""
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
def test_classifier_sigkill_then_resume_gives_identical_bits(
    tmp_path, classifier_reference, kill_at, workers
):
    run_dir = tmp_path / "run"
    killed(run_dir, kill_at, *workers)
    hydra_files = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir() if p.is_file()}
    run = resume(run_dir, *workers)
    assert run.proc.returncode == 0, run.proc.stderr
    assert_same_bits(run, classifier_reference)
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


def test_killed_twice_and_resumed_with_other_workers(tmp_path, classifier_reference):
    run_dir = tmp_path / "run"
    killed(run_dir, 6)
    second = resume(run_dir, "repro.num_workers=2", env={KILL: "17"})
    assert second.proc.returncode == -9
    run = resume(run_dir, "repro.num_workers=1")
    assert run.proc.returncode == 0, run.proc.stderr
    assert_same_bits(run, classifier_reference)
    assert [r["from_step"] for r in run.manifest["resumes"]] == [5, 16]


def test_auto_starts_fresh_then_resumes(tmp_path, classifier_reference):
    run_dir = tmp_path / "run"
    killed(run_dir, 3, "train.resume=auto")  # dies before its first checkpoint
    killed(
        run_dir, 12, "train.resume=auto"
    )  # the same command line: starts fresh, old attempt moved aside
    assert len(list((run_dir / ".abandoned").iterdir())) == 1
    run = run_main(run_dir, *RUN, "train.resume=auto")  # and again: resumes from step 10
    assert_same_bits(run, classifier_reference)
    assert [r["from_step"] for r in run.manifest["resumes"]] == [10]
    again = run_main(run_dir, *RUN, "train.resume=auto")
    assert "already holds a completed run" in again.proc.stderr


def test_auto_falls_back_from_a_corrupt_newest_checkpoint(tmp_path, classifier_reference):
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
    assert_same_bits(run, classifier_reference)


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
