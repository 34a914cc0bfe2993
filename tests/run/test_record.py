"""The run record: atomic files, no overwrite, resolved config, no secrets."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from repro import ReproConfig, RunDirectoryError, RunRecord, atomic_write, setup_reproducibility
from repro.base.secrets import redact_args
from repro.core.environment import is_secret_name, relevant_environment


@pytest.fixture
def repro():
    return setup_reproducibility(
        ReproConfig(seed=3, pythonhashseed=None, cublas_workspace_config=None)
    )


def test_start_writes_resolved_config_and_running_manifest(tmp_path, repro):
    cfg = OmegaConf.create({"a": 2, "b": "${a}", "repro": {"seed": 3}})
    rec = RunRecord.start(tmp_path, cfg, repro, overrides=["a=2", "+db.password=hunter2"])
    text = (tmp_path / "config.yaml").read_text()
    assert "${" not in text and OmegaConf.load(tmp_path / "config.yaml").b == 2
    m = json.loads((tmp_path / "run.json").read_text())
    assert m["status"] == "running" and m["seed"] == 3 and m["started_at"]
    assert m["determinism"]["mode"] == "strict" and m["environment"]["packages"]["torch"]
    assert "hunter2" not in (tmp_path / "run.json").read_text()
    rec.log_fingerprint({"step": 1, "loss": "00"})
    rec.log_metrics({"step": 1, "loss": 0.5})
    with pytest.raises(ValueError):
        rec.log_fingerprint({"loss": "00"})
    rec.finish("completed", weights_path=tmp_path / "config.yaml")
    m = json.loads((tmp_path / "run.json").read_text())
    assert m["status"] == "completed" and len(m["weights_sha256"]) == 64 and m["wall_time_s"] >= 0
    assert (tmp_path / "fingerprints.jsonl").read_text() == '{"step":1,"loss":"00"}\n'


def test_a_directory_holding_a_run_is_refused(tmp_path, repro):
    cfg = OmegaConf.create({"x": 1})
    RunRecord.start(tmp_path, cfg, repro)
    before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        RunRecord.start(tmp_path, OmegaConf.create({"x": 2}), repro)
    assert (tmp_path / "run.json").read_bytes() == before
    assert OmegaConf.load(tmp_path / "config.yaml").x == 1


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write(target, "old")

    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left


def test_secrets_are_never_recorded():
    env = {"PYTHONHASHSEED": "0", "HF_TOKEN": "x", "AWS_SECRET_ACCESS_KEY": "y", "MKL_CBWR": "AVX2"}
    assert relevant_environment(env) == {"PYTHONHASHSEED": "0", "MKL_CBWR": "AVX2"}
    assert all(
        is_secret_name(n) for n in ("WANDB_API_KEY", "DB_PASSWORD", "GITHUB_TOKEN", "my_secret")
    )
    assert not any(
        is_secret_name(n) for n in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS")
    )
    assert redact_args(["train.lr=1", "+wandb.api_key=abc", "db.password=p"]) == [
        "train.lr=1",
        "+wandb.api_key=<redacted>",
        "db.password=<redacted>",
    ]


def test_files_follow_the_umask_so_colleagues_can_read_runs(tmp_path):
    import os
    import stat

    from repro.base import files

    previous = os.umask(0o022)
    try:
        files.UMASK = 0o022  # as if the process had started with it
        files.atomic_write(tmp_path / "a.json", "{}")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        files.UMASK = 0o077
        files.atomic_write(tmp_path / "b.json", "{}")
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600
    finally:
        os.umask(previous)
        files.UMASK = files._umask()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one
@pytest.mark.parametrize(
    ("signame", "expected"), [("SIGINT", KeyboardInterrupt), ("SIGTERM", "Terminated")]
)
def test_a_swallowed_interrupt_is_raised_again_at_the_next_step(tmp_path, repro, signame, expected):
    """Python drops an exception raised inside ``__del__`` ("Exception ignored in ..."): a Ctrl-C or
    SIGTERM landing there must still stop the run, at its next step; after the record closes, no
    signal is pending and the previous handlers are back."""
    import os
    import signal
    import threading

    from repro.base.errors import Terminated
    from repro.run.record import raise_pending_signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers belong to the main thread")
    expected = Terminated if expected == "Terminated" else expected
    sig = getattr(signal, signame)
    before = signal.getsignal(sig)
    rec = RunRecord.start(tmp_path, OmegaConf.create({"repro": {"seed": 3}}), repro)

    class RaisesOnDeletion:
        def __del__(self):
            os.kill(
                os.getpid(), sig
            )  # the handler runs here, inside __del__: its exception is dropped

    RaisesOnDeletion()
    with pytest.raises(expected):
        raise_pending_signal()
    raise_pending_signal()  # raised once, then forgotten
    rec.finish("failed", error="interrupted")
    assert signal.getsignal(sig) is before
