"""Which overrides a resume accepts, and which config it runs on."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from repro import ResumeConflictError, config_sha256
from repro.run.resume import changed_keys, check_overrides, merged_config

SAVED = {"repro": {"seed": 5, "num_workers": 0}, "train": {"lr": 0.1, "resume": None}}
SAFE = ("repro.num_workers", "train.resume")


def test_config_hash_ignores_safe_keys_and_hydra_only():
    a = OmegaConf.create(SAVED)
    b = OmegaConf.create({**SAVED, "repro": {"seed": 5, "num_workers": 4}, "hydra": {"x": 1}})
    assert config_sha256(a, SAFE) == config_sha256(b, SAFE)
    c = OmegaConf.create({**SAVED, "train": {"lr": 0.2, "resume": None}})
    assert config_sha256(a, SAFE) != config_sha256(c, SAFE)


def test_changed_keys_lists_leaves():
    base = OmegaConf.create({"a": {"b": 1, "c": 2}, "hydra": {"run": 1}})
    full = OmegaConf.create({"a": {"b": 1, "c": 3}, "hydra": {"run": 2}})
    assert changed_keys(base, full) == {"a.c": 3}


def test_overrides_that_change_the_result_are_refused():
    base = OmegaConf.create(
        {"repro": {"seed": 1, "num_workers": 0}, "train": {"lr": 0.1, "resume": None}}
    )
    saved = OmegaConf.create(SAVED)
    ok = OmegaConf.create(
        {"repro": {"seed": 5, "num_workers": 4}, "train": {"lr": 0.1, "resume": "x"}}
    )
    check_overrides(base, ok, saved, SAFE)  # same seed as recorded, a safe key, the resume key
    null_seed = OmegaConf.create(
        {"repro": {"seed": None, "num_workers": 0}, "train": {"lr": 0.1, "resume": "x"}}
    )
    check_overrides(base, null_seed, saved, SAFE)  # the recorded seed was drawn once: compatible
    bad = OmegaConf.create(
        {"repro": {"seed": 5, "num_workers": 0}, "train": {"lr": 0.3, "resume": "x"}}
    )
    with pytest.raises(ResumeConflictError, match=r"train.lr=0.3 would change .* train.lr=0.1"):
        check_overrides(base, bad, saved, SAFE)


def test_merged_config_takes_only_safe_keys_from_the_command_line():
    saved = OmegaConf.create(SAVED)
    current = OmegaConf.create(
        {"repro": {"seed": 9, "num_workers": 3}, "train": {"lr": 9.0, "resume": "auto"}}
    )
    merged = merged_config(saved, current, SAFE)
    assert merged.repro.seed == 5 and merged.train.lr == 0.1
    assert merged.repro.num_workers == 3 and merged.train.resume == "auto"
