"""Files written and read safely: atomic whole-file writes, the record's JSON-lines format, hashes.

Whole files are written to a temp file in the same folder, fsynced and renamed over the target, so a
reader (or a process killed mid-write) sees the old file or the new one, never a part. They get the
permissions the user's umask gives (0644 by default), so colleagues on a shared machine can read runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process umask when the kit was imported.
UMASK = _umask()


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fchmod(
                f.fileno(), 0o666 & ~UMASK
            )  # mkstemp makes 0600: follow the umask as open() would
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: str | Path, *, up_to_step: int | None = None) -> list[dict[str, Any]]:
    """The complete rows of a ``.jsonl`` record file: JSON objects on whole lines (a line cut short by a
    kill, or anything that is not an object, is dropped).

    ``up_to_step`` keeps only rows whose integer ``step`` is at most that.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        if not line.endswith("\n") or not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    if up_to_step is None:
        return rows
    return [r for r in rows if isinstance(r.get("step", 0), int) and r.get("step", 0) <= up_to_step]


def jsonl_text(rows: list[dict[str, Any]]) -> str:
    """Rows in the record's own line format."""
    return "".join(json.dumps(row, separators=(",", ":"), default=str) + "\n" for row in rows)


def sha256_file(path: str | Path) -> str:
    """sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (fsync the directory); a no-op where that cannot be done."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
