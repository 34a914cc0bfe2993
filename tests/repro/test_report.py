"""`repro report` on real sweeps, and sweeps run in parallel with the joblib launcher."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from conftest import QUICK, clean_env
from repro.report import summarize, t975

# Threads pinned: a joblib worker gets cpu_count / n_jobs threads, and the default profile follows
# the thread count it is given (see the README), so both sweeps pin the same count.
SHORT = [*QUICK, "train.max_steps=6", "repro.threads=1"]


def train(*args, cwd):
    return subprocess.run([sys.executable, "-m", "experiment.train", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=600)


def report(*args, cwd):
    return subprocess.run([sys.executable, "-m", "repro", "report", *map(str, args)], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=300)


def test_summary_statistics_match_the_textbook():
    values = [0.31, 0.35, 0.29, 0.40]
    s = summarize(values)
    assert s.n == 4 and s.mean == pytest.approx(statistics.mean(values))
    assert s.std == pytest.approx(statistics.stdev(values))
    half = 3.182 * statistics.stdev(values) / 2  # t(0.975, 3) * s / sqrt(4)
    assert (s.low, s.high) == pytest.approx((s.mean - half, s.mean + half))
    assert summarize([1.0]).std is None and t975(100) == 1.96


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real 3-seed sweep, plus a fourth job in the same directory that fails mid-run."""
    root = tmp_path_factory.mktemp("sweep")
    out = train("-m", "repro.seed=0,1,2", *SHORT, f"hydra.sweep.dir={root / 'sw'}", cwd=root)
    assert out.returncode == 0, out.stderr
    bad = train(f"hydra.run.dir={root / 'sw' / '3'}", "repro.seed=3", *SHORT, "train.perturb_param=nope", cwd=root)
    assert bad.returncode != 0
    return root / "sw"


@pytest.mark.slow
def test_report_of_a_sweep_with_a_failed_job(sweep):
    out = report(sweep, "--json", cwd=sweep.parent)
    assert out.returncode == 1  # a job failed: the report says so in its exit status too
    data = json.loads(out.stdout)
    assert [j["name"] for j in data["jobs"]] == ["0", "1", "2", "3"]
    assert data["failed"] == ["3"]
    failed = data["jobs"][3]
    assert failed["status"] == "failed" and "perturb_param" in failed["error"]
    seeds = {j["group"]: j for j in data["jobs"]}
    group = data["jobs"][0]["group"]
    assert group != data["jobs"][3]["group"] and len(seeds) == 2
    accs = [json.loads((sweep / str(i) / "run.json").read_text())["result"]["val_acc"] for i in range(3)]
    stat = data["stats"][group]["val_acc"]
    assert stat["n"] == 3 and stat["mean"] == pytest.approx(statistics.mean(accs))
    assert stat["low"] <= stat["mean"] <= stat["high"]
    png = sweep / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report(sweep, "--no-plot", cwd=sweep.parent).stdout
    assert "4 jobs, 3 completed, 1 not" in text and "job 3 failed" in text and "95% interval" in text


def test_report_of_something_that_is_not_a_sweep(tmp_path):
    out = report(tmp_path, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "not a sweep directory" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_processes_with_the_same_bits(sweep, tmp_path):
    out = train("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "repro.seed=0,1", *SHORT,
                f"hydra.sweep.dir={tmp_path / 'par'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = [json.loads((tmp_path / "par" / str(i) / "run.json").read_text()) for i in (0, 1)]
    assert all(r["status"] == "completed" for r in runs)
    assert runs[0]["process"]["pid"] != runs[1]["process"]["pid"]  # two worker processes
    assert all(r["entry"]["module"] == "experiment.train" for r in runs)  # replayable by `repro verify`
    for i, run in enumerate(runs):  # the same bits as the same seed run one after the other
        basic = json.loads((sweep / str(i) / "run.json").read_text())
        assert run["weights_sha256"] == basic["weights_sha256"]


def test_report_survives_odd_sweep_content(tmp_path):
    import shutil

    sweep = tmp_path / "sw"
    (sweep / "junk").mkdir(parents=True)
    (sweep / "junk" / "run.json").write_text("[]")
    (sweep / "odd").mkdir()
    (sweep / "odd" / "run.json").write_text(json.dumps({"status": "completed", "seed": 1, "result": 5}))
    (sweep / "odd" / "metrics.jsonl").write_text('7\n{"step": "x", "loss": 1}\n{"step": 2, "loss": 0.5}\n')
    out = report(sweep, "--json", cwd=tmp_path)
    assert "Traceback" not in out.stderr, out.stderr
    data = json.loads(out.stdout)
    assert {j["name"]: j["status"] for j in data["jobs"]} == {"junk": "unreadable", "odd": "completed"}
    assert out.returncode == 1  # an unreadable job counts as not completed
    shutil.rmtree(sweep)
