"""Launching replays of a recorded run, fresh or from one of its checkpoints.

What a replay runs comes from the project, never from the record alone:

* the entry module is the one the user names with ``--entry``, else the one
  the record names when it belongs to the project's own packages
  (:mod:`repro.base.project`), else the project's (``[tool.repro] entry`` in
  the nearest ``pyproject.toml``); a record naming a module outside them is
  refused, with the flag that overrides (:mod:`repro.tools.replay_entry`);
* the config is a sanitised copy of the run's ``config.yaml``, written into
  the replay's own directory: a ``hydra:`` section and the loggers
  (``logger:``, so a replay never writes to the run's trackers) are dropped, and the
  replay is refused when the config holds interpolations, a ``defaults``
  list, or instantiation keys (``_target_`` and friends) that the project's
  own composed config does not hold with the same value
  (:mod:`repro.tools.replay_config`);
* the process starts without the current directory on ``sys.path``
  (``PYTHONSAFEPATH``), so a module planted where the user stands is not
  imported, and with the environment pins the run recorded.

The original run directory is only read. A replay that exits before it
records a step raises :class:`ReplayFailed`: it is no verdict.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import OmegaConf

from repro.base.envvars import NUMERICS_ENV
from repro.base.errors import ReproError, RunDirectoryError
from repro.tools.replay_config import sanitise_config
from repro.tools.replay_entry import EntrySettings
from repro.tools.runs import CONFIG_FILE, FINGERPRINTS_FILE, RUN_FILE, Run, read_fingerprints

#: Recorded variables a replay re-applies: they change numerics, not where things run.
# One list, in repro.base.envvars.
REPLAYED_ENV = NUMERICS_ENV
#: Where a replay keeps the sanitised config it runs (its --config-path), inside its own directory.
REPLAY_CONFIG_DIR = ".replay-config"
#: What a recorded numerics variable may hold before a replay applies it.
_PIN_VALUE = re.compile(r"[A-Za-z0-9_:.,=-]{0,64}")


class Echo(Protocol):
    """Where a replay's own output is echoed: a text stream (stderr) or a tool's progress."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class ReplayFailed(ReproError):
    """A replay process ended before it recorded a step: nothing was compared."""


@dataclass
class ReplayResult:
    run_dir: Path
    returncode: int
    seconds: float
    last_error_line: str = ""


@dataclass
class ReplaySpec:
    """Everything a replay of one run needs, checked before anything is written."""

    run: Run
    entry: EntrySettings
    config: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


def prepare_replay(run: Run, entry: EntrySettings) -> ReplaySpec:
    """Check that ``run`` can be replayed with ``entry``; nothing is written."""
    config, dropped = sanitise_config(run, entry)
    replay_environment(run)  # its errors belong here, before anything is written
    return ReplaySpec(run, entry, config, dropped)


def _write_config(config: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(OmegaConf.to_yaml(OmegaConf.create(config)), encoding="utf-8")


# ---------------------------------------------------------------- how it is launched


def replay_environment(run: Run) -> tuple[dict[str, str], dict[str, str]]:
    """The environment for a replay of ``run``, and the part of it that came from the record."""
    recorded = (run.manifest.get("environment") or {}).get("env") or {}
    pins = {
        k: v for k, v in recorded.items() if k in REPLAYED_ENV
    }  # nothing else, LD_PRELOAD never
    for key, value in pins.items():
        counted = key.endswith("_THREADS")
        if not _PIN_VALUE.fullmatch(value) or (
            counted and not (value.isdigit() and 1 <= int(value) <= 1 << 16)
        ):
            allowed = "an int in [1, 65536]" if counted else "up to 64 letters, digits and _:.,=-"
            raise RunDirectoryError(
                f"{run.dir / RUN_FILE}: environment.env.{key} is {value[:40]!r}; expected {allowed}"
            )
    repro_cfg = run.config.get("repro") or {}
    threads = ((run.manifest.get("environment") or {}).get("cpu") or {}).get("num_threads")
    if repro_cfg.get("threads") is None and threads and "OMP_NUM_THREADS" not in pins:
        import torch

        if (
            torch.get_num_threads() != threads
        ):  # torch's default follows the machine: pin the record's
            pins["OMP_NUM_THREADS"] = str(threads)
    # The kit's own variables never leak into a replay, except a fault the user sets for the tool itself
    # (REPRO_FAULT_*: e.g. to see `repro diff` localise an injected perturbation); never from the record.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REPRO_") or k.startswith("REPRO_FAULT_")
    }
    env.update(pins)
    env["PYTHONSAFEPATH"] = "1"  # never import from the directory the replay starts in
    return env, pins


def override_value(path: Path, what: str) -> str:
    """``path`` as a quoted Hydra override value; ReproError for characters Hydra would interpret."""
    text = str(path)
    if "${" in text or "\\" in text or any(ord(c) < 32 for c in text):
        raise ReproError(
            f"{what} {text!r}: a replay directory may not contain '${{', a backslash or control "
            "characters (Hydra would interpret them); choose another --out"
        )
    return "'" + text.replace("'", "\\'") + "'"


def entry_command(spec: ReplaySpec) -> list[str]:
    """How to start the entry module: one process, or torchrun with the run's number of ranks."""
    ranks = spec.run.world_size
    if ranks > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            "-m",
            spec.entry.module,
        ]
    return [sys.executable, "-m", spec.entry.module]


