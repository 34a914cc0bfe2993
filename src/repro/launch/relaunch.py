"""A checked launch plan's process-start pins put in place: in this process while no library has read
them, else by re-executing the same command with them (``os.execve`` keeps the process id)."""

from __future__ import annotations

import os

from repro.base import startup
from repro.base.hashseed import PLAN_ENV, execute_again
from repro.launch.preflight import LaunchPlan


def relaunch_if_needed(
    plan: LaunchPlan, argv: list[str], *, hash_seed_guessed: bool = False
) -> None:
    """Put the plan's pins in place: in this process where they still can be, else by re-executing.

    Before torch is imported, the variables its libraries read once when they start (cuBLAS' workspace,
    the ATen CPU capability, MKL's CBWR branch, oneDNN's ISA) are set here: in effect as if the process
    had started with them (after torch is imported, only cuBLAS' workspace, and only where torch has
    no GPU backend: :func:`repro.base.startup.still_unread`). ``PYTHONHASHSEED`` is read by the interpreter
    itself: it needs a new one.
    ``os.execve`` keeps the process id (schedulers and torchrun see one process); the plan travels in
    the environment, so the new process starts the task at once. ``hash_seed_guessed``: this process was
    re-executed with the kit's default hash seed before the config was composed (see
    :func:`repro.base.hashseed.guess_hash_seed`); if the config leaves the seed unpinned, the guess is
    taken back.
    """
    missing = {k: v for k, v in plan.pins.items() if os.environ.get(k) != v}
    take_back = hash_seed_guessed and "PYTHONHASHSEED" not in plan.pins
    late = (
        "PYTHONHASHSEED" in missing
        or take_back
        or not all(startup.still_unread(var) for var in missing)
    )
    if not late:
        for var, value in missing.items():
            startup.set_before_libraries(var, value)
        return
    env = dict(os.environ, **plan.pins, **{PLAN_ENV: plan.to_json()})
    if take_back:
        env.pop("PYTHONHASHSEED", None)
    execute_again(argv, env)
