"""The run directory contract: what a run writes (its files, its record, the epoch rows, who may read
them), what it never overwrites, its lock (a second process is refused, naming the holder; a killed
run's orphan does not hold it) and what it records when it is interrupted. On the classifier example
and the kit's fixture experiment, each run a ``python -m`` process.

Elsewhere: secrets in the run's files (tests/e2e/test_secrets.py), a sweep's directories
(test_multirun.py), what the loggers write (test_loggers.py), a hostile run directory given to resume
(test_resume.py) and to the tools (test_untrusted_runs.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import QUICK, TIME_FIELDS, clean_env, run_fixture

pytestmark = pytest.mark.slow


def test_run_directory_contract(run_train):
    run = run_train("r", *QUICK, "train.max_steps=5", env={"MY_API_TOKEN": "s3cr3t-value"})
    files = {p.name for p in run.dir.iterdir()}
    assert {
        "config.yaml",
        "run.json",
        "metrics.jsonl",
        "fingerprints.jsonl",
        "train.log",
        ".hydra",
        "weights.pt",
    } <= files
    m = run.manifest
    assert m["status"] == "completed"
    assert m["seed"] == 1234
    assert m["weights_sha256"] == hashlib.sha256(run.weights).hexdigest()
    assert m["wall_time_s"] > 0
    assert m["determinism"]["mode"] == "strict" and m["determinism"]["all_took_effect"] is True
    env = m["environment"]
    assert (
        env["packages"]["torch"] and env["packages"]["hydra-core"] and env["packages"]["omegaconf"]
    )
    assert env["cpu"]["aten_capability"] and env["cpu"]["num_threads"] >= 1
    assert env["env"]["PYTHONHASHSEED"] == "0"
    assert "s3cr3t-value" not in (run.dir / "run.json").read_text()
    steps = [row["step"] for row in run.fingerprints()]
    assert steps == [1, 2, 3, 4, 5]
    assert all(re.fullmatch(r"[0-9a-f]{16}", r["params"]) for r in run.fingerprints())
    # The command line tells the user where the run is and what it produced.
    assert str(run.dir) in run.proc.stdout and m["weights_sha256"] in run.proc.stdout
    assert re.search(r"epoch 1/2 .*loss .*acc .*samples/s", run.proc.stdout)


def test_existing_run_is_never_overwritten(run_train):
    first = run_train("r", *QUICK, "train.max_steps=2")
    before = {p.relative_to(first.dir): p.read_bytes() for p in first.dir.rglob("*") if p.is_file()}
    again = run_train("r", *QUICK, "train.max_steps=3", check=False)
    assert again.proc.returncode != 0
    assert "already holds a run" in again.proc.stderr
    after = {p.relative_to(first.dir): p.read_bytes() for p in first.dir.rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.parametrize(
    ("signum", "exit_code", "reason"),
    [
        (signal.SIGINT, 130, "KeyboardInterrupt"),  # Ctrl-C
        (signal.SIGTERM, 143, "SIGTERM"),  # a scheduler preempting the job
    ],
)
def test_interrupted_run_is_recorded_as_failed(tmp_path, signum, exit_code, reason):
    """Mid-training: run.json says failed, with the reason, and no weights hash; never 'running' forever."""
    run_dir = tmp_path / "r"
    env = clean_env()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiment.train",
            f"hydra.run.dir={run_dir}",
            *QUICK,
            "train.epochs=200",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr.txt").open("w"),
    )
    fp = run_dir / "fingerprints.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (fp.exists() and fp.read_text().count("\n") >= 3):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal was sent"
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = "still running 120 s after the signal"
    steps = fp.read_text().count("\n")
    assert code == exit_code, (steps, (tmp_path / "stderr.txt").read_text()[-3000:])
    m = json.loads((run_dir / "run.json").read_text())
    assert m["status"] == "failed" and reason in m["error"]
    assert m["weights_sha256"] is None


def test_git_state_of_the_code_is_recorded(run_train):
    """Recorded even when the run is launched from outside the checkout (the tests run from a temp dir)."""
    git = run_train("r", *QUICK, "train.max_steps=1").manifest["environment"]["git"]
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)


def test_the_epoch_rows_hold_the_users_metrics_and_the_record_the_result(default_fixture_run):
    row = default_fixture_run.metrics()[-1]
    # the user's metrics, nothing hard-wired
    assert {"train_loss", "train_acc", "val_acc"} <= set(row)
    assert default_fixture_run.manifest["result"]["val_acc"] == row["val_acc"]


def test_epoch_rows_carry_the_timing_fields_that_comparisons_leave_out(default_fixture_run):
    rows = [
        json.loads(x) for x in (default_fixture_run.dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert {k for r in rows for k in r} & set(TIME_FIELDS) == set(TIME_FIELDS)


def test_run_files_are_readable_by_the_group_under_the_default_umask(default_fixture_run):
    umask = os.umask(0)
    os.umask(umask)
    run_dir = default_fixture_run.dir
    for name in ("config.yaml", "run.json", "metrics.jsonl", "fingerprints.jsonl", "weights.pt"):
        mode = stat.S_IMODE((run_dir / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))
    for ckpt in (run_dir / "checkpoints").iterdir():
        assert stat.S_IMODE(ckpt.stat().st_mode) == 0o666 & ~umask, ckpt.name


def test_a_locked_run_directory_is_refused_naming_the_holder(tmp_path):
    from repro.run.lock import RunLock

    run_dir = tmp_path / "run"
    run_fixture(run_dir, env={"REPRO_FAULT_KILL_AT_STEP": "8"}, check=False)
    before = sorted(p.name for p in (run_dir / ".hydra").iterdir())
    lock = RunLock.acquire(run_dir)
    try:
        out = run_fixture(run_dir, "train.resume=auto", check=False)
    finally:
        lock.release()
    assert out.proc.returncode == 2
    assert f"is in use by another process (pid {os.getpid()})" in out.proc.stderr
    assert "Traceback" not in out.proc.stderr
    # nothing half-written
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == before
    assert json.loads((run_dir / "run.json").read_text()).get("resumes") is None


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
    from repro.run.lock import RunLock

    run_dir, pid_file = tmp_path / "run", tmp_path / "child.pid"
    cmd = [sys.executable, "-c", _FORK_AND_DIE, str(run_dir), str(pid_file)]
    # not a pipe: the orphan would keep it open
    with open(tmp_path / "stderr", "w") as err:
        died = subprocess.run(cmd, env=clean_env(), stdout=err, stderr=err, timeout=60)
    assert died.returncode == -signal.SIGKILL, (tmp_path / "stderr").read_text()
    orphan = int(pid_file.read_text())
    try:
        # still alive, sleeping
        os.kill(orphan, 0)
        # the run can be resumed at once all the same
        RunLock.acquire(run_dir).release()
    finally:
        os.kill(orphan, signal.SIGKILL)
