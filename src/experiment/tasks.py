"""What the example optimises and measures: classification, regression or language modelling (``task``
config, ``_target_``).

Each task gives the training loss, the per-step metrics (batch means, which
the run averages over the epoch) and the evaluation over a whole loader.
"""

from __future__ import annotations

import math
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


class Task:
    """What every task tells the loop besides its loss and metrics: the unit its throughput counts,
    how many of them a batch holds (None: its samples), and metrics derived from the epoch's means."""

    unit = "samples"

    def count(self, y: torch.Tensor) -> int | None:
        return None

    def derived(self) -> dict[str, Any]:
        return {}


class Classification(Task):
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


class Regression(Task):
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


class LanguageModeling(Task):
    """Next-token cross-entropy; accuracy of the most likely token; perplexity (exp of the mean loss) on
    validation, and for training from the epoch's mean loss (:meth:`derived`). Throughput in tokens."""

    #: What the run counts per second.
    unit = "tokens"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fits = (
            out.dim() == 3
            and y.dim() == 2
            and out.shape[:2] == y.shape
            and not y.is_floating_point()
        )
        _check_fit(self, fits, "outputs (N, T, vocabulary) and integer targets (N, T)", out, y)
        return F.cross_entropy(out.flatten(0, 1), y.flatten())

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"acc": (out.argmax(-1) == y).float().mean()}

    def count(self, y: torch.Tensor) -> int:
        """Tokens in a batch: what the throughput counts."""
        return y.numel()

    def derived(self) -> dict[str, Any]:
        """Epoch metrics computed from the epoch's means."""
        return {"train_ppl": lambda means: math.exp(means["train_loss"])}

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, loader: Any, device: torch.device
    ) -> dict[str, float]:
        model.eval()
        loss_sum, seen = torch.zeros((), dtype=torch.float64), 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += (
                F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="sum").double().cpu()
            )
            seen += y.numel()
        loss = float(loss_sum) / max(seen, 1)
        return {"val_loss": loss, "val_ppl": math.exp(loss)}

    @torch.no_grad()
    def sample(
        self,
        model: torch.nn.Module,
        prompt: torch.Tensor,
        tokens: int,
        generator: torch.Generator,
        temperature: float = 0.8,
    ) -> torch.Tensor:
        """``tokens`` new token ids after ``prompt`` (1-D), drawn with ``generator``: the same text for
        the same weights, prompt and generator seed."""
        model.eval()
        context = getattr(model, "context", None)
        ids = prompt.clone()
        for _ in range(tokens):
            window = ids if context is None else ids[-context:]
            logits = model(window[None])[0, -1].double() / temperature
            probs = torch.softmax(logits, -1)
            ids = torch.cat(
                [ids, torch.multinomial(probs.cpu(), 1, generator=generator).to(ids.device)]
            )
        return ids[len(prompt) :]
