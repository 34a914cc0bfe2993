"""``repro verify``: replay a run and say whether it reproduces, bit for bit.

A full replay runs the run's config from the start in a new directory and
compares every step's fingerprint and the final weights' sha256. ``steps``
stops the replay after that many steps. ``spot`` instead resumes from K of
the run's own checkpoints and replays a short segment after each: a check at
a fraction of the cost of a full rerun.

A replay that ends before it records a step raises ``ReplayFailed``: a
broken replay is an error, never a verdict. What a replay runs (module,
config) is decided in ``repro.tools.replay``; the record is only data.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from repro.base.errors import ReproError, RunDirectoryError
from repro.base.overrides import diff_trees
from repro.tools.progress import ToolProgress, steps_text
from repro.tools.replay import (
    ReplayFailed,
    ReplaySpec,
    make_replay_dir,
    override_value,
    prepare_replay,
    replay_environment,
    replay_fresh,
    replay_from_checkpoint,
    require_started,
)
from repro.tools.replay_entry import entry_settings, resolve_entry
from repro.tools.runs import (
    FINGERPRINTS_FILE,
    RUN_FILE,
    VOLATILE_ENV_KEYS,
    Run,
    first_divergence,
    load_run,
    parse_manifest,
    read_record_file,
)


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
            "environment_diff": [
                {"key": k, "recorded": a, "now": b} for k, a, b in self.environment_diff
            ],
            "flags_diff": [{"key": k, "recorded": a, "now": b} for k, a, b in self.flags_diff],
            "pinned_from_record": self.pinned,
            "replay_seconds": round(self.replay_seconds, 3),
            "recorded_seconds": self.recorded_seconds,
            "segments": self.segments,
        }


def default_out_dir(run_dir: Path) -> Path:
    """outputs/verify/<run name>-<time>, the run's name kept to characters safe in any override."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_dir.resolve().name)[:80] or "run"
    return Path("outputs") / "verify" / f"{name}-{stamp}"


def _applied_flags(manifest: dict[str, Any]) -> dict[str, Any]:
    settings = (manifest.get("determinism") or {}).get("settings") or {}
    return {k: v.get("applied") for k, v in settings.items() if isinstance(v, dict)}


def _compare_records(original: Run, replay_manifest: dict[str, Any], verdict: Verdict) -> None:
    verdict.environment_diff = diff_trees(
        original.manifest.get("environment") or {},
        replay_manifest.get("environment") or {},
        ignore=VOLATILE_ENV_KEYS,
    )
    verdict.flags_diff = diff_trees(
        _applied_flags(original.manifest), _applied_flags(replay_manifest)
    )


def _replay_manifest(folder: Path) -> dict[str, Any]:
    path = folder / RUN_FILE
    return parse_manifest(read_record_file(path), path) if path.exists() else {}


def checkpoint_steps(run: Run) -> list[tuple[Path, int]]:
    """The run's checkpoints with their steps, oldest first; RunDirectoryError naming a bad one."""
    from repro.base.layout import CheckpointError, list_checkpoints, read_header

    out = []
    try:
        paths = list_checkpoints(run.dir)
    except OSError as exc:
        raise RunDirectoryError(
            f"{run.dir / 'checkpoints'}: cannot be listed ({exc.strerror})"
        ) from None
    for path in paths:
        try:
            if not path.is_file() or path.is_symlink():
                raise CheckpointError("not a regular file")
            step = read_header(path).step
        except CheckpointError as exc:
            raise RunDirectoryError(f"{path}: refused ({exc})") from None
        except (KeyError, ValueError, TypeError, OverflowError):
            raise RunDirectoryError(f"{path}: its header has no int step") from None
        except OSError as exc:
            raise RunDirectoryError(f"{path}: cannot be read ({exc.strerror})") from None
        out.append((path, step))
    return out


def _check_counts(steps: int | None, spot: int | None, segment: int) -> None:
    for flag, value in (("--steps", steps), ("--spot", spot), ("--segment", segment)):
        if value is not None and value < 1:
            raise ReproError(f"{flag} {value}: expected an int >= 1")


def verify(
    run_path: str | Path,
    *,
    out_dir: str | Path | None = None,
    steps: int | None = None,
    spot: int | None = None,
    segment: int = 3,
    entry: str | None = None,
    log: TextIO | ToolProgress | None = None,
) -> Verdict:
    """Replay the run in ``run_path`` and compare.

    RunDirectoryError/ReproError for bad input, before anything is written; ReplayFailed when
    the replay ends before recording a step (its directory is then removed again).
    """
    _check_counts(steps, spot, segment)
    run = load_run(run_path)
    recorded = run.fingerprints()
    if not recorded:
        raise RunDirectoryError(
            f"{run_path}: the run recorded no step (empty fingerprints.jsonl); nothing to verify"
        )
    checkpoints = checkpoint_steps(run) if spot else []
    if spot and not checkpoints:
        raise RunDirectoryError(
            f"{run_path}: the run kept no checkpoint; --spot needs some (use a full verify)"
        )
    spec = prepare_replay(run, entry_settings(resolve_entry([run], entry)))
    out = Path(out_dir) if out_dir is not None else default_out_dir(run.dir)
    override_value(out.resolve(), "--out")
    make_replay_dir(out, "--out")
    _, pinned = replay_environment(run)
    progress = ToolProgress.of(log)
    # Only now: bad arguments must print nothing but their error.
    if spec.dropped:
        progress.write(
            f"ignored the {', '.join(spec.dropped)} section of {run.dir / 'config.yaml'}: "
            "a replay takes only the experiment's own keys from a record\n"
        )
    verdict = Verdict(
        str(run.dir),
        str(out),
        "spot" if spot else ("steps" if steps else "full"),
        pinned=pinned,
        recorded_seconds=run.manifest.get("wall_time_s"),
    )
    try:
        if spot:
            _spot(spec, recorded, checkpoints, spot, segment, out, verdict, progress)
        else:
            _full(spec, recorded, steps, out, verdict, progress)
    except ReplayFailed:
        if not (out / RUN_FILE).exists():  # nothing worth keeping: leave no directory behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return verdict


