"""``hydra/sweeper=search``: a seeded, resumable Optuna search (:mod:`repro.launch.search`).

Hydra finds sweepers in the ``hydra_plugins`` namespace package and imports this module on every
start, so it imports nothing heavy: Optuna and the search load only when a search runs.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SearchSweeper(Sweeper):
    """Runs ``n_trials`` trials of a TPE search over ``params`` (see :mod:`repro.launch.search`)."""

    def __init__(self, **settings: Any) -> None:
        # The settings are read from the full config in setup(), where ${train.monitor} resolves.
        self.search: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        from repro.launch.search import Search

        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.search = Search(config, launcher)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.run(arguments)
