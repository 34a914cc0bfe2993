"""Bad command lines: one line naming the key, non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import run_module

BAD_INPUTS = [
    # (override, text the one-line message must contain)
    ("repro.seed=abc", "repro.seed"),
    ("repro.seed=-1", "repro.seed"),
    ("repro.seed=4294967296", "repro.seed"),
    ("repro.seed=1.5", "repro.seed"),
    ("repro.deterministic=maybe", "repro.deterministic"),
    ("repro.num_workers=-1", "repro.num_workers"),
    ("repro.num_workers=two", "repro.num_workers"),
    ("repro.threads=0", "repro.threads"),
    ("repro.persistent_workers=sometimes", "repro.persistent_workers"),
    ("repro.cudnn_benchmark=true", "repro.cudnn_benchmark"),
    ("repro.cpu_capability=sse9", "repro.cpu_capability"),
    ("repro.cublas_workspace_config=:1:1", "repro.cublas_workspace_config"),
    ("repro.unknown_key=1", "repro.unknown_key"),
    ("+repro.unknown_key=1", "repro.unknown_key"),
    ("repro=nosuchprofile", "repro=nosuchprofile"),
    ("train.epochs=many", "train.epochs"),
    ("train.epochs=0", "train.epochs"),
    ("train.max_steps=0", "train.max_steps"),
    ("train.device=gpu", "train.device"),
    ("data.num_classes=9", "data.num_classes"),
    ("nosuchgroup.key=1", "nosuchgroup.key"),
    ("model.dropout=1.5", "model.dropout"),
    ("optimizer.lr=-1", "optimizer.lr"),
    ("data.image_size=2", "data.image_size"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints"),
    # Clearly wrong values that composing accepts (issue: hostile and careless input)
    ("experiment=quikc", "experiment=quikc"),
    ("+train.nope=1", "+train.nope=1: unknown key"),
    ("++train.nope=1", "unknown key"),
    ("+api_key=sk-123", "+api_key=<redacted>"),
    ("+db_url=postgres://u:pw@h/db", "postgres://u:<redacted>@h/db"),
    ("repro=[default,fast]", "selects several options of config group 'repro'"),
    ("hydra.run.dir=", "hydra.run.dir=''"),
    ("repro.tf32=2", "expected true or false"),
    ("repro.persistent_workers=1", "expected true or false"),
    ("optimizer.lr=inf", "optimizer.lr"),
    ("optimizer.lr=1e309", "optimizer.lr"),
    ("optimizer.lr=nan", "optimizer.lr"),
    ("optimizer.weight_decay=inf", "optimizer.weight_decay"),
    ("optimizer.betas=[0.9,1.5]", "optimizer.betas"),
    ("repro.threads=1000000000000000000000000000000", "repro.threads"),
    ("repro.num_workers=1000000000000000000000000000000", "repro.num_workers"),
    ("repro.interop_threads=100000", "repro.interop_threads"),
    ("data.train_size=1000000000000000000000000000000", "data.train_size"),
    ("data.val_size=0", "data.val_size"),
    ("model.channels1=1000000000000", "model.channels1"),
    ("train.batch_size=100000000000000", "train.batch_size"),
    ("optimizer.lr=${oc.env:NOPE_NOT_SET}", "NOPE_NOT_SET"),
    ("train.resume=/nonexistent/run", "no such directory"),
    ("train.log_every=0", "train.log_every"),
    ("train.checkpoint_every=0", "train.checkpoint_every"),
]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["-m", "repro.seed=[1,2"], "[1,2"),  # a sweep that does not parse
        (
            ["-m", "repro.seed=0,1", "repro.num_workers=0,-1"],
            "repro.num_workers",
        ),  # a bad value in any job
        (["hydra.run.dir=/dev/null/x"], "is a file"),  # a run directory under a file
        (
            ["-m", "repro=default,portable"],
            "run them as separate sweeps",
        ),  # pins fixed at process start differ
    ],
)
def test_bad_command_lines_give_one_line_errors(tmp_path, args, text):
    proc = run_module(
        [sys.executable, "-m", "experiment.train", *args],
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and text in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_replayed_config_with_a_bad_value_is_refused(tmp_path):
    """A hand-edited config.yaml replayed with --config-path is checked against the schema too."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text(
        "repro: {seed: 1}\ndata: {train_size: 64}\nmodel: {dropout: 0.1}\ntrain: {epochs: abc}\n"
    )
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            "--config-path",
            "cfg",
            "--config-name",
            "config",
            "hydra.run.dir=run",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "train.epochs" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("override", "key"), BAD_INPUTS)
def test_bad_input_gives_one_line_error(tmp_path, override, key):
    run_dir = tmp_path / "run"
    proc = run_module(
        [sys.executable, "-m", "experiment.train", f"hydra.run.dir={run_dir}", override],
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and key in err, err
    assert not run_dir.exists()
    assert list(tmp_path.iterdir()) == []  # no stray outputs/ either


def test_a_device_missing_at_runtime_leaves_nothing_behind(tmp_path):
    """cuda:7 passes the syntax check; the task refuses it before writing a record, and cleans up."""
    run_dir = tmp_path / "run"
    proc = run_module(
        [
            sys.executable,
            "-m",
            "experiment.train",
            f"hydra.run.dir={run_dir}",
            "train.device=cuda:7",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: train.device='cuda:7'")
    assert not run_dir.exists()


@pytest.mark.slow
def test_config_dir_profiles_are_checked_and_pinned_too(tmp_path):
    """A profile from --config-dir goes through the same preflight: checks, one-line errors, pins."""
    (tmp_path / "mine" / "repro").mkdir(parents=True)
    (tmp_path / "mine" / "repro" / "mine.yaml").write_text(
        "defaults:\n  - schema\n  - _self_\nseed: 77\n"
    )
    base = [
        sys.executable,
        "-m",
        "experiment.train",
        "--config-dir",
        str(tmp_path / "mine"),
        "repro=mine",
    ]
    bad = run_module(
        [*base, "repro.seed=-3", "hydra.run.dir=bad"],
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: repro.seed=-3")
    assert not (tmp_path / "bad").exists()
    good = run_module(
        [*base, "experiment=quick", "train.max_steps=2", "hydra.run.dir=good"],
        cwd=tmp_path,
    )
    assert good.returncode == 0, good.stderr
    manifest = json.loads((tmp_path / "good" / "run.json").read_text())
    assert manifest["seed"] == 77 and manifest["determinism"]["all_took_effect"] is True