def _full(
    spec: ReplaySpec,
    recorded: list[dict[str, Any]],
    steps: int | None,
    out: Path,
    verdict: Verdict,
    progress: ToolProgress,
) -> None:
    run = spec.run
    last = min(steps, recorded[-1]["step"]) if steps else recorded[-1]["step"]
    with progress.phase(
        f"replaying {steps_text(1, last)} of {run.dir} into {out}",
        label=f"replay 1-{last}",
        total=last,
        watch=out / FINGERPRINTS_FILE,
    ):
        result = replay_fresh(spec, out, stop_after=steps, log=progress.echo)
    verdict.replay_seconds = result.seconds
    replayed = require_started(result, 0, f"the replay of {run.dir}")
    replay_manifest = _replay_manifest(out)
    _compare_records(run, replay_manifest, verdict)
    expected = recorded[:steps] if steps else recorded
    verdict.steps_compared = min(len(expected), len(replayed))
    found = first_divergence(expected, replayed)
    if found is not None:
        step, quantity, a, b = found
        if quantity == "step missing" and a == "present":
            b = f"absent (the replay stopped after step {replayed[-1]['step']}, exit {result.returncode})"
        verdict.divergence = {"step": step, "quantity": quantity, "recorded": a, "replayed": b}
    elif steps is None:
        ours = replay_manifest.get("weights_sha256")
        verdict.weights = {"recorded": run.manifest.get("weights_sha256"), "replayed": ours}
        if ours != run.manifest.get("weights_sha256"):
            verdict.divergence = {
                "step": recorded[-1]["step"],
                "quantity": "weights_sha256",
                "recorded": run.manifest.get("weights_sha256"),
                "replayed": ours,
            }


def _spot(
    spec: ReplaySpec,
    recorded: list[dict[str, Any]],
    checkpoints: list[tuple[Path, int]],
    k: int,
    segment: int,
    out: Path,
    verdict: Verdict,
    progress: ToolProgress,
) -> None:
    last_step = recorded[-1]["step"]
    usable = [c for c in checkpoints if c[1] < last_step] or checkpoints[:1]
    if k >= len(usable):
        chosen = usable
    else:  # spread over the run
        chosen = [
            usable[i]
            for i in sorted({round(j * (len(usable) - 1) / max(k - 1, 1)) for j in range(k)})
        ]
    by_step = {row["step"]: row for row in recorded}
    progress.write(f"spot-checking {len(chosen)} segments of {spec.run.dir} into {out}\n")
    for number, (ckpt, start) in enumerate(chosen, start=1):
        stop = min(start + segment, last_step)
        scratch = out / f"from-step-{start}"
        with progress.phase(
            f"segment {number}/{len(chosen)}: replaying {steps_text(start + 1, stop)} of {spec.run.dir} "
            f"from {ckpt.name}",
            label=f"segment {number}/{len(chosen)}",
            total=stop - start,
            watch=scratch / FINGERPRINTS_FILE,
            after_step=start,
        ):
            result = replay_from_checkpoint(
                spec, ckpt, start, scratch, stop_after=stop, log=progress.echo
            )
        verdict.replay_seconds += result.seconds
        replayed = require_started(result, start, f"the replay of {spec.run.dir} from {ckpt.name}")
        replayed = [r for r in replayed if r["step"] <= stop]
        expected = [by_step[s] for s in range(start + 1, stop + 1) if s in by_step]
        found = first_divergence(expected, replayed)
        verdict.segments.append(
            {
                "checkpoint": ckpt.name,
                "from_step": start,
                "to_step": stop,
                "identical": found is None and bool(replayed),
                "seconds": round(result.seconds, 3),
            }
        )
        verdict.steps_compared += min(len(expected), len(replayed))
        if found is not None and verdict.divergence is None:
            step, quantity, a, b = found
            verdict.divergence = {"step": step, "quantity": quantity, "recorded": a, "replayed": b}
        manifest = _replay_manifest(scratch)
        if manifest and not verdict.environment_diff:
            resumes = manifest.get("resumes") or [{}]
            last = (
                resumes[-1] if isinstance(resumes, list) and isinstance(resumes[-1], dict) else {}
            )
            _compare_records(
                spec.run,
                {"environment": last.get("environment"), "determinism": last.get("determinism")},
                verdict,
            )
