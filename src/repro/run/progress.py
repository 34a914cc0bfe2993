"""Progress within an epoch: a live bar on a terminal, nothing extra elsewhere.

When rank 0's stderr is a terminal, each epoch draws a tqdm bar over its optimizer steps (steps done,
loss, samples/s or the task's unit per second, ETA), removed when the epoch ends so the epoch's log line stays the lasting record.
When stderr is not a terminal (a file, a pipe, a batch job), nothing is drawn: the epoch lines are
the progress. The bar reads counters only; it never draws a random number, so the bits of a run do
not depend on where its output goes.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def wants_bar(stream: TextIO | None = None, *, is_main: bool = True) -> bool:
    """True when a live bar should be drawn: on rank 0, with ``stream`` (stderr) a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return is_main and callable(isatty) and bool(isatty())


class EpochProgress:
    """One bar per epoch, opened at the epoch's first optimizer step (when its length is known)."""

    def __init__(self, enabled: bool, stream: TextIO | None = None, unit: str = "samples") -> None:
        self.enabled = enabled
        self._stream = stream
        #: What the counts given to :meth:`update` are (``samples``, ``tokens``, ...).
        self.unit = unit
        self._bar: Any = None
        self._count = 0.0

    def update(
        self, epoch: int, epochs: int, done: int, total: int, loss: float, count: float
    ) -> None:
        """After an optimizer step: ``done`` of ``total`` steps of this epoch, the step's loss and its
        count of the unit."""
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=max(done - 1, 0),
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="step",
                leave=False,
                dynamic_ncols=True,
                file=self._stream if self._stream is not None else sys.stderr,
            )
            self._count = 0.0
        self._count += count
        elapsed = self._bar.format_dict.get("elapsed") or 0.0
        rate = self._count / elapsed if elapsed > 0 else 0.0
        first = self._bar.n == self._bar.initial
        self._bar.update(done - self._bar.n)
        # Drawn at least on the epoch's first and last step, however short the epoch (tqdm's own
        # redraws wait for mininterval).
        self._bar.set_postfix_str(
            f"loss {loss:.4f}  {rate:.0f} {self.unit}/s", refresh=first or done >= total
        )

    def close(self) -> None:
        """End the epoch's bar (the epoch line follows)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
