"""A hyperparameter search's settings and checks (repro.base.search_record, repro.launch.search_check):
the seed derives from repro.seed, the space is validated key by key, and a search config or command
line that cannot work is refused with one line naming the key. End-to-end searches of the examples
are in tests/e2e/test_hparams_search_example.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from repro.base.errors import ReproError, RunDirectoryError
from repro.base.search_record import (
    SEARCH_SWEEPER,
    check_record,
    parse_param,
    parse_settings,
    sampler_seed,
    trial_seed,
)
from repro.launch.search_check import check_keys, check_overrides, check_search, is_search

SWEEPER = {
    "objective": "val_loss",
    "direction": "min",
    "n_trials": 4,
    "n_startup_trials": 2,
    "batch": 1,
    "seed": None,
    "params": {"optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
}


def test_sampler_seed_is_a_named_stream_of_repro_seed() -> None:
    # Stable across processes and versions: the value is part of the search's record.
    assert sampler_seed(1234) == 515318509
    assert sampler_seed(1234) != sampler_seed(1235)
    assert trial_seed(7, 0) != trial_seed(7, 1)
    assert trial_seed(7, 3) == trial_seed(7, 3)
    assert parse_settings(SWEEPER, 1234, None).seed == sampler_seed(1234)
    # A recorded seed (a resumed search) wins; hydra.sweeper.seed overrides the derivation.
    assert parse_settings(SWEEPER, 1234, 99).seed == 99
    assert parse_settings({**SWEEPER, "seed": 5}, 1234, None).seed == 5


def test_param_kinds() -> None:
    assert parse_param("a", {"low": 1, "high": 8}).kind == "int"
    assert parse_param("a", {"low": 0.0, "high": 0.5}).kind == "float"
    assert parse_param("a", {"low": 1, "high": 8, "type": "float"}).kind == "float"
    assert parse_param("a", {"choices": [16, 32]}).choices == (16, 32)


@pytest.mark.parametrize(
    "spec, says",
    [
        ({"low": 1.0}, "numbers low < high"),
        ({"low": 2, "high": 1}, "numbers low < high"),
        ({"low": 0.0, "high": 1.0, "log": True}, "log range with low > 0"),
        ({"low": 0.0, "high": 1.0, "step": -1}, "step: a number > 0"),
        ({"choices": []}, "non-empty list"),
        ({"low": 0, "high": 1, "size": 3}, "not ['size']"),
        ([0, 1], "a mapping"),
    ],
)
def test_bad_param_is_one_line_naming_the_key(spec, says) -> None:
    with pytest.raises(ReproError) as exc:
        parse_param("model.dropout", spec)
    text = str(exc.value)
    assert "hydra.sweeper.params.model.dropout" in text and says in text
    assert "\n" not in text


def test_objective_must_be_named() -> None:
    with pytest.raises(ReproError, match="set train.monitor"):
        parse_settings({**SWEEPER, "objective": None}, 0, None)
    with pytest.raises(ReproError, match="min or max"):
        parse_settings({**SWEEPER, "direction": "up"}, 0, None)
    with pytest.raises(ReproError, match="n_trials"):
        parse_settings({**SWEEPER, "n_trials": 0}, 0, None)


def _cfg(params: dict) -> OmegaConf:
    return OmegaConf.create(
        {
            "repro": {"seed": 3},
            "train": {"monitor": "val_loss", "monitor_mode": "min"},
            "optimizer": {"lr": 0.01},
            "model": {"width": 16, "dropout": 0.1},
            "hydra": {
                "sweeper": {
                    **SWEEPER,
                    "_target_": SEARCH_SWEEPER,
                    "objective": "${train.monitor}",
                    "direction": "${train.monitor_mode}",
                    "params": params,
                }
            },
        }
    )


def test_a_missing_key_is_named_with_what_its_parent_has() -> None:
    cfg = _cfg({"model.widht": {"low": 8, "high": 32}})
    with pytest.raises(ReproError) as exc:
        check_keys(cfg, ["model.widht"])
    assert str(exc.value) == (
        "hydra.sweeper.params names model.widht, which the config does not have "
        "(model has: width, dropout)"
    )
    check_keys(cfg, ["model.width", "optimizer.lr"])


def test_command_line_may_not_set_a_searched_key_or_sweep() -> None:
    with pytest.raises(ReproError, match="optimizer.lr='0.1'.*the search proposes it"):
        check_overrides(["optimizer.lr=0.1"], ["optimizer.lr"])
    with pytest.raises(ReproError, match="repro.seed='0,1'.*one value"):
        check_overrides(["repro.seed=0,1"], ["optimizer.lr"])
    check_overrides(["train.epochs=1", "hydra.sweeper.n_trials=3"], ["optimizer.lr"])


def test_check_search_resolves_the_objective_from_train_monitor() -> None:
    pytest.importorskip("optuna", reason="the hparams extra is not installed")
    cfg = _cfg({"optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    assert is_search(cfg)
    settings = check_search(cfg, [])
    assert (settings.objective, settings.direction, settings.seed) == (
        "val_loss",
        "minimize",
        sampler_seed(3),
    )
    assert not is_search(OmegaConf.create({"hydra": {"sweeper": {"_target_": "x.Basic"}}}))


def _record(**trial) -> dict:
    t = {"number": 0, "state": "complete", "value": 1.0, "params": {}, "run_dir": "0", **trial}
    return {
        "kind": "hparams_search",
        "settings": {
            "params": {},
            "objective": "val_loss",
            "direction": "minimize",
            "sampler_seed": 1,
        },
        "trials": [t],
    }


@pytest.mark.parametrize(
    "trial, says",
    [
        ({"run_dir": "../elsewhere"}, "leaves the sweep directory"),
        ({"run_dir": "/etc"}, "leaves the sweep directory"),
        ({"state": "odd"}, "state is 'odd'"),
        ({"value": float("nan")}, "not a finite number"),
        ({"number": True}, "not a trial number"),
        ({"resumed": "yes"}, "resumed is not a bool"),
        ({"error": 3}, "error is not a string"),
    ],
)
def test_a_bad_record_is_refused_with_one_line(trial, says) -> None:
    where = Path("sweep/search.json")
    with pytest.raises(RunDirectoryError) as exc:
        check_record(_record(**trial), where)
    assert says in str(exc.value) and str(exc.value).startswith("sweep/search.json: ")
    check_record(_record(), where)


def test_a_stored_trial_outside_the_space_is_refused_before_it_runs(tmp_path) -> None:
    # study.db comes from the sweep directory: a trial it holds becomes overrides only if it fits.
    optuna = pytest.importorskip("optuna", reason="the hparams extra is not installed")
    import json

    from repro.launch.search import Search, SearchError

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    cfg = _cfg({"optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    cfg.hydra.sweep = {"dir": str(sweep)}
    settings = check_search(cfg, [])
    record = {
        "kind": "hparams_search",
        "repro_seed": 3,
        "settings": settings.signature(),
        "overrides": [],
        "trials": [],
    }
    (sweep / "search.json").write_text(json.dumps(record))
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{sweep / 'study.db'}")
    trial = study.ask()
    trial.suggest_float("optimizer.lr", 5.0, 10.0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    class NoLauncher:
        def launch(self, *args, **kwargs):
            raise AssertionError("a trial outside the space was launched")

    with pytest.raises(SearchError) as exc:
        Search(cfg, NoLauncher()).run([])
    assert "trial 0's parameters" in str(exc.value) and "not this search's" in str(exc.value)
