"""The example's hyperparameter search, run as users run it (``python -m experiment.train -m
hparams_search=quick``), each search in its own process: two searches propose the same trials and
give the same per-trial weights; a search killed (SIGKILL) in the middle of a trial completes when
started again, without rerunning its finished trials, resuming the killed one from its checkpoint
and ending with the same trials and best trial as an uninterrupted search; each trial replays
IDENTICAL under ``repro verify``; ``repro report`` shows the best trial; bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import clean_env, run_module, run_tool, verify_identical
from repro.base.search_record import sampler_seed

pytestmark = pytest.mark.slow
pytest.importorskip("optuna", reason="the hparams extra (optuna) is not installed")

#: Four trials (3 drawn at random, then TPE), a checkpoint every 4 of a trial's 16 steps.
SEARCH = ["-m", "hparams_search=quick", "hydra.sweeper.n_trials=4", "train.checkpoint_every=4"]


def search_cmd(sweep: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "experiment.train", *SEARCH, f"hydra.sweep.dir={sweep}", *extra]


def run_search(sweep: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_module(search_cmd(sweep, *extra), cwd=sweep.parent, env=env)


def trials(sweep: Path) -> list[tuple]:
    """(number, state, params, objective, final weights' sha256) of every trial, in trial order."""
    record = json.loads((sweep / "search.json").read_text())
    out = []
    for t in record["trials"]:
        manifest = json.loads((sweep / t["run_dir"] / "run.json").read_text())
        out.append((t["number"], t["state"], t["params"], t["value"], manifest["weights_sha256"]))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("search") / "a"
    done = run_search(sweep)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep


def test_two_searches_propose_the_same_trials_with_the_same_bits(reference, tmp_path) -> None:
    other = tmp_path / "b"
    done = run_search(other)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = trials(reference), trials(other)
    assert [t[0] for t in first] == [0, 1, 2, 3]
    assert all(t[1] == "complete" for t in first)
    # The trials differ from one another (the sampler proposes), and the two searches agree.
    assert len({json.dumps(t[2], sort_keys=True) for t in first}) == 4
    assert first == second
    record = json.loads((reference / "search.json").read_text())
    assert record["settings"]["sampler_seed"] == sampler_seed(1234)
    assert record["repro_seed"] == 1234
    values = {t[0]: t[3] for t in first}
    best = min(values, key=values.get)
    assert record["best"]["number"] == best and record["best"]["run_dir"] == str(best)


def test_a_trial_replays_identically_and_the_report_shows_the_best(reference, tmp_path) -> None:
    record = json.loads((reference / "search.json").read_text())
    best = record["best"]["number"]
    verify_identical(reference / str(best), tmp_path / "replay")
    shown = run_tool("report", reference, "--out", tmp_path / "report", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"best: trial {best}  val_loss=" in shown.stdout
    assert (tmp_path / "report" / "trials.csv").read_text().splitlines()[1].split(",")[1] == str(
        best
    )


def test_a_killed_search_resumes_without_rerunning_finished_trials(reference, tmp_path) -> None:
    sweep = tmp_path / "c"
    proc = subprocess.Popen(
        search_cmd(sweep),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Killed once trial 2 has written its first checkpoint, in the middle of its run.
    deadline = time.monotonic() + 240
    while not any((sweep / "2" / "checkpoints").glob("step-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "trial 2 never checkpointed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (sweep / "3").exists()
    finished = {n: (sweep / str(n) / "run.json").read_text() for n in (0, 1)}
    killed = json.loads((sweep / "2" / "run.json").read_text())
    assert killed["status"] != "completed"

    done = run_search(sweep)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert "trial 2 resumes from its checkpoint" in said
    assert "search trial 3/4 started" in said and "search trial 1/4" not in said
    # Finished trials were reused: their records are untouched.
    for n, text in finished.items():
        assert (sweep / str(n) / "run.json").read_text() == text
    resumed = json.loads((sweep / "2" / "run.json").read_text())
    assert resumed["status"] == "completed" and resumed["resumes"]
    record = json.loads((sweep / "search.json").read_text())
    assert [t["resumed"] for t in record["trials"]] == [False, False, True, False]
    # Same trials, values, weights and best trial as the uninterrupted search.
    assert trials(sweep) == trials(reference)
    assert record["best"] == json.loads((reference / "search.json").read_text())["best"]
    # Started once more, a finished search runs nothing.
    again = run_search(sweep)
    assert again.returncode == 0 and "Launching" not in again.stderr + again.stdout


def test_parallel_searches_propose_the_same_trials_with_the_same_bits(reference, tmp_path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the joblib extra")
    # Two jobs at a time (batch = n_jobs), one thread each: joblib's own count would differ.
    parallel = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "repro.threads=1"]
    for name in ("p1", "p2"):
        done = run_search(tmp_path / name, *parallel)
        assert done.returncode == 0, done.stderr[-3000:]
    first, second = trials(tmp_path / "p1"), trials(tmp_path / "p2")
    assert first == second and len(first) == 4
    assert json.loads((tmp_path / "p1" / "search.json").read_text())["settings"]["batch"] == 2
    # The random startup trials depend only on the seed and their number: the sequential search's.
    sequential = trials(reference)
    assert [t[2] for t in first[:3]] == [t[2] for t in sequential[:3]]
    # Trial 3 is proposed knowing trials 0-1 only (2 still runs), sequentially knowing 0-2.
    assert first[3][2] != sequential[3][2]


def test_the_regression_search_reproduces(tmp_path) -> None:
    cmd = [sys.executable, "-m", "experiment.train", "-m", "hparams_search=regress"]
    short = ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_startup_trials=1", "train.epochs=1"]
    done = run_module([*cmd, *short, f"hydra.sweep.dir={tmp_path / 'r1'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # (that two searches agree is the classifier's test above: the same sweeper)
    first = trials(tmp_path / "r1")
    assert len(first) == 2 and all(t[1] == "complete" for t in first)
    assert json.loads((tmp_path / "r1" / "search.json").read_text())["settings"]["direction"] == (
        "maximize"
    )


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def test_a_search_naming_a_missing_key_is_one_line(tmp_path) -> None:
    conf = tmp_path / "conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "typo.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /experiment: quick\n  - override /hydra/sweeper: search\n"
        "train:\n  monitor: val_loss\n"
        "hydra:\n  sweeper:\n    params:\n      model.widht: {low: 8, high: 32}\n"
    )
    cmd = [sys.executable, "-m", "experiment.train", "-m", f"--config-dir={conf.parent}"]
    done = run_module(
        [*cmd, "hparams_search=typo", f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path
    )
    assert _one_line_error(done).startswith(
        "error: hydra.sweeper.params names model.widht, which the config does not have (model has:"
    )
    assert not (tmp_path / "s").exists()


def test_a_search_without_optuna_names_the_extra(tmp_path) -> None:
    # optuna made unimportable for this process only.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "optuna.py").write_text("raise ImportError('No module named optuna')\n")
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env["PYTHONPATH"]])
    done = run_search(tmp_path / "s", env=env)
    assert _one_line_error(done) == (
        'error: hparams_search needs optuna, which is not installed: pip install -e ".[hparams]"'
    )
    assert not (tmp_path / "s").exists()


def test_a_searched_key_on_the_command_line_is_one_line(tmp_path) -> None:
    done = run_search(tmp_path / "s", "optimizer.lr=0.1")
    assert "optimizer.lr='0.1' is not allowed" in _one_line_error(done)


def test_a_monitor_the_run_does_not_log_stops_the_search(tmp_path) -> None:
    done = run_search(tmp_path / "s", "train.monitor=val_los")
    assert done.returncode != 0
    assert "error: the search stopped: trial 0 failed: train.monitor='val_los'" in done.stderr
    assert not (tmp_path / "s" / "1").exists()
