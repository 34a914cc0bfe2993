"""``repro env [RUN_DIR]``: this environment's fingerprint, or how it differs from a run's, read in a
fresh process under the pins a replay of that run would use (the git state always from the project's
own code directory, never one the record names)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from repro.base.errors import ReproError
from repro.tools.table import print_diff, render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``repro env`` arguments."""
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Print the fingerprint, or the differences from the run's; 0 when there are none, 1 when there are."""
    from repro.base.overrides import diff_trees, flatten
    from repro.core.environment import environment_fingerprint
    from repro.tools.runs import VOLATILE_ENV_KEYS, load_run

    if args.run_dir is None:
        env = environment_fingerprint(_code_dir())
        if args.json:
            print(json.dumps(env, indent=2, default=str))
        else:
            print(render(["key", "value"], sorted(flatten(env).items())))
        return 0
    run = load_run(args.run_dir, require_completed=False)
    now = _environment_under_pins(run)
    rows = diff_trees(run.manifest.get("environment") or {}, now, ignore=VOLATILE_ENV_KEYS)
    if args.json:
        print(
            json.dumps(
                {
                    "run_dir": str(run.dir),
                    "differences": [{"key": k, "recorded": a, "now": b} for k, a, b in rows],
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(f"run: {run.dir} (the current environment is read under the run's pins)")
        print_diff("environment (recorded vs now)", rows, "recorded", "now")
    return 0 if not rows else 1


def _code_dir() -> Path:
    """The project's code directory (where its pyproject.toml with [tool.repro] is), else the cwd."""
    from repro.core.environment import find_project

    project = find_project()
    return project.root if project is not None else Path.cwd()


#: Run in a fresh interpreter that does not import from its working directory; arguments come in argv.
_FINGERPRINT_CODE = """
import json, sys, torch
from repro.core.environment import environment_fingerprint
threads, interop, code_dir = sys.argv[1:4]
if threads:
    torch.set_num_threads(int(threads))
if interop:
    torch.set_num_interop_threads(int(interop))
print(json.dumps(environment_fingerprint(code_dir), default=str))
"""


def _environment_under_pins(run: Any) -> dict[str, Any]:
    """This machine's fingerprint, read in a process started with the pins a replay of ``run`` would use.

    The git state is the project's own code directory's, never a directory the record names.
    """
    import subprocess
    import tempfile

    from repro.tools.replay import replay_environment

    env, _ = replay_environment(run)
    repro_cfg = run.config.get("repro") or {}
    threads, interop = repro_cfg.get("threads"), repro_cfg.get("interop_threads")
    for key, value in (("repro.threads", threads), ("repro.interop_threads", interop)):
        if value is not None and not 1 <= value <= 1 << 16:
            raise ReproError(
                f"{run.dir / 'config.yaml'}: {key} is {value}; expected an int in [1, 65536] or null"
            )
    argv = [str(threads or ""), str(interop or ""), str(_code_dir())]
    with tempfile.TemporaryDirectory(prefix="repro-env-") as cwd:
        out = subprocess.run(
            [sys.executable, "-c", _FINGERPRINT_CODE, *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
        )
    if out.returncode != 0:
        last = ([line for line in out.stderr.splitlines() if line.strip()] or ["no output"])[-1]
        raise ReproError(
            f"reading this environment under the pins of {run.dir} failed "
            f"(exit status {out.returncode}): {last[:200]}"
        )
    return json.loads(out.stdout)
