"""The run record: the files every tool reads to replay and check a run.

``RunRecord.start`` writes ``config.yaml`` (resolved, seed filled in) and
``run.json`` (status ``running``) before the first step; during training
``log_metrics`` and ``log_fingerprint`` append to ``metrics.jsonl`` and
``fingerprints.jsonl``; ``finish`` sets the final status, wall time and
hashes. Whole files are written atomically (temp file, fsync, rename), and
a directory that already holds a run is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repro.base.errors import RunDirectoryError, Terminated
from repro.base.files import atomic_write, jsonl_text, read_jsonl, sha256_file
from repro.base.layout import CONFIG_FILE, FINGERPRINTS_FILE, METRICS_FILE, RUN_FILE
from repro.base.records import data_fingerprints
from repro.base.secrets import redact_args, redact_tree
from repro.core.distributed import DistInfo, check_same, gather_objects
from repro.core.environment import environment_fingerprint
from repro.core.fingerprint import set_digest
from repro.run.capture import StepCapture, stop_after_step

__all__ = ["RunRecord", "resolved_config_yaml"]

RECORD_VERSION = 1


def manifest_text(manifest: dict[str, Any]) -> str:
    """``run.json``'s text: every secret hidden (the overrides, an error that quotes a URL, ...)."""
    plain = json.loads(json.dumps(manifest, default=str))
    return json.dumps(redact_tree(plain), indent=2) + "\n"


def resolved_config_yaml(cfg: DictConfig, null_keys: tuple[str, ...] = ()) -> str:
    """The config with every interpolation resolved, as YAML (the replayable truth).

    Values of keys that name credentials (``api_key``, ``password``, ``token``) are redacted;
    ``null_keys`` (one-shot hooks that must not replay) are written as null.
    """
    out = OmegaConf.create(redact_tree(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))
    for key in null_keys:
        if OmegaConf.select(out, key, default="<absent>") != "<absent>":
            OmegaConf.update(out, key, None)
    return OmegaConf.to_yaml(out)


def _open_append(path: Path) -> Any:
    """Open a record file for appending without following a symlink (a planted link is refused)."""
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666
        )
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot write {path}: {exc.strerror}"
            + (
                " (a symbolic link; record files are never written through one)"
                if path.is_symlink()
                else ""
            )
        ) from None
    return os.fdopen(fd, "a", encoding="utf-8")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


#: Signals (SIGINT, SIGTERM) received while a record is open whose exception has not reached the run's
#: close: Python drops an exception raised inside a ``__del__`` or a callback that ignores errors
#: ("Exception ignored in ..."), so the run raises it again at its next step (:func:`raise_pending_signal`).
_pending_signals: list[int] = []


def _interrupt_for(signum: int) -> BaseException:
    if signum == signal.SIGTERM:
        return Terminated("SIGTERM received")
    return KeyboardInterrupt()


