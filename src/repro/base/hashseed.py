"""The hash seed, pinned by re-executing the interpreter: light enough to run before anything else.

``PYTHONHASHSEED`` is read when the interpreter starts, so a run that pins it (every profile the kit
ships) needs a second interpreter when the shell set none. The sooner the first one re-executes, the
less it does twice: this module imports nothing but ``os`` and ``sys``, and :func:`repro.entrypoint`
calls :func:`pin_hash_seed_early` when it decorates the task, before Hydra, the configs or torch are
imported. The entry point's ``main()`` makes the same guess itself when that call did not.
"""

from __future__ import annotations

import os
import sys

#: The hash seed of every profile the kit ships (``ReproConfig.pythonhashseed``'s default).
DEFAULT_PYTHONHASHSEED = 0
#: Set in the environment of a process re-executed with the kit's default hash seed before its config
#: was composed (:func:`guess_hash_seed`).
GUESS_ENV = "REPRO_HASH_SEED_GUESSED"
#: Set in the environment of a process the entry point re-executed with a checked launch plan.
PLAN_ENV = "REPRO_LAUNCH_PLAN"


def pin_hash_seed_early(program: str) -> None:
    """Re-execute now with the kit's default hash seed if the entry point would do it later anyway.

    ``program`` is the name of the module asking (the decorated task's ``__module__``): only the module
    that ``python -m pkg.train`` or ``python train.py`` runs as its program (``__main__``) restarts, so a
    tool that imports the experiment's module (``repro verify`` reading its entry settings, a test, a
    notebook) is never restarted by the import. :func:`repro.entrypoint` calls it when it decorates the
    task: the first interpreter then re-executes before importing Hydra, the configs or torch, instead
    of after. Only a plain launch is re-executed early (no ``-``-flag among the arguments but
    ``-m``/``--multirun``): ``--help``, ``--cfg`` and the other flags are left to the entry point's
    ``main()``, which decides as before.
    """
    if program != "__main__":
        return
    if PLAN_ENV in os.environ or GUESS_ENV in os.environ:
        return
    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in sys.argv[1:]):
        return
    guess_hash_seed(sys.argv)


def guess_hash_seed(argv: list[str], seed: int | None = DEFAULT_PYTHONHASHSEED) -> None:
    """Re-execute at once with hash seed ``seed`` (the kit's default) when the shell set none.

    Doing it before the config is composed makes the second start cost only the interpreter and the
    imports; the composed config then decides (a different pin, or none, re-executes once more: see
    :func:`repro.launch.relaunch.relaunch_if_needed`).
    """
    if "PYTHONHASHSEED" in os.environ or seed is None:
        return
    if not repeatable_launch(argv):
        return  # python -c, stdin, an embedded interpreter: the check decides, as it always did
    execute_again(argv, dict(os.environ, PYTHONHASHSEED=str(seed), **{GUESS_ENV: "1"}))


def execute_again(argv: list[str], env: dict[str, str]) -> None:
    """``os.execve`` this interpreter with its own flags, on ``argv`` (``sys.argv``-shaped)."""
    head = interpreter_flags()
    argv = [sys.executable, *head, *(argv[1:] if "-m" in head else argv)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def split_launch() -> tuple[list[str], list[str]]:
    """This process's command line after the interpreter: its own flags (``-X dev``, ``-P``, ...), then
    the rest (``-m module ...``, ``-c code ...``, ``-`` or ``script ...``)."""
    rest = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))[1:]
    flags: list[str] = []
    while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c", "-"):
        flags.append(rest.pop(0))
        if flags[-1] in ("-X", "-W") and rest:
            flags.append(rest.pop(0))
    return flags, rest


def repeatable_launch(argv: list[str]) -> bool:
    """Whether this process started as ``python [flags] -m module ...`` or ``python [flags] script ...``."""
    _, rest = split_launch()
    if rest[:1] == ["-m"]:
        return True
    return bool(rest and argv and rest[0] == argv[0] and os.path.isfile(rest[0]))


def interpreter_flags() -> list[str]:
    """The interpreter's own flags of this process (``-X ...``, ``-P``), then how the program was named."""
    flags, rest = split_launch()
    if rest[:1] == ["-m"] and len(rest) > 1:
        return [*flags, "-m", rest[1]]
    return flags
