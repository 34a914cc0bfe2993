"""Checkpoint files: intact ones load, anything else is refused clearly and nothing is executed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from repro import CheckpointError, ReproConfig, load_checkpoint, setup_reproducibility
from repro.run.checkpoint import (
    MAGIC,
    CheckpointWriter,
    latest_valid_checkpoint,
    list_checkpoints,
    read_header,
    save_checkpoint,
)


def state() -> dict:
    return {"model": {"w": torch.arange(6.0)}, "step": 3, "nested": [1, 2.5, None, "x"]}


def test_roundtrip_and_keep(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, state(), config_sha256="c" * 64, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-000000004.ckpt",
        "step-000000005.ckpt",
    ]
    info, loaded = load_checkpoint(list_checkpoints(tmp_path)[-1], config_sha256="c" * 64)
    assert (
        info.step == 5
        and loaded["step"] == 3
        and torch.equal(loaded["model"]["w"], torch.arange(6.0))
    )
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


@pytest.fixture
def ckpt(tmp_path):
    return save_checkpoint(tmp_path, 7, state(), config_sha256="a" * 64)


def test_truncated_is_refused(ckpt):
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("where", [0.5, 0.9, -1])
def test_flipped_byte_is_refused(ckpt, where):
    raw = bytearray(ckpt.read_bytes())
    i = int(len(raw) * where) if where > 0 else len(raw) - 1
    raw[i] ^= 0x01
    ckpt.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(ckpt)


def test_other_config_is_refused(ckpt):
    with pytest.raises(CheckpointError, match="another config"):
        load_checkpoint(ckpt, config_sha256="b" * 64)


def test_other_format_version_is_refused(ckpt):
    raw = ckpt.read_bytes()
    end = raw.index(b"\n", len(MAGIC))
    header = json.loads(raw[len(MAGIC) : end])
    header["format_version"] = 99
    ckpt.write_bytes(MAGIC + json.dumps(header).encode() + raw[end:])
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(ckpt)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this runs os.system: the classic pickle attack."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_execution_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"model": _Payload(marker)}, protocol=2)
    # A well-formed envelope with a correct sha256 around a torch-format zip holding the malicious pickle.
    import zipfile

    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")
    body = zbuf.getvalue()
    header = {
        "format_version": 1,
        "step": 1,
        "payload_size": len(body),
        "payload_sha256": hashlib.sha256(body).hexdigest(),
        "config_sha256": "a" * 64,
    }
    path = tmp_path / "checkpoints" / "step-000000001.ckpt"
    path.parent.mkdir()
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + body)
    assert read_header(path).step == 1  # the envelope itself is intact
    with pytest.raises(CheckpointError, match="not written by this kit") as refused:
        load_checkpoint(path)
    assert not marker.exists()
    # One line, and never torch's advice to load the file without weights_only.
    assert "\n" not in str(refused.value)
    assert "weights_only" not in str(refused.value) and "succeed" not in str(refused.value)
    # A raw pickle file in place of a checkpoint is refused before unpickling too.
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_latest_valid_falls_back_and_names_the_bad_file(tmp_path, caplog):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, state(), config_sha256="a" * 64)
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:50])
    with caplog.at_level("WARNING"):
        info, _ = latest_valid_checkpoint(tmp_path, config_sha256="a" * 64)
    assert info.step == 2
    assert "step-000000003.ckpt" in caplog.text


def test_rng_state_roundtrips_through_a_weights_only_checkpoint(tmp_path):
    repro = setup_reproducibility(
        ReproConfig(seed=4, pythonhashseed=None, cublas_workspace_config=None)
    )
    gen, rng = repro.generator("noise"), repro.numpy_rng("aug")
    torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=gen), rng.random()
    save_checkpoint(tmp_path, 1, {"rng": repro.state_dict()}, config_sha256="a" * 64)
    expected = (
        torch.rand(3),
        random.random(),
        np.random.rand(),
        torch.rand(2, generator=gen),
        rng.random(),
    )

    fresh = setup_reproducibility(
        ReproConfig(seed=4, pythonhashseed=None, cublas_workspace_config=None)
    )
    gen2, rng2 = fresh.generator("noise"), fresh.numpy_rng("aug")
    _, loaded = load_checkpoint(list_checkpoints(tmp_path)[-1])
    fresh.load_state_dict(loaded["rng"])
    got = (
        torch.rand(3),
        random.random(),
        np.random.rand(),
        torch.rand(2, generator=gen2),
        rng2.random(),
    )
    assert torch.equal(got[0], expected[0]) and got[1:3] == expected[1:3]
    assert torch.equal(got[3], expected[3]) and got[4] == expected[4]


def test_retention_ignores_leftovers_from_later_steps(tmp_path):
    """A junk or corrupt checkpoint with a later step must not push out the ones that work."""
    junk = tmp_path / "checkpoints" / "step-000000099.ckpt"
    junk.parent.mkdir()
    junk.write_bytes(b"junk")
    (tmp_path / "checkpoints" / "step-000000098.ckpt").mkdir()  # a directory is not a checkpoint
    for step in (10, 12):
        save_checkpoint(tmp_path, step, state(), config_sha256="a" * 64, keep=1)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-000000012.ckpt", "step-000000099.ckpt"]
    info, _ = latest_valid_checkpoint(tmp_path, config_sha256="a" * 64)
    assert info.step == 12


def test_background_write_is_a_snapshot_and_matches_a_foreground_one(tmp_path):
    writer, live = CheckpointWriter(), state()
    path = writer.save(tmp_path / "bg", 1, live, config_sha256="c" * 64, keep=2)
    # Training goes on changing the state while the file is written.
    live["model"]["w"].add_(100.0)
    live["step"] = 99
    writer.wait()
    fg = save_checkpoint(tmp_path / "fg", 1, state(), config_sha256="c" * 64, keep=2)
    (_, got), (_, want) = load_checkpoint(path), load_checkpoint(fg)
    assert got["step"] == want["step"] == 3 and torch.equal(got["model"]["w"], want["model"]["w"])
    assert read_header(path).header["payload_sha256"] == read_header(fg).header["payload_sha256"]
    # Each save waits for the previous one, so pruning sees them all.
    for step in range(2, 6):
        writer.save(tmp_path / "bg", step, state(), config_sha256="c" * 64, keep=2)
    writer.wait()
    assert [p.name for p in list_checkpoints(tmp_path / "bg")] == [
        "step-000000004.ckpt",
        "step-000000005.ckpt",
    ]


def test_background_write_error_is_raised_on_the_training_thread(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    writer = CheckpointWriter()
    writer.save(tmp_path, 1, state(), config_sha256="c" * 64)
    with pytest.raises(CheckpointError, match="background"):
        writer.wait()
    # Reported once.
    writer.wait()


def test_each_writer_waits_for_its_own_write_only(tmp_path):
    """The writer thread belongs to its writer: another writer's failed write is not reported here."""
    (tmp_path / "a" / "checkpoints").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "checkpoints").write_text("a file where the folder should be")
    good, bad = CheckpointWriter(), CheckpointWriter()
    bad.save(tmp_path / "b", 1, state(), config_sha256="c" * 64)
    path = good.save(tmp_path / "a", 1, state(), config_sha256="c" * 64)
    good.wait()
    assert load_checkpoint(path)[0].step == 1
    with pytest.raises(CheckpointError, match="background"):
        bad.wait()


def test_kill_during_background_writes_leaves_old_or_new(tmp_path):
    # A child writes ever-newer checkpoints in the background and is SIGKILLed at some moment.
    code = textwrap.dedent(f"""
        import sys, torch
        from repro.run.checkpoint import CheckpointWriter
        big, writer = torch.arange(2_000_000, dtype=torch.float64), CheckpointWriter()
        for step in range(1, 10_000):
            writer.save({str(tmp_path)!r}, step, {{"w": big + step}}, config_sha256="c" * 64, keep=2)
            if step == 2:
                print("ready", flush=True)
    """)
    for delay in (0.0, 0.05, 0.2):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        info, loaded = latest_valid_checkpoint(tmp_path, config_sha256="c" * 64)
        assert torch.equal(loaded["w"], torch.arange(2_000_000, dtype=torch.float64) + info.step)
        for path in list_checkpoints(tmp_path):  # every file there is complete, none half-written
            load_checkpoint(path, config_sha256="c" * 64)
