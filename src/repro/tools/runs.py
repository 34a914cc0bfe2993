"""Reading run directories for the ``repro`` tools, and comparing what they hold.

Only the files of the run directory contract are read: ``run.json``,
``config.yaml`` and ``fingerprints.jsonl`` (and checkpoints' headers). A run
made on another machine compares just as well.

Every file is untrusted data. It is read only if it is a regular file (a
symlink to one is followed; a loop, a FIFO or a device is refused), of a
bounded size, and checked for the shapes the tools rely on before anything
uses it. What does not fit raises :class:`RunDirectoryError` with one line
naming the file, the key or line, what it holds and what is allowed. Nothing
read here is ever imported, executed or used to pick a directory to run in.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.base.errors import RunDirectoryError
from repro.base.layout import CONFIG_FILE, FINGERPRINTS_FILE, RUN_FILE  # noqa: E402  (re-exported to the tools)

# A dotted Python module name, as a record or a user may name an entry module (re-exported to the tools).
from repro.base.project import MODULE_NAME

# The shared reader of record files (re-exported to the tools).
from repro.base.records import (  # noqa: F401
    MAX_RECORD_BYTES,
    parse_config,
    parse_json_object,
    read_record_file,
)
from repro.base.records import describe as _describe

#: Environment keys that always differ between two processes and say nothing about the bits.
VOLATILE_ENV_KEYS = (
    "argv",
    "code_dir",
    "env.RANK",
    "env.LOCAL_RANK",
    "env.WORLD_SIZE",
    "env_at_start.RANK",
    "env_at_start.LOCAL_RANK",
    "env_at_start.WORLD_SIZE",
)

_OBJECT, _TEXT, _INT, _NUMBER, _LIST = "an object", "a string", "an int", "a number", "a list"
#: (dotted key in run.json, what it must be when present and not null). Keys not listed are not read.
MANIFEST_SHAPES: tuple[tuple[str, str], ...] = (
    ("status", _TEXT),
    ("error", _TEXT),
    ("seed", _INT),
    ("wall_time_s", _NUMBER),
    ("weights_sha256", _TEXT),
    ("overrides", _LIST),
    ("entry", _OBJECT),
    ("entry.module", _TEXT),
    ("entry.resume_key", _TEXT),
    ("entry.config_name", _TEXT),
    ("distributed", _OBJECT),
    ("distributed.world_size", _INT),
    ("determinism", _OBJECT),
    ("determinism.settings", _OBJECT),
    ("environment", _OBJECT),
    ("environment.env", _OBJECT),
    ("environment.cpu", _OBJECT),
    ("environment.cpu.num_threads", _INT),
)
#: (dotted key in config.yaml, what it must be when present and not null).
CONFIG_SHAPES: tuple[tuple[str, str], ...] = (
    ("repro", _OBJECT),
    ("repro.threads", _INT),
    ("repro.interop_threads", _INT),
)


@dataclass
class Run:
    """A run directory whose ``run.json`` and ``config.yaml`` passed the shape checks."""

    dir: Path
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.manifest.get("status"))

    @property
    def entry(self) -> dict[str, Any]:
        return self.manifest.get("entry") or {}

    @property
    def world_size(self) -> int:
        return int((self.manifest.get("distributed") or {}).get("world_size") or 1)

    def fingerprints(self) -> list[dict[str, Any]]:
        """The rows of ``fingerprints.jsonl`` (checked: see :func:`read_fingerprints`)."""
        return read_fingerprints(self.dir / FINGERPRINTS_FILE)


def _fits(value: Any, kind: str) -> bool:
    if kind == _OBJECT:
        return isinstance(value, dict)
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _LIST:
        return isinstance(value, list)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == _INT else isinstance(value, int | float)


def check_shapes(tree: dict[str, Any], shapes: tuple[tuple[str, str], ...], where: Path) -> None:
    """Raise RunDirectoryError for the first key of ``shapes`` whose value has the wrong type."""
    for key, kind in shapes:
        node: Any = tree
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not _fits(node, kind):
            raise RunDirectoryError(f"{where}: {key} is {_describe(node)}; expected {kind} or null")


def parse_manifest(text: str, where: Path) -> dict[str, Any]:
    """A ``run.json`` as a dict whose keys the tools read have the expected shapes."""
    manifest = parse_json_object(text, where)
    check_shapes(manifest, MANIFEST_SHAPES, where)
    module = (manifest.get("entry") or {}).get("module")
    if module is not None and not MODULE_NAME.fullmatch(module):
        raise RunDirectoryError(
            f"{where}: entry.module is {_describe(module)}; expected a dotted module name"
        )
    env = (manifest.get("environment") or {}).get("env") or {}
    for key, value in env.items():
        if not isinstance(value, str) or "\0" in value or "\0" in key or "=" in key:
            raise RunDirectoryError(
                f"{where}: environment.env.{key} is {_describe(value)}; expected a string"
            )
    settings = (manifest.get("determinism") or {}).get("settings") or {}
    for key, value in settings.items():
        if not isinstance(value, dict):
            raise RunDirectoryError(
                f"{where}: determinism.settings.{key} is {_describe(value)}; expected an object"
            )
    for key in ("distributed.world_size", "environment.cpu.num_threads"):
        section, leaf = key.rsplit(".", 1)
        node: Any = manifest
        for part in section.split("."):
            node = node.get(part) or {}
        if node.get(leaf) is not None and not 1 <= node[leaf] <= 1 << 16:
            raise RunDirectoryError(
                f"{where}: {key} is {node[leaf]}; expected an int in [1, 65536]"
            )
    return manifest


def read_fingerprints(path: Path, *, up_to_step: int | None = None) -> list[dict[str, Any]]:
    """The complete rows of a ``fingerprints.jsonl`` (a last line cut short by a kill is dropped).

    Every row must be a JSON object with an int ``step`` >= 0, steps strictly increasing;
    anything else raises RunDirectoryError naming the line. A missing file has no rows.
    """
    if not os.path.lexists(path):
        return []
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(read_record_file(path).splitlines(keepends=True), start=1):
        if not line.endswith("\n") or not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            raise RunDirectoryError(
                f"{path}: line {number} is not JSON ({_describe(line.strip())})"
            ) from None
        if not isinstance(row, dict):
            raise RunDirectoryError(
                f"{path}: line {number} holds {_describe(row)}; expected an object"
            )
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise RunDirectoryError(
                f"{path}: line {number} has step {_describe(step)}; expected an int >= 0"
            )
        if rows and step <= rows[-1]["step"]:
            raise RunDirectoryError(
                f"{path}: line {number} has step {step} after step {rows[-1]['step']}; "
                "steps must increase"
            )
        rows.append(row)
    return rows if up_to_step is None else [r for r in rows if r["step"] <= up_to_step]


def _check_dir(path: str | Path) -> Path:
    run_dir = Path(path)
    try:
        info = run_dir.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunDirectoryError(f"{path}: a symlink loop, not a directory") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise RunDirectoryError(f"{path}: no such directory") from None
        raise RunDirectoryError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RunDirectoryError(f"{path}: not a directory")
    return run_dir


def load_run(path: str | Path, *, require_completed: bool = True) -> Run:
    """The run in ``path``, or a one-line RunDirectoryError saying why it is not usable."""
    run_dir = _check_dir(path)
    if not all(os.path.lexists(run_dir / name) for name in (RUN_FILE, CONFIG_FILE)):
        raise RunDirectoryError(f"{path}: not a run directory (no {RUN_FILE} and {CONFIG_FILE})")
    manifest = parse_manifest(read_record_file(run_dir / RUN_FILE), run_dir / RUN_FILE)
    config = parse_config(read_record_file(run_dir / CONFIG_FILE), run_dir / CONFIG_FILE)
    check_shapes(config, CONFIG_SHAPES, run_dir / CONFIG_FILE)
    run = Run(run_dir, manifest, config)
    if require_completed and run.status != "completed":
        error = manifest.get("error") or "no error recorded"
        why = {
            "running": "is still running (or was killed: resume it first)",
            "failed": f"failed ({_describe(error)[1:-1]})",
        }.get(run.status, f"has status {run.status!r}")
        raise RunDirectoryError(f"{path}: the run {why}; only completed runs can be checked")
    return run


def first_divergence(
    a: list[dict[str, Any]], b: list[dict[str, Any]]
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
