"""Progress of the tools' long commands: a live bar on a terminal, one line per phase elsewhere.

``repro verify`` and ``repro diff`` spend their time in replays, each a child process. A
:class:`ToolProgress` says which phase runs ("replaying steps 1-36 of RUN", "segment 2/3",
"capturing step 12 of run A") with one line on stderr; on a terminal it also draws a tqdm bar of
the phase's steps (done / total, rate, ETA) under that line, and the replay's own output scrolls
above the bar. Elsewhere (CI, ``| tee``, a SLURM log) there is no bar, only the lines.

Steps done are read from the ``fingerprints.jsonl`` the replay appends in its *own* directory (one
flushed row per step), polled a few times a second: each poll reads at most the file's last
:data:`_TAIL_BYTES` bytes and parses only its last complete line, so a long, odd or rewritten file
costs the same as a short one. The recorded run's files are never read here. Progress only watches:
it writes nothing to stdout (``--json`` stays machine-readable) and never changes a verdict.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from repro.run.progress import wants_bar

#: Bytes read from the end of the watched file per poll; a fingerprint row is a few hundred.
_TAIL_BYTES = 4096
#: Seconds between polls of the watched file.
POLL_SECONDS = 0.25


def last_step(path: Path) -> int | None:
    """The ``step`` of the last complete row of ``path`` (a JSON-lines file), or None.

    Bounded: reads at most the last ``_TAIL_BYTES`` bytes, refuses anything but a regular file
    (no symlink is followed), and never raises for a missing, odd or half-written file.
    """
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        start = max(info.st_size - _TAIL_BYTES, 0)
        tail = os.pread(fd, _TAIL_BYTES, start)
    except OSError:
        return None
    finally:
        os.close(fd)
    lines = tail.split(b"\n")[:-1]  # the part after the last newline is a row still being written
    if start > 0 and lines:
        lines = lines[1:]  # the first piece may be the end of a longer line
    if not lines:
        return None
    try:
        row = json.loads(lines[-1])
    except (ValueError, RecursionError):
        return None
    step = row.get("step") if isinstance(row, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def steps_text(first: int, last: int) -> str:
    """``steps 6-8``, or ``step 36`` for one."""
    return f"step {last}" if first == last else f"steps {first}-{last}"


class _Watcher(threading.Thread):
    """Polls ``path`` and calls ``on_step`` with each new last step."""

    def __init__(self, path: Path, on_step: Callable[[int], None]) -> None:
        super().__init__(daemon=True, name="repro-progress")
        self.path, self.on_step = path, on_step
        self._stop_event = threading.Event()
        self._seen: int | None = None

    def poll(self) -> None:
        step = last_step(self.path)
        if step is not None and step != self._seen:
            self._seen = step
            self.on_step(step)

    def run(self) -> None:
        while not self._stop_event.wait(POLL_SECONDS):
            self.poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.poll()  # the last rows the replay wrote before it ended


class ToolProgress:
    """Where a tool reports what it is doing: ``stream`` (stderr), or nowhere when it is None.

    It is also the stream the replays' own output is echoed to (``write``/``flush``), so that output
    scrolls above a bar instead of breaking it. ``live`` forces the bar on or off (default: a bar
    when ``stream`` is a terminal).
    """

    def __init__(self, stream: TextIO | None, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream is not None and (wants_bar(stream) if live is None else live)
        self._bar: Any = None
        self._lock = threading.RLock()

    @classmethod
    def of(cls, log: TextIO | ToolProgress | None) -> ToolProgress:
        """``log`` as a progress: itself, or a plain stream (or nowhere) wrapped."""
        return log if isinstance(log, ToolProgress) else cls(log)

    def write(self, text: str) -> int:
        """A line of the tool or of a replay: above the bar when one is drawn."""
        if self.stream is None:
            return 0
        with self._lock:
            if self._bar is not None:
                from tqdm import tqdm

                tqdm.write(text.rstrip("\n"), file=self.stream)
            else:
                self.stream.write(text)
                self.stream.flush()
        return len(text)

    @property
    def echo(self) -> ToolProgress | None:
        """Where a replay's own output goes: here, or nowhere when there is no stream."""
        return self if self.stream is not None else None

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    @contextlib.contextmanager
    def phase(
        self,
        line: str,
        *,
        label: str,
        total: int | None = None,
        watch: Path | None = None,
        after_step: int = 0,
    ) -> Iterator[None]:
        """One phase: ``line`` on stderr; on a terminal, a bar ``label`` over ``total`` steps.

        Steps done are the last step recorded in ``watch`` minus ``after_step`` (the step the
        replay starts after), clamped to [0, total]. The bar is removed when the phase ends.
        """
        if self.stream is None:
            yield
            return
        self.write(f"{line}\n")
        if not self.live:
            yield
            return
        from tqdm import tqdm

        with self._lock:
            self._bar = tqdm(
                total=total,
                desc=label,
                unit="step",
                leave=False,
                dynamic_ncols=True,
                file=self.stream,
            )
        started = [False]

        def on_step(step: int) -> None:
            done = min(max(step - after_step, 0), total or 0)
            with self._lock:
                bar = self._bar
                if bar is None or done <= bar.n:
                    return
                if not started[0]:  # rate and ETA count from the first step seen, not process start
                    started[0] = True
                    bar.reset(total=total)
                    bar.initial = bar.n = bar.last_print_n = done
                else:
                    bar.update(done - bar.n)
                bar.refresh()  # tqdm's own redraws wait for mininterval; a poll is rare enough

        watcher = _Watcher(watch, on_step) if watch is not None and total else None
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            with self._lock:
                self._bar.close()
                self._bar = None
