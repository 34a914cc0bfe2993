"""``repro diff``: where two runs part, and the first tensor that differs.

Compares the data fingerprints the tasks declared (``run.fingerprint_data``)
first, then the resolved configs key by key, the environment fingerprints and
the per-step fingerprints. Then it localises: from each run's nearest
checkpoint before the first differing step (or from the start), it re-runs
that step with hooks that capture the parameters, the inputs, every module's
output and every parameter's gradient, and the updated parameters, and names
the first tensor that differs. Everything comes from the two run
directories; the re-runs happen on this machine.

When the data differs, or the configs differ in a key that changes results (anything but the
keys the kit and the project declare result-neutral), that difference
explains the divergence: diff says so and stops, unless asked to dig
(``deep``). Re-runs go through ``repro.tools.replay`` (the project's entry module,
a sanitised config); one that captures nothing raises ``ReplayFailed``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from repro.base.errors import RunDirectoryError
from repro.base.overrides import diff_trees
from repro.base.records import data_fingerprints
from repro.tools.progress import ToolProgress
from repro.tools.replay import (
    ReplayFailed,
    ReplaySpec,
    make_replay_dir,
    prepare_replay,
    replay_fresh,
    replay_from_checkpoint,
)
from repro.tools.replay_entry import EntrySettings, entry_settings, resolve_entry
from repro.tools.runs import (
    FINGERPRINTS_FILE,
    RUN_FILE,
    VOLATILE_ENV_KEYS,
    Run,
    first_divergence,
    load_run,
)
from repro.tools.verify import checkpoint_steps

#: Config keys the kit promises never change the bits (results must not depend on the worker count).
RESULT_NEUTRAL_KEYS = ("repro.num_workers", "repro.persistent_workers")

PHASE_WORDS = {
    "param": "parameter before the step",
    "input": "input",
    "forward": "forward output",
    "backward": "gradient (backward)",
    "update": "parameter after the update",
}


@dataclass
class TensorDifference:
    key: str
    phase: str
    name: str
    max_abs: float | None
    max_rel: float | None
    note: str = ""

    def describe(self) -> str:
        if self.max_abs is None:
            return f"{self.name} ({PHASE_WORDS.get(self.phase, self.phase)}): {self.note}"
        return (
            f"{self.name} ({PHASE_WORDS.get(self.phase, self.phase)}): max abs diff {self.max_abs:.3e}, "
            f"max rel diff {self.max_rel:.3e}"
        )


@dataclass
class DiffReport:
    run_a: str
    run_b: str
    #: Datasets whose fingerprints differ or are recorded in one run only: (name, entry in A, in B).
    data_diff: list[tuple[str, dict[str, str] | None, dict[str, str] | None]] = field(
        default_factory=list
    )
    config_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    environment_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    divergence: dict[str, Any] | None = None
    steps_compared: int = 0
    localisation: dict[str, Any] | None = None
    #: Result-changing config keys that differ: they explain a divergence, so it was not localised.
    explained_by: list[str] = field(default_factory=list)
    #: Datasets that differ, when they explain a divergence (so it was not localised).
    explained_by_data: list[str] = field(default_factory=list)

    @property
    def explanation(self) -> str | None:
        reasons = []
        if self.explained_by_data:
            reasons.append(f"the data differs ({', '.join(map(repr, self.explained_by_data))})")
        if self.explained_by:
            keys = ", ".join(self.explained_by[:5]) + (
                f" (+{len(self.explained_by) - 5} more)" if len(self.explained_by) > 5 else ""
            )
            reasons.append(f"the configs differ in {keys}")
        if not reasons:
            return None
        return (
            f"{' and '.join(reasons)}; that explains the divergence (use --deep to localise anyway)"
        )

    def data_lines(self) -> list[str]:
        """One line per dataset in :attr:`data_diff`."""
        lines = []
        for name, a, b in self.data_diff:
            if a is not None and b is not None:
                lines.append(
                    f"data {name!r} differs: sha256 {a['sha256'][:16]}... vs {b['sha256'][:16]}... "
                    f"({a['what']} vs {b['what']})"
                )
            else:
                side, entry = ("A", a) if a is not None else ("B", b)
                assert entry is not None
                lines.append(
                    f"data {name!r} is recorded in {side} only "
                    f"(sha256 {entry['sha256'][:16]}..., {entry['what']})"
                )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "data_diff": [{"name": n, "a": a, "b": b} for n, a, b in self.data_diff],
            "config_diff": [{"key": k, "a": a, "b": b} for k, a, b in self.config_diff],
            "environment_diff": [{"key": k, "a": a, "b": b} for k, a, b in self.environment_diff],
            "steps_compared": self.steps_compared,
            "divergence": self.divergence,
            "localisation": self.localisation,
            "explained_by": self.explained_by,
            "explanation": self.explanation,
        }


def compare_captures(a: dict[str, Any], b: dict[str, Any]) -> list[TensorDifference]:
    """Every captured tensor that differs, in the order run A computed them."""
    import torch

    out = []
    keys_b = set(b["keys"])
    for key in a["keys"]:
        phase, _, name = key.partition(":")
        if key not in keys_b:
            out.append(TensorDifference(key, phase, name, None, None, "computed in run A only"))
            continue
        x, y = a["tensors"][key], b["tensors"][key]
        if x.shape != y.shape or x.dtype != y.dtype:
            out.append(
                TensorDifference(
                    key,
                    phase,
                    name,
                    None,
                    None,
                    f"shape/dtype {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}",
                )
            )
        elif not torch.equal(x, y):
            if x.is_floating_point() or x.is_complex():
                d = (x.double() - y.double()).abs()
                scale = torch.maximum(x.double().abs(), y.double().abs()).max().item()
                max_abs = d.max().item()
                out.append(
                    TensorDifference(
                        key, phase, name, max_abs, max_abs / scale if scale else float("inf")
                    )
                )
            else:
                out.append(
                    TensorDifference(
                        key,
                        phase,
                        name,
                        None,
                        None,
                        f"{int((x != y).sum())} of {x.numel()} elements differ",
                    )
                )
    for key in b["keys"]:
        if key not in a["tensors"]:
            phase, _, name = key.partition(":")
            out.append(TensorDifference(key, phase, name, None, None, "computed in run B only"))
    return out


def _capture_step(
    spec: ReplaySpec, step: int, scratch: Path, label: str, progress: ToolProgress
) -> tuple[dict[str, Any], str]:
    """Re-run ``step`` of a run with capture hooks; return the capture and where it started from."""
    run = spec.run
    before = [(path, at) for path, at in checkpoint_steps(run) if at < step]
    target = scratch / f"capture-{label}.pt"
    folder = scratch / f"run-{label}"
    at = before[-1][1] if before else 0
    origin = f"checkpoint {before[-1][0].name}" if before else "the start (no earlier checkpoint)"
    with progress.phase(
        f"capturing step {step} of run {label.upper()} ({run.dir}), replaying from {origin}",
        label=f"capture step {step} of {label.upper()}",
        total=step - at,
        watch=folder / FINGERPRINTS_FILE,
        after_step=at,
    ):
        if before:
            result = replay_from_checkpoint(
                spec, before[-1][0], at, folder, capture=(step, target), log=progress.echo
            )
        else:
            make_replay_dir(folder, "replay directory")
            result = replay_fresh(spec, folder, capture=(step, target), log=progress.echo)
    if not target.exists():
        why = f": {result.last_error_line}" if result.last_error_line else ""
        raise ReplayFailed(
            f"re-running step {step} of run {label.upper()} ({run.dir}) captured nothing "
            f"(exit status {result.returncode}){why}"
        )
    import torch

    try:
        return torch.load(target, weights_only=True), origin
    except Exception as exc:  # written by our own replay; still only ever loaded as weights
        raise ReplayFailed(
            f"the capture of step {step} of run {label.upper()} cannot be read ({exc})"
        ) from None


def diff_data(a: Run, b: Run) -> list[tuple[str, dict[str, str] | None, dict[str, str] | None]]:
    """The datasets whose fingerprints differ between two runs, or that one run alone recorded."""
    in_a = data_fingerprints(a.manifest, a.dir / RUN_FILE)
    in_b = data_fingerprints(b.manifest, b.dir / RUN_FILE)
    return [
        (name, in_a.get(name), in_b.get(name))
        for name in sorted(set(in_a) | set(in_b))
        if (in_a.get(name) or {}).get("sha256") != (in_b.get(name) or {}).get("sha256")
    ]


def explaining_keys(config_diff: list[tuple[str, Any, Any]], neutral: tuple[str, ...]) -> list[str]:
    """The differing config keys that change results: all but ``neutral`` ones (and keys below them)."""
    return [
        k for k, _, _ in config_diff if not any(k == n or k.startswith(f"{n}.") for n in neutral)
    ]


def diff_runs(
    path_a: str | Path,
    path_b: str | Path,
    *,
    localise: bool = True,
    deep: bool = False,
    entry: str | None = None,
    keep: str | Path | None = None,
    log: TextIO | ToolProgress | None = None,
) -> DiffReport:
    """Compare two runs; RunDirectoryError/ReproError for bad input, ReplayFailed for a broken re-run.

    Re-runs happen only to localise a divergence, and not when result-changing config keys differ
    (``deep`` re-runs anyway). ``keep`` keeps the re-runs' files in that (new) directory.
    """
    a, b = load_run(path_a), load_run(path_b)
    if a.dir.resolve() == b.dir.resolve():
        raise RunDirectoryError(f"{path_a} and {path_b} are the same run")
    mod_a, mod_b = a.entry.get("module"), b.entry.get("module")
    if mod_a != mod_b:
        raise RunDirectoryError(
            f"{path_a} and {path_b} are runs of different experiments ({mod_a} vs {mod_b})"
        )
    report = DiffReport(str(a.dir), str(b.dir))
    report.data_diff = diff_data(a, b)
    report.config_diff = diff_trees(a.config, b.config)
    report.environment_diff = diff_trees(
        a.manifest.get("environment") or {},
        b.manifest.get("environment") or {},
        ignore=VOLATILE_ENV_KEYS,
    )
    ws_a, ws_b = a.world_size, b.world_size
    if ws_a != ws_b:
        report.environment_diff.insert(0, ("distributed.world_size", ws_a, ws_b))
    fa, fb = a.fingerprints(), b.fingerprints()
    found = first_divergence(fa, fb)
    report.steps_compared = min(len(fa), len(fb))
    if found is None:
        return report
    step, quantity, va, vb = found
    report.divergence = {"step": step, "quantity": quantity, "a": va, "b": vb}
    if not localise or quantity == "step missing":
        return report
    if ws_a != ws_b:
        report.localisation = {
            "step": step,
            "skipped": f"the runs used {ws_a} and {ws_b} ranks: gradients are "
            "averaged differently, so re-running one step cannot compare them tensor by tensor",
        }
        return report
    settings: EntrySettings = entry_settings(resolve_entry([a, b], entry))
    if not deep:
        report.explained_by = explaining_keys(
            report.config_diff, (*RESULT_NEUTRAL_KEYS, *settings.safe_keys)
        )
        report.explained_by_data = [name for name, _, _ in report.data_diff]
        if report.explained_by or report.explained_by_data:
            return report
    spec_a, spec_b = prepare_replay(a, settings), prepare_replay(b, settings)
    progress = ToolProgress.of(log)
    with tempfile.TemporaryDirectory(prefix="repro-diff-") as tmp:
        scratch = Path(keep) if keep is not None else Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        cap_a, origin_a = _capture_step(spec_a, step, scratch, "a", progress)
        cap_b, origin_b = _capture_step(spec_b, step, scratch, "b", progress)
    differences = compare_captures(cap_a, cap_b)
    report.localisation = {
        "step": step,
        "replayed_from": {"a": origin_a, "b": origin_b},
        "tensors_compared": len(cap_a["keys"]),
        "first": differences[0].__dict__ | {"description": differences[0].describe()}
        if differences
        else None,
        "differing": [d.key for d in differences],
    }
    return report