def _launch(cmd: list[str], env: dict[str, str], log: Echo | None) -> tuple[int, float, str]:
    """Run ``cmd``, echoing its output to ``log``; (exit status, seconds, last non-empty stderr line)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=Path.cwd(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
    )
    last = [""]

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip() and not line.startswith("Set the environment variable HYDRA_FULL"):
                last[0] = line.strip()
            if log is not None:
                log.write(f"    | {line}")
                log.flush()

    reader = threading.Thread(target=pump_stderr, daemon=True)
    reader.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        if log is not None:
            log.write(f"    | {line}")
            log.flush()
    code = proc.wait()
    reader.join()
    return code, time.perf_counter() - t0, last[0]


def _with_controls(
    env: dict[str, str], stop_after: int | None, capture: tuple[int, Path] | None
) -> dict[str, str]:
    from repro.run.capture import (
        CAPTURE_FILE_ENV,
        CAPTURE_STEP_ENV,
        STOP_ENV,
    )  # imports torch: only now

    env = dict(env)
    if stop_after is not None:
        env[STOP_ENV] = str(stop_after)
    if capture is not None:
        env[CAPTURE_STEP_ENV], env[CAPTURE_FILE_ENV] = str(capture[0]), str(capture[1])
    return env


def make_replay_dir(path: Path, what: str) -> None:
    """Create ``path`` (which must not exist), or ReproError naming the flag and why it cannot be."""
    if os.path.lexists(path):
        raise RunDirectoryError(
            f"{what} {path}: already exists; a replay never writes into an existing directory"
        )
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise RunDirectoryError(f"{what} {path}: cannot be created ({exc.strerror})") from None


def replay_fresh(
    spec: ReplaySpec,
    out_dir: Path,
    *,
    stop_after: int | None = None,
    capture: tuple[int, Path] | None = None,
    log: Echo | None = None,
) -> ReplayResult:
    """Replay the run from the start into ``out_dir``, which must exist and be empty (see make_replay_dir)."""
    run_dir = override_value(out_dir.resolve(), "replay directory")
    config_dir = out_dir / REPLAY_CONFIG_DIR
    _write_config(spec.config, config_dir)
    env, _ = replay_environment(spec.run)
    cmd = [
        *entry_command(spec),
        "--config-path",
        str(config_dir.resolve()),
        "--config-name",
        "config",
        f"hydra.run.dir={run_dir}",
    ]
    code, seconds, last = _launch(cmd, _with_controls(env, stop_after, capture), log)
    return ReplayResult(out_dir, code, seconds, last)


def replay_from_checkpoint(
    spec: ReplaySpec,
    checkpoint: Path,
    step: int,
    scratch: Path,
    *,
    stop_after: int | None = None,
    capture: tuple[int, Path] | None = None,
    log: Echo | None = None,
) -> ReplayResult:
    """Resume a copy of the run from ``checkpoint`` (taken at ``step``) in ``scratch`` (made here).

    The copy holds the sanitised config, the record's rows up to ``step`` and the checkpoint;
    the original run directory is only read.
    """
    import json

    from repro.base.files import jsonl_text
    from repro.base.layout import CHECKPOINT_DIR, METRICS_FILE

    key = spec.entry.resume_key
    if not key:
        raise ReproError(
            f"entry module {spec.entry.module!r} takes no resume key; cannot replay from a checkpoint"
        )
    target = override_value(scratch.resolve(), "replay directory")
    make_replay_dir(scratch, "replay directory")
    run = spec.run
    _write_config(spec.config, scratch)
    (scratch / RUN_FILE).write_text(
        json.dumps(dict(run.manifest, status="running"), indent=2, default=str)
    )
    rows = read_fingerprints(run.dir / FINGERPRINTS_FILE, up_to_step=step)
    (scratch / FINGERPRINTS_FILE).write_text(jsonl_text(rows))
    (scratch / METRICS_FILE).write_text(jsonl_text(_metrics_rows(run.dir / METRICS_FILE, step)))
    (scratch / CHECKPOINT_DIR).mkdir()
    shutil.copyfile(checkpoint, scratch / CHECKPOINT_DIR / checkpoint.name)
    env, _ = replay_environment(run)
    code, seconds, last = _launch(
        [*entry_command(spec), f"{key}={target}"], _with_controls(env, stop_after, capture), log
    )
    return ReplayResult(scratch, code, seconds, last)


def _metrics_rows(path: Path, step: int) -> list[dict[str, Any]]:
    """The metrics rows up to ``step``; unreadable lines are left out (metrics are not compared)."""
    import json

    from repro.tools.runs import read_record_file

    if not os.path.lexists(path):
        return []
    rows = []
    for line in read_record_file(path).splitlines(keepends=True):
        with contextlib.suppress(ValueError, RecursionError):
            row = json.loads(line) if line.endswith("\n") else None
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                rows.append(row)
    return rows


def require_started(result: ReplayResult, after_step: int, what: str) -> list[dict[str, Any]]:
    """The fingerprints a replay recorded after ``after_step``; ReplayFailed when it recorded none."""
    rows = [
        r for r in read_fingerprints(result.run_dir / FINGERPRINTS_FILE) if r["step"] > after_step
    ]
    if not rows:
        why = f": {result.last_error_line}" if result.last_error_line else ""
        raise ReplayFailed(
            f"{what} exited with status {result.returncode} before recording a step{why}"
        )
    return rows
