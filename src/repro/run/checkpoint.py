"""Checkpoint files: an envelope you can inspect without unpickling, around a weights-only payload.

A checkpoint file is::

    REPRO-CKPT\\n
    {"format_version": 1, "step": ..., "payload_sha256": ..., "config_sha256": ..., ...}\\n
    <torch.save payload>

The header is read and checked first (magic, format version, size, sha256 of
the payload, config hash), so a truncated file, a flipped byte or a checkpoint
from another config is refused before any byte is unpickled. The payload is
then loaded with ``torch.load(weights_only=True)``, which refuses pickles
that would run code. Files are written atomically (temp file, fsync, rename,
fsync of the directory) and only the newest ``keep`` are kept. A
:class:`CheckpointWriter` serialises the state on the caller's thread and
writes it on its own writer thread; its :meth:`~CheckpointWriter.wait` waits for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import torch

from repro.base.files import atomic_write, fsync_dir, sha256_file
from repro.base.layout import (
    _NAME,
    FORMAT_VERSION,
    MAGIC,
    CheckpointError,
    CheckpointInfo,
    _split,
    checkpoint_path,
    list_checkpoints,
    read_header,
    shards_path,
)
from repro.core.sharding import shards_complete

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointWriter",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_header",
    "save_checkpoint",
]

log = logging.getLogger(__name__)


def _envelope(
    step: int, state: dict[str, Any], config_sha256: str, meta: dict[str, Any] | None
) -> tuple[dict[str, Any], bytes]:
    """The header (all but the payload's sha256) and the serialised payload of ``state``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "payload_size": len(payload),
        "config_sha256": config_sha256,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        "torch": torch.__version__,
        **(meta or {}),
    }
    return header, payload


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    state: dict[str, Any],
    *,
    config_sha256: str,
    keep: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``state`` as the checkpoint of ``step``, atomically; then keep only the newest ``keep``.

    A process killed at any moment leaves the previous checkpoint or the new one complete, never a
    part of one: the file appears by an atomic rename after its bytes are fsynced.
    """
    header, payload = _envelope(step, state, config_sha256, meta)
    path = checkpoint_path(run_dir, step)
    _write(run_dir, path, step, header, payload, keep)
    return path


class CheckpointWriter:
    """Writes checkpoints on a writer thread while training goes on; one write in flight at most.

    :meth:`save` serialises the state on the caller's thread before it returns, so the file holds the
    state as it was at the call even if training goes on changing it; the rest (sha256, write, fsync,
    rename, pruning) runs on the writer thread. Each save first waits for the previous write and raises
    its error, if it failed; :meth:`wait` does the same on its own.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(
        self,
        run_dir: str | Path,
        step: int,
        state: dict[str, Any],
        *,
        config_sha256: str,
        keep: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Path:
        """Start writing ``state`` as the checkpoint of ``step``; the path exists once :meth:`wait` returns."""
        header, payload = _envelope(step, state, config_sha256, meta)
        path = checkpoint_path(run_dir, step)
        self.wait()
        self._thread = threading.Thread(
            target=self._write_catching,
            args=(run_dir, path, step, header, payload, keep),
            name=f"repro-checkpoint-{step}",
            # The interpreter's exit waits for it.
            daemon=False,
        )
        self._thread.start()
        return path

    def wait(self) -> None:
        """Block until the write in flight (if any) is on disk; raise its error if it failed (once).

        Cheap when nothing is in flight. A run calls it before it closes, so the record never says
        ``completed`` while its last checkpoint is still being written.
        """
        thread = self._thread
        if thread is not None:
            thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise CheckpointError(
                f"writing a checkpoint in the background failed: {error}"
            ) from error

    def _write_catching(self, *args: Any) -> None:
        try:
            _write(*args)
        # Anything at all: raised on the training thread by the next wait().
        except BaseException as exc:
            self._error = exc


def _write(
    run_dir: str | Path,
    path: Path,
    step: int,
    header: dict[str, Any],
    payload: bytes,
    keep: int | None,
) -> None:
    header = {**header, "payload_sha256": hashlib.sha256(payload).hexdigest()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload)
    fsync_dir(path.parent)
    if keep is not None and keep > 0:
        # Only older steps count: a file with a later step is a leftover of an attempt this run resumed
        # past (often the corrupt one it skipped); it must not push out the checkpoints that work.
        older = [p for p in list_checkpoints(run_dir) if int(_NAME.match(p.name).group(1)) <= step]
        for old in older[:-keep]:
            old.unlink(missing_ok=True)
            shutil.rmtree(shards_path(old), ignore_errors=True)


def load_checkpoint(
    path: str | Path,
    *,
    config_sha256: str | None = None,
    map_location: str | torch.device | None = "cpu",
) -> tuple[CheckpointInfo, dict[str, Any]]:
    """Verify and load a checkpoint with ``torch.load(weights_only=True)``.

    Raises :class:`CheckpointError` for anything short of an intact checkpoint
    of this format written under the same config (when ``config_sha256`` is given).
    """
    path = Path(path)
    header, payload = _split(path)
    if config_sha256 is not None and header.get("config_sha256") != config_sha256:
        raise CheckpointError(
            f"checkpoint {path} was written under another config (config hash "
            f"{str(header.get('config_sha256'))[:12]}..., this run's is {config_sha256[:12]}...)"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    # UnpicklingError for a payload that would run code, and friends. Torch's text is not quoted: it
    # advises loading with weights_only=False, which would run the file's code.
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is damaged or was not written by this kit: its payload is not plain "
            f"tensors and values ({type(exc).__name__}); never load it another way: resume from "
            "another checkpoint or a copy of the run"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict")
    # A sharded checkpoint (train.strategy=fsdp) is whole only with every rank's shards, as recorded.
    if header.get("sharded"):
        _check_shards(path, header.get("shards_sha256"))
    return CheckpointInfo(path, int(header["step"]), header), state


def latest_valid_checkpoint(
    run_dir: str | Path, *, config_sha256: str | None = None
) -> tuple[CheckpointInfo, dict[str, Any]] | None:
    """The newest checkpoint in ``run_dir`` that loads; each one skipped is named in a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(path, config_sha256=config_sha256)
        except CheckpointError as exc:
            log.warning("skipping checkpoint %s: %s", path.name, exc)
    return None


def _check_shards(path: Path, recorded: Any) -> None:
    """The shards next to checkpoint ``path`` are complete and are the files its header records."""
    folder = shards_path(path)
    if not shards_complete(folder):
        raise CheckpointError(
            f"checkpoint {path} is sharded and its shards ({folder.name}) are missing or incomplete"
        )
    if not (
        isinstance(recorded, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in recorded.items())
    ):
        raise CheckpointError(f"checkpoint {path} is sharded but records no sha256 of its shards")
    present = {p.name: p for p in folder.iterdir() if p.is_file()}
    if set(present) != set(recorded) or any(
        sha256_file(present[n]) != recorded[n] for n in recorded
    ):
        raise CheckpointError(
            f"the shards of checkpoint {path} ({folder.name}) are not the files it recorded "
            "(changed, missing or added since)"
        )
