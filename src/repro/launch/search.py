"""A hyperparameter search as a Hydra sweeper: Optuna's TPE, seeded, resumable, one run per trial.

``hparams_search=<name>`` selects the sweeper (``hydra/sweeper=search``, the class lives in
``hydra_plugins.repro_search``) and its space. The search:

* proposes each trial with a TPE sampler seeded from (the search's seed, the trial's number), the
  search's seed deriving from ``repro.seed``: two searches with the same config propose the same
  trials in the same order;
* launches the trials through Hydra's configured launcher (basic, joblib, submitit), ``batch``
  at a time, each an ordinary run directory ``SWEEP_DIR/<trial number>``, and tells the study
  each trial's objective (``best.value`` of its ``run.json``) in trial order once the batch is
  done, so which job finishes first never changes what is proposed next;
* keeps the study in ``SWEEP_DIR/study.db`` (SQLite) and its record in ``SWEEP_DIR/search.json``:
  started again with ``hydra.sweep.dir=SWEEP_DIR``, finished trials are reused, unfinished ones
  resume from their checkpoints (``train.resume=auto``; the record marks them ``resumed``), and
  the search runs until ``n_trials`` trials are done in total.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

from repro.base.errors import ReproError, RunDirectoryError
from repro.base.records import parse_json_object, read_record_file
from repro.base.search_record import (
    INSTALL_HINT,
    SEARCH_FILE,
    STUDY_FILE,
    STUDY_NAME,
    SearchSettings,
    check_record,
    trial_seed,
)
from repro.launch.compose_errors import one_line
from repro.launch.search_check import check_search

log = logging.getLogger("repro.search")
RUN_FILE = "run.json"


class SearchError(CompactHydraException):
    """A search that cannot start or go on: Hydra prints its one line, no traceback."""


def require_optuna() -> Any:
    """``optuna``, or one line naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise SearchError(
            f"error: hparams_search needs optuna, which is not installed: {INSTALL_HINT}"
        ) from None
    return optuna


