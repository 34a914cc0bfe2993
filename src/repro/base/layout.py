"""The run directory's layout, in one place: file names, and the checkpoint envelope read without torch.

Everything here is torch-free, so the launch phase can plan a resume (which checkpoint, written by how
many ranks) before torch is imported. ``repro.run.checkpoint`` writes and loads the payloads.

A checkpoint file is::

    REPRO-CKPT\\n
    {"format_version": 1, "step": ..., "payload_size": ..., "payload_sha256": ..., "config_sha256": ...}\\n
    <torch.save payload>
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.base.errors import ReproError

#: Files of a run directory (the contract every tool reads).
CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
FINGERPRINTS_FILE = "fingerprints.jsonl"
WEIGHTS_FILE = "weights.pt"
LOCK_FILE = ".lock"
HYDRA_DIR = ".hydra"
ABANDONED_DIR = ".abandoned"
CHECKPOINT_DIR = "checkpoints"

MAGIC = b"REPRO-CKPT\n"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{9})\.ckpt$")


class CheckpointError(ReproError):
    """A checkpoint cannot be used: missing, truncated, corrupt, foreign or from another config."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's header says; reading it unpickles nothing."""

    path: Path
    step: int
    header: dict[str, Any]


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:09d}.ckpt"


def shards_path(checkpoint: Path) -> Path:
    """The folder of a sharded checkpoint's shards (``train.strategy=fsdp``), next to its file:
    ``step-000000050.ckpt`` -> ``step-000000050.shards``. Derived from the file's own name, never read
    from a file, so a run directory cannot point the kit elsewhere."""
    return checkpoint.with_suffix(".shards")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint files in ``run_dir``, oldest step first (by name; nothing is read)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name) and p.is_file())


_MAX_HEADER = 1 << 16


def _read_header(f: Any, path: Path, size: int) -> tuple[dict[str, Any], int]:
    """The header of an open checkpoint and where its payload starts; reads at most 64 KiB."""
    head = f.read(_MAX_HEADER)
    if not head.startswith(MAGIC):
        raise CheckpointError(
            f"{path} is not a checkpoint written by this kit (no {MAGIC.strip().decode()} header)"
        )
    end = head.find(b"\n", len(MAGIC))
    try:
        header = json.loads(head[len(MAGIC) : end]) if end > 0 else None
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} has a corrupt header")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this version of the kit reads "
            f"version {FORMAT_VERSION} only"
        )
    declared = header.get("payload_size")
    if not isinstance(declared, int) or isinstance(declared, bool) or size - (end + 1) != declared:
        raise CheckpointError(
            f"checkpoint {path} is truncated or padded: payload has {size - (end + 1)} bytes, "
            f"header says {declared}"
        )
    if not isinstance(header.get("step"), int):
        raise CheckpointError(f"checkpoint {path} has a corrupt header (no step)")
    return header, end + 1


def _split(path: Path, *, payload: bool = True) -> tuple[dict[str, Any], bytes]:
    """Check the envelope before reading the payload: a junk or foreign file is refused after 64 KiB."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header, start = _read_header(f, path, size)
            if not payload:
                return header, b""
            f.seek(start)
            data = f.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != header.get("payload_sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its payload does not match its sha256"
        )
    return header, data


def read_header(path: str | Path) -> CheckpointInfo:
    """Check a checkpoint's envelope (magic, version, size, sha256) and return its header."""
    header, _ = _split(Path(path))
    return CheckpointInfo(Path(path), int(header["step"]), header)