def _raise_on_sigterm() -> Any:
    """While a record is open, SIGTERM raises Terminated instead of ending the process silently, and
    SIGINT raises KeyboardInterrupt as usual; both are remembered until the run closes, so one that
    was swallowed on the way is raised again at the next step."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        _pending_signals.append(signum)
        raise _interrupt_for(signum)

    _pending_signals.clear()
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def raise_pending_signal() -> None:
    """Raise again a SIGINT/SIGTERM whose exception never left the code it interrupted."""
    if _pending_signals:
        signum = _pending_signals[-1]
        _pending_signals.clear()
        raise _interrupt_for(signum)


def _restore_sigterm(record: Any) -> None:
    previous = getattr(record, "_previous_sigterm", None)
    _pending_signals.clear()
    if previous is not None and threading.current_thread() is threading.main_thread():
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        record._previous_sigterm = None


class RunRecord:
    """The single writer of a run directory's record files."""

    def __init__(
        self,
        run_dir: Path,
        manifest: dict[str, Any],
        last_step: int = 0,
        *,
        dist: DistInfo | None = None,
    ) -> None:
        self._previous_sigterm = _raise_on_sigterm()
        self.run_dir = run_dir
        self.manifest = manifest
        self.last_step = last_step
        self.dist = dist or DistInfo()
        self.writer = self.dist.is_main  # one run directory, one writer: rank 0
        self._stop_after = stop_after_step()
        #: The last fingerprint row written (with its batch digest).
        self.last_row: dict[str, Any] | None = None
        #: On a resume: the fingerprint rows the interrupted process recorded after the checkpoint.
        self.interrupted_rows: list[dict[str, Any]] = []
        #: On a resume (rank 0): the data fingerprints the interrupted process recorded (``run.json``'s ``data``).
        self.interrupted_data: dict[str, dict[str, str]] = {}
        self._capture: StepCapture | None = None
        self._t0 = time.perf_counter()
        self._metrics = _open_append(run_dir / METRICS_FILE) if self.writer else None
        self._fingerprints = _open_append(run_dir / FINGERPRINTS_FILE) if self.writer else None

    @classmethod
    def start(
        cls,
        run_dir: str | Path,
        cfg: DictConfig,
        repro: Any,
        *,
        overrides: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        null_keys: tuple[str, ...] = (),
        entry: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Create the record in ``run_dir``; refuse a directory that already holds a run.

        ``repro`` is the object returned by ``setup_reproducibility``.
        """
        run_dir = Path(run_dir)
        dist = getattr(repro, "dist", None) or DistInfo()
        if not dist.is_main:  # other ranks write nothing
            return cls(run_dir, {}, dist=dist)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two runs can never both claim one directory
            fd = os.open(run_dir / RUN_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise RunDirectoryError(
                f"{run_dir} already holds a run ({RUN_FILE} exists); it is never overwritten. "
                "Choose another hydra.run.dir"
            ) from None
        os.close(fd)
        try:
            atomic_write(run_dir / CONFIG_FILE, resolved_config_yaml(cfg, null_keys))
            manifest = {
                "record_version": RECORD_VERSION,
                "status": "running",
                "seed": repro.seed,
                "seed_source": repro.seed_source,
                "started_at": _now(),
                "finished_at": None,
                "wall_time_s": None,
                "weights_sha256": None,
                "overrides": redact_args(list(overrides or [])),
                "entry": dict(entry or {}),
                "distributed": {"world_size": dist.world_size, "backend": dist.backend},
                "process": {"pid": os.getpid(), "host": socket.gethostname()},
                "determinism": repro.to_dict(),
                "environment": environment_fingerprint(warn_dirty=True),
                **(extra or {}),
            }
            atomic_write(run_dir / RUN_FILE, manifest_text(manifest))
        except BaseException:
            (run_dir / RUN_FILE).unlink(missing_ok=True)
            (run_dir / CONFIG_FILE).unlink(missing_ok=True)
            raise
        return cls(run_dir, manifest, dist=dist)

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        repro: Any,
        *,
        from_step: int,
        checkpoint: str | Path,
        overrides: list[str] | None = None,
    ) -> RunRecord:
        """Continue the record in ``run_dir`` from ``from_step``.

        Rows of ``metrics.jsonl`` and ``fingerprints.jsonl`` after that step
        (written before the interruption, and about to be recomputed) are
        dropped, so the files end with neither duplicated nor missing steps.
        ``run.json`` goes back to ``running`` and gets an entry in ``resumes``.
        """
        run_dir = Path(run_dir)
        dist = getattr(repro, "dist", None) or DistInfo()
        # Every rank reads what the interrupted process recorded after the checkpoint (to check itself
        # against it); rank 0 alone rewrites the files.
        # One read of the fingerprints: rows up to the checkpoint stay, later ones are kept aside.
        kept: list[dict[str, Any]] = []
        later: list[dict[str, Any]] = []
        for row in read_jsonl(run_dir / FINGERPRINTS_FILE):
            step = row.get("step", 0)
            if isinstance(step, int):
                (later if step > from_step else kept).append(row)
        if not dist.is_main:
            record = cls(run_dir, {}, last_step=from_step, dist=dist)
            record.interrupted_rows = later
            return record
        manifest = json.loads((run_dir / RUN_FILE).read_text())
        # Checked before anything is rewritten (the resume's pre-run check read it the same way).
        data = data_fingerprints(manifest, run_dir / RUN_FILE)
        if (run_dir / FINGERPRINTS_FILE).exists():
            atomic_write(run_dir / FINGERPRINTS_FILE, jsonl_text(kept))
        if (run_dir / METRICS_FILE).exists():
            metrics = read_jsonl(run_dir / METRICS_FILE, up_to_step=from_step)
            atomic_write(run_dir / METRICS_FILE, jsonl_text(metrics))
        entry = {
            "at": _now(),
            "from_step": from_step,
            "checkpoint": str(Path(checkpoint).relative_to(run_dir))
            if Path(checkpoint).is_relative_to(run_dir)
            else str(checkpoint),
            "previous_status": manifest.get("status"),
            "overrides": redact_args(list(overrides or [])),
            "determinism": repro.to_dict(),
            "environment": environment_fingerprint(warn_dirty=True),
        }
        manifest.setdefault("resumes", []).append(entry)
        manifest.update(status="running", finished_at=None, error=None)
        atomic_write(run_dir / RUN_FILE, manifest_text(manifest))
        record = cls(run_dir, manifest, last_step=from_step, dist=dist)
        record.interrupted_rows = later
        record.interrupted_data = data
        return record

    def watch(self, model: Any) -> None:
        """Let ``repro diff`` capture this model's tensors during one step (a no-op in a normal run)."""
        self._capture = StepCapture.from_environment(model, save=self.writer)
        if self._capture is not None:
            self._capture.next_step = self.last_step + 1

    def _append(self, f: Any, row: dict[str, Any]) -> None:
        if f is None:
            return
        f.write(jsonl_text([row]))
        f.flush()

    def log_metrics(self, row: dict[str, Any]) -> None:
        """Append one row to ``metrics.jsonl`` (rank 0 only)."""
        self._append(self._metrics, row)

    def log_fingerprint(
        self, row: dict[str, Any], *, batch_digests: list[int] | None = None
    ) -> None:
        """Append one row (with at least ``step``) to ``fingerprints.jsonl``. Every rank must call it.

        ``batch_digests`` (this rank's per-sample digests of the step's inputs:
        ``sample_digests(*batch)``, or ``sample_digests_device`` moved to the host in the step's one
        transfer) adds ``batch``: a digest of the set of samples the step used, over all ranks. With
        several ranks, a ``params`` digest that is not the same on every rank fails the run
        (RankMismatchError naming the step).
        """
        if "step" not in row:
            raise ValueError("a fingerprint row needs a 'step'")
        if batch_digests is not None:
            everyone = gather_objects(batch_digests, self.dist)
            row = {**row, "batch": set_digest(v for rank in everyone for v in rank)}  # type: ignore[union-attr]
        if "params" in row:
            check_same(row["step"], "params", row["params"], self.dist)
        self._append(self._fingerprints, row)
        self.last_step = row["step"]
        self.last_row = row
        if self._capture is not None:
            self._capture.step_recorded(row["step"])
        if self._stop_after is not None and row["step"] >= self._stop_after:
            for f in (self._metrics, self._fingerprints):
                if f is not None:
                    f.flush()
            os._exit(0)  # a replay asked to stop here: nothing after this step matters

    def update(self, **fields: Any) -> None:
        """Merge fields into ``run.json`` and rewrite it atomically (rank 0 only)."""
        if not self.writer:
            return
        self.manifest.update(fields)
        atomic_write(self.run_dir / RUN_FILE, manifest_text(self.manifest))

    def finish(
        self,
        status: str,
        *,
        weights_path: str | Path | None = None,
        error: str | None = None,
        **fields: Any,
    ) -> None:
        """Close the record with ``completed`` or ``failed``, the wall time and the weights' sha256."""
        if status not in ("completed", "failed"):
            raise ValueError(f"status={status!r}: expected 'completed' or 'failed'")
        for f in (self._metrics, self._fingerprints):
            if f is not None and not f.closed:
                f.flush()
                os.fsync(f.fileno())
                f.close()
        _restore_sigterm(self)
        if not self.writer:
            return
        self.update(
            status=status,
            finished_at=_now(),
            wall_time_s=round(time.perf_counter() - self._t0, 3),
            weights_sha256=sha256_file(weights_path) if weights_path is not None else None,
            error=error,
            **fields,
        )
