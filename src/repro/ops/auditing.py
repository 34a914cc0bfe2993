"""``audit(model, batch)``: which ops of one training step refuse strict mode, and what to use instead.

One forward and backward on the model's device under
``torch.use_deterministic_algorithms(True)``. If an op raises, the step is run
again with ``warn_only=True`` to collect every offender, not just the first.
Every ATen call is also traced and checked against :mod:`repro.ops.known`:
on a CPU most of these ops are deterministic and raise nothing, so the report
then lists the ops that *would* be nondeterministic on CUDA instead of
claiming a clean bill. The model is left as it was: parameters' ``.grad``,
buffers (BatchNorm statistics), RNG states and the global determinism
setting are restored.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from repro.ops import known

_NONDET = re.compile(r"(.+?) does not have a deterministic implementation")


@dataclass
class Finding:
    """One op that raised, warned, or (traced) is known to be nondeterministic on CUDA."""

    op: str  # torch's kernel name from the message, or the traced ATen op
    api: str  # the user-facing call
    replacement: str | None
    how: str  # "raised", "warned" or "traced"
    count: int = 1

    def line(self) -> str:
        fix = f"use {self.replacement}" if self.replacement else "no replacement in repro.ops"
        times = f" (x{self.count})" if self.count > 1 else ""
        return f"  - {self.op}{times}: {self.api}; {fix}"


@dataclass
class AuditReport:
    """The result of :func:`audit`; ``str(report)`` is the readable form."""

    device: str
    checked_on_cuda: bool
    raised: list[Finding] = field(default_factory=list)
    warned: list[Finding] = field(default_factory=list)
    cuda_risks: list[Finding] = field(default_factory=list)  # traced, raise under strict on CUDA
    strict_only: list[Finding] = field(
        default_factory=list
    )  # traced, deterministic on CUDA only under strict
    error: str | None = None  # an unrelated failure of the step

    @property
    def clean(self) -> bool:
        """No op raised or warned here and, if not on CUDA, none is known to be a CUDA problem."""
        return not (self.raised or self.warned or self.cuda_risks or self.error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"clean": self.clean}

    def format(self) -> str:
        lines = [f"repro.ops.audit on {self.device}: one forward and backward under strict mode"]
        if not self.checked_on_cuda:
            lines.append(
                f"checked on {self.device.split(' ')[0].upper()}: this says nothing about CUDA"
            )
        if self.error:
            lines.append(f"the step failed for another reason: {self.error}")
        if self.raised:
            lines.append(f"raised under strict mode ({len(self.raised)}):")
            lines += [f.line() for f in self.raised]
        if self.warned:
            lines.append(f"found by re-running with warn_only=True ({len(self.warned)}):")
            lines += [f.line() for f in self.warned]
        if not (self.raised or self.warned or self.error):
            lines.append(f"no op raised or warned under strict mode on {self.device}")
        if not self.checked_on_cuda:
            if self.cuda_risks:
                lines.append(
                    f"ops known to be nondeterministic on CUDA found in the model ({len(self.cuda_risks)}):"
                )
                lines += [f.line() for f in self.cuda_risks]
            else:
                lines.append("ops known to be nondeterministic on CUDA found in the model: none")
        if self.strict_only:
            lines.append("deterministic on CUDA only because strict mode picks a slower kernel:")
            lines += [f.line() for f in self.strict_only]
        return "\n".join(lines)

    __str__ = format


class _Trace(TorchDispatchMode):
    """Records ATen calls that :mod:`repro.ops.known` lists."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: dict[str, tuple[known.Known, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket.__name__
        if packet in known._BY_ATEN and not _on_meta(args):
            names = [a.name for a in func._schema.arguments]
            named = dict(zip(names, args, strict=False)) | kwargs
            row = known.for_aten(packet, func._overloadname, named)
            if row is not None:
                _, n = self.hits.get(packet, (row, 0))
                self.hits[packet] = (row, n + 1)
        return func(*args, **kwargs)