def _distribution(optuna: Any, p: Any) -> Any:
    d = optuna.distributions
    if p.kind == "choice":
        return d.CategoricalDistribution(list(p.choices))
    if p.kind == "int":
        return d.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return d.FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def _override(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={'null' if value is None else value}"


class Search:
    """One search: built by the sweeper's ``setup``, run by its ``sweep``."""

    def __init__(self, config: DictConfig, launcher: Any) -> None:
        self.optuna = require_optuna()
        self.config = config
        self.launcher = launcher
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.arguments: list[str] = []

    def _settings(self, record: dict[str, Any] | None) -> SearchSettings:
        """The checked settings; a resumed search keeps its recorded seed and must match its record."""
        seed = record["settings"]["sampler_seed"] if record else None
        try:
            settings = check_search(self.config, self.arguments, seed)
        except ReproError as exc:
            raise SearchError(f"error: {exc}") from None
        if record is not None:
            old, new = record["settings"], settings.signature()
            differ = [k for k in new if old.get(k) != new[k]]
            if record.get("repro_seed") != OmegaConf.select(
                self.config, "repro.seed", default=None
            ):
                differ.append("repro.seed")
            if record.get("overrides") != self.arguments:
                differ.append("command-line overrides")
            if differ:
                raise SearchError(
                    f"error: {self.sweep_dir} holds another search (its {', '.join(differ)} "
                    "differ from this one's); resume it with the same config, or choose another "
                    "hydra.sweep.dir"
                )
        return settings

    def _read_record(self) -> dict[str, Any] | None:
        path = self.sweep_dir / SEARCH_FILE
        if not path.exists() and not path.is_symlink():
            if (self.sweep_dir / STUDY_FILE).exists():
                raise SearchError(f"error: {self.sweep_dir} has {STUDY_FILE} but no {SEARCH_FILE}")
            return None
        try:
            return check_record(parse_json_object(read_record_file(path), path), path)
        except RunDirectoryError as exc:
            raise SearchError(f"error: {exc}") from None

    def run(self, arguments: list[str]) -> list[Any]:
        """Run (or resume) the search; the jobs' returns, in trial order."""
        optuna = self.optuna
        self.arguments = list(arguments)
        record = self._read_record()
        self.settings = settings = self._settings(record)
        if record is not None and record["trials"] and not (self.sweep_dir / STUDY_FILE).is_file():
            raise SearchError(
                f"error: {self.sweep_dir / SEARCH_FILE} lists trials but {STUDY_FILE} is missing; "
                "the study cannot be resumed: choose another hydra.sweep.dir"
            )
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{(self.sweep_dir / STUDY_FILE).resolve()}"
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage,
            direction=settings.direction,
            load_if_exists=True,
        )
        self.storage = storage
        self.space = {p.key: _distribution(optuna, p) for p in settings.params}
        self.notes: dict[int, dict[str, Any]] = {}
        for t in (record or {}).get("trials", []):
            self.notes[t["number"]] = {
                k: t[k] for k in ("resumed", "error") if k in t and t[k] is not None
            }
        log.info(
            "hparams search: %d trials, TPE seed %d, objective %s (%s), study %s",
            settings.n_trials,
            settings.seed,
            settings.objective,
            settings.direction,
            self.sweep_dir / STUDY_FILE,
        )
        returns: list[Any] = []
        running = self.optuna.trial.TrialState.RUNNING
        # Trials a killed search left unfinished: resumed from their checkpoints, in trial order.
        unfinished = [t for t in study.get_trials(deepcopy=False) if t.state == running]
        for t in unfinished:
            self._check_params(t.number, t.params)
        for start in range(0, len(unfinished), settings.batch):
            batch = unfinished[start : start + settings.batch]
            for t in batch:
                self.notes.setdefault(t.number, {})["resumed"] = True
                log.info("hparams search: trial %d resumes from its checkpoint", t.number)
            returns += self._launch(study, [(t.number, dict(t.params)) for t in batch], True)
        while True:
            left = settings.n_trials - len(study.get_trials(deepcopy=False))
            if left <= 0:
                break
            batch = [self._ask(study) for _ in range(min(left, settings.batch))]
            returns += self._launch(study, batch, False)
        self._write_record(study)
        complete = self.optuna.trial.TrialState.COMPLETE
        best = self._best(study)
        if best is not None:
            log.info(
                "hparams search: best trial %d, %s=%s, %s",
                best.number,
                settings.objective,
                best.value,
                " ".join(_override(k, v) for k, v in best.params.items()),
            )
        failed = [t.number for t in study.get_trials(deepcopy=False) if t.state != complete]
        if failed:
            # As for any sweep of the kit: every trial is kept, and the exit status says some failed.
            raise SearchError(
                f"error: the search ended with {len(failed)} failed trial(s) ({failed}): their "
                f"errors are in {self.sweep_dir / SEARCH_FILE} (repro report {self.sweep_dir})"
            )
        return returns

    def _check_params(self, number: int, params: dict[str, Any]) -> None:
        """A stored trial's parameters become overrides: the searched keys only, values in range
        (``study.db`` is data from the sweep directory, never trusted)."""
        d = self.optuna.distributions
        ok = set(params) == set(self.space)
        for key, value in params.items() if ok else ():
            dist = self.space[key]
            if isinstance(dist, d.CategoricalDistribution):
                ok = ok and value in dist.choices
            else:
                real = isinstance(value, int | float) and not isinstance(value, bool)
                ok = ok and real and dist.low <= value <= dist.high
        if not ok:
            raise SearchError(
                f"error: {self.sweep_dir / STUDY_FILE}: trial {number}'s parameters {params} are "
                "not this search's; choose another hydra.sweep.dir"
            )

    def _ask(self, study: Any) -> tuple[int, dict[str, Any]]:
        optuna = self.optuna
        number = len(study.get_trials(deepcopy=False))
        sampler = optuna.samplers.TPESampler(
            seed=trial_seed(self.settings.seed, number),
            n_startup_trials=self.settings.n_startup_trials,
        )
        proposer = optuna.load_study(study_name=STUDY_NAME, storage=self.storage, sampler=sampler)
        trial = proposer.ask(fixed_distributions=self.space)
        if trial.number != number:
            raise SearchError(
                f"error: {self.sweep_dir / STUDY_FILE} gained a trial from elsewhere while "
                "this search ran; one search per study"
            )
        return trial.number, dict(trial.params)

    def _launch(
        self, study: Any, batch: list[tuple[int, dict[str, Any]]], resume: bool
    ) -> list[Any]:
        """Run one batch of trials (numbered from ``batch[0][0]``) and tell the study their values."""
        jobs = []
        for _, params in batch:
            extra = [_override(k, v) for k, v in params.items()]
            jobs.append([*self.arguments, *extra, *(["train.resume=auto"] if resume else [])])
        self._write_record(study)
        first = batch[0][0]
        numbers = [n for n, _ in batch]
        if numbers != list(range(first, first + len(batch))):
            # Resumed trials need not be consecutive: one launch each keeps its job number.
            return [r for n, p in batch for r in self._launch(study, [(n, p)], resume)]
        returns = list(self.launcher.launch(jobs, initial_job_idx=first))
        state = self.optuna.trial.TrialState
        for number, ret in zip(numbers, returns, strict=True):
            note = self.notes.setdefault(number, {})
            note.pop("error", None)
            value = None
            if ret.status == JobStatus.COMPLETED:
                try:
                    value = self._objective(number)
                except SearchError as exc:
                    note["error"] = str(exc).removeprefix("error: ")
            else:
                try:
                    ret.return_value  # noqa: B018
                except Exception as exc:
                    note["error"] = one_line(str(exc)).removeprefix("error: ")[:300]
            if value is None:
                study.tell(number, state=state.FAIL)
            else:
                study.tell(number, value)
            self._write_record(study)
        done = [t for t in study.get_trials(deepcopy=False) if t.state == state.COMPLETE]
        if not done:
            bad = self.notes.get(numbers[0], {}).get("error", "see its log")
            raise SearchError(f"error: the search stopped: trial {numbers[0]} failed: {bad}")
        return returns

    def _objective(self, number: int) -> float:
        """The trial's objective: ``best.value`` in its ``run.json``, checked."""
        path = self.sweep_dir / str(number) / RUN_FILE
        try:
            manifest = parse_json_object(read_record_file(path), path)
        except RunDirectoryError as exc:
            raise SearchError(f"error: {exc}") from None
        best = manifest.get("best")
        name = self.settings.objective
        if not isinstance(best, dict) or best.get("monitor") != name:
            raise SearchError(
                f"error: {path} records no best value of {name}: the objective must be "
                f"train.monitor (train.monitor={name})"
            )
        value = best.get("value")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise SearchError(f"error: {path}: best.value of {name} is {value!r}, not a number")
        return float(value)

    def _best(self, study: Any) -> Any:
        try:
            return study.best_trial
        except ValueError:
            return None

    def _write_record(self, study: Any) -> None:
        from repro.base.files import atomic_write

        state = self.optuna.trial.TrialState
        names = {state.COMPLETE: "complete", state.FAIL: "fail"}
        trials = []
        for t in study.get_trials(deepcopy=False):
            note = self.notes.get(t.number, {})
            trials.append(
                {
                    "number": t.number,
                    "state": names.get(t.state, "running"),
                    "params": dict(t.params),
                    "value": t.value if t.state == state.COMPLETE else None,
                    "run_dir": str(t.number),
                    "resumed": bool(note.get("resumed", False)),
                    "error": note.get("error"),
                }
            )
        best = self._best(study)
        record = {
            "kind": "hparams_search",
            "sampler": "optuna.samplers.TPESampler",
            "optuna": self.optuna.__version__,
            "repro_seed": OmegaConf.select(self.config, "repro.seed", default=None),
            "settings": {**self.settings.signature(), "n_trials": self.settings.n_trials},
            "overrides": self.arguments,
            "storage": STUDY_FILE,
            "trials": trials,
            "best": None
            if best is None
            else {
                "number": best.number,
                "value": best.value,
                "params": dict(best.params),
                "run_dir": str(best.number),
            },
        }
        import json

        atomic_write(self.sweep_dir / SEARCH_FILE, json.dumps(record, indent=2) + "\n")
