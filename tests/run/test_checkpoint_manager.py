"""The checkpoint manager: its registry, what a checkpoint holds, save and restore, best weights."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from repro import CheckpointError, ConfigValueError, ReproConfig, setup_reproducibility
from repro.base.layout import CHECKPOINT_DIR, WEIGHTS_FILE
from repro.run.checkpoint import latest_valid_checkpoint, list_checkpoints, read_header
from repro.run.checkpointing import (
    BEST_FILE,
    KIT,
    LOADERS,
    OBJECTS,
    RANKS,
    RNG,
    SUMS,
    CheckpointManager,
    StateError,
)

CONFIG = "c" * 64


def make_repro():
    return setup_reproducibility(
        ReproConfig(seed=7, pythonhashseed=None, cublas_workspace_config=None)
    )


def make_parts(run_dir):
    """A manager tracking a model, its optimizer and a counter, with a loader: as a run would."""
    repro = make_repro()
    with repro.scope("model"):
        model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    counter = {"seen": 0}
    manager = CheckpointManager(run_dir, repro, config_sha256=CONFIG, keep=2)
    manager.track(model=model, optimizer=optimizer, counter=counter)
    loader = repro.dataloader(list(range(12)), 3, True, stream="loader.train")
    manager.add_loader("train", loader)
    return manager, model, optimizer, counter, loader


def train_a_little(model, optimizer, counter, loader, batches):
    it = iter(loader)
    for _ in range(batches):
        x = torch.stack([torch.full((3,), float(i)) for i in next(it)])
        loss = model(x).square().mean() + torch.rand(()) * 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        counter["seen"] += 1
    return it


def test_track_refuses_a_name_twice_and_objects_without_state(tmp_path):
    manager = CheckpointManager(tmp_path, make_repro(), config_sha256=CONFIG, keep=None)
    manager.track(counter={"n": 1})
    with pytest.raises(StateError, match=r"run.track\(counter=...\): already tracked"):
        manager.track(counter={"n": 2})
    with pytest.raises(TypeError, match="a list has no state_dict/load_state_dict"):
        manager.track(things=[1, 2])
    assert list(manager.tracked) == ["counter"]


def test_a_loader_stream_is_registered_once(tmp_path):
    manager, *_ = make_parts(tmp_path)
    with pytest.raises(ValueError, match="already has a loader on that stream"):
        manager.add_loader("train", object())


def test_checkpoint_holds_the_documented_keys(tmp_path):
    manager, model, optimizer, counter, loader = make_parts(tmp_path)
    # Mid-pass: the loader's position is that of the batches handed out.
    it = train_a_little(model, optimizer, counter, loader, 2)
    manager.save(2, 0, {"value": None}, {"n": 6.0, "loss": 1.5})
    del it
    manager.wait()
    [path] = list_checkpoints(tmp_path)
    header = read_header(path).header
    assert header["step"] == 2 and header["epoch"] == 0 and header["world_size"] == 1
    assert header["tracked"] == ["counter", "model", "optimizer"]
    _, state = latest_valid_checkpoint(tmp_path, config_sha256=CONFIG)
    assert list(state) == [KIT, OBJECTS, RANKS]
    assert state[KIT] == {"step": 2, "epoch": 0, "best": {"value": None}, "sharded": []}
    assert list(state[OBJECTS]) == ["model", "optimizer", "counter"]
    assert state[OBJECTS]["counter"] == {"seen": 2}
    [mine] = state[RANKS]
    assert list(mine) == [RNG, SUMS, LOADERS]
    assert mine[SUMS] == {"n": 6.0, "loss": 1.5}
    assert mine[LOADERS] == {"train": {"epoch": 0, "batch": 2}}


def test_restore_continues_with_the_same_bits(tmp_path):
    """Save mid-epoch, go on; a fresh set of objects restored from the file goes on identically."""
    manager, model, optimizer, counter, loader = make_parts(tmp_path / "a")
    it = train_a_little(model, optimizer, counter, loader, 2)
    manager.save(2, 0, {"value": 0.5, "epoch": 0}, {"n": 6.0})
    manager.wait()
    expected_rest = [next(it) for _ in range(2)]
    expected_draws = (torch.rand(3), random.random(), np.random.rand())
    expected_weights = [p.detach().clone() for p in model.parameters()]

    fresh, model2, optimizer2, counter2, loader2 = make_parts(tmp_path / "b")
    _, state = latest_valid_checkpoint(tmp_path / "a", config_sha256=CONFIG)
    restored = fresh.restore(state)
    assert (restored.step, restored.epoch) == (2, 0)
    assert restored.best == {"value": 0.5, "epoch": 0} and restored.sums == {"n": 6.0}
    assert restored.mid_epoch
    assert counter2 == {"seen": 2}
    assert all(
        torch.equal(a, b) for a, b in zip(expected_weights, model2.parameters(), strict=True)
    )
    momenta = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(
        torch.equal(m, optimizer2.state[p]["momentum_buffer"])
        for m, p in zip(momenta, model2.parameters(), strict=True)
    )
    assert [b.tolist() for b in loader2] == [b.tolist() for b in expected_rest]
    got_draws = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got_draws[0], expected_draws[0]) and got_draws[1:] == expected_draws[1:]


def test_restore_at_an_epoch_boundary_is_not_mid_epoch(tmp_path):
    manager, model, optimizer, counter, loader = make_parts(tmp_path / "a")
    for _ in loader:
        pass
    manager.save(4, 1, {}, {"n": 12.0})
    manager.wait()
    fresh, *_ = make_parts(tmp_path / "b")
    _, state = latest_valid_checkpoint(tmp_path / "a", config_sha256=CONFIG)
    assert not fresh.restore(state).mid_epoch


def test_restore_refuses_other_tracked_objects_world_size_or_loaders(tmp_path):
    manager, *_ = make_parts(tmp_path / "a")
    manager.save(1, 0, {}, {"n": 0.0})
    manager.wait()
    _, state = latest_valid_checkpoint(tmp_path / "a", config_sha256=CONFIG)

    fewer = CheckpointManager(tmp_path / "b", make_repro(), config_sha256=CONFIG, keep=None)
    fewer.track(counter={"seen": 0})
    with pytest.raises(StateError, match=r"holds state for \['counter', 'model', 'optimizer'\]"):
        fewer.restore(state)

    no_loader, model, optimizer, counter, _ = make_parts(tmp_path / "c")
    no_loader.loaders.clear()
    with pytest.raises(StateError, match="loader stream 'train', which this run did not create"):
        no_loader.restore(state)

    two_ranks = {**state, RANKS: state[RANKS] * 2}
    with pytest.raises(ConfigValueError, match="2 ranks, as the checkpoint was written with"):
        make_parts(tmp_path / "d")[0].restore(two_ranks)


def test_restore_refuses_a_model_of_other_shapes_in_one_line(tmp_path):
    manager, *_ = make_parts(tmp_path / "a")
    manager.save(1, 0, {}, {"n": 0.0})
    manager.wait()
    _, state = latest_valid_checkpoint(tmp_path / "a", config_sha256=CONFIG)
    other = CheckpointManager(tmp_path / "b", make_repro(), config_sha256=CONFIG, keep=None)
    model = torch.nn.Linear(5, 2)
    other.track(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), counter={"seen": 0}
    )
    with pytest.raises(StateError, match="state for 'model' does not fit") as refused:
        other.restore(state)
    assert "\n" not in str(refused.value)


def test_keep_prunes_older_checkpoints(tmp_path):
    manager, *_ = make_parts(tmp_path)
    for step in range(1, 5):
        manager.save(step, 0, {}, {"n": 0.0})
    manager.wait()
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-000000003.ckpt",
        "step-000000004.ckpt",
    ]


def test_best_and_final_weights_are_the_model_state_dict(tmp_path):
    manager, model, *_ = make_parts(tmp_path)
    assert manager.save_best()
    assert manager.save_final() == tmp_path / WEIGHTS_FILE
    best = (tmp_path / CHECKPOINT_DIR / BEST_FILE).read_bytes()
    assert best == (tmp_path / WEIGHTS_FILE).read_bytes() == manager.weights_bytes()
    loaded = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert loaded.keys() == model.state_dict().keys()


def test_without_a_model_no_best_weights(tmp_path):
    manager = CheckpointManager(tmp_path, make_repro(), config_sha256=CONFIG, keep=None)
    manager.track(counter={"n": 1})
    assert not manager.save_best() and not (tmp_path / CHECKPOINT_DIR).exists()


def test_a_failed_background_write_is_raised_by_wait_once(tmp_path):
    (tmp_path / CHECKPOINT_DIR).write_text("a file where the folder should be")
    manager = CheckpointManager(tmp_path, make_repro(), config_sha256=CONFIG, keep=None)
    manager.track(counter={"n": 1})
    manager.save(1, 0, {}, {"n": 0.0})
    with pytest.raises(CheckpointError, match="background"):
        manager.wait()
    manager.wait()


def test_learning_rate_and_named_parameters(tmp_path):
    manager, model, optimizer, *_ = make_parts(tmp_path)
    assert manager.learning_rate() == 0.1
    assert [n for n, _ in manager.named_parameters()] == ["weight", "bias"]
    manager.track(head=torch.nn.Linear(2, 1))
    assert [n for n, _ in manager.named_parameters()] == [
        "model.weight",
        "model.bias",
        "head.weight",
        "head.bias",
    ]
