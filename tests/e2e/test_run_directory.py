"""The run directory contract: what a run writes, and what it never overwrites."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import QUICK, clean_env, run_main, run_module

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


def test_csv_and_tensorboard_loggers_at_once_write_the_metrics_rows(run_train):
    run = run_train("r", "logger=[csv,tensorboard]", *QUICK)
    assert set(run.manifest["loggers"]) == {"csv", "tensorboard"}
    with open(run.dir / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    metrics = run.metrics(drop_time=False)
    assert [(r["split"], int(r["step"])) for r in rows] == [
        (m["split"], m["step"]) for m in metrics
    ]
    assert [float(r["val_acc"]) for r in rows if r["split"] == "epoch"] == [
        m["val_acc"] for m in metrics if m["split"] == "epoch"
    ]
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    (events,) = (run.dir / "logs" / "tensorboard").glob("events.out.tfevents.*")
    steps: dict[str, list[int]] = {}
    for event in EventFileLoader(str(events)).Load():
        for value in event.summary.value:
            steps.setdefault(value.tag, []).append(event.step)
    assert steps["epoch/val_acc"] == [8, 16]
    assert steps["train/loss"] == [m["step"] for m in metrics if m["split"] == "train"]


def test_existing_run_is_never_overwritten(run_train):
    first = run_train("r", *QUICK, "train.max_steps=2")
    before = {p.relative_to(first.dir): p.read_bytes() for p in first.dir.rglob("*") if p.is_file()}
    again = run_train("r", *QUICK, "train.max_steps=3", check=False)
    assert again.proc.returncode != 0
    assert "already holds a run" in again.proc.stderr
    after = {p.relative_to(first.dir): p.read_bytes() for p in first.dir.rglob("*") if p.is_file()}
    assert before == after


def test_multirun_gives_independent_complete_records(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "-m",
            "repro.seed=0,1",
            *QUICK,
            "train.max_steps=3",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    # where the sweep stands, one plain line as each job starts and ends (no bar: not a terminal)
    for line in ("sweep job 1/2 started: repro.seed=0", "sweep job 1/2 completed in"):
        assert line in output, output
    assert output.index("sweep job 1/2 completed") < output.index("sweep job 2/2 started")
    assert "sweep job 2/2 completed in" in output and "%|" not in output
    manifests = [json.loads((sweep / str(i) / "run.json").read_text()) for i in (0, 1)]
    assert [m["seed"] for m in manifests] == [0, 1]
    assert all(m["status"] == "completed" for m in manifests)
    assert manifests[0]["weights_sha256"] != manifests[1]["weights_sha256"]


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


def test_a_secret_added_as_an_unknown_key_is_refused_and_never_echoed(run_train):
    """Keys are never added on the command line (the schema has them); the refusal hides the value.
    Secrets in keys the schema has are redacted in every file (tests/e2e/test_hostile_runs.py)."""
    run = run_train("r", *QUICK, "train.max_steps=2", "+logger.api_key=s3cr3t-value", check=False)
    assert run.proc.returncode == 2 and not run.dir.exists()
    assert "+logger.api_key=<redacted>: unknown key" in run.proc.stderr
    assert "s3cr3t-value" not in run.proc.stderr + run.proc.stdout


def test_git_state_of_the_code_is_recorded(run_train):
    """Recorded even when the run is launched from outside the checkout (the tests run from a temp dir)."""
    git = run_train("r", *QUICK, "train.max_steps=1").manifest["environment"]["git"]
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)


def test_sweep_job_equals_the_same_run_alone(tmp_path):
    """Jobs of one -m sweep share a process: a pinned thread count must not leak into the next job."""
    sweep = tmp_path / "sweep"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "-m",
            "repro.threads=1,null",
            *QUICK,
            "train.max_steps=6",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    alone = run_main(tmp_path / "alone", *QUICK, "train.max_steps=6", "repro.threads=null")
    second = json.loads((sweep / "1" / "run.json").read_text())
    assert second["weights_sha256"] == alone.manifest["weights_sha256"]
    assert (
        second["determinism"]["settings"]["torch.num_threads"]["applied"]
        == alone.manifest["determinism"]["settings"]["torch.num_threads"]["applied"]
    )


def test_a_failing_sweep_job_is_recorded_and_the_others_still_run(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "-m",
            *QUICK,
            "train.max_steps=2",
            "train.device=cpu,cuda:7,cpu",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1  # the sweep says something failed
    assert "Traceback" not in proc.stderr and "error: train.device='cuda:7'" in proc.stderr
    statuses = [
        json.loads((sweep / str(i) / "run.json").read_text())["status"]
        if (sweep / str(i) / "run.json").exists()
        else None
        for i in range(3)
    ]
    assert statuses == [
        "completed",
        None,
        "completed",
    ]  # refused before its record started: nothing written
