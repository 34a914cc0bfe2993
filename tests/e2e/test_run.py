"""The run object on the kit's fixture experiment: reruns, workers, SIGKILL + resume, the resume self-check,
fault injection, the run-directory lock and the in-process (notebook) API. Separate processes throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURE_PATH, REPO, TIME_FIELDS, clean_env, run_fixture

pytestmark = pytest.mark.slow
KILL = "REPRO_FAULT_KILL_AT_STEP"


def same_bits(a, b) -> None:
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_fixture(tmp_path_factory.mktemp("ref") / "run")


def test_rerun_and_other_worker_counts_give_the_same_bits(reference, tmp_path):
    same_bits(reference, run_fixture(tmp_path / "again"))
    same_bits(reference, run_fixture(tmp_path / "workers", "repro.num_workers=2"))
    row = reference.metrics()[-1]
    assert {"train_loss", "train_acc", "val_acc"} <= set(
        row
    )  # the user's metrics, nothing hard-wired
    assert reference.manifest["result"]["val_acc"] == row["val_acc"]


def test_sigkill_then_resume_is_exact_and_checks_itself(reference, tmp_path):
    killed = run_fixture(tmp_path / "run", env={KILL: "8"}, check=False)
    assert killed.proc.returncode == -9
    assert [r["step"] for r in killed.fingerprints()][-1] == 8  # it died after recording steps 6..8
    resumed = run_fixture(tmp_path / "run", "train.resume=auto")
    assert resumed.proc.returncode == 0
    run = killed  # the resume continues in the run's own directory
    same_bits(reference, run)
    check = run.manifest["resumes"][-1]["self_check"]
    assert check == {"exact": True, "steps_checked": 3, "steps_pending": 3}
    assert run.manifest["resume_exact"] is True and run.manifest["status"] == "completed"


def test_a_resume_of_too_little_state_is_reported_not_exact(tmp_path):
    """The scheduler is left out of run.track on purpose: its step count restarts on resume, so the
    learning rate of step 9 differs and the self-check names that step."""
    run_dir = tmp_path / "run"
    run_fixture(run_dir, "train.track_scheduler=false", env={KILL: "10"}, check=False)
    resumed = run_fixture(run_dir, "train.resume=auto")
    manifest = json.loads((run_dir / "run.json").read_text())
    check = manifest["resumes"][-1]["self_check"]
    assert (
        check["exact"] is False and check["step"] == 9 and check["quantity"] in ("params", "loss")
    )
    assert manifest["resume_exact"] is False
    assert "RESUME IS NOT EXACT: at step 9" in resumed.proc.stdout + resumed.proc.stderr


def test_fault_hooks_live_in_the_kit_not_in_the_project():
    found = subprocess.run(
        ["grep", "-rE", "kill_at_step|perturb", "conf", "src/experiment"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, found.stdout  # grep: 1 means nothing found


def test_a_bad_fault_variable_is_one_line(tmp_path):
    out = run_fixture(tmp_path / "run", env={"REPRO_FAULT_PERTURB": "nope@3"}, check=False)
    assert out.proc.returncode == 2 and "Traceback" not in out.proc.stderr
    assert (
        "REPRO_FAULT_PERTURB='nope' is not allowed: expected a parameter of the model"
        in out.proc.stderr
    )


def test_a_locked_run_directory_is_refused_naming_the_holder(reference, tmp_path):
    from repro.run.lock import RunLock

    run_dir = tmp_path / "run"
    run_fixture(run_dir, env={KILL: "8"}, check=False)
    before = sorted(p.name for p in (run_dir / ".hydra").iterdir())
    lock = RunLock.acquire(run_dir)
    try:
        out = run_fixture(run_dir, "train.resume=auto", check=False)
    finally:
        lock.release()
    assert out.proc.returncode == 2
    import os

    assert f"is in use by another process (pid {os.getpid()})" in out.proc.stderr
    assert "Traceback" not in out.proc.stderr
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == before  # nothing half-written
    assert json.loads((run_dir / "run.json").read_text()).get("resumes") is None


NOTEBOOK = """
import sys
from repro import start_run
from repro_fixture.loop import train
from repro_fixture.train import register
with start_run(sys.argv[1], overrides=sys.argv[3:], run_dir=sys.argv[2], register=register) as run:
    train(run)
"""


def test_start_run_from_python_gives_the_cli_bits_and_records_what_cannot_hold(reference, tmp_path):
    conf = FIXTURE_PATH / "repro_fixture" / "conf"
    env = clean_env()  # no PYTHONHASHSEED: a running interpreter cannot take the pin
    out = subprocess.run(
        [sys.executable, "-c", NOTEBOOK, str(conf), str(tmp_path / "nb")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "nb"
    assert (
        run_dir / "weights.pt"
    ).read_bytes() == reference.weights  # this model's bits ignore hash order
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["launch"] == "in-process"
    pin = manifest["determinism"]["settings"]["env.PYTHONHASHSEED"]
    assert pin["took_effect"] is False and pin["note"].startswith("in-process run (no relaunch)")
    assert manifest["determinism"]["in_process"] is True
    assert (Path(run_dir) / ".lock").read_text() != ""  # the lock file names the pid that held it


def test_run_files_are_readable_by_the_group_under_the_default_umask(reference):
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.yaml", "run.json", "metrics.jsonl", "fingerprints.jsonl", "weights.pt"):
        mode = stat.S_IMODE((reference.dir / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))
    for ckpt in (reference.dir / "checkpoints").iterdir():
        assert stat.S_IMODE(ckpt.stat().st_mode) == 0o666 & ~umask, ckpt.name


def test_epoch_rows_carry_the_timing_fields_that_comparisons_leave_out(reference):
    rows = [json.loads(x) for x in (reference.dir / "metrics.jsonl").read_text().splitlines()]
    assert {k for r in rows for k in r} & set(TIME_FIELDS) == set(TIME_FIELDS)


_FORK_AND_DIE = """
import os, signal, sys, time
from repro.run.lock import RunLock
lock = RunLock.acquire(sys.argv[1])
child = os.fork()
if child == 0:  # a DataLoader worker that outlives its run by a few seconds
    time.sleep(60)
    os._exit(0)
with open(sys.argv[2], "w") as f:
    f.write(str(child))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_forked_child_that_outlives_a_killed_run_does_not_hold_its_lock(tmp_path):
    import signal

    from repro.run.lock import RunLock

    run_dir, pid_file = tmp_path / "run", tmp_path / "child.pid"
    cmd = [sys.executable, "-c", _FORK_AND_DIE, str(run_dir), str(pid_file)]
    with open(tmp_path / "stderr", "w") as err:  # not a pipe: the orphan would keep it open
        died = subprocess.run(cmd, env=clean_env(), stdout=err, stderr=err, timeout=60)
    assert died.returncode == -signal.SIGKILL, (tmp_path / "stderr").read_text()
    orphan = int(pid_file.read_text())
    try:
        os.kill(orphan, 0)  # still alive, sleeping
        RunLock.acquire(run_dir).release()  # the run can be resumed at once all the same
    finally:
        os.kill(orphan, signal.SIGKILL)
