"""The repro schema: profiles compose against it, and bad values fail at compose time."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from repro.base.config import Determinism, ReproConfig, register_configs, to_repro_config, validate
from repro.base.envvars import wanted_environment

CONF = Path(__file__).resolve().parents[2] / "conf"


def composed(*overrides: str):
    from experiment.config import register_configs as register_experiment

    register_configs()
    register_experiment()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("profile", ["default", "fast", "portable", "portable_same_model"])
def test_every_profile_is_a_valid_typed_repro_config(profile):
    cfg = composed(f"repro={profile}")
    rc = validate(to_repro_config(cfg))
    assert isinstance(rc, ReproConfig) and rc.seed is not None  # every profile is seeded
    assert OmegaConf.get_type(cfg.repro) is ReproConfig


def test_profiles_differ_as_documented():
    default, fast, portable = (
        to_repro_config(composed(f"repro={p}")) for p in ("default", "fast", "portable")
    )
    assert default.deterministic == Determinism.strict and not default.tf32
    assert fast.deterministic == Determinism.off and fast.tf32 and fast.cudnn_benchmark
    assert portable.deterministic == Determinism.strict and portable.threads == 1
    assert wanted_environment(portable)["ATEN_CPU_CAPABILITY"] and portable.mkl_cbwr
    assert default.mkldnn is None and default.nnpack is None


def test_the_selftest_workload_runs_under_the_portable_profiles_pins():
    """`repro selftest` checks the bits this profile promises: same environment pins, same switches."""
    from repro.tools.selftest_workload import FLAGS, PINS

    portable = to_repro_config(composed("repro=portable"))
    env = wanted_environment(portable)
    for var in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "PYTHONHASHSEED"):
        assert env[var] == PINS[var], var
    assert str(portable.threads) == PINS["OMP_NUM_THREADS"] and portable.interop_threads == 1
    assert {"mkldnn": portable.mkldnn, "nnpack": portable.nnpack} == FLAGS
    same_model = to_repro_config(composed("repro=portable_same_model"))
    assert same_model.mkldnn is None and same_model.nnpack is None
    assert wanted_environment(same_model) == env


@pytest.mark.parametrize(
    "override",
    [
        "repro.seed=abc",
        "repro.deterministic=maybe",
        "repro.tf32=perhaps",
        "repro.threads=x",
        "repro.nokey=1",
    ],
)
def test_wrong_types_fail_at_compose_time(override):
    with pytest.raises(Exception, match=override.split("=")[0].split(".")[1]):
        composed(override)


def test_experiment_override_sets_several_groups():
    cfg = composed("experiment=quick")
    assert cfg.data.train_size == 256 and cfg.train.epochs == 2
    cfg = composed("experiment=regress")
    assert (
        cfg.data._target_ == "experiment.data.TabularData"
        and cfg.model._target_ == "experiment.model.MLP"
    )
    assert (
        cfg.task._target_ == "experiment.tasks.Regression"
        and cfg.model.in_features == cfg.data.features
    )
