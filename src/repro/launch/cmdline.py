"""The entry point's command line: Hydra's arguments parsed, a relative ``--config-path`` made absolute,
the run directory every torchrun rank shares, and :func:`fail` for a refused one (one line, exit 2)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from repro.base.overrides import split_override
from repro.base.secrets import redact_text

#: Hydra flags that run no job (help, printing the config, ...): the entry point hands them to Hydra.
SKIP_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit."""
    print(f"error: {redact_text(message)}", file=sys.stderr)
    sys.exit(code)


def torchrun_overrides(args: Any, rank: int, world: int, resume_key: str | None) -> list[str]:
    """Under torchrun every rank must use one run directory: name it after the job, not the clock."""
    if world <= 1:
        return []
    if args.multirun:
        fail("-m sweeps and torchrun do not mix: launch one torchrun per job of the sweep")
    keys = dict(split_override(o) for o in args.overrides)
    if "hydra.run.dir" in keys or (resume_key in keys and keys[resume_key] not in ("auto", "null")):
        # Named by the user, or the resumed run's own directory.
        return []
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id in ("", "none"):
        fail(
            "under torchrun without --standalone, name the run: hydra.run.dir=DIR (the same on every node), "
            "or torchrun --rdzv-id=JOB_ID"
        )
    return [f"hydra.run.dir=outputs/torchrun/{run_id}"]


def absolute_config_path(argv: list[str]) -> list[str]:
    """Make ``--config-path``/``-cp`` absolute: Hydra reads a relative one against the entry module's file,
    which surprises everyone; here it means the current directory."""
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in ("--config-path", "-cp"):
            if arg == flag and i + 1 < len(out):
                out[i + 1] = str(Path(out[i + 1]).resolve())
            elif arg.startswith(flag + "="):
                out[i] = f"{flag}={Path(arg.split('=', 1)[1]).resolve()}"
    return out


#: Options that take no value: a misplaced one can be moved to the front as it is.
_BARE_FLAGS = ("-m", "--multirun", "-r", "--run", "--resolve", "-h", "--help", "--hydra-help")


def parse_args(argv: list[str]) -> Any:
    """Hydra's own parse of ``argv``; a command line it cannot parse stops the program with one line
    that says how to fix it (:func:`command_line_advice`), not argparse's usage."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> None:
        fail(command_line_advice(argv, message))

    # argparse calls error() with its one-line reason; the default prints the usage, then exits.
    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(argv)


def command_line_advice(argv: list[str], message: str) -> str:
    """argparse's reason for refusing ``argv``, as one line that says how to fix the command."""
    if not message.startswith("unrecognized arguments"):
        return f"{message} (the options: --help)"
    first_override = next(
        (i for i, a in enumerate(argv) if not a.startswith("-") and "=" in a), len(argv)
    )
    late = [a for a in argv[first_override:] if a in _BARE_FLAGS]
    if late:
        rest = [a for a in argv if a not in late]
        fixed = " ".join([*dict.fromkeys(late), *rest])
        return (
            f"{', '.join(dict.fromkeys(late))} goes before the overrides: options first, then "
            f"key=value overrides ({fixed})"
        )
    unknown = [a for a in message.partition(":")[2].split() if a.startswith("-")]
    if unknown:
        return (
            f"unknown option {', '.join(unknown)}: --help lists the options; overrides are "
            "key=value, without dashes"
        )
    return f"{message}: overrides are key=value (a value with a space is quoted: key='\"a b\"')"
