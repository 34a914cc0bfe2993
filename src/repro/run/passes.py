"""Where the epoch stands: the run's loaders in the middle of a pass, the training loader innermost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ActivePasses:
    """Follows the run's loaders (it is what ``ReproDataLoader.bind`` calls back): the loaders being
    iterated, in the order their passes started, the last one taken to be the training loader; and
    a pass that drove optimizer steps ends once the run is ``finished()``.

    ``steps_done()``: the run's optimizer steps so far.
    """

    def __init__(self, steps_done: Callable[[], int], finished: Callable[[], bool]) -> None:
        self.steps_done = steps_done
        self.finished = finished
        self.loaders: list[Any] = []

    # -- the hooks of ReproDataLoader.bind -----------------------------------------------------------

    def loader_started(self, loader: Any) -> int:
        self.loaders.append(loader)
        return self.steps_done()

    def loader_stopped(self, loader: Any) -> None:
        if loader in self.loaders:
            self.loaders.remove(loader)

    def should_stop(self, steps_at_start: int) -> bool:
        return self.finished() and self.steps_done() > steps_at_start

    # -- the training loader's place in its epoch ---------------------------------------------------

    def _position(self) -> tuple[Any, tuple[int, int]] | None:
        if not self.loaders or self.loaders[-1].position is None:
            return None
        return self.loaders[-1], self.loaders[-1].position

    def batches_left(self) -> int | None:
        """The epoch's batches from the one just handed out on (it included); None outside a pass."""
        current = self._position()
        if current is None:
            return None
        loader, (_, handed_out) = current
        return len(loader) - handed_out + 1

    def at_epoch_end(self) -> bool:
        """True once the training loader has handed out its epoch's last batch."""
        current = self._position()
        return current is not None and current[1][1] >= len(current[0])

    def windows(self, size: int) -> tuple[int, int] | None:
        """Windows of ``size`` batches begun in the epoch, and the epoch's number of them; None outside a pass."""
        current = self._position()
        if current is None:
            return None
        loader, (_, handed_out) = current
        return -(-handed_out // size), -(-len(loader) // size)
