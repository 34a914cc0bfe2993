"""Reading run directories for the ``repro`` tools, and comparing what they hold.

Only the files of the run directory contract are read: ``run.json``,
``config.yaml`` and ``fingerprints.jsonl`` (and checkpoints' headers). A run
made on another machine compares just as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from repro.errors import RunDirectoryError

#: Environment keys that always differ between two processes and say nothing about the bits.
VOLATILE_ENV_KEYS = ("argv", "code_dir", "env.RANK", "env.LOCAL_RANK", "env.WORLD_SIZE",
                     "env_at_start.RANK", "env_at_start.LOCAL_RANK", "env_at_start.WORLD_SIZE")


@dataclass
class Run:
    """A run directory, as the tools see it."""

    dir: Path
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.manifest.get("status"))

    @property
    def entry(self) -> dict[str, Any]:
        return self.manifest.get("entry") or {}

    def fingerprints(self) -> list[dict[str, Any]]:
        from repro.record import FINGERPRINTS_FILE, read_jsonl

        return read_jsonl(self.dir / FINGERPRINTS_FILE)


def load_run(path: str | Path, *, require_completed: bool = True) -> Run:
    """The run in ``path``, or a one-line RunDirectoryError saying why it is not usable."""
    run_dir = Path(path)
    if not run_dir.exists():
        raise RunDirectoryError(f"{path}: no such directory")
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{path}: not a directory")
    if not (run_dir / "run.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise RunDirectoryError(f"{path}: not a run directory (no run.json and config.yaml)")
    try:
        manifest = json.loads((run_dir / "run.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RunDirectoryError(f"{path}: unreadable run record ({type(exc).__name__})") from None
    run = Run(run_dir, manifest, config)
    if require_completed and run.status != "completed":
        why = {"running": "is still running (or was killed: resume it first)",
               "failed": f"failed ({manifest.get('error') or 'no error recorded'})"}.get(run.status,
                                                                                       f"has status {run.status!r}")
        raise RunDirectoryError(f"{path}: the run {why}; only completed runs can be checked")
    return run


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {"a.b.c": leaf}; lists are leaves."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def diff_trees(a: Any, b: Any, ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every leaf that differs; '<absent>' marks a missing key."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if any(key == i or key.startswith(f"{i}.") for i in ignore):
            continue
        va, vb = fa.get(key, "<absent>"), fb.get(key, "<absent>")
        if va != vb:
            out.append((key, va, vb))
    return out


def first_divergence(a: list[dict[str, Any]], b: list[dict[str, Any]]
                     ) -> tuple[int, str, Any, Any] | None:
    """The first (step, quantity, value in a, value in b) where two fingerprint logs part.

    Steps present in one log only count as a divergence at the first such step.
    """
    by_step_b = {row["step"]: row for row in b}
    for row in a:
        other = by_step_b.get(row["step"])
        if other is None:
            return row["step"], "step missing", "present", "absent"
        for key in sorted(set(row) | set(other)):
            if row.get(key) != other.get(key):
                return row["step"], key, row.get(key), other.get(key)
    steps_a = {row["step"] for row in a}
    extra = [row["step"] for row in b if row["step"] not in steps_a]
    if extra:
        return min(extra), "step missing", "absent", "present"
    return None
