"""A null ``repro.threads``: as the process started in one process, 1 per rank under torchrun."""

from __future__ import annotations

import logging

import pytest
import torch

from repro.core.threads import TORCHRUN_NOTE, intra_op_threads


@pytest.fixture(autouse=True)
def restore_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def ranks(monkeypatch, rank: int, world: int) -> None:
    """The variables torchrun gives rank ``rank`` of ``world``."""
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", "0")


def test_one_process_keeps_the_count_it_started_with(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert intra_op_threads(None, 7, {}) == (7, "not pinned: left as is")
    assert intra_op_threads(None, 7, {"OMP_NUM_THREADS": "7"}) == (7, "not pinned: left as is")
    assert intra_op_threads(3, 7, {}) == (3, "")


@pytest.mark.parametrize("omp", [None, "1"])
def test_under_torchrun_every_layout_runs_one_thread_per_rank(monkeypatch, caplog, omp):
    """2 nodes x 1 (no OMP_NUM_THREADS) and 1 node x 2 (torchrun's OMP_NUM_THREADS=1) alike."""
    ranks(monkeypatch, 0, 2)
    environ = {} if omp is None else {"OMP_NUM_THREADS": omp}
    with caplog.at_level(logging.INFO, logger="repro.run"):
        assert intra_op_threads(None, 2, environ) == (1, TORCHRUN_NOTE)
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert caplog.records[0].getMessage().startswith(TORCHRUN_NOTE)


def test_only_rank_zero_says_so(monkeypatch, caplog):
    ranks(monkeypatch, 1, 2)
    with caplog.at_level(logging.INFO, logger="repro.run"):
        assert intra_op_threads(None, 2, {}) == (1, TORCHRUN_NOTE)
    assert caplog.records == []


def test_an_omp_count_from_the_shell_is_overruled_loudly(monkeypatch, caplog):
    ranks(monkeypatch, 0, 4)
    with caplog.at_level(logging.INFO, logger="repro.run"):
        threads, note = intra_op_threads(None, 4, {"OMP_NUM_THREADS": "4"})
    assert threads == 1
    assert note.startswith(TORCHRUN_NOTE) and "OMP_NUM_THREADS=4" in note
    assert "repro.threads=N" in note
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_an_explicit_pin_wins_under_torchrun(monkeypatch, caplog):
    ranks(monkeypatch, 0, 2)
    with caplog.at_level(logging.INFO, logger="repro.run"):
        assert intra_op_threads(2, 1, {}) == (2, "")
    assert caplog.records == []
