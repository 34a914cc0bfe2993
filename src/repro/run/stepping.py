"""Optimizer steps: backward, gradient accumulation windows, clipping, the grad scaler and autocast."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from repro.base.config import RunConfig
from repro.run.checkpointing import StateError

#: RunConfig fields that say how an optimizer step is taken, written to run.json as ``training``.
TRAINING_KEYS = (
    "accumulate_grad_batches",
    "gradient_clip_val",
    "precision",
    "compile",
    "monitor",
    "monitor_mode",
    "early_stopping_patience",
)
#: The autocast dtype of each mixed precision.
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
#: The name under which the 16-mixed gradient scaler is tracked.
SCALER = "grad_scaler"


class Stepping:
    """How one optimizer step is taken from ``train.accumulate_grad_batches`` micro-batches.

    Windows start at every epoch's first batch (:meth:`start_epoch`); the epoch's last window may be
    shorter. Under ``16-mixed`` a :class:`torch.amp.GradScaler` scales the loss (``scaler``: the run
    tracks it, its loss scale is state).
    """

    def __init__(self, settings: RunConfig, device_type: str) -> None:
        self.accumulate = settings.accumulate_grad_batches
        self.clip = settings.gradient_clip_val
        self.precision = settings.precision
        self.device_type = device_type
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler(device_type) if settings.precision == "16-mixed" else None
        )
        #: Micro-batches backpropagated in the current window, and the window's size.
        self.micro = 0
        self.window = 1

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to bfloat16 or float16 for the mixed precisions; nothing for 32-true."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)

    def start_epoch(self) -> None:
        """The next micro-batch opens a window."""
        self.micro = 0

    def backward(self, loss: torch.Tensor, batches_left: int | None = None) -> None:
        """Backpropagate ``loss`` divided by its window's size (through the scaler under 16-mixed).

        ``batches_left``: the epoch's batches from this one on, when known; a window opened here holds
        at most that many."""
        if self.micro == 0:
            self.window = self.window_size(batches_left)
        self.micro += 1
        loss = loss / self.window if self.window > 1 else loss
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def window_size(self, batches_left: int | None) -> int:
        """Micro-batches in a window that opens with ``batches_left`` batches left in the epoch."""
        if self.accumulate == 1 or batches_left is None:
            return self.accumulate
        return max(1, min(self.accumulate, batches_left))

    def should_step(self) -> bool:
        """True once the current window has all its micro-batches (after :meth:`backward`)."""
        return self.micro >= self.window

    def window_ends(self) -> bool:
        """True when the batch being recorded closes a window (always without :meth:`backward`).

        With windows of several batches, the batch must have gone through :meth:`backward` first."""
        if self.micro == 0 and self.accumulate > 1:
            raise StateError(
                f"train.accumulate_grad_batches={self.accumulate} needs "
                "run.backward(loss) and run.optimizer_step(optimizer) in the loop, before run.step"
            )
        return not self.micro or self.should_step()

    def end_window(self) -> None:
        """The window is recorded: the next micro-batch opens another."""
        self.micro = 0

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> bool:
        """At a window's last micro-batch: clip, step, zero the gradients and return True; else False."""
        if self.micro == 0:
            raise StateError(
                "run.optimizer_step() before run.backward(loss): backpropagate through the run"
            )
        if not self.should_step():
            return False
        if self.clip is not None:
            if self.scaler is not None:
                # Clip the true gradients.
                self.scaler.unscale_(optimizer)
            params = [
                p for group in optimizer.param_groups for p in group["params"] if p.grad is not None
            ]
            torch.nn.utils.clip_grad_norm_(params, self.clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return True
