"""What each step records: a batch's measurements, read from the device in one transfer (loss and metric
bits, batch digests, the parameter digest), the accumulation window they add up to, and the optimizer
step's rows (its fingerprint, checked on a resume, and its train metrics every ``log_every`` steps)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from repro.core.fingerprint import (
    float_bits,
    sample_digests_device,
    tensors_digest_from,
    tensors_digest_parts,
)
from repro.run.epoch_metrics import EpochMetrics
from repro.run.self_check import ResumeSelfCheck


def to_host(pieces: list[torch.Tensor]) -> list[torch.Tensor]:
    """1-D int64 ``pieces`` on the host, with one transfer per device (a piece on the host stays)."""
    out = list(pieces)
    by_device: dict[torch.device, list[int]] = {}
    for i, piece in enumerate(pieces):
        if piece.device.type != "cpu":
            by_device.setdefault(piece.device, []).append(i)
    for idx in by_device.values():
        host = torch.cat([pieces[i] for i in idx]).cpu()
        for i, part in zip(idx, host.split([pieces[i].numel() for i in idx]), strict=True):
            out[i] = part
    return out


@dataclass
class Measured:
    """One batch's measurements, on the host."""

    #: The loss as a 0-d float64 tensor (its bits are fingerprinted).
    loss: torch.Tensor
    #: Metric values: plain numbers first, then tensors, each in the order given.
    scalars: dict[str, float]
    #: Per-sample digests of the batch's tensors, or None when it has none.
    digests: list[int] | None
    #: The parameter digest, when parameters were given.
    params: str | None
    #: Samples in the batch.
    n: int


def measure(
    loss: torch.Tensor,
    metrics: dict[str, Any],
    batch: tuple[Any, ...] | None,
    parameters: list[tuple[str, torch.Tensor]] | None,
    n: int | None = None,
) -> Measured:
    """Bring a batch's loss, tensor metrics, sample digests and (given ``parameters``) parameter digest
    to the host, with one transfer per device. ``n`` defaults to the batch's first dimension (1 without
    a tensor)."""
    names = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    values = [loss.detach().reshape(()).to(torch.float64)]
    values += [
        metrics[k].detach().reshape(()).to(device=values[0].device, dtype=torch.float64)
        for k in names
    ]
    tensors = tuple(t for t in (batch or ()) if isinstance(t, torch.Tensor))
    pieces = [torch.stack(values).view(torch.int64)]
    if tensors:
        pieces.append(sample_digests_device(*tensors))
    params_meta, parts = None, []
    if parameters is not None:
        params_meta, parts = tensors_digest_parts(parameters)
        pieces += [v.reshape(1) for v in parts]
    host_pieces = to_host(pieces)
    host = host_pieces[0].view(torch.float64)
    scalars = {k: float(v) for k, v in metrics.items() if k not in names}
    scalars.update({k: float(host[i + 1]) for i, k in enumerate(names)})
    params = None
    if params_meta is not None:
        params = tensors_digest_from(params_meta, (int(v) for v in host_pieces[-len(parts) :]))
    if n is None:
        n = int(tensors[0].shape[0]) if tensors else 1
    return Measured(
        loss=host[0],
        scalars=scalars,
        digests=host_pieces[1].tolist() if tensors else None,
        params=params,
        n=n,
    )


@dataclass
class Window:
    """What the batches of one accumulation window measured."""

    n: int = 0
    losses: list[torch.Tensor] = field(default_factory=list)
    digests: list[int] | None = None
    scalars: dict[str, list[float]] = field(default_factory=dict)

    def add(self, batch: Measured) -> None:
        self.n += batch.n
        self.losses.append(batch.loss)
        if batch.digests is not None:
            self.digests = (self.digests or []) + batch.digests
        for key, value in batch.scalars.items():
            self.scalars.setdefault(key, []).append(value)

    def loss(self) -> torch.Tensor:
        """The window's loss: the mean of its batches' float64 losses (one batch: its loss)."""
        return self.losses[0] if len(self.losses) == 1 else torch.stack(self.losses).mean()

    def means(self) -> dict[str, float]:
        """Each metric's mean over the window's batches."""
        return {k: v[0] if len(v) == 1 else sum(v) / len(v) for k, v in self.scalars.items()}


class StepRecorder:
    """Collects the batches of each accumulation window and records the optimizer step that closes it:
    the fingerprint row (compared with the interrupted run's on a resume), the epoch's running sums,
    every ``log_every`` steps the train metrics row, and the epoch's progress bar."""

    def __init__(
        self,
        record: Any,
        self_check: ResumeSelfCheck,
        metrics: EpochMetrics,
        *,
        log_every: int,
        learning_rate: Callable[[], float | None],
        progress: Callable[[Window], None] | None = None,
    ) -> None:
        self.record = record
        self.self_check = self_check
        self.metrics = metrics
        self.log_every = log_every
        self.learning_rate = learning_rate
        self.progress = progress
        self.window = Window()
        self._params: str | None = None

    def start_epoch(self) -> None:
        """Windows start at every epoch's first batch."""
        self.window = Window()

    def add(self, batch: Measured) -> None:
        """One batch: into the epoch's sums and the current window."""
        self.metrics.add(batch.n, {"loss": float(batch.loss), **batch.scalars})
        self.window.add(batch)
        self._params = batch.params

    def close_window(self, step: int, epoch: int) -> Window:
        """Write the rows of optimizer step ``step``, which closes the current window (its last batch
        carries the parameter digest after the step, if any); return that window."""
        window, self.window = self.window, Window()
        loss64 = window.loss()
        row: dict[str, Any] = {"step": step, "epoch": epoch, "loss": float_bits(loss64)}
        if self._params is not None:
            row["params"] = self._params
        self.record.log_fingerprint(row, batch_digests=window.digests)
        self.self_check.check(self.record.last_row or row)
        if self.progress is not None:
            self.progress(window)
        if step % self.log_every == 0:
            lr = self.learning_rate()
            metrics = {"split": "train", "epoch": epoch, "step": step, "loss": float(loss64)}
            metrics.update(window.means())
            if lr is not None:
                metrics["lr"] = lr
            self.metrics.log_row(metrics)
        return window
