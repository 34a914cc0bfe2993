"""Evaluation of a finished run: `python -m experiment.evaluate` and `repro.load_run`, on real runs of the
example in separate processes; a run directory never chooses the code that is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import QUICK, run_main, run_module
from repro import ConfigValueError, LoadRunError, load_run

BEST = ("train.monitor=val_acc", "train.monitor_mode=max", "train.epochs=3")


def evaluate(*args: str, cwd) -> subprocess.CompletedProcess:
    return run_module([sys.executable, "-m", "experiment.evaluate", *args], cwd=cwd)


@pytest.mark.slow
def test_evaluate_gives_the_logged_metrics_and_leaves_the_record_alone(tmp_path):
    run = run_main(tmp_path / "run", *QUICK, *BEST)
    before = {
        n: (run.dir / n).read_bytes() for n in ("run.json", "metrics.jsonl", "fingerprints.jsonl")
    }
    epochs = [r for r in run.metrics() if r["split"] == "epoch"]

    out = evaluate(f"run={run.dir}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    final = json.loads((run.dir / "eval-val.json").read_text())
    assert final["val_acc"] == epochs[-1]["val_acc"] and final["val_loss"] == epochs[-1]["val_loss"]
    assert final["weights"] == "weights.pt" and final["which"] == "final"

    out = evaluate(f"run={run.dir}", "which=best", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    best = json.loads((run.dir / "eval-val-best.json").read_text())
    assert (
        best["val_acc"]
        == run.manifest["best"]["value"]
        == epochs[run.manifest["best"]["epoch"]]["val_acc"]
    )

    out = evaluate(f"run={run.dir}", "split=train", cwd=tmp_path)
    assert out.returncode == 0 and "train_acc" in json.loads(
        (run.dir / "eval-train.json").read_text()
    )
    assert {n: (run.dir / n).read_bytes() for n in before} == before  # the record is untouched

    loaded = load_run(run.dir, targets=("experiment.model.",))
    assert loaded.cfg.train.monitor == "val_acc" and not loaded.model.training
    assert torch.equal(
        next(iter(loaded.model.state_dict().values())),
        next(iter(torch.load(run.dir / "weights.pt", weights_only=True).values())),
    )

    bad = evaluate(f"run={run.dir}", "split=test", cwd=tmp_path)
    assert (
        bad.returncode == 2 and "split='test' is not allowed: expected val or train" in bad.stderr
    )


def test_the_allowed_targets_follow_the_package_name():
    """A project renames this package (``repro new``): evaluate allows the classes of the package it is
    in, whatever its name, and nothing else."""
    import importlib.util

    import experiment.evaluate as ours

    package, targets = ours.__name__.rpartition(".")[0], ours.TARGETS
    assert targets == (f"{package}.",)
    spec = importlib.util.spec_from_file_location("renamed_project.evaluate", ours.__file__)
    renamed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renamed)
    targets = renamed.TARGETS
    assert targets == ("renamed_project.",)


def fake_run(tmp_path, target: str, status: str = "completed"):
    (tmp_path / "run.json").write_text(json.dumps({"status": status}))
    (tmp_path / "config.yaml").write_text(f"model:\n  _target_: {target}\n  command: 'true'\n")
    torch.save({}, tmp_path / "weights.pt")
    return tmp_path


def test_load_run_builds_only_targets_the_caller_allows(tmp_path):
    run_dir = fake_run(tmp_path, "os.system")
    with pytest.raises(ConfigValueError, match=r"model._target_='os.system' is not allowed"):
        load_run(run_dir, targets=("experiment.model.",))
    # the project declares its build ([tool.repro] build): it never runs on a foreign target
    with pytest.raises(ConfigValueError, match=r"model._target_='os.system' is not allowed"):
        load_run(run_dir)
    model = load_run(
        run_dir, build=lambda cfg: torch.nn.Identity()
    ).model  # the project's own builder
    assert isinstance(model, torch.nn.Identity)


def test_load_run_refuses_what_is_not_there(tmp_path):
    run_dir = fake_run(tmp_path, "os.system", status="failed")
    with pytest.raises(LoadRunError, match="final weights exist only for a completed run"):
        load_run(run_dir, build=lambda cfg: torch.nn.Identity())
    with pytest.raises(LoadRunError, match="set train.monitor"):
        load_run(run_dir, "best", build=lambda cfg: torch.nn.Identity())
    with pytest.raises(ConfigValueError, match="expected final or best"):
        load_run(run_dir, "last")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("quick") / "run", *QUICK, "train.epochs=1")


@pytest.mark.parametrize(
    ("node", "target"),
    [
        # starts with the package's name, and yet is numpy's load: Hydra walks attributes
        ("data", "experiment.data.np.load"),
        ("task", "experiment.tasks.torch.load"),
    ],
)
def test_a_run_whose_config_names_foreign_code_through_the_package_is_refused(
    quick_run, tmp_path, node, target
):
    """evaluate (and load_run's [tool.repro] build) resolve every target of the run's config before
    instantiating anything: a target that leaves the package is one line, exit 2, nothing runs."""
    import shutil

    run_dir = shutil.copytree(quick_run.dir, tmp_path / "run")
    text = (run_dir / "config.yaml").read_text()
    marker = "experiment.data.ShapesData" if node == "data" else "experiment.tasks.Classification"
    assert marker in text
    (run_dir / "config.yaml").write_text(text.replace(marker, target))
    out = evaluate(f"run={run_dir}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: {node}._target_={target!r}")
    assert not list(run_dir.glob("eval-*.json"))
