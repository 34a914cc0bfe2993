"""``histc`` and weighted ``bincount`` without atomic float adds.

On CUDA both accumulate float counts or weights with atomics and refuse strict
mode. Integer counting is exact in any order, so counts here come from the
stock unweighted ``bincount`` (integer atomics, deterministic); weighted sums
use the sort-based :func:`repro.ops.segments.segment_sum`.
"""

from __future__ import annotations

import torch

from repro.ops import _stock
from repro.ops.segments import segment_sum


def bincount(input: torch.Tensor, weights: torch.Tensor | None = None, minlength: int = 0) -> torch.Tensor:
    """``torch.bincount``, deterministic on any device, weights included.

    Without weights: the stock op (integer counts, exact). With weights: a
    stable sort of the values and a segmented scan of the weights (see
    :mod:`repro.ops.segments`): time O(n log n), memory O(n), one host sync for
    the output length (as the stock op). Output dtype as the stock CPU op
    (float32 weights give float32, other weights float64). Equal to the stock
    op up to float summation order. Not differentiable (neither is the stock op).
    """
    if weights is None:
        return _stock.bincount(input, None, minlength)
    if input.dim() != 1 or input.is_floating_point() or input.is_complex() or input.dtype == torch.bool:
        raise ValueError(
            f"input has shape {tuple(input.shape)} and dtype {input.dtype}: "
            "bincount needs a 1-d tensor of non-negative integers"
        )
    if weights.dim() != 1 or weights.shape[0] != input.shape[0]:
        raise ValueError(
            f"weights has shape {tuple(weights.shape)}: expected 1-d with the length of input ({input.shape[0]})"
        )
    if minlength < 0:
        raise ValueError(f"minlength={minlength} is not allowed: expected >= 0")
    if input.numel() == 0:  # the stock op returns int64 zeros here, weights or not
        return torch.zeros(minlength, dtype=torch.int64, device=input.device)
    low, high = int(input.min()), int(input.max())
    if low < 0:
        raise ValueError(f"input holds {low}: bincount needs non-negative integers")
    dtype = torch.float32 if weights.dtype == torch.float32 else torch.float64
    length = max(high + 1, minlength)
    return segment_sum(input.to(torch.int64), weights.detach().to(dtype)[:, None], length).squeeze(1)


def _histc_range(x: torch.Tensor, min: float, max: float) -> tuple[torch.Tensor, torch.Tensor]:
    lo = torch.tensor(min, dtype=x.dtype, device=x.device)
    hi = torch.tensor(max, dtype=x.dtype, device=x.device)
    if min == max and x.numel():
        lo, hi = x.min(), x.max()
    if bool(lo == hi):
        lo, hi = lo - 1, hi + 1
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError(f"histc range [{float(lo)}, {float(hi)}] is not finite: pass finite min and max")
    return lo, hi


def histc(
    input: torch.Tensor, bins: int = 100, min: float = 0, max: float = 0, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``torch.histc``, deterministic on any device (floating-point inputs).

    Algorithm: each element's bin by the stock formula
    ``int((x - min) * bins / (max - min))`` (elements equal to ``max`` in the
    last bin, elements outside [min, max] and NaN dropped), in the stock math
    precision (float32 for float16/bfloat16); then the stock unweighted
    ``bincount`` (integer counts, exact) cast to the input dtype. Time O(n),
    memory O(n). Equal to the stock op exactly. Integer inputs go to the stock
    op (deterministic for them). Not differentiable (neither is the stock op).
    """
    if not input.is_floating_point():
        return _stock.histc(input, bins, min, max, out=out) if out is not None else _stock.histc(input, bins, min, max)
    if bins <= 0:
        raise ValueError(f"bins={bins} is not allowed: expected a positive int")
    if min > max:
        raise ValueError(f"min={min} and max={max} are not allowed: expected min <= max")
    x = input.detach().reshape(-1)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    lo, hi = _histc_range(x, float(min), float(max))
    inside = (x >= lo) & (x <= hi)
    pos = ((x[inside] - lo) * bins / (hi - lo)).to(torch.int64)
    pos = torch.clamp_max(pos, bins - 1)
    result = _stock.bincount(pos, None, bins).to(input.dtype)
    if out is not None:
        out.resize_(result.shape).copy_(result)
        return out
    return result
