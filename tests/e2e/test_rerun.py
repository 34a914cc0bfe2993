"""The same config gives the same bits in a fresh process: a rerun, loader workers 0 and 2, a null seed
replayed by its recorded value, the saved ``config.yaml`` replayed, and what changes (another seed) or
stays (the data under ``repro=fast``). On the kit's fixture experiment and the classifier example, each
run a ``python -m`` process.

Elsewhere: each step setting's reruns (tests/e2e/test_step_options.py, test_step_options_examples.py),
the regression example's (test_regress_example.py), the portable profile's across launch environments
(test_portable.py), torchrun's (test_torchrun.py), and the guarantees a generated project carries
(tests/experiment/test_guarantees.py: two fresh processes, loader workers 0 and 2)."""

from __future__ import annotations

import pytest
import yaml

from conftest import QUICK, run_fixture, run_main

pytestmark = pytest.mark.slow


def same_bits(a, b) -> None:
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()


def test_a_fixture_rerun_and_two_loader_workers_give_the_same_bits(default_fixture_run, tmp_path):
    same_bits(default_fixture_run, run_fixture(tmp_path / "again"))
    same_bits(default_fixture_run, run_fixture(tmp_path / "workers", "repro.num_workers=2"))


def test_different_seeds_give_different_weights(run_train):
    a = run_train("a", *QUICK, "repro.seed=1")
    b = run_train("b", *QUICK, "repro.seed=2")
    assert a.weights != b.weights
    assert a.fingerprints()[0]["params"] != b.fingerprints()[0]["params"]


@pytest.mark.parametrize("workers", ["repro.num_workers=2 repro.persistent_workers=true"])
def test_persistent_loader_workers_give_the_bits_of_none(run_train, workers):
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
