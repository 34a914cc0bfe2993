"""The main job, run in separate processes: the same config gives the same bits."""

from __future__ import annotations

import pytest
import yaml

from conftest import QUICK, run_main

pytestmark = pytest.mark.slow


# Two fresh processes giving the same weights, fingerprints and metrics, and loader workers 0 and 2
# giving the same bits: tests/experiment/test_guarantees.py (which a generated project carries too).


def test_different_seeds_give_different_weights(run_train):
    a = run_train("a", *QUICK, "repro.seed=1")
    b = run_train("b", *QUICK, "repro.seed=2")
    assert a.weights != b.weights
    assert a.fingerprints()[0]["params"] != b.fingerprints()[0]["params"]


@pytest.mark.parametrize("workers", ["repro.num_workers=2 repro.persistent_workers=true"])
def test_num_workers_do_not_change_the_bits(run_train, workers):
    base = run_train("w0", *QUICK, "repro.num_workers=0")
    other = run_train("w", *QUICK, *workers.split())
    assert other.manifest["determinism"]["config"]["num_workers"] == 2
    assert base.weights == other.weights
    assert base.fingerprints() == other.fingerprints()


def test_null_seed_is_recorded_and_reproduces(run_train):
    a = run_train("a", *QUICK, "repro.seed=null")
    seed = a.manifest["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32
    assert a.manifest["seed_source"] == "entropy"
    assert yaml.safe_load((a.dir / "config.yaml").read_text())["repro"]["seed"] == seed
    b = run_train("b", *QUICK, f"repro.seed={seed}")
    assert b.manifest["seed_source"] == "config"
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()


def test_saved_config_is_resolved_and_replays_bit_for_bit(run_train, tmp_path):
    a = run_train("a", *QUICK, "repro.seed=7")
    text = (a.dir / "config.yaml").read_text()
    assert "${" not in text
    cfg = yaml.safe_load(text)
    assert cfg["repro"]["seed"] == 7 and cfg["data"]["train_size"] == 256
    b = run_main(tmp_path / "replay", args=["--config-path", str(a.dir), "--config-name", "config"])
    assert b.manifest["seed"] == 7
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()


def test_fast_profile_sees_the_same_data_as_default(run_train):
    """The README's promise for repro=fast: same data order and augmentation (the per-step batch digest)
    as default, while nondeterministic kernels are allowed."""
    default = run_train("default", *QUICK, "train.max_steps=6")
    fast = run_train("fast", *QUICK, "train.max_steps=6", "repro=fast")
    assert fast.manifest["determinism"]["mode"] == "off"
    assert [r["batch"] for r in fast.fingerprints()] == [r["batch"] for r in default.fingerprints()]
