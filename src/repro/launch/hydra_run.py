"""One Hydra per process: the pre-run check composes the config, the run uses that same config.

``hydra.main`` composes the config twice before the task starts (once to read ``hydra.mode``, once to
run), and the pre-run check composed it once more before that: about a third of a second each on a
small machine. For a plain single run the entry point composes once here, checks that config, and hands
the same object to Hydra's own ``run_job`` (which makes the directory, writes ``.hydra/`` and sets up
logging exactly as ``hydra.main`` does). Everything else (``-m`` sweeps, ``--cfg``, ``--help``,
``--config-dir``, a resume) goes through ``hydra.main`` unchanged.

It mirrors ``hydra._internal.hydra.Hydra.run`` and ``hydra._internal.utils._run_hydra`` of
hydra-core 1.3 (pinned ``<1.4`` in pyproject.toml); ``tests/launch/test_startup.py`` checks the files
and config it produces against ``hydra.main``'s, so a Hydra upgrade that changes them fails loudly.

Reusing the checked object also means the run directory the check approved (``${now:...}`` is
resolved once and cached on the config) is the one the run writes to.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, open_dict, read_write


class HydraSession:
    """Hydra's config loader for one entry point, created the way ``hydra.main`` creates it."""

    def __init__(self, task_function: Any, config_dir: str, config_name: str) -> None:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.hydra import Hydra
        from hydra._internal.utils import (
            create_automatic_config_search_path,
            detect_calling_file_or_module_from_task_function,
            detect_task_name,
        )

        calling_file, calling_module = detect_calling_file_or_module_from_task_function(
            task_function
        )
        self.task_name = detect_task_name(calling_file, calling_module)
        self.config_name = config_name
        search_path = create_automatic_config_search_path(calling_file, calling_module, config_dir)
        # Not registered as GlobalHydra yet: the pre-run check still uses hydra.initialize_config_dir
        # for its side compositions, which refuses to start while one is registered.
        self.hydra = Hydra(
            task_name=self.task_name, config_loader=ConfigLoaderImpl(config_search_path=search_path)
        )

    def compose(self, overrides: list[str]) -> DictConfig:
        """The config of one run, with Hydra's node, as ``hydra.main`` would compose it."""
        from hydra.core.utils import JobRuntime
        from hydra.types import RunMode

        JobRuntime().set("name", self.task_name)  # hydra.job.name, whatever composed in between
        return self.hydra.compose_config(
            config_name=self.config_name,
            overrides=list(overrides),
            run_mode=RunMode.RUN,
            from_shell=False,
            with_log_configuration=False,
        )

    def run(self, cfg: DictConfig, task_function: Any) -> None:
        """Run ``task_function`` on ``cfg`` (composed by :meth:`compose`) as ``hydra.main`` runs a job."""
        from hydra._internal.callbacks import Callbacks
        from hydra._internal.utils import run_and_report
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.utils import configure_log, run_job
        from hydra.types import HydraContext, RunMode

        def go() -> Any:
            configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
            with read_write(cfg.hydra), open_dict(cfg.hydra):
                cfg.hydra.mode = RunMode.RUN
                # hydra.main found no mode in the config and added this override: record it alike
                cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
            callbacks = Callbacks(cfg)
            callbacks.on_run_start(config=cfg, config_name=self.config_name)
            ret = run_job(
                hydra_context=HydraContext(
                    config_loader=self.hydra.config_loader, callbacks=callbacks
                ),
                task_function=task_function,
                config=cfg,
                job_dir_key="hydra.run.dir",
                job_subdir_key=None,
                configure_logging=True,
            )
            callbacks.on_run_end(config=cfg, config_name=self.config_name, job_return=ret)
            _ = ret.return_value  # raises the task's exception, as hydra.main does
            return ret

        GlobalHydra.instance().clear()
        GlobalHydra.instance().initialize(self.hydra)
        try:
            run_and_report(go)
        finally:
            GlobalHydra.instance().clear()


def single_run_mode(cfg: DictConfig | None) -> bool:
    """Whether ``hydra.main`` would run ``cfg`` as one plain job (no ``hydra.mode`` set in the config)."""
    if cfg is None:
        return False
    try:
        return cfg.hydra.mode is None
    except Exception:
        return False
