"""``repro verify``: replay a run and say whether it reproduces, bit for bit.

A full replay runs the run's config from the start in a new directory and
compares every step's fingerprint and the final weights' sha256. ``steps``
stops the replay after that many steps. ``spot`` instead resumes from K of
the run's own checkpoints and replays a short segment after each: a check at
a fraction of the cost of a full rerun.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from repro.checkpoint import list_checkpoints
from repro.errors import ReproError, RunDirectoryError
from repro.record import FINGERPRINTS_FILE, read_jsonl
from repro.replay import replay_environment, replay_fresh, replay_from_checkpoint
from repro.runs import VOLATILE_ENV_KEYS, Run, diff_trees, first_divergence, load_run


@dataclass
class Verdict:
    """The outcome of a verification: IDENTICAL, or where and in what the replay diverged."""

    run_dir: str
    replay_dir: str
    mode: str
    steps_compared: int = 0
    divergence: dict[str, Any] | None = None
    weights: dict[str, Any] | None = None
    environment_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    flags_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    pinned: dict[str, str] = field(default_factory=dict)
    replay_seconds: float = 0.0
    recorded_seconds: float | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.divergence is None and self.steps_compared > 0

    @property
    def headline(self) -> str:
        if self.identical:
            return "IDENTICAL"
        if self.divergence is None:
            return "NOT CHECKED: no step was compared"
        d = self.divergence
        return f"DIVERGED at step {d['step']}: {d['quantity']} differs (recorded {d['recorded']}, replay {d['replayed']})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "IDENTICAL" if self.identical else "DIVERGED",
            "headline": self.headline,
            "run_dir": self.run_dir,
            "replay_dir": self.replay_dir,
            "mode": self.mode,
            "steps_compared": self.steps_compared,
            "divergence": self.divergence,
            "weights": self.weights,
            "environment_diff": [{"key": k, "recorded": a, "now": b} for k, a, b in self.environment_diff],
            "flags_diff": [{"key": k, "recorded": a, "now": b} for k, a, b in self.flags_diff],
            "pinned_from_record": self.pinned,
            "replay_seconds": round(self.replay_seconds, 3),
            "recorded_seconds": self.recorded_seconds,
            "segments": self.segments,
        }


def default_out_dir(run_dir: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("outputs") / "verify" / f"{run_dir.resolve().name}-{stamp}"


def _applied_flags(manifest: dict[str, Any]) -> dict[str, Any]:
    settings = (manifest.get("determinism") or {}).get("settings") or {}
    return {k: v.get("applied") for k, v in settings.items()}


def _compare_records(original: Run, replay_manifest: dict[str, Any], verdict: Verdict) -> None:
    verdict.environment_diff = diff_trees(original.manifest.get("environment") or {},
                                          replay_manifest.get("environment") or {}, ignore=VOLATILE_ENV_KEYS)
    verdict.flags_diff = diff_trees(_applied_flags(original.manifest), _applied_flags(replay_manifest))


def verify(run_path: str | Path, *, out_dir: str | Path | None = None, steps: int | None = None,
           spot: int | None = None, segment: int = 3, log: TextIO | None = None) -> Verdict:
    """Replay the run in ``run_path`` and compare. Raises RunDirectoryError/ReproError for bad input."""
    run = load_run(run_path)
    if steps is not None and steps < 1:
        raise ReproError(f"--steps {steps}: expected an int >= 1")
    if spot is not None and spot < 1:
        raise ReproError(f"--spot {spot}: expected an int >= 1")
    if segment < 1:
        raise ReproError(f"--segment {segment}: expected an int >= 1")
    recorded = run.fingerprints()
    if not recorded:
        raise RunDirectoryError(f"{run_path}: the run recorded no step (empty fingerprints.jsonl); nothing to verify")
    out = Path(out_dir) if out_dir is not None else default_out_dir(run.dir)
    if out.exists():
        raise RunDirectoryError(f"--out {out}: already exists; verification never writes into an existing directory")
    checkpoints = list_checkpoints(run.dir) if spot else []
    if spot and not checkpoints:
        raise RunDirectoryError(f"{run_path}: the run kept no checkpoint; --spot needs some (use a full verify)")
    _, pinned = replay_environment(run)
    if log is not None:  # only now: bad arguments must print nothing but their error
        what = f"the first {steps} steps" if steps else (f"{spot} segments" if spot else f"{len(recorded)} steps")
        log.write(f"replaying {what} of {run.dir} into {out} ...\n")
    verdict = Verdict(str(run.dir), str(out), "spot" if spot else ("steps" if steps else "full"), pinned=pinned,
                      recorded_seconds=run.manifest.get("wall_time_s"))
    if spot:
        _spot(run, recorded, checkpoints, spot, segment, out, verdict, log)
        return verdict

    result = replay_fresh(run, out, stop_after=steps, log=log)
    verdict.replay_seconds = result.seconds
    replay_manifest = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    _compare_records(run, replay_manifest, verdict)
    replayed = read_jsonl(out / FINGERPRINTS_FILE)
    expected = recorded[:steps] if steps else recorded
    verdict.steps_compared = min(len(expected), len(replayed))
    found = first_divergence(expected, replayed)
    if found is not None:
        step, quantity, a, b = found
        if quantity == "step missing" and a == "present":
            b = f"absent (the replay stopped after step {replayed[-1]['step'] if replayed else 0}, exit {result.returncode})"
        verdict.divergence = {"step": step, "quantity": quantity, "recorded": a, "replayed": b}
    elif steps is None:
        ours = replay_manifest.get("weights_sha256")
        verdict.weights = {"recorded": run.manifest.get("weights_sha256"), "replayed": ours}
        if ours != run.manifest.get("weights_sha256"):
            verdict.divergence = {"step": recorded[-1]["step"], "quantity": "weights_sha256",
                                  "recorded": run.manifest.get("weights_sha256"), "replayed": ours}
    return verdict


def _spot(run: Run, recorded: list[dict[str, Any]], checkpoints: list[Path], k: int, segment: int, out: Path,
          verdict: Verdict, log: TextIO | None) -> None:
    from repro.checkpoint import read_header

    last_step = recorded[-1]["step"]
    usable = [c for c in checkpoints if read_header(c).step < last_step] or checkpoints[:1]
    if k >= len(usable):
        chosen = usable
    else:  # spread over the run
        chosen = [usable[i] for i in sorted({round(j * (len(usable) - 1) / max(k - 1, 1)) for j in range(k)})]
    by_step = {row["step"]: row for row in recorded}
    out.mkdir(parents=True)
    for ckpt in chosen:
        start = read_header(ckpt).step
        stop = min(start + segment, last_step)
        result = replay_from_checkpoint(run, ckpt, out / f"from-step-{start}", stop_after=stop, log=log)
        verdict.replay_seconds += result.seconds
        path = out / f"from-step-{start}" / "fingerprints.jsonl"
        replayed = read_jsonl(path)
        replayed = [r for r in replayed if start < r["step"] <= stop]
        expected = [by_step[s] for s in range(start + 1, stop + 1) if s in by_step]
        found = first_divergence(expected, replayed)
        verdict.segments.append({"checkpoint": ckpt.name, "from_step": start, "to_step": stop,
                                 "identical": found is None and bool(replayed), "seconds": round(result.seconds, 3)})
        verdict.steps_compared += min(len(expected), len(replayed))
        if found is not None and verdict.divergence is None:
            step, quantity, a, b = found
            verdict.divergence = {"step": step, "quantity": quantity, "recorded": a, "replayed": b}
        manifest_path = out / f"from-step-{start}" / "run.json"
        if manifest_path.exists() and not verdict.environment_diff:
            manifest = json.loads(manifest_path.read_text())
            resumes = manifest.get("resumes") or [{}]
            _compare_records(run, {"environment": resumes[-1].get("environment"),
                                   "determinism": resumes[-1].get("determinism")}, verdict)
