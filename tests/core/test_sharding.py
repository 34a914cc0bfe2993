"""Sharded checkpoints are data: DCP's metadata pickle and its non-tensor items are read with an
allow-list and ``weights_only``, never as arbitrary pickles (``repro.core.sharding``)."""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp

from repro.core.sharding import _safe_planner, _safe_reader, shard_hashes


class Payload:
    """A pickle that runs code when loaded: it creates the file named by ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def saved(tmp_path):
    """A real DCP save of a model and a plain value, in one process."""
    folder = tmp_path / "step-000000001.shards"
    state = {
        "model": torch.nn.Linear(3, 2).state_dict(),
        "groups": [{"lr": 0.1, "betas": (0.9, 0.99)}],
    }
    dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    return folder, state


def test_a_real_save_reads_back_through_the_safe_reader_and_planner(saved):
    folder, state = saved
    target = {
        "model": torch.nn.Linear(3, 2).state_dict(),
        "groups": [{"lr": 0.0, "betas": (0.0, 0.0)}],
    }
    dcp.load(target, storage_reader=_safe_reader(folder), planner=_safe_planner(), no_dist=True)
    assert all(torch.equal(target["model"][k], v) for k, v in state["model"].items())
    assert target["groups"] == state["groups"]
    assert set(shard_hashes(folder)) == {p.name for p in folder.iterdir()}


def test_a_metadata_file_that_would_run_code_is_refused_unrun(saved, tmp_path):
    folder, _ = saved
    marker = tmp_path / "ran"
    (folder / ".metadata").write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(pickle.UnpicklingError, match="has no place in a checkpoint's metadata"):
        _safe_reader(folder).read_metadata()
    assert not marker.exists()


def test_a_non_tensor_item_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    buffer = io.BytesIO()
    torch.save({"lr": Payload(str(marker))}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        _safe_planner().load_bytes(None, buffer)
    assert not marker.exists()
