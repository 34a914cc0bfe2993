"""``entrypoint``: Hydra's main, with a check before anything starts.

Before Hydra creates a run directory, the entry point composes the config
from the command line once (each job of a ``-m`` sweep too) and checks it
(:mod:`repro.launch.preflight`):

* a bad override, an unknown key or profile, or a value out of range stops
  the program with one line naming the key and what is allowed (exit 2),
  and nothing is written;
* a run directory that already holds a run is refused, so Hydra never
  overwrites another run's ``.hydra/`` files;
* settings that only work at process start are put in place before torch is
  imported: the ATen CPU capability, MKL's CBWR branch, oneDNN's ISA and
  cuBLAS' workspace in this process (no library has read them yet);
  ``PYTHONHASHSEED`` by re-executing the same command, which happens first
  thing with the kit's default seed when the shell set none: when the task is
  decorated in the program's own module, before Hydra, the configs or torch
  are imported, so the second start costs only the interpreter.
  ``os.execve`` keeps the process id, so schedulers and ``torchrun`` see one
  process.

This module imports nothing heavy, so ``from repro import entrypoint`` and the
decoration run before that restart; the ``main()`` it returns is built in
:mod:`repro.launch.launcher`, the job it runs in :mod:`repro.launch.job`.
A plain single run composes its config once: the check's config is the run's
(:mod:`repro.launch.hydra_run`). Errors raised by the kit inside the task
(``ReproError``) are printed as one line too.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.base.hashseed import pin_hash_seed_early

if TYPE_CHECKING:
    from repro.launch.preflight import ConfigCheck
    from repro.launch.run_dirs import ExistingRunPolicy

__all__ = ["ENTRY_ENV", "TaskFn", "current_entry", "entrypoint", "remember_entry"]

#: How the entry point was launched, for jobs that launcher plugins run in worker processes.
ENTRY_ENV = "REPRO_ENTRY"

#: The experiment: takes the run object (``repro.Run``), returns its result (a dict) or None.
TaskFn = Callable[[Any], Any]

_ENTRY: dict[str, Any] = {}


def entrypoint(
    config_dir: str | Path,
    config_name: str = "config",
    *,
    node: str = "train",
    safe_keys: tuple[str, ...] = (),
    check: ConfigCheck | None = None,
    register: Callable[[], None] | None = None,
    existing_run_ok: ExistingRunPolicy | None = None,
) -> Callable[[TaskFn], Callable[[], Any]]:
    """Decorate an experiment ``task(run)`` like ``hydra.main``: it receives a :class:`repro.Run`.

    The run owns the record, ``setup_reproducibility``, the process group,
    checkpoints and resume; the task holds the experiment's own logic and
    returns its result (a dict, merged into ``run.json``'s ``result``).

    ``node`` is the config node holding the kit's run settings
    (:class:`repro.RunConfig`: ``epochs``, ``max_steps``, ``checkpoint_every``,
    ``keep_checkpoints``, ``resume``, ...); ``<node>.resume`` asks for a resume
    (a run directory or ``auto``), which runs in the resumed run's directory on
    its own config, with Hydra's files for it in ``.hydra/resume-N``.
    ``safe_keys`` adds the project's keys that may differ on resume (speed and
    bookkeeping only). ``check`` validates the project's own config values at
    preflight, before any directory is made. ``register`` stores the project's
    schemas in Hydra's ConfigStore (only for groups that want one); it runs when
    the task is decorated, after the restart below, so a module that imports
    it does not pay for Hydra twice. A ``ReproError`` raised before
    ``run.json`` was written removes the run directory Hydra made for it, so a
    bad input leaves nothing behind.

    Decorating a task in the module the interpreter runs as its program (``__main__``) re-executes
    it at once with the kit's hash seed when the shell set none and the command line is a plain
    launch (:func:`repro.base.hashseed.pin_hash_seed_early`); importing that module from elsewhere
    never does.
    """
    config_dir = str(Path(config_dir).resolve())

    def decorate(task: TaskFn) -> Callable[[], Any]:
        # Before the imports below (Hydra, OmegaConf, the kit's configs) would be done twice.
        pin_hash_seed_early(task.__module__)
        if register is not None:
            register()
        from repro.launch.launcher import build_main

        return build_main(
            task,
            config_dir,
            config_name,
            node=node,
            safe_keys=safe_keys,
            check=check,
            existing_run_ok=existing_run_ok,
        )

    return decorate


def remember_entry(*, config_name: str, resume_key: str) -> None:
    """Record how this process was launched (see :func:`current_entry`), here and in the environment
    of jobs that a launcher plugin runs in other processes."""
    _ENTRY.update(
        module=getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None),
        config_name=config_name,
        resume_key=resume_key,
    )
    os.environ[ENTRY_ENV] = json.dumps(_ENTRY)


def current_entry() -> dict[str, Any]:
    """How this process was launched: the entry module and the resume key (for the ``repro`` tools)."""
    entry = dict(_ENTRY)
    # A job that a launcher (joblib, submitit) started for us.
    if not entry and os.environ.get(ENTRY_ENV):
        try:
            entry = json.loads(os.environ[ENTRY_ENV])
        except ValueError:
            entry = {}
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    entry.setdefault("module", getattr(spec, "name", None))
    return entry
