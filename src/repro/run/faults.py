"""Fault injection for tests of the kit's guarantees: kill a run, or perturb a weight.

Switched on only through environment variables, read by the run object, so
they work for any experiment and never appear in a project's config,
``--help``, ``config.yaml`` or training loop:

* ``REPRO_FAULT_KILL_AT_STEP=N``: SIGKILL this process right after step N's
  fingerprint and metrics are recorded (before any checkpoint of that step),
  as a preempted job would die.
* ``REPRO_FAULT_PERTURB=NAME@STEP[:SCALE]``: after the update of step STEP,
  add noise drawn from OS entropy (never the same twice) to the parameter
  NAME of the tracked model: a stand-in for a nondeterministic kernel, so
  that ``repro verify`` and ``repro diff`` have a divergence to find.

The ``repro`` tools drop every ``REPRO_*`` variable from the replays they
launch, so a replay never repeats a fault.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from repro.base.errors import ConfigValueError

KILL_ENV = "REPRO_FAULT_KILL_AT_STEP"
PERTURB_ENV = "REPRO_FAULT_PERTURB"
_PERTURB = re.compile(r"^(?P<name>[^@]+)@(?P<step>\d+)(?::(?P<scale>[0-9.eE+-]+))?$")


@dataclass(frozen=True)
class Faults:
    """The faults asked for in the environment (none in a normal run)."""

    kill_at_step: int | None = None
    perturb_param: str | None = None
    perturb_step: int | None = None
    perturb_scale: float = 1e-3

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Faults:
        env = os.environ if environ is None else environ
        kill, perturb = env.get(KILL_ENV, "").strip(), env.get(PERTURB_ENV, "").strip()
        out: dict[str, Any] = {}
        if kill:
            if not kill.isdigit() or int(kill) < 1:
                raise ConfigValueError(KILL_ENV, kill, "a step number >= 1")
            out["kill_at_step"] = int(kill)
        if perturb:
            match = _PERTURB.match(perturb)
            if match is None:
                raise ConfigValueError(PERTURB_ENV, perturb, "NAME@STEP or NAME@STEP:SCALE")
            out.update(perturb_param=match["name"], perturb_step=int(match["step"]))
            if match["scale"]:
                out["perturb_scale"] = float(match["scale"])
        return cls(**out)

    @property
    def active(self) -> bool:
        return self.kill_at_step is not None or self.perturb_param is not None

    def check_model(self, model: Any) -> None:
        """Refuse a perturbation of a parameter the model does not have."""
        if self.perturb_param is None:
            return
        names = [n for n, _ in model.named_parameters()]
        if self.perturb_param not in names:
            raise ConfigValueError(
                PERTURB_ENV, self.perturb_param, f"a parameter of the model: one of {names}"
            )

    def after_update(self, step: int, model: Any) -> None:
        """Apply the perturbation of this step, if any (before the step is fingerprinted)."""
        if self.perturb_param is None or step != self.perturb_step or model is None:
            return
        import torch

        with torch.no_grad():
            param = dict(model.named_parameters())[self.perturb_param]
            gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
            param.add_(
                torch.randn(param.shape, generator=gen).to(param.device) * self.perturb_scale
            )

    def after_record(self, step: int, wait_for_checkpoints: Callable[[], None]) -> None:
        """Die here if asked to (the step's record rows are already flushed), once
        ``wait_for_checkpoints()`` returns: the kill lands after the checkpoints taken before this step."""
        if self.kill_at_step is not None and step == self.kill_at_step:
            wait_for_checkpoints()
            os.kill(os.getpid(), signal.SIGKILL)
