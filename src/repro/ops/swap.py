"""``make_deterministic(model)``: swap supported layers for their ``repro.ops`` counterparts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from repro.ops.modules import REPLACEMENTS

#: Layers that refuse strict mode on CUDA and have no replacement here.
UNSUPPORTED: dict[type[nn.Module], str] = {
    nn.FractionalMaxPool2d: "backward uses atomics on CUDA; no replacement in repro.ops",
    nn.FractionalMaxPool3d: "backward uses atomics on CUDA; no replacement in repro.ops",
    nn.MaxUnpool1d: "nondeterministic on every device; no replacement in repro.ops",
    nn.MaxUnpool2d: "nondeterministic on every device; no replacement in repro.ops",
    nn.MaxUnpool3d: "nondeterministic on every device; no replacement in repro.ops",
    nn.CTCLoss: "backward uses atomics on CUDA; no replacement in repro.ops",
}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}".replace("torch.nn.modules.", "torch.nn.")


@dataclass(frozen=True)
class Entry:
    path: str  # module path in the model ("" for the model itself)
    kind: str  # the module's class before the call
    note: str  # the new class, or why it was left alone


@dataclass
class SwapReport:
    """What :func:`make_deterministic` changed, and what it could not."""

    swapped: list[Entry] = field(default_factory=list)
    left: list[Entry] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "swapped": [asdict(e) for e in self.swapped],
            "left": [asdict(e) for e in self.left],
        }

    def format(self) -> str:
        lines = [f"make_deterministic: {len(self.swapped)} module(s) swapped"]
        lines += [f"  {e.path or '(model)'}: {e.kind} -> {e.note}" for e in self.swapped]
        if self.left:
            lines.append(f"left as they are ({len(self.left)}):")
            lines += [f"  {e.path or '(model)'}: {e.kind}: {e.note}" for e in self.left]
        lines.append(
            "functional calls inside forward() (F.interpolate, torch.cumsum, ...) are not covered: "
            "call repro.ops directly or use repro.ops.patch(); repro.ops.audit() finds them"
        )
        return "\n".join(lines)

    __str__ = format


def make_deterministic(model: nn.Module) -> SwapReport:
    """Swap every supported layer of ``model`` (itself included) for its ``repro.ops`` counterpart.

    In place: each instance's class changes to a subclass that only overrides
    ``forward``, so parameters, buffers, hooks, ``state_dict`` keys and object
    identity stay the same. Only exact instances of the stock classes are
    swapped; subclasses (which may have their own ``forward``) are listed as
    left alone, as are layers with no replacement. Returns the report.
    """
    report = SwapReport()
    ours = set(REPLACEMENTS.values())
    for path, module in model.named_modules():
        cls = type(module)
        if cls in ours:
            continue
        if cls in REPLACEMENTS:
            module.__class__ = REPLACEMENTS[cls]
            report.swapped.append(Entry(path, _qualname(cls), _qualname(REPLACEMENTS[cls])))
        elif cls in UNSUPPORTED:
            report.left.append(Entry(path, _qualname(cls), UNSUPPORTED[cls]))
        else:
            base = next((b for b in REPLACEMENTS if isinstance(module, b)), None)
            if base is not None:
                report.left.append(
                    Entry(
                        path,
                        _qualname(cls),
                        f"a subclass of {_qualname(base)} with its own class; "
                        "not swapped (use repro.ops functions in its forward, or patch())",
                    )
                )
    return report
