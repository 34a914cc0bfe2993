"""``grid_sample`` (bilinear and nearest) with a deterministic backward.

The stock CUDA backward scatters ``weight * grad`` into the input's corners
with atomics. Here the corner values are gathered through
:func:`repro.ops.indexing.index_select` (backward: a sort-based segment sum),
and the sampling weights are plain differentiable tensor math, so autograd
gives the gradient for ``grid`` with elementwise ops only. Coordinate handling
(unnormalize, border clipping, reflection, out-of-range guards) follows
PyTorch's ``GridSampler.h`` formulas and gradient conventions.
"""

from __future__ import annotations

import itertools
import math
import warnings

import torch

from repro.ops.indexing import index_select

_MODES = ("bilinear", "nearest")
_PADDING = ("zeros", "border", "reflection")
_INT_MAX = 2**31 - 1


def _clip(c: torch.Tensor, size: int) -> torch.Tensor:
    # Value clamped to [0, size-1] (NaN to 0, as fmax/fmin do in the CUDA kernel);
    # gradient 1 strictly inside, 0 on or past the borders.
    inside = (c > 0) & (c < size - 1)
    return torch.where(inside, c, c.detach().nan_to_num(0.0).clamp(0, size - 1))


def _reflect(c: torch.Tensor, twice_low: int, twice_high: int) -> torch.Tensor:
    if twice_low == twice_high:
        return torch.zeros_like(c.detach())
    low = twice_low / 2
    span = (twice_high - twice_low) / 2
    shifted = c - low
    sign = torch.where(shifted.detach() < 0, -1.0, 1.0).to(c.dtype)
    shifted = shifted * sign
    extra = torch.fmod(shifted, span)
    flips = torch.floor(shifted.detach() / span)
    return torch.where(flips % 2 == 0, extra + low, (span - extra) + low)


def _unnormalize(c: torch.Tensor, size: int, align_corners: bool, style: str) -> torch.Tensor:
    """Grid coordinate in [-1, 1] to pixel units, rounded as the stock kernel for ``style`` rounds."""
    # A fused multiply-add a * b + c rounds once: for float32 the product and sum are exact
    # in float64, so computing there and rounding to float32 gives the fused result.
    fused = c.dtype == torch.float32 and style != "plain"
    if style == "cpu2d":  # the vectorised CPU 2-D kernel: (c + 1) * half_extent (- 0.5, fused)
        if align_corners:
            return (c + 1) * ((size - 1) / 2)
        return (
            ((c + 1).double() * (size / 2) - 0.5).float() if fused else (c + 1) * (size / 2) - 0.5
        )
    if align_corners:
        return (c + 1) / 2 * (size - 1)
    if fused:  # CUDA: (c + 1) * size - 1 fused
        return ((c + 1).double() * size - 1).float() / 2
    return ((c + 1) * size - 1) / 2


def _source(
    c: torch.Tensor, size: int, padding_mode: str, align_corners: bool, style: str
) -> torch.Tensor:
    """PyTorch's ``grid_sampler_compute_source_index`` (with its gradient rules)."""
    c = _unnormalize(c, size, align_corners, style)
    if padding_mode == "border":
        c = _clip(c, size)
    elif padding_mode == "reflection":
        c = _reflect(c, 0, 2 * (size - 1)) if align_corners else _reflect(c, -1, 2 * size - 1)
        c = _clip(c, size)
    d = c.detach()
    ok = torch.isfinite(d) & (d <= _INT_MAX - 1) & (d >= -_INT_MAX - 1)
    return torch.where(ok, c, -100.0)


