"""What the example optimises and measures: classification or regression (``task`` config, ``_target_``).

Each task gives the training loss, the per-step metrics (batch means, which
the run averages over the epoch) and the evaluation over a whole loader.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from repro import ConfigValueError


def _check_fit(task: object, fits: bool, needs: str, out: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse, in one line naming the groups, a task whose model and data give other shapes (checked on
    each batch before the loss: shapes only, no device sync)."""
    if not fits:
        raise ConfigValueError(
            "task",
            type(task).__name__,
            f"a task that fits the model and data: the model gives {tuple(out.shape)} "
            f"{str(out.dtype).removeprefix('torch.')}, the data's targets are {tuple(y.shape)} "
            f"{str(y.dtype).removeprefix('torch.')}, this task needs {needs}; choose task=, model= and "
            "data= that go together (an experiment= sets all three)",
        )


class Classification:
    """Cross-entropy; accuracy."""

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fits = out.dim() == 2 and y.dim() == 1 and not y.is_floating_point() and len(out) == len(y)
        _check_fit(self, fits, "outputs (N, classes) and integer targets (N,)", out, y)
        return F.cross_entropy(out, y)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"acc": (out.argmax(1) == y).float().mean()}

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, loader: Any, device: torch.device
    ) -> dict[str, float]:
        model.eval()
        loss_sum, correct, seen = torch.zeros((), dtype=torch.float64), 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += F.cross_entropy(out, y, reduction="sum").double().cpu()
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
        return {"val_loss": float(loss_sum) / max(seen, 1), "val_acc": correct / max(seen, 1)}


class Regression:
    """Mean squared error; R² (1 - SSE/SST over the whole evaluation set)."""

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fits = out.shape == y.shape and y.is_floating_point()
        _check_fit(self, fits, "outputs and float targets of one shape", out, y)
        return F.mse_loss(out, y)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mae": (out - y).abs().mean()}

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, loader: Any, device: torch.device
    ) -> dict[str, float]:
        model.eval()
        sse = sy = syy = torch.zeros((), dtype=torch.float64)
        seen = 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            sse = sse + ((out - y).double() ** 2).sum().cpu()
            sy, syy = sy + y.double().sum().cpu(), syy + (y.double() ** 2).sum().cpu()
            seen += len(y)
        n = max(seen, 1)
        sst = float(syy) - float(sy) ** 2 / n
        return {
            "val_mse": float(sse) / n,
            "val_r2": 1.0 - float(sse) / sst if sst > 0 else float("nan"),
        }
