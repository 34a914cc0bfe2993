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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def lock_holders(fd: int) -> list[int]:
    """The processes the kernel lists as holding a flock on the file of ``fd`` (Linux ``/proc/locks``;
    empty where it cannot tell). A lock taken by a process whose child inherited it is listed under the
    process that took it."""
    st = os.fstat(fd)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF" (a blocked waiter has "->" after the id)
        fields = [f for f in fields if f != "->"]
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit():
            pids.append(int(fields[4]))
    return [p for p in dict.fromkeys(pids) if p != os.getpid()]


def describe_holder(fd: int) -> str:
    """Who holds the lock of ``fd``, in words: the kernel's holder where it can tell, else the pid the
    lock file records and whether that process is still running."""
    raw = os.read(fd, 64).decode(errors="replace").strip()
    recorded = int(raw) if raw.isdigit() else None
    live = [p for p in lock_holders(fd) if _alive(p)]
    if live:
        holders = ", ".join(f"pid {p}" for p in live)
        if recorded is not None and recorded not in live:
            holders += f"; the lock file records pid {recorded}, which does not hold it"
        return holders
    if recorded is None:
        return "pid unknown: the lock file records none"
    if _alive(recorded):
        return f"pid {recorded}, recorded in the lock file, is running"
    return (
        f"the lock file records pid {recorded}, which has ended: a process it started (a loader "
        "worker, a child) still holds the lock"
    )


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
                holder = describe_holder(fd)
            finally:
                os.close(fd)
            raise RunDirectoryError(
                f"{path.parent} is in use by another process ({holder}); wait for it to end, "
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
