"""Speed of `repro=portable` relative to `repro=default` on the example training (one run, same machine).

    python scripts/bench_portable.py [--repeats 3] [overrides ...]

Each profile runs the main job in its own process, alternating, `--repeats`
times; the training time is read from each run's run.json (wall_time_s,
which excludes process start-up). Prints the medians and their ratio.
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


def one_run(profile: str, run_dir: Path, overrides: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiment.train",
            f"repro={profile}",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{profile} run failed:\n{proc.stderr}")
    return float(json.loads((run_dir / "run.json").read_text())["wall_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both profiles")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"default": [], "portable": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for profile in times:
                seconds = one_run(profile, Path(tmp) / f"{profile}-{i}", args.overrides)
                times[profile].append(seconds)
                print(f"  {profile:9s} run {i + 1}: {seconds:.2f} s", flush=True)
    med = {p: statistics.median(t) for p, t in times.items()}
    print(f"cores: {os.cpu_count()}, overrides: {' '.join(args.overrides) or '(none)'}")
    print(f"{'profile':10s} {'median s':>9s}")
    for profile, value in med.items():
        print(f"{profile:10s} {value:9.2f}")
    print(f"portable / default time ratio: {med['portable'] / med['default']:.2f}")


if __name__ == "__main__":
    main()
