"""Loggers (logger=csv, tensorboard, mlflow, wandb, none) on the kit's fixture experiment and the
classifier example: each store holds metrics.jsonl's rows, the bits never change, a SIGKILL + resume
continues the same logger run with no step twice, a replay logs nowhere, and a missing package is one
line before anything is written."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURE, QUICK, clean_env, run_fixture, verify_identical
from repro.base.config import check_logger_packages, logger_configs
from repro.base.errors import ConfigValueError, MissingPackageError
from repro.run.logger_group import Loggers
from repro.run.loggers import rng_untouched

KILL = "REPRO_FAULT_KILL_AT_STEP"
ALL = "logger=[csv,tensorboard,mlflow]"
#: A metrics row every step, so the killed process writes rows past its last checkpoint (step 15).
EVERY_STEP = ("train.log_every=1", "train.epochs=2")
ROW_KEYS = ("split", "epoch", "step")


def expected_scalars(metrics: list[dict]) -> dict[str, dict[int, float]]:
    """metrics.jsonl's rows as the loggers name them: {"<split>/<key>": {step: value}}."""
    out: dict[str, dict[int, float]] = {}
    for row in metrics:
        for key, value in row.items():
            if key not in ROW_KEYS and isinstance(value, int | float):
                out.setdefault(f"{row['split']}/{key}", {})[row["step"]] = float(value)
    return out


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def tb_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar event of every event file, in write order, with TensorBoard's purge rule applied
    (a SessionLog START at step S drops what came before it at steps >= S); a step twice stays twice."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(log_dir.glob("events.out.tfevents.*"), key=lambda p: int(p.name.split(".")[3]))
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                out = {t: [(s, v) for s, v in pts if s < event.step] for t, pts in out.items()}
            for value in event.summary.value:
                number = (
                    value.tensor.float_val[0] if value.HasField("tensor") else value.simple_value
                )
                out.setdefault(value.tag, []).append((event.step, number))
    return out


def mlflow_store(run_dir: Path, run_id: str) -> tuple[dict[str, list[tuple[int, float]]], list]:
    """Every (step, value) MLflow holds for each metric of the run, and every run of its experiment."""
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir / "logs" / "mlflow").resolve().as_uri())
    run = client.get_run(run_id)
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
    }
    runs = client.search_runs([run.info.experiment_id])
    return history, runs


def check_stores(run) -> None:
    """Each logger's store holds every row of metrics.jsonl once, with its values."""
    metrics = run.metrics(drop_time=False)
    # csv: metrics.jsonl's rows, column for column
    rows = csv_rows(run.dir)
    assert [(r["split"], int(r["step"])) for r in rows] == [
        (m["split"], m["step"]) for m in metrics
    ]
    for got, want in zip(rows, metrics, strict=True):
        for key, value in want.items():
            assert (got[key] if isinstance(value, str) else float(got[key])) == value, key
    expected = expected_scalars(metrics)
    # tensorboard: float32 scalars, one per step
    tb = tb_scalars(run.dir / "logs" / "tensorboard")
    assert set(tb) == set(expected)
    for tag, points in tb.items():
        assert [s for s, _ in points] == sorted(expected[tag]), tag
        for step, value in points:
            assert math.isclose(value, expected[tag][step], rel_tol=1e-6), (tag, step)
    # mlflow: float64, exact, one value per step
    run_id = run.manifest["loggers"]["mlflow"]["run_id"]
    history, runs = mlflow_store(run.dir, run_id)
    assert [r.info.run_id for r in runs] == [run_id]
    assert set(history) == set(expected)
    for key, points in history.items():
        assert dict(points) == expected[key] and len(points) == len(expected[key]), key


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return run_fixture(tmp_path_factory.mktemp("plain") / "run", *EVERY_STEP)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    return run_fixture(tmp_path_factory.mktemp("logged") / "run", *EVERY_STEP, ALL)


@pytest.mark.slow
def test_csv_tensorboard_and_mlflow_at_once_hold_the_metrics_rows(logged):
    assert logged.proc.stdout.count("run directory:") == 1
    recorded = logged.manifest["loggers"]
    assert recorded["csv"] == {"path": "logs/metrics.csv"}
    assert recorded["tensorboard"] == {"log_dir": "logs/tensorboard"}
    assert len(recorded["mlflow"]["run_id"]) == 32 and recorded["mlflow"]["tracking_uri"] is None
    check_stores(logged)


