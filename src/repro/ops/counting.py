"""``histc`` and weighted ``bincount`` without atomic float adds.

On CUDA both accumulate float counts or weights with atomics and refuse strict
mode. Integer counting is exact in any order, so counts here come from the
stock unweighted ``bincount`` (integer atomics, deterministic); weighted sums
use the sort-based :func:`repro.ops.segments.segment_sum`.
"""

from __future__ import annotations

import math

import torch

from repro.ops import _out, _stock
from repro.ops.segments import segment_sum


def bincount(
    input: torch.Tensor, weights: torch.Tensor | None = None, minlength: int = 0
) -> torch.Tensor:
    """``torch.bincount``, deterministic on any device, weights included.

    Without weights: the stock op (integer counts, exact). With weights: a
    stable sort of the values and a segmented scan of the weights (see
    :mod:`repro.ops.segments`): time O(n log n), memory O(n), one host sync for
    the output length (as the stock op). Output dtype as the stock CPU op
    (float32 weights give float32, other weights float64). Sums follow another
    (fixed) order than the stock op's, so float weights agree up to summation
    order. Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md): exact
    (integer inputs, with and without weights). Invalid inputs raise the stock
    exception types. Not differentiable (neither is the stock op).
    """
    if weights is None:
        return _stock.bincount(input, None, minlength)
    if input.is_floating_point() or input.is_complex() or input.dtype == torch.bool:
        raise NotImplementedError(f"bincount is not implemented for {input.dtype} input")
    if input.dim() != 1:
        raise RuntimeError(
            f"input has shape {tuple(input.shape)}: "
            "bincount only supports 1-d non-negative integral inputs"
        )
    if weights.dim() != 1 or weights.shape[0] != input.shape[0]:
        raise RuntimeError(
            f"weights has shape {tuple(weights.shape)}: expected 1-d with the length of input ({input.shape[0]})"
        )
    if minlength < 0:
        raise RuntimeError(f"minlength should be >= 0, got {minlength}")
    if input.numel() == 0:  # the stock op returns int64 zeros here, weights or not
        return torch.zeros(minlength, dtype=torch.int64, device=input.device)
    low, high = int(input.min()), int(input.max())
    if low < 0:
        raise RuntimeError(
            f"input holds {low}: bincount only supports 1-d non-negative integral inputs"
        )
    dtype = torch.float32 if weights.dtype == torch.float32 else torch.float64
    length = max(high + 1, minlength)
    return segment_sum(input.to(torch.int64), weights.detach().to(dtype)[:, None], length).squeeze(
        1
    )


def _histc_range(x: torch.Tensor, min: float, max: float) -> tuple[float, float]:
    """The stock ``select_outer_bin_edges``: the data's range when min == max, widened by 1 if flat."""
    lo, hi = min, max
    if lo == hi and x.numel():
        lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise RuntimeError(f"torch.histc: range of [{lo}, {hi}] is not finite")
    return lo, hi


def _bins(x: torch.Tensor, bins: int, lo: float, hi: float) -> torch.Tensor:
    """Bin of every element by ``int((x - lo) * bins / (hi - lo))``, rounded step by step in the
    stock kernel's math type: the input dtype on the CPU (float16 and bfloat16 included), the
    accumulate type (float32 for those) on CUDA. Elements outside [lo, hi] are dropped."""
    if x.device.type != "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    first = torch.tensor(lo, dtype=x.dtype, device=x.device)
    last = torch.tensor(hi, dtype=x.dtype, device=x.device)
    x = x[(x >= first) & (x <= last)]
    return torch.clamp_max(((x - first) * bins / (last - first)).to(torch.int64), bins - 1)


def histc(
    input: torch.Tensor,
    bins: int = 100,
    min: float = 0,
    max: float = 0,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``torch.histc``, deterministic on any device (floating-point inputs).

    Algorithm: each element's bin by the stock formula ``int((x - min) * bins /
    (max - min))``, rounded step by step in the stock kernel's math type (CPU:
    the input dtype, float16 and bfloat16 included; CUDA: float32 for those),
    elements equal to ``max``
    in the last bin, elements outside [min, max] and NaN dropped; then the
    stock unweighted ``bincount`` (integer counts, exact) cast to the input
    dtype. Time O(n), memory O(n). Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md):
    exact for float64, float32, float16 and bfloat16. Integer inputs go to the stock op (deterministic for
    them). Invalid ``bins``, ranges and ``out`` raise ``RuntimeError`` as the
    stock op does. Not differentiable (neither is the stock op).
    """
    if not input.is_floating_point():
        if out is not None:
            return _stock.histc(input, bins, min, max, out=out)
        return _stock.histc(input, bins, min, max)
    if bins <= 0:
        raise RuntimeError(f"torch.histc(): bins must be > 0, but got {bins}")
    if min > max:
        raise RuntimeError(f"torch.histc(): max must be larger than min, got min={min}, max={max}")
    if out is not None:
        _out.check((out,))
        if out.dtype != input.dtype:
            raise RuntimeError(
                f"torch.histc: input tensor and hist tensor should have the same dtype, "
                f"but got input {input.dtype} and hist {out.dtype}"
            )
    x = input.detach().reshape(-1)
    lo, hi = _histc_range(x, float(min), float(max))
    pos = _bins(x, bins, lo, hi)
    result = _stock.bincount(pos, None, bins).to(input.dtype)
    return result if out is None else _out.write(out, result, "histc")
