"""PyTorch's own OpInfo samples run through every ``repro.ops`` replacement.

Shared by ``test_ops_opinfo.py`` (the checks) and ``python tests/ops/opinfo.py``
(the measured agreement table in ``docs/ops.md``). The samples come from
``torch.testing._internal.common_methods_invocations.op_db``, an internal
module: :data:`AVAILABLE` is False (and the tests skip) when it cannot be
imported, e.g. when it moved in another torch version or ``expecttest`` (one
of its imports) is missing.

Rules, per output of a replacement against the stock op on the same sample:

- integer, bool and index outputs: equal exactly;
- float32, float64 and complex outputs: ``torch.testing.assert_close`` defaults
  (NaN equal to NaN), gradients too;
- float16, bfloat16 and complex32: at most :data:`LOW_ULPS` "scaled ulps"
  (``|ours - stock| / (eps * max(1, max |stock|))``; :data:`LOW_ULPS_FOR` per op);
- ``median``/``kthvalue`` indices: valid (``input.gather(dim, index)`` gives
  the values) rather than equal, since ties may report another equal element;
- samples a replacement refuses by design (``antialias=True``,
  ``grid_sample(mode="bicubic")``): it raises ``ValueError`` naming the argument;
- samples where the stock op itself is wrong (:func:`stock_broken`) are skipped.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

import repro.ops as R

try:  # an internal module: it may move, or miss a test-only dependency (expecttest)
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_utils import noncontiguous_like
    from torch.testing._internal.opinfo.core import ErrorInput, OpInfo, SampleInput

    AVAILABLE, WHY_NOT = True, ""
    # Importing common_utils freezes torch's global backend flags for the whole process (PyTorch's own test
    # suite wants that); the rest of our session sets them on purpose, so thaw them again.
    torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    assert not torch.backends.flags_frozen()
except Exception as exc:  # noqa: BLE001 - any failure to import means: skip
    op_db, AVAILABLE, WHY_NOT = [], False, f"torch's OpInfo database is not importable: {exc!r}"


def _embedding_bag(weight, idx, **kwargs):
    return R.embedding_bag(idx, weight, **kwargs)


def _upsample_bilinear(x, size=None, scale_factor=None):
    return R.UpsamplingBilinear2d(size, scale_factor)(x)


#: OpInfo name (".variant" appended when it has one) -> the replacement, called like ``op.op``.
REPLACED: dict[str, Callable] = {
    "bincount": R.bincount,
    "cumsum": R.cumsum,
    "histc": R.histc,
    "index_select": R.index_select,
    "kthvalue": R.kthvalue,
    "median": R.median,
    "nn.functional.adaptive_avg_pool1d": R.adaptive_avg_pool1d,
    "nn.functional.adaptive_avg_pool2d": R.adaptive_avg_pool2d,
    "nn.functional.adaptive_avg_pool3d": R.adaptive_avg_pool3d,
    "nn.functional.adaptive_max_pool1d": R.adaptive_max_pool1d,
    "nn.functional.adaptive_max_pool2d": R.adaptive_max_pool2d,
    "nn.functional.avg_pool3d": R.avg_pool3d,
    "nn.functional.cross_entropy": R.cross_entropy,
    "nn.functional.embedding_bag": _embedding_bag,
    "nn.functional.grid_sample": R.grid_sample,
    "nn.functional.nll_loss": R.nll_loss,
    "nn.functional.upsample_bilinear": _upsample_bilinear,
}
for _v in ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area"):
    REPLACED[f"nn.functional.interpolate.{_v}"] = R.interpolate
for _v in ("constant", "reflect", "replicate", "replicate_negative", "circular"):
    REPLACED[f"nn.functional.pad.{_v}"] = R.pad
for _v in ("sum", "prod", "mean", "amax", "amin"):
    REPLACED[f"scatter_reduce.{_v}"] = R.scatter_reduce

#: Ops whose second output is an index into ``input`` along ``dim`` chosen among ties.
TIE_INDICES = {"median", "kthvalue"}
#: Samples with more elements than this are "large" (PyTorch's 345x456 image references).
LARGE = 100_000


def key(op: OpInfo) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


@functools.cache
def opinfos() -> dict[str, OpInfo]:
    """The OpInfo of every replaced op, by :func:`key`."""
    found = {key(op): op for op in op_db if key(op) in REPLACED}
    return dict(sorted(found.items()))


def refused(name: str, sample: SampleInput) -> str | None:
    """The argument a replacement refuses by design for this sample, or None."""
    if name.startswith("nn.functional.interpolate") and sample.kwargs.get("antialias"):
        return "antialias"
    if name == "nn.functional.grid_sample":
        mode = sample.kwargs.get("mode", sample.args[1] if len(sample.args) > 1 else "bilinear")
        if mode == "bicubic":
            return "mode"
    return None


def stock_broken(name: str, sample: SampleInput) -> bool:
    """Samples the *stock* op gets wrong, so there is nothing to compare with (torch 2.13 CPU):
    float16 and bfloat16 ``grid_sample`` on the 345x456 reference images, where the stock
    forward returns NaN or values near 3e38 and its backward corrupts memory and aborts."""
    x = sample.input
    return (
        name == "nn.functional.grid_sample"
        and x.device.type == "cpu"
        and x.dtype in (torch.float16, torch.bfloat16)
        and numel(sample) > LARGE
    )


def numel(sample: SampleInput) -> int:
    return sum(t.numel() for t in _tensors(sample))


def _tensors(sample: SampleInput) -> list[torch.Tensor]:
    found = [sample.input, *sample.args, *sample.kwargs.values()]
    flat: list = []
    for v in found:
        flat.extend(v if isinstance(v, (tuple, list)) else [v])
    return [t for t in flat if isinstance(t, torch.Tensor)]


def samples(
    op: OpInfo, device: str, dtype: torch.dtype, cap: int | None = None, large: bool = True
) -> Iterator[tuple[str, SampleInput]]:
    """("sample" | "reference", sample) for ``op`` at ``dtype``, at most ``cap`` of each kind.

    ``large=False`` leaves out samples over :data:`LARGE` elements. Seeded: the same samples
    every run.
    """
    grad = op.supports_autograd and dtype in op.supported_backward_dtypes(device)
    # The generator functions themselves: op.sample_inputs() wraps them in an iterator that
    # crawls the call stack (inspect.stack) for every call, which dominates the run time.
    torch.manual_seed(0)
    kinds = [("sample", op.sample_inputs_func(op, device, dtype, grad))]
    if op.reference_inputs_func is not None:
        kinds.append(("reference", op.reference_inputs_func(op, device, dtype, grad)))
    for kind, gen in kinds:
        taken = 0
        for s in gen:
            if isinstance(s, torch.Tensor):  # a few generators yield bare tensors
                s = SampleInput(s)
            if cap is not None and taken >= cap:
                break
            if not large and numel(s) > LARGE:
                continue
            taken += 1
            yield kind, s


def fresh(sample: SampleInput, noncontiguous: bool = False) -> SampleInput:
    """A copy with new leaves (same values, strides kept or made non-contiguous)."""

    def copy(t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if noncontiguous and t.numel() > 1:
                c = noncontiguous_like(t.detach())
            else:
                c = t.detach().clone(memory_format=torch.preserve_format)
        return c.requires_grad_(t.requires_grad)

    return sample.transform(lambda t: copy(t) if isinstance(t, torch.Tensor) else t)


def _call(fn: Callable, s: SampleInput):
    return fn(s.input, *s.args, **s.kwargs)


def outputs(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for t in result if isinstance(t, torch.Tensor)]


def leaves(s: SampleInput) -> list[torch.Tensor]:
    return [t for t in _tensors(s) if t.requires_grad]


def run(fn: Callable, sample: SampleInput, noncontiguous: bool = False, seed: int = 0):
    """(outputs, gradients of the leaves that require grad) of ``fn`` on a fresh copy.

    The cotangent of the first floating output is drawn from ``seed`` (float64,
    then cast), so ours and stock get the same one.
    """
    s = fresh(sample, noncontiguous)
    outs = outputs(_call(fn, s))
    wrt = leaves(s)
    grads: list = []
    first = outs[0]
    if wrt and first.requires_grad:
        gen = torch.Generator().manual_seed(seed)
        cot = torch.randn(first.shape, generator=gen, dtype=torch.float64).to(first.dtype)
        got = torch.autograd.grad(first, wrt, cot.to(first.device), allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, got, strict=True)]
    return [o.detach() for o in outs], grads, s


def bind(fn: Callable, sample: SampleInput) -> tuple[Callable, tuple[torch.Tensor, ...]]:
    """(f, leaves): ``f(*xs)`` is the first output of ``fn`` on ``sample`` with its
    grad-requiring tensors replaced by ``xs`` (everything else fixed)."""
    s = fresh(sample)
    wrt = leaves(s)
    ids = [id(t) for t in wrt]

    def f(*xs: torch.Tensor) -> torch.Tensor:
        table = dict(zip(ids, xs, strict=True))
        filled = s.transform(lambda t: table.get(id(t), t) if isinstance(t, torch.Tensor) else t)
        return outputs(_call(fn, filled))[0]

    return f, tuple(w.detach() for w in wrt)


def describe(s: SampleInput) -> str:
    """A short description of a sample: shapes and dtypes of its tensors, other arguments."""

    def one(v) -> str:
        if isinstance(v, torch.Tensor):
            return f"{str(v.dtype).removeprefix('torch.')}{list(v.shape)}"
        if isinstance(v, (tuple, list)):
            return "(" + ", ".join(one(x) for x in v) + ")"
        return repr(v)

    parts = [
        one(s.input),
        *(one(a) for a in s.args),
        *(f"{k}={one(v)}" for k, v in s.kwargs.items()),
    ]
    return ", ".join(parts)


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| over the elements (NaN against NaN and equal infinities count as 0)."""
    if a.numel() == 0:
        return 0.0
    if a.is_complex():
        return max(difference(a.real, b.real), difference(a.imag, b.imag))
    x, y = a.double(), b.double()
    same = (x == y) | (x.isnan() & y.isnan())
    d = torch.where(same, 0.0, (x - y).abs()).nan_to_num(math.inf)
    return float(d.max())