@pytest.mark.slow
def test_loggers_never_change_the_bits(plain, logged):
    assert "loggers" not in plain.manifest and not (plain.dir / "logs").exists()
    assert logged.weights == plain.weights
    assert logged.fingerprints() == plain.fingerprints()
    assert logged.metrics() == plain.metrics()


@pytest.mark.slow
def test_sigkill_and_resume_continue_the_same_logger_runs_without_a_step_twice(logged, tmp_path):
    run_dir = tmp_path / "run"
    killed = run_fixture(run_dir, *EVERY_STEP, ALL, env={KILL: "18"}, check=False)
    assert killed.proc.returncode == -9
    run_id = killed.manifest["loggers"]["mlflow"]["run_id"]
    # the dead process had logged steps 16-18, after its last checkpoint (step 15), everywhere
    assert [int(r["step"]) for r in csv_rows(run_dir)][-1] == 18
    assert tb_scalars(run_dir / "logs" / "tensorboard")["train/loss"][-1][0] == 18
    assert mlflow_store(run_dir, run_id)[0]["train/loss"][-1][0] == 18
    resumed = run_fixture(run_dir, f"train.resume={run_dir}")
    m = resumed.manifest
    assert m["resumes"][-1]["from_step"] == 15 and m["resume_exact"] is True
    assert m["loggers"]["mlflow"]["run_id"] == run_id  # the same MLflow run, continued
    assert resumed.weights == logged.weights
    assert resumed.fingerprints() == logged.fingerprints()
    assert resumed.metrics() == logged.metrics()
    check_stores(resumed)


@pytest.mark.slow
def test_verify_of_a_run_with_loggers_is_identical_and_the_replay_logs_nowhere(logged, tmp_path):
    before = sorted(p.relative_to(logged.dir) for p in (logged.dir / "logs").rglob("*"))
    verify_identical(logged.dir, tmp_path / "rp", entry=FIXTURE)
    assert not (tmp_path / "rp" / "logs").exists()
    assert "loggers" not in json.loads((tmp_path / "rp" / "run.json").read_text())
    assert sorted(p.relative_to(logged.dir) for p in (logged.dir / "logs").rglob("*")) == before


@pytest.mark.slow
def test_a_resume_may_change_the_loggers(tmp_path):
    run_dir = tmp_path / "run"
    killed = run_fixture(run_dir, "train.epochs=1", "logger=csv", env={KILL: "7"}, check=False)
    assert killed.proc.returncode == -9
    resumed = run_fixture(run_dir, f"train.resume={run_dir}", "logger=[csv,tensorboard]")
    assert set(resumed.manifest["loggers"]) == {"csv", "tensorboard"}
    assert [(r["split"], int(r["step"])) for r in csv_rows(run_dir)] == [
        (m["split"], m["step"]) for m in resumed.metrics()
    ]
    assert min(s for s, _ in tb_scalars(run_dir / "logs" / "tensorboard")["epoch/val_acc"]) == 12


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_a_missing_logger_package_is_one_line_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    out = run_fixture(run_dir, "logger=[csv,wandb]", check=False)
    assert out.proc.returncode == 2
    lines = out.proc.stderr.strip().splitlines()
    assert lines == [
        'error: logger=wandb needs the wandb package, which is not installed: pip install -e ".[wandb]" '
        "(or choose another logger, e.g. logger=csv)"
    ]
    assert not run_dir.exists()


@pytest.mark.slow
def test_other_groups_still_refuse_several_options(tmp_path):
    out = run_fixture(tmp_path / "run", "repro=[default,fast]", check=False)
    assert out.proc.returncode == 2
    assert "selects several options of config group 'repro'" in out.proc.stderr
    assert not (tmp_path / "run").exists()


def _draw_everywhere() -> None:
    import random

    import numpy as np
    import torch

    random.seed(1), random.random(), np.random.seed(2), np.random.rand(), torch.manual_seed(3)


