"""A hyperparameter search's settings and its record (``search.json`` in the sweep directory).

The settings come from ``hydra.sweeper`` (``hparams_search=<name>``): the searched keys with their
ranges, the objective (``train.monitor``'s best value) and its direction, the number of trials,
and the sampler's seed, derived from ``repro.seed`` so that two searches with the same config
propose the same trials. The record is read back on resume and by ``repro report``: it is
untrusted data, validated here, and refused with one line when malformed.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.base.errors import ConfigValueError, RunDirectoryError

#: The study's record in the sweep directory, and its Optuna storage (SQLite by default).
SEARCH_FILE = "search.json"
STUDY_FILE = "study.db"
STUDY_NAME = "search"
#: The sweeper class ``hydra/sweeper=search`` names (in the ``hydra_plugins`` namespace package).
SEARCH_SWEEPER = "hydra_plugins.repro_search.search_sweeper.SearchSweeper"
#: The stream name the sampler's seed derives from (under ``repro.seed``).
SAMPLER_STREAM = "hparams_search"
#: ``pip install`` line for the search's optional packages.
INSTALL_HINT = 'pip install -e ".[hparams]"'
DIRECTIONS = {"min": "minimize", "max": "maximize"}
STATES = ("complete", "fail", "running")
SEED_MAX = 2**32 - 1


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def sampler_seed(repro_seed: int) -> int:
    """The sampler's seed under master ``repro_seed``: a 32-bit draw of the named stream
    ``hparams_search`` (``numpy.random.SeedSequence``, as every stream of the kit)."""
    import numpy as np

    seq = np.random.SeedSequence(repro_seed, spawn_key=(_name_key(SAMPLER_STREAM),))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed when it proposes trial ``number``: a function of the search's seed and the
    trial's number only, so a resumed search proposes what an uninterrupted one would have."""
    import numpy as np

    seq = np.random.SeedSequence(seed, spawn_key=(number,))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (``low``, ``high``, ``log``, ``step``) or ``choices``."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_param(key: str, spec: Any) -> Param:
    """``hydra.sweeper.params.<key>`` as a :class:`Param`; ConfigValueError naming what is wrong."""
    where = f"hydra.sweeper.params.{key}"
    if not isinstance(spec, dict):
        raise ConfigValueError(
            where, spec, "a mapping: {low, high[, log, step]} or {choices: [...]}"
        )
    unknown = set(spec) - {"low", "high", "log", "step", "choices", "type"}
    if unknown:
        raise ConfigValueError(
            where, spec, f"only low, high, log, step, type or choices (not {sorted(unknown)})"
        )
    if "choices" in spec:
        choices = spec["choices"]
        ok = isinstance(choices, list | tuple) and choices
        if not ok or len(spec) != 1:
            raise ConfigValueError(where, spec, "{choices: [a non-empty list]} alone")
        if not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
            raise ConfigValueError(where, spec, "choices that are numbers, strings, bools or null")
        return Param(key, "choice", choices=tuple(choices))
    low, high, log, step = (
        spec.get("low"),
        spec.get("high"),
        spec.get("log", False),
        spec.get("step"),
    )
    if not (_number(low) and _number(high) and low < high):
        raise ConfigValueError(where, spec, "numbers low < high")
    if not isinstance(log, bool) or (step is not None and not (_number(step) and step > 0)):
        raise ConfigValueError(where, spec, "log: true|false and step: a number > 0 or absent")
    if log and (low <= 0 or step is not None):
        raise ConfigValueError(where, spec, "a log range with low > 0 and no step")
    kind = spec.get("type") or (
        "int" if all(isinstance(v, int) for v in (low, high, step or 1)) else "float"
    )
    if kind not in ("int", "float"):
        raise ConfigValueError(f"{where}.type", kind, "int or float")
    return Param(key, kind, low=low, high=high, log=log, step=step)


@dataclass(frozen=True)
class SearchSettings:
    """What a search is: its space, objective, trials and seed (the parts a resume must match)."""

    params: tuple[Param, ...]
    objective: str
    direction: str
    n_trials: int
    n_startup_trials: int
    batch: int
    seed: int

    def signature(self) -> dict[str, Any]:
        """What two searches share to be the same search (``n_trials`` may grow on resume)."""
        return {
            "params": {p.key: p.to_dict() for p in self.params},
            "objective": self.objective,
            "direction": self.direction,
            "n_startup_trials": self.n_startup_trials,
            "batch": self.batch,
            "sampler_seed": self.seed,
        }