def _on_meta(args) -> bool:
    # Shape checks on storage-less tensors (as repro.ops does) compute nothing.
    return any(isinstance(a, torch.Tensor) and a.is_meta for a in tree_leaves(args))


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _scalar(out: Any) -> torch.Tensor | None:
    """The sum of every floating tensor in the model's output that needs grad."""
    if isinstance(out, torch.Tensor):
        return out.float().sum() if out.requires_grad else None
    parts = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else ()
    sums = [s for s in (_scalar(o) for o in parts) if s is not None]
    return torch.stack(sums).sum() if sums else None


def _step(model: nn.Module, batch: Any, loss_fn: Callable[[Any], torch.Tensor] | None) -> None:
    if isinstance(batch, dict):
        out = model(**batch)
    elif isinstance(batch, (list, tuple)):
        out = model(*batch)
    else:
        out = model(batch)
    loss = loss_fn(out) if loss_fn is not None else _scalar(out)
    if loss is not None and loss.requires_grad:
        loss.backward()


def _parse(messages: list[str], how: str) -> list[Finding]:
    found: dict[str, Finding] = {}
    for msg in messages:
        m = _NONDET.search(msg)
        name = m.group(1).strip() if m else ("cuBLAS" if "CUBLAS_WORKSPACE_CONFIG" in msg else None)
        if name is None:
            continue
        if name in found:
            found[name].count += 1
            continue
        row = known.CUBLAS if name == "cuBLAS" else known.for_kernel(name)
        found[name] = Finding(
            name,
            row.api if row else "(not in repro.ops' table)",
            row.replacement if row else None,
            how,
        )
    return list(found.values())


def _is_nondet(err: BaseException) -> bool:
    text = str(err)
    return bool(_NONDET.search(text)) or "CUBLAS_WORKSPACE_CONFIG" in text


def audit(
    model: nn.Module, example_batch: Any, loss_fn: Callable[[Any], torch.Tensor] | None = None
) -> AuditReport:
    """Run one step of ``model`` under strict mode on its device and report what refuses it.

    ``example_batch`` is the model's input: a tensor (``model(x)``), a tuple or
    list (``model(*batch)``) or a dict (``model(**batch)``); it is moved to the
    model's device. ``loss_fn(output)`` gives the scalar to differentiate
    (close over the targets to audit the loss too); by default the sum of the
    floating outputs. The model's grads, buffers, RNG states and the global
    determinism setting are restored afterwards. On a CPU the report says so and
    lists the traced ops known to be nondeterministic on CUDA.
    """
    device = _device_of(model)
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    report = AuditReport(device=name, checked_on_cuda=device.type == "cuda")
    batch = _to(example_batch, device)
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    grads = {p: p.grad for p in model.parameters()}  # put back as they were, same objects
    for p in grads:
        p.grad = None
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    trace = _Trace()
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.use_deterministic_algorithms(True)
                try:
                    with trace:
                        _step(model, batch, loss_fn)
                except Exception as e:  # reported, not raised: the audit is a diagnosis
                    if isinstance(e, RuntimeError) and _is_nondet(e):
                        report.raised = _parse([str(e)], "raised")
                    else:
                        report.error = f"{type(e).__name__}: {e}"
            report.warned = _parse([str(w.message) for w in caught], "warned")
            if report.raised:
                _restore(model, {p: None for p in grads}, buffers)
                trace = _Trace()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.use_deterministic_algorithms(True, warn_only=True)
                    try:
                        with trace:
                            _step(model, batch, loss_fn)
                    except Exception as e:
                        report.error = f"{type(e).__name__}: {e}"
                raised = {f.op for f in report.raised}
                report.warned = [
                    f
                    for f in _parse([str(w.message) for w in caught], "warned")
                    if f.op not in raised
                ]
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn)
        _restore(model, grads, buffers)
    for op, (row, n) in sorted(trace.hits.items()):
        finding = Finding(f"aten.{op}", row.api, row.replacement, "traced", n)
        (report.strict_only if row.strict_ok else report.cuda_risks).append(finding)
    return report


def _restore(model: nn.Module, grads: dict, buffers: list) -> None:
    for p, g in grads.items():
        p.grad = g
    with torch.no_grad():
        for b, saved in buffers:
            b.copy_(saved)