def test_a_logger_call_leaves_the_global_rngs_as_they_were():
    import random

    import numpy as np
    import torch

    before = random.random(), np.random.rand(), torch.rand(1)
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    with rng_untouched():
        _draw_everywhere()
    (
        random.setstate(states[0]),
        np.random.set_state(states[1]),
        torch.random.set_rng_state(states[2]),
    )
    expected = random.random(), np.random.rand(), torch.rand(1)
    (
        random.setstate(states[0]),
        np.random.set_state(states[1]),
        torch.random.set_rng_state(states[2]),
    )
    with rng_untouched():
        _draw_everywhere()
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    assert before[0] != expected[0]


_FRESH = """
import json, random, sys
from pathlib import Path
import numpy as np, torch
from repro.base.config import logger_configs
from repro.run.logger_group import Loggers
random.seed(5); np.random.seed(5); torch.manual_seed(5)
states = lambda: (random.getstate(), np.random.get_state()[1].tolist(), torch.random.get_rng_state().tolist())
before = states()
assert not any(m in sys.modules for m in ("mlflow", "tensorboard"))
settings = logger_configs({"csv": {}, "tensorboard": {}, "mlflow": {}})
loggers = Loggers.open(settings, Path(sys.argv[1]))
for step in range(1, 4):
    loggers.log({"split": "train", "epoch": 0, "step": step, "loss": 1.0 / step})
loggers.close("completed")
assert "mlflow" in sys.modules and "tensorboard" in sys.modules
print("UNTOUCHED" if states() == before else "CHANGED")
"""


@pytest.mark.slow
def test_logger_libraries_touch_no_global_rng_from_import_to_close(tmp_path):
    """In a fresh process: importing, opening, logging to and closing csv, tensorboard and mlflow."""
    out = subprocess.run(
        [sys.executable, "-c", _FRESH, str(tmp_path)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.strip().splitlines()[-1:] == ["UNTOUCHED"], out.stdout + out.stderr


def test_a_missing_package_names_the_logger_the_package_and_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    check_logger_packages(["csv"])
    with pytest.raises(
        MissingPackageError, match=r'^logger=mlflow needs the mlflow package.*"\.\[mlflow\]"'
    ):
        check_logger_packages(["csv", "mlflow"])


def test_the_logger_node_is_typed_and_checked():
    assert logger_configs(None) == {} and logger_configs({}) == {}
    assert logger_configs({"csv": None})["csv"].path == "logs/metrics.csv"
    with pytest.raises(
        ConfigValueError, match=r"^logger\.comet=.*expected one of csv, tensorboard"
    ):
        logger_configs({"comet": {}})
    with pytest.raises(ConfigValueError, match=r"^logger\.wandb\.mode='cloud'"):
        logger_configs({"wandb": {"mode": "cloud"}})
    with pytest.raises(ConfigValueError, match=r"^logger\.csv\.nope"):
        logger_configs({"csv": {"nope": 1}})


def test_a_tracking_password_reaches_no_file_of_the_run(tmp_path):
    from omegaconf import OmegaConf

    from repro.run.record import resolved_config_yaml

    uri = "https://me:hunter2@mlflow.example.com"
    cfg = OmegaConf.create(
        {"logger": {"mlflow": {"tracking_uri": uri}, "wandb": {"api_key": "k3y"}}}
    )
    text = resolved_config_yaml(cfg)
    assert "hunter2" not in text and "k3y" not in text and "mlflow.example.com" in text


def test_a_csv_log_cut_back_on_resume_keeps_the_rows_up_to_the_checkpoint(tmp_path):
    rows = [{"split": "train", "epoch": 0, "step": s, "loss": s / 10} for s in range(1, 6)]
    settings = logger_configs({"csv": {}})
    first = Loggers.open(settings, tmp_path)
    for row in rows:
        first.log(row)
    first.log({"split": "epoch", "epoch": 0, "step": 5, "val_acc": 0.5})  # a new column
    # killed here; resumed from step 3
    again = Loggers.open(settings, tmp_path, from_step=3, recorded={"csv": first.recorded["csv"]})
    again.log(rows[3])
    again.close("completed")
    got = csv_rows(tmp_path)
    assert [(r["split"], r["step"], r["loss"]) for r in got] == [
        ("train", "1", "0.1"),
        ("train", "2", "0.2"),
        ("train", "3", "0.3"),
        ("train", "4", "0.4"),
    ]
    assert list(got[0]) == ["split", "epoch", "step", "loss", "val_acc"]


@pytest.mark.slow
def test_on_the_classifier_example_csv_and_tensorboard_at_once_hold_the_metrics_rows(run_train):
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