class _ZeroGradTo(torch.autograd.Function):
    """Pass ``out`` through; give ``anchor`` a zero gradient (the stock nearest-mode grid gradient)."""

    @staticmethod
    def forward(out: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return out.view_as(out)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, anchor = inputs
        ctx.anchor_shape, ctx.anchor_dtype = anchor.shape, anchor.dtype

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, grad.new_zeros(ctx.anchor_shape, dtype=ctx.anchor_dtype)

    @staticmethod
    def jvp(ctx, out_t: torch.Tensor, anchor_t: torch.Tensor):
        return out_t.view_as(out_t)


def grid_sample(
    input: torch.Tensor,
    grid: torch.Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool | None = None,
) -> torch.Tensor:
    """``F.grid_sample`` for 4-D and 5-D inputs, deterministic in forward and backward.

    Modes "bilinear" (trilinear for 5-D) and "nearest"; padding "zeros",
    "border", "reflection"; ``align_corners`` both ways. Algorithm: source
    coordinates per axis as in PyTorch, then 2**d corner rows gathered from a
    channels-last view of ``input`` and summed with bilinear weights in the
    stock corner order. Backward to ``input``: a sort of the corner positions
    and a segment sum; to ``grid``: autograd through the weights (elementwise),
    zeros for "nearest". NaN or infinite grid values follow the CUDA kernel (the
    stock CPU 2-D kernel differs): with "zeros" padding they sample 0, with
    "border"/"reflection" they are clipped (NaN to 0). Time O(2**d * N * P * C) for P output points, plus a
    sort of 2**d * N * P keys in backward; transient memory 2**d times the
    output. Source coordinates are rounded as the stock kernel of the device
    rounds them (CPU 2-D: its vectorised formula with one fused multiply-add;
    CPU 3-D: the plain formula; CUDA: fused multiply-add), and float16/bfloat16
    are computed in the input dtype on the CPU (as the stock kernel), in float32
    on CUDA. Measured against the stock CPU op on PyTorch's OpInfo samples
    (docs/ops.md): float32 within 4.6e-5 on a 0-255 image (gradients 8.6e-6),
    float64 within 1.3e-11; float16/bfloat16 forward exact, gradients within
    1.6 scaled ulps (the stock CPU op returns NaN or ~3e38 for float16/bfloat16
    on PyTorch's 345x456 reference images, so those are not compared).
    ``mode="bicubic"`` raises ``ValueError``; inputs that do not fit raise
    ``RuntimeError`` (as the stock op).
    """
    if mode not in _MODES:
        raise ValueError(
            f"mode={mode!r} is not supported by repro.ops.grid_sample: expected 'bilinear' or 'nearest'"
        )
    if padding_mode not in _PADDING:
        raise ValueError(
            f"padding_mode={padding_mode!r} is not allowed: expected 'zeros', 'border' or 'reflection'"
        )
    if align_corners is None:
        warnings.warn(
            "Default grid_sample and affine_grid behavior has changed to align_corners=False "
            "since 1.3.0. Please specify align_corners=True if the old behavior is desired. "
            "See the documentation of grid_sample for details.",
            stacklevel=2,
        )
        align_corners = False
    nd = input.dim() - 2
    if (
        nd not in (2, 3)
        or grid.dim() != input.dim()
        or grid.shape[-1] != nd
        or grid.shape[0] != input.shape[0]
    ):
        raise RuntimeError(
            f"grid_sampler(): input of shape {tuple(input.shape)} and grid of shape "
            f"{tuple(grid.shape)} do not fit: "
            "expected (N, C, H, W) with (N, Ho, Wo, 2), or (N, C, D, H, W) with (N, Do, Ho, Wo, 3)"
        )
    if input.dtype != grid.dtype:
        raise RuntimeError(f"grid has dtype {grid.dtype}: expected the input's dtype {input.dtype}")
    if 0 in input.shape[2:]:
        raise RuntimeError(
            f"grid_sampler(): input has sizes {list(input.shape)}: spatial sizes must be non-zero"
        )
    out_shape = (*input.shape[:2], *grid.shape[1:-1])
    # float16/bfloat16: the stock CPU kernels round every step to the input dtype (so do we,
    # which keeps grid gradients within a few ulps of them); CUDA computes in float32.
    low = input.dtype in (torch.float16, torch.bfloat16) and input.device.type != "cpu"
    x = input.float() if low else input
    g = grid.to(x.dtype)
    n, channels = x.shape[:2]
    sizes = tuple(x.shape[2:])
    points = math.prod(out_shape[2:])
    # Axis a (0 = first spatial dim) reads grid component nd-1-a (x is the last axis).
    # Which stock kernel to follow: CPU 2-D is vectorised with its own rounding; CPU 3-D and
    # CUDA share one formula, which nvcc compiles with fused multiply-adds.
    style = "fused" if input.device.type != "cpu" else "cpu2d" if nd == 2 else "plain"
    coords = [
        _source(g[..., nd - 1 - a].reshape(n, points), sizes[a], padding_mode, align_corners, style)
        for a in range(nd)
    ]
    rows = x.movedim(1, -1).reshape(n * math.prod(sizes), channels)
    base = (torch.arange(n, device=x.device) * math.prod(sizes))[:, None]

    def position(idx: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inside = torch.ones_like(idx[0], dtype=torch.bool)
        flat = base
        for a, i in enumerate(idx):
            inside = inside & (i >= 0) & (i < sizes[a])
            flat = flat + torch.clamp(i, 0, sizes[a] - 1) * math.prod(sizes[a + 1 :])
        return flat, inside

    if mode == "nearest":
        flat, inside = position([torch.round(c.detach()).to(torch.int64) for c in coords])
        values = index_select(rows, 0, flat.reshape(-1)).view(n, points, channels)
        out = torch.where(inside[..., None], values, 0)
    else:
        lower = [torch.floor(c.detach()) for c in coords]
        if style == "cpu2d":  # distances as 1 - frac and frac
            weights = [(1 - (c - lo), c - lo) for lo, c in zip(lower, coords, strict=True)]
        else:
            weights = [((lo + 1) - c, c - lo) for lo, c in zip(lower, coords, strict=True)]
        corners = list(itertools.product((0, 1), repeat=nd))
        positions = [
            position([lo.to(torch.int64) + b for lo, b in zip(lower, bits, strict=True)])
            for bits in corners
        ]
        flat = torch.stack([p for p, _ in positions])
        values = (
            index_select(rows, 0, flat.reshape(-1))
            .view(len(corners), n, points, channels)
            .unbind(0)
        )
        out = None
        for k, bits in enumerate(corners):
            if style == "cpu2d":  # y-term first
                w = weights[0][bits[0]] * weights[1][bits[1]]
            else:
                w = weights[nd - 1][bits[nd - 1]]
                for a in range(nd - 2, -1, -1):  # x-term first
                    w = w * weights[a][bits[a]]
            term = torch.where(positions[k][1][..., None], values[k] * w[..., None], 0)
            out = term if out is None else out + term
    out = out.view((n,) + tuple(out_shape[2:]) + (channels,)).movedim(-1, 1).contiguous()
    if mode == "nearest" and grid.requires_grad:
        out = _ZeroGradTo.apply(out, grid)
    return out.to(input.dtype)