def valid_indices(
    x: torch.Tensor, dim: int, values: torch.Tensor, index: torch.Tensor, keepdim: bool
):
    """True when ``index`` picks ``values`` out of ``x`` along ``dim``."""
    if x.dim() == 0:
        return bool((index == 0).all())
    idx = index if keepdim else index.unsqueeze(dim)
    vals = values if keepdim else values.unsqueeze(dim)
    picked = x.gather(dim, idx)
    return bool(((picked == vals) | (picked.isnan() & vals.isnan())).all())


def _dim_keepdim(name: str, s: SampleInput) -> tuple[int, bool]:
    args = list(s.args)
    if name == "kthvalue":
        args = args[1:]  # k
    dim = s.kwargs.get("dim", args[0] if args else -1)
    keepdim = s.kwargs.get("keepdim", args[1] if len(args) > 1 else False)
    return dim, keepdim


#: float16/bfloat16 results are compared in "ulps of the output's scale": |ours - stock| /
#: (eps(dtype) * max(1, max |stock|)). Both sides round to the low precision at different points
#: (the stock CPU kernels often per step, ours in float32 then once), so a few of these are normal.
LOW_PRECISION = (torch.float16, torch.bfloat16, torch.complex32)
LOW_ULPS = 4.0
#: Looser bounds where the stock CPU kernel itself rounds float16/bfloat16 partial sums: on
#: weighted sums that cancel, both sides are a few ulps of the terms away from the exact value,
#: which is up to ~10 ulps of the (smaller) result.
LOW_ULPS_FOR = {"nn.functional.nll_loss": 12.0}


