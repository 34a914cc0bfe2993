"""Bad command lines: one line naming the key, non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
]


@pytest.mark.parametrize(("override", "key"), BAD_INPUTS)
def test_bad_input_gives_one_line_error(tmp_path, override, key):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    proc = subprocess.run(
        [sys.executable, "-m", "experiment.train", f"hydra.run.dir={run_dir}", override],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
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
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiment.train",
            f"hydra.run.dir={run_dir}",
            "train.device=cuda:7",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: train.device='cuda:7'")
    assert not run_dir.exists()
