"""The price of `repro=portable`: its time against `default` and `portable_same_model`, same machine.

    python scripts/bench_portable.py [--repeats 3] [--skip-example] [overrides ...]

Two workloads, each profile in its own fresh process, alternating, `--repeats` times:
- the example's main job (`python -m experiment.train repro=PROFILE`); its training time is
  read from run.json (wall_time_s, which excludes process start-up);
- the `repro selftest` workload (convolutions, attention, AdamW), timed inside the process,
  with each profile's pins: `default` runs it with the machine's threads and torch's backends.
Prints the medians and the ratios against `default` and against `portable_same_model` (the
portable profile with oneDNN and NNPACK left on, as it was before they were switched off).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROFILES = ("default", "portable_same_model", "portable")
#: The selftest workload's settings per profile: (environment pins, workload flags, threads).
WORKLOAD_SETTINGS = {
    "default": ({}, {"mkldnn": True, "nnpack": True}, None),
    "portable_same_model": (
        {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        {"mkldnn": True, "nnpack": True},
        1,
    ),
    "portable": (
        {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        {"mkldnn": False, "nnpack": False},
        1,
    ),
}


def clean_env() -> dict[str, str]:
    drop = ("REPRO_", "ATEN_", "MKL_", "ONEDNN_", "OMP_", "PYTHONHASHSEED")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def example_run(profile: str, run_dir: Path, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "experiment.train", f"repro={profile}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(
        [*cmd, *overrides], env=clean_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{profile} run failed:\n{proc.stderr}")
    return float(json.loads((run_dir / "run.json").read_text())["wall_time_s"])


def workload_run(profile: str) -> float:
    env_pins, flags, threads = WORKLOAD_SETTINGS[profile]
    code = (
        "import time; from repro.tools.selftest_workload import workload; "
        "t = time.perf_counter(); "
        f"workload(flags={flags!r}, threads={threads!r}); "
        "print(time.perf_counter() - t)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean_env(), **env_pins},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{profile} selftest workload failed:\n{proc.stderr}")
    return float(proc.stdout.strip().splitlines()[-1])


def report(title: str, times: dict[str, list[float]]) -> None:
    med = {p: statistics.median(t) for p, t in times.items()}
    print(f"\n{title}")
    print(f"  {'profile':20s} {'median s':>9s} {'x default':>10s} {'x same_model':>13s}")
    for profile, value in med.items():
        print(
            f"  {profile:20s} {value:9.2f} {value / med['default']:10.2f} "
            f"{value / med['portable_same_model']:13.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-example", action="store_true", help="time the workload only")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the example's runs")
    args = parser.parse_args()
    workload: dict[str, list[float]] = {p: [] for p in PROFILES}
    example: dict[str, list[float]] = {p: [] for p in PROFILES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for profile in PROFILES:
                workload[profile].append(workload_run(profile))
                line = (
                    f"  run {i + 1} {profile:20s} selftest workload {workload[profile][-1]:6.2f} s"
                )
                if not args.skip_example:
                    run_dir = Path(tmp) / f"{profile}-{i}"
                    example[profile].append(example_run(profile, run_dir, args.overrides))
                    line += f"   example {example[profile][-1]:6.2f} s"
                print(line, flush=True)
    print(f"cores: {os.cpu_count()}, overrides: {' '.join(args.overrides) or '(none)'}")
    report("selftest workload (24 steps; default at the machine's threads)", workload)
    if not args.skip_example:
        report("example main job (training time from run.json)", example)


if __name__ == "__main__":
    main()