def scaled_ulps(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| in units of eps(dtype) * max(1, max |b|) (see :data:`LOW_ULPS`)."""
    if a.numel() == 0:
        return 0.0
    real = b.real if b.is_complex() else b
    eps = torch.finfo(real.dtype).eps
    scale = max(1.0, float(b.abs().double().nan_to_num(0.0, 0.0, 0.0).max()))
    return difference(a, b) / (eps * scale)


@dataclass
class Outcome:
    """Differences of one sample: forward and gradients, largest |ours - stock| each
    (for float16/bfloat16 also in scaled ulps), and any broken rule."""

    forward: float = 0.0
    backward: float | None = None
    ulps: float = 0.0
    problems: list[str] = field(default_factory=list)


def _close(a: torch.Tensor, b: torch.Tensor, what: str, out: Outcome, bound: float) -> None:
    if a.dtype in LOW_PRECISION:
        u = scaled_ulps(a, b)
        out.ulps = max(out.ulps, u)
        if u > bound:
            out.problems.append(f"{what}: {u:.1f} scaled ulps (max {bound})")
        return
    try:
        torch.testing.assert_close(a, b, equal_nan=True)
    except AssertionError as e:
        out.problems.append(f"{what}: {' '.join(str(e).split())[:200]}")


def _bits(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().contiguous().reshape(-1)
    return flat if t.dtype == torch.bool else flat.view(torch.uint8)


def _same_bits(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(_bits(x), _bits(y))
        for x, y in zip(a, b, strict=True)
    )


def compare(
    name: str,
    sample: SampleInput,
    noncontiguous: bool = False,
    backward: bool = True,
    twice: bool = False,
) -> Outcome:
    """Run ours and stock on ``sample``; the differences and any broken rule.

    ``twice``: also run ours a second time and require the same bits (outputs and gradients).
    """
    op = opinfos()[name]
    if not backward:
        sample = sample.transform(lambda t: t.detach() if isinstance(t, torch.Tensor) else t)
    ours_out, ours_grads, s = run(REPLACED[name], sample, noncontiguous)
    stock_out, stock_grads, _ = run(op.op, sample, noncontiguous)
    out = Outcome()
    if twice:
        again_out, again_grads, _ = run(REPLACED[name], sample, noncontiguous)
        if not (_same_bits(ours_out, again_out) and _same_bits(ours_grads, again_grads)):
            out.problems.append("two runs of ours differ")
    if len(ours_out) != len(stock_out):
        out.problems.append(f"{len(ours_out)} outputs, stock {len(stock_out)}")
        return out
    for i, (a, b) in enumerate(zip(ours_out, stock_out, strict=True)):
        if a.shape != b.shape or a.dtype != b.dtype:
            out.problems.append(
                f"output {i}: {a.dtype}{list(a.shape)}, stock {b.dtype}{list(b.shape)}"
            )
            continue
        if name in TIE_INDICES and i == 1:
            dim, keepdim = _dim_keepdim(name, s)
            if not valid_indices(s.input.detach(), dim, ours_out[0], a, keepdim):
                out.problems.append("indices do not point at the values")
            continue
        d = difference(a, b)
        out.forward = max(out.forward, d)
        if a.is_floating_point() or a.is_complex():
            _close(a, b, f"output {i}", out, LOW_ULPS_FOR.get(name, LOW_ULPS))
        elif d != 0:
            out.problems.append(f"output {i} ({a.dtype}): differs by {d}")
    if ours_grads or stock_grads:
        out.backward = 0.0
        if len(ours_grads) != len(stock_grads):
            out.problems.append(f"{len(ours_grads)} gradients, stock {len(stock_grads)}")
        for i, (a, b) in enumerate(zip(ours_grads, stock_grads, strict=False)):
            out.backward = max(out.backward, difference(a, b))
            _close(a, b, f"grad {i}", out, LOW_ULPS_FOR.get(name, LOW_ULPS))
    return out


def check_refused(name: str, sample: SampleInput, why: str) -> str | None:
    """None when the replacement refuses ``sample`` with a ValueError naming ``why``."""
    try:
        _call(REPLACED[name], fresh(sample))
    except ValueError as e:
        return None if why in str(e) else f"ValueError without {why!r}: {e}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__} instead of ValueError: {e}"
    return "no error"


def check_error(name: str, error: ErrorInput) -> str | None:
    """None when ours raises what stock raises on ``error`` (same exception type)."""
    op = opinfos()[name]
    caught: list[BaseException | None] = []
    for fn in (REPLACED[name], op.op):
        try:
            _call(fn, error.sample_input)
            caught.append(None)
        except Exception as e:  # noqa: BLE001
            caught.append(e)
    ours, stock = caught
    if stock is None:
        return None  # stock accepts it here (an error input for another device)
    if ours is None:
        return f"no error; stock raises {type(stock).__name__}: {stock}"
    if type(ours) is not type(stock):
        return f"{type(ours).__name__}: {ours}; stock raises {type(stock).__name__}: {stock}"
    return None


def dtypes(op: OpInfo, device: str) -> list[torch.dtype]:
    return sorted(op.supported_dtypes(device), key=str)


@dataclass
class Row:
    """Agreement of one replaced op at one dtype over every sample (no cap)."""

    samples: int = 0
    skipped: int = 0  # samples the stock op gets wrong (see stock_broken)
    refused: int = 0  # samples ours refuses by design (checked: ValueError naming the argument)
    forward: float = 0.0
    backward: float | None = None
    ulps: float = 0.0
    problems: list[str] = field(default_factory=list)


def measure(device: str = "cpu", only: str = "") -> dict[tuple[str, str], Row]:
    """Every sample_inputs and reference_inputs sample of every replaced op, every dtype."""
    table: dict[tuple[str, str], Row] = {}
    for name, op in opinfos().items():
        if only and only not in name:
            continue
        for dtype in dtypes(op, device):
            row = table.setdefault((name, str(dtype).removeprefix("torch.")), Row())
            for _, s in samples(op, device, dtype):
                if stock_broken(name, s):
                    row.skipped += 1
                    continue
                why = refused(name, s)
                if why:
                    problem = check_refused(name, s, why)
                    row.problems.extend([problem] if problem else [])
                    row.refused += 1
                    continue
                o = compare(name, s, twice=device != "cpu")
                row.samples += 1
                row.forward = max(row.forward, o.forward)
                if o.backward is not None:
                    row.backward = max(row.backward or 0.0, o.backward)
                row.ulps = max(row.ulps, o.ulps)
                row.problems.extend(o.problems)
    return table


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return "exact" if v == 0 else f"{v:.2g}"


def main() -> None:
    """Print the agreement table (markdown) over every OpInfo sample.

    ``python tests/ops/opinfo.py [cpu|cuda] [name filter]``.
    """
    import sys

    if not AVAILABLE:
        raise SystemExit(WHY_NOT)
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    where = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__}, {where}; every sample")
    print()
    print(
        "| OpInfo | dtype | samples | forward max abs diff | backward max abs diff "
        "| float16/bfloat16: scaled ulps | rules broken |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    table = measure(device, only)
    for (name, dtype), r in table.items():
        ulps = f"{r.ulps:.2g}" if dtype in ("float16", "bfloat16", "complex32") else ""
        print(
            f"| `{name}` | {dtype} | {r.samples} | {_fmt(r.forward)} | {_fmt(r.backward)} "
            f"| {ulps} | {len(r.problems)} |"
        )
        for p in sorted(set(r.problems))[:3]:
            print(f"<!-- {name} {dtype}: {p} -->")
    rows = table.values()
    print()
    print(
        f"{sum(r.samples for r in rows)} samples compared; "
        f"{sum(r.refused for r in rows)} refused by design (each checked to raise ValueError); "
        f"{sum(r.skipped for r in rows)} skipped (the stock op's result is wrong, see stock_broken); "
        f"{sum(len(r.problems) for r in rows)} broken rules."
    )


if __name__ == "__main__":
    main()