def _count(key: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigValueError(f"hydra.sweeper.{key}", value, f"an integer >= {least}")
    return value


def parse_settings(sweeper: dict[str, Any], repro_seed: Any, seed: int | None) -> SearchSettings:
    """The search's settings from the ``hydra.sweeper`` node (resolved, as plain data).

    ``seed``: the sampler's seed when known already (a resumed search's record); otherwise it
    derives from ``repro_seed`` (:func:`sampler_seed`), or from ``hydra.sweeper.seed`` when set.
    """
    objective = sweeper.get("objective")
    if not isinstance(objective, str) or not objective:
        raise ConfigValueError(
            "hydra.sweeper.objective",
            objective,
            "the metric whose best value the search optimises: set train.monitor (e.g. "
            "train.monitor=val_loss)",
        )
    mode = sweeper.get("direction")
    if mode not in DIRECTIONS:
        raise ConfigValueError("hydra.sweeper.direction", mode, "min or max (train.monitor_mode)")
    params = sweeper.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigValueError(
            "hydra.sweeper.params", params, "a mapping of config keys to their ranges"
        )
    if seed is None:
        own = sweeper.get("seed")
        if own is not None:
            seed = _count("seed", own, 0)
        elif isinstance(repro_seed, int) and not isinstance(repro_seed, bool):
            seed = sampler_seed(repro_seed)
        else:
            # repro.seed null: a seed from OS entropy, recorded in search.json.
            seed = secrets.randbits(32)
    if not 0 <= seed <= SEED_MAX:
        raise ConfigValueError("hydra.sweeper.seed", seed, f"an integer in [0, {SEED_MAX}]")
    return SearchSettings(
        params=tuple(parse_param(str(k), v) for k, v in params.items()),
        objective=objective,
        direction=DIRECTIONS[mode],
        n_trials=_count("n_trials", sweeper.get("n_trials"), 1),
        n_startup_trials=_count("n_startup_trials", sweeper.get("n_startup_trials", 10), 0),
        batch=_count("batch", sweeper.get("batch", 1), 1),
        seed=seed,
    )


def _bad(where: Path, what: str) -> RunDirectoryError:
    return RunDirectoryError(f"{where}: {what}; not a search record written by the kit")


def check_record(record: dict[str, Any], where: Path) -> dict[str, Any]:
    """A ``search.json`` as read, validated (types and ranges); RunDirectoryError with one line."""
    if record.get("kind") != "hparams_search":
        raise _bad(where, "its kind is not hparams_search")
    settings = record.get("settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("params"), dict):
        raise _bad(where, "settings.params is missing")
    for key in ("objective", "direction"):
        if not isinstance(settings.get(key), str):
            raise _bad(where, f"settings.{key} is not a string")
    seed = settings.get("sampler_seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise _bad(where, "settings.sampler_seed is not a 32-bit seed")
    trials = record.get("trials")
    if not isinstance(trials, list):
        raise _bad(where, "trials is not a list")
    for i, t in enumerate(trials):
        if not isinstance(t, dict):
            raise _bad(where, f"trials[{i}] is not an object")
        number, state, value = t.get("number"), t.get("state"), t.get("value")
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise _bad(where, f"trials[{i}].number is not a trial number")
        if state not in STATES:
            raise _bad(where, f"trials[{i}].state is {state!r}, not one of {list(STATES)}")
        if value is not None and not _number(value):
            raise _bad(where, f"trials[{i}].value is not a finite number")
        if not isinstance(t.get("params"), dict) or not isinstance(t.get("run_dir"), str):
            raise _bad(where, f"trials[{i}] has no params or run_dir")
        run_dir = Path(t["run_dir"])
        if run_dir.is_absolute() or ".." in run_dir.parts:
            raise _bad(where, f"trials[{i}].run_dir leaves the sweep directory")
        if not isinstance(t.get("error"), str | None):
            raise _bad(where, f"trials[{i}].error is not a string")
        if not isinstance(t.get("resumed", False), bool):
            raise _bad(where, f"trials[{i}].resumed is not a bool")
    return record
