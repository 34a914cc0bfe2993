"""Launching replays of a recorded run, fresh or from one of its checkpoints.

A replay runs the run's entry module in a new process, on the run's own
``config.yaml``, with the environment pins the run recorded (the numerics
variables it ran with and, when its config left the thread count open, the
thread count it used). The original run directory is only read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from repro.capture import CAPTURE_FILE_ENV, CAPTURE_STEP_ENV, STOP_ENV
from repro.checkpoint import CHECKPOINT_DIR
from repro.errors import RunDirectoryError
from repro.record import FINGERPRINTS_FILE, METRICS_FILE, jsonl_text, read_jsonl
from repro.runs import Run

#: Recorded variables a replay re-applies: they change numerics, not where things run.
REPLAYED_ENV = ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "ATEN_CPU_CAPABILITY", "MKL_CBWR",
                "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KMP_DETERMINISTIC_REDUCTION",
                "NVIDIA_TF32_OVERRIDE", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE")


@dataclass
class ReplayResult:
    run_dir: Path
    returncode: int
    seconds: float


def replay_environment(run: Run) -> tuple[dict[str, str], dict[str, str]]:
    """The environment for a replay of ``run``, and the part of it that came from the record."""
    recorded = (run.manifest.get("environment") or {}).get("env") or {}
    pins = {k: v for k, v in recorded.items() if k in REPLAYED_ENV}
    repro_cfg = run.config.get("repro") or {}
    threads = ((run.manifest.get("environment") or {}).get("cpu") or {}).get("num_threads")
    if repro_cfg.get("threads") is None and threads and "OMP_NUM_THREADS" not in pins:
        import torch

        if torch.get_num_threads() != threads:  # torch's default follows the machine: pin the recorded count
            pins["OMP_NUM_THREADS"] = str(threads)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(pins)
    return env, pins


def entry_module(run: Run) -> str:
    module = run.entry.get("module")
    if not module:
        raise RunDirectoryError(f"{run.dir}: run.json does not say which entry module made the run; cannot replay it")
    return module


def world_size(run: Run) -> int:
    return int((run.manifest.get("distributed") or {}).get("world_size") or 1)


def entry_command(run: Run) -> list[str]:
    """How to start the run's entry module: one process, or torchrun with the run's number of ranks."""
    module = entry_module(run)
    ranks = world_size(run)
    if ranks > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                "-m", module]
    return [sys.executable, "-m", module]


def _launch(cmd: list[str], env: dict[str, str], log: TextIO | None, cwd: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        if log is not None:
            log.write(f"    | {line}")
            log.flush()
    return proc.wait(), time.perf_counter() - t0


def replay_fresh(run: Run, out_dir: Path, *, stop_after: int | None = None, capture: tuple[int, Path] | None = None,
                 log: TextIO | None = None) -> ReplayResult:
    """Replay ``run`` from the start into ``out_dir`` (which must not exist)."""
    env, _ = replay_environment(run)
    if stop_after is not None:
        env[STOP_ENV] = str(stop_after)
    if capture is not None:
        env[CAPTURE_STEP_ENV], env[CAPTURE_FILE_ENV] = str(capture[0]), str(capture[1])
    cmd = [*entry_command(run), "--config-path", str(run.dir.resolve()),
           "--config-name", "config", f"hydra.run.dir={out_dir.resolve()}"]
    code, seconds = _launch(cmd, env, log, cwd=Path.cwd())
    return ReplayResult(out_dir, code, seconds)


def replay_from_checkpoint(run: Run, checkpoint: Path, scratch: Path, *, stop_after: int | None = None,
                           capture: tuple[int, Path] | None = None, log: TextIO | None = None) -> ReplayResult:
    """Resume a copy of ``run`` from ``checkpoint`` in ``scratch`` (the original is only read)."""
    resume_key = run.entry.get("resume_key")
    if not resume_key:
        raise RunDirectoryError(f"{run.dir}: run.json names no resume key; cannot replay from a checkpoint")
    from repro.checkpoint import read_header

    step = read_header(checkpoint).step
    scratch.mkdir(parents=True)
    shutil.copy2(run.dir / "config.yaml", scratch / "config.yaml")
    manifest = dict(run.manifest, status="running")
    (scratch / "run.json").write_text(json.dumps(manifest, indent=2))
    for name in (FINGERPRINTS_FILE, METRICS_FILE):
        (scratch / name).write_text(jsonl_text(read_jsonl(run.dir / name, up_to_step=step)))
    (scratch / CHECKPOINT_DIR).mkdir()
    shutil.copy2(checkpoint, scratch / CHECKPOINT_DIR / checkpoint.name)
    env, _ = replay_environment(run)
    if stop_after is not None:
        env[STOP_ENV] = str(stop_after)
    if capture is not None:
        env[CAPTURE_STEP_ENV], env[CAPTURE_FILE_ENV] = str(capture[0]), str(capture[1])
    cmd = [*entry_command(run), f"{resume_key}={scratch.resolve()}"]
    code, seconds = _launch(cmd, env, log, cwd=Path.cwd())
    return ReplayResult(scratch, code, seconds)
