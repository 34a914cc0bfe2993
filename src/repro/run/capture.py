"""Replay controls: stop a run after a step, or capture every tensor of one step.

Both are switched on through environment variables by the ``repro`` tools
(``verify`` and ``diff``) for the throwaway replays they launch; a normal run
never sets them and pays nothing.

* ``REPRO_STOP_AFTER_STEP=N``: the process exits (status 0) right after step
  N's fingerprint is recorded.
* ``REPRO_CAPTURE_STEP=S`` and ``REPRO_CAPTURE_FILE=PATH``: during step S
  the watched model's tensors are captured in the order they are computed:
  the parameters before the step, the model's inputs, every module's output
  (forward), every parameter's gradient (backward), and the parameters after
  the update. They are saved to PATH (weights-only loadable) when step S is
  recorded, and the process exits.
"""

from __future__ import annotations

import os
from typing import Any

import torch

STOP_ENV = "REPRO_STOP_AFTER_STEP"
CAPTURE_STEP_ENV = "REPRO_CAPTURE_STEP"
CAPTURE_FILE_ENV = "REPRO_CAPTURE_FILE"


def stop_after_step() -> int | None:
    value = os.environ.get(STOP_ENV)
    return int(value) if value else None


def _tensors(value: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, list | tuple):
        out = []
        for i, v in enumerate(value):
            out.extend(_tensors(v, f"{prefix}[{i}]"))
        return out
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out.extend(_tensors(v, f"{prefix}[{k!r}]"))
        return out
    return []


class StepCapture:
    """Hooks on a model that record every tensor of one training step."""

    def __init__(self, model: torch.nn.Module, step: int, path: str, save: bool = True) -> None:
        self.model = model
        self.save = save
        self.target = step
        self.path = path
        self.next_step = 1
        self.keys: list[str] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        self._started = False
        model.register_forward_pre_hook(self._before_forward, with_kwargs=True)
        for name, module in model.named_modules():
            module.register_forward_hook(self._after_forward(name or "<model>"))
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.register_hook(self._on_grad(name))

    @classmethod
    def from_environment(cls, model: torch.nn.Module, save: bool = True) -> StepCapture | None:
        step, path = os.environ.get(CAPTURE_STEP_ENV), os.environ.get(CAPTURE_FILE_ENV)
        return cls(model, int(step), path, save) if step and path else None

    def _active(self) -> bool:
        return self.next_step == self.target and self.model.training

    def _add(self, phase: str, name: str, tensor: torch.Tensor) -> None:
        key = f"{phase}:{name}"
        n = self._calls.get(key, 0) + 1
        self._calls[key] = n
        if n > 1:
            key = f"{key}#{n}"
        self.keys.append(key)
        self.tensors[key] = tensor.detach().to("cpu", copy=True)

    def _before_forward(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if not self._active() or self._started:
            return
        self._started = True
        for name, param in module.named_parameters():
            self._add("param", name, param)
        for name, tensor in _tensors(list(args), "args") + _tensors(kwargs, "kwargs"):
            self._add("input", name, tensor)

    def _after_forward(self, name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            if self._active():
                for suffix, tensor in _tensors(output, ""):
                    self._add("forward", f"{name}{suffix}", tensor)

        return hook

    def _on_grad(self, name: str) -> Any:
        def hook(grad: torch.Tensor) -> None:
            if self._active():
                self._add("backward", name, grad)

        return hook

    def step_recorded(self, step: int) -> None:
        """Called by the run record after each step; saves and exits after the target step."""
        if step == self.target:
            if self.save:  # rank 0; the other ranks of a distributed run only stop with it
                for name, param in self.model.named_parameters():
                    self._add("update", name, param)
                torch.save({"step": step, "keys": self.keys, "tensors": self.tensors}, self.path)
            os._exit(0)
        self.next_step = step + 1
