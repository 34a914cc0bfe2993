"""An OS lock on a run directory, held for the whole run.

``fcntl.flock`` on ``<run_dir>/.lock``: the kernel releases it when the
process ends, however it ends (SIGKILL included), so a crashed run never
leaves a stale lock behind, and a second process that would write or resume
the same run directory is refused with one line naming the holder.

A forked child (a DataLoader worker, a multiprocessing fork) closes its copy of
the descriptor at once: a flock belongs to the open file, so a worker that
outlives a SIGKILLed run (workers notice a dead parent only every few seconds)
would otherwise keep the run locked against its own resume.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from repro.base.errors import RunDirectoryError

LOCK_FILE = ".lock"
#: The locks this process holds (a forked child drops its copies: see the module's docstring).
_HELD: set[RunLock] = set()


def _drop_inherited() -> None:
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited)


class RunLock:
    """A held lock; :meth:`release` (or the end of the process) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: str | Path) -> RunLock:
        """Take the lock of ``run_dir`` or raise :class:`RunDirectoryError` naming the process holding it."""
        import fcntl

        path = Path(run_dir) / LOCK_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            raise RunDirectoryError(
                f"cannot lock run directory {path.parent}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise RunDirectoryError(
                f"{path.parent} is in use by another process (pid {holder}); wait for it to end, "
                "or stop it, before resuming or writing this run"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        lock = cls(path, fd)
        _HELD.add(lock)
        return lock

    def release(self) -> None:
        _HELD.discard(self)
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
