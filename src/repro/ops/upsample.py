"""``interpolate`` for the linear family (linear, bilinear, bicubic, trilinear).

The stock backward of these modes scatters gradients with atomics on CUDA.
Here each spatial axis is a sparse linear map (:mod:`repro.ops.axismap`) whose
taps and weights are computed exactly as PyTorch's upsample kernels compute
them (same formulas, same float precision), applied last axis first like the
stock kernels; the backward is the transposed map. Nearest modes delegate to
the stock op (its backward is a deterministic window sum); ``area`` runs on
:func:`repro.ops.adaptive_avg_pool2d` and friends.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from repro.ops import _stock
from repro.ops._upsample_uint8 import resize_uint8
from repro.ops.axismap import AxisMap, apply_axis, keep_format
from repro.ops.pooling import adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d

_LINEAR = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}
_DELEGATED = ("nearest", "nearest-exact")
_CUBIC_A = -0.75


def _scale(
    in_size: int, out_size: int, align_corners: bool, scale: float | None, dtype
) -> torch.Tensor:
    """PyTorch's ``area_pixel_compute_scale`` in the kernel's math type."""
    if align_corners:
        if out_size > 1:
            return torch.tensor(in_size - 1, dtype=dtype) / torch.tensor(out_size - 1, dtype=dtype)
        return torch.tensor(0, dtype=dtype)
    if scale is not None and scale > 0:
        return torch.tensor(1.0 / scale, dtype=dtype)
    return torch.tensor(in_size, dtype=dtype) / torch.tensor(out_size, dtype=dtype)


def _source(
    in_size: int, out_size: int, align_corners: bool, scale, cubic: bool, dtype, fused: bool = True
) -> torch.Tensor:
    """PyTorch's ``area_pixel_compute_source_index`` for every output position."""
    ratio = _scale(in_size, out_size, align_corners, scale, dtype)
    dst = torch.arange(out_size, dtype=dtype)
    if align_corners:
        return ratio * dst
    if dtype == torch.float32 and fused:
        # The stock kernels (CPU and CUDA) evaluate ``ratio * (dst + 0.5) - 0.5`` as one fused
        # multiply-add: the product is exact in float64, so rounding once to float32 matches it.
        src = (ratio.double() * (dst.double() + 0.5) - 0.5).float()
    else:
        src = ratio * (dst + 0.5) - 0.5
    return src if cubic else torch.clamp_min(src, 0)


def _index_and_lambda(real: torch.Tensor, in_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's ``guard_index_and_lambda``."""
    index = torch.clamp_max(torch.floor(real).to(torch.int64), in_size - 1)
    lam = torch.clamp(real - index.to(real.dtype), 0, 1)
    return index, lam


@functools.lru_cache(maxsize=512)
def _linear_map(in_size: int, out_size: int, align_corners: bool, scale, dtype) -> AxisMap:
    if in_size == out_size:  # the stock kernels copy: taps (o, o), weights (1, 0)
        o = torch.arange(out_size)
        w = torch.stack([torch.ones(out_size, dtype=dtype), torch.zeros(out_size, dtype=dtype)], 1)
        return AxisMap(in_size, torch.stack([o, o], 1), w)
    i0, lam1 = _index_and_lambda(
        _source(in_size, out_size, align_corners, scale, False, dtype), in_size
    )
    i1 = i0 + (i0 < in_size - 1).to(torch.int64)
    lam0 = 1 - lam1
    return AxisMap(in_size, torch.stack([i0, i1], 1), torch.stack([lam0, lam1], 1))


def _cubic_coefficients(t: torch.Tensor) -> torch.Tensor:
    a = _CUBIC_A

    def conv1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def conv2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    x2 = 1 - t
    return torch.stack([conv2(t + 1), conv1(t), conv1(x2), conv2(x2 + 1)], 1)


@functools.lru_cache(maxsize=512)
def _cubic_map(
    in_size: int, out_size: int, align_corners: bool, scale, dtype, fused: bool = True
) -> AxisMap:
    src = _source(in_size, out_size, align_corners, scale, True, dtype, fused)
    i, t = _index_and_lambda(src, in_size)
    taps = torch.clamp(i[:, None] - 1 + torch.arange(4), 0, in_size - 1)
    return AxisMap(in_size, taps, _cubic_coefficients(t))


@functools.lru_cache(maxsize=512)
def _cubic_cpu_map(in_size: int, out_size: int, align_corners: bool, scale, dtype) -> AxisMap:
    fused = _cubic_map(in_size, out_size, align_corners, scale, dtype)
    return fused.with_backward(_cubic_map(in_size, out_size, align_corners, scale, dtype, False))


def _output_size(input, size, scale_factor, recompute_scale_factor) -> tuple[list[int], list]:
    """Output sizes and the scales the kernel uses, by ``F.interpolate``'s rules."""
    nd = input.dim() - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    given = size if size is not None else scale_factor
    values = list(given) if isinstance(given, (list, tuple)) else [given] * nd
    if len(values) != nd:
        name = "size" if size is not None else "scale_factor"
        raise ValueError(
            f"{name}={given!r} does not match the {nd} spatial dimensions of input {list(input.shape)}"
        )
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
        return [int(v) for v in values], [None] * nd
    out = [math.floor(float(n) * float(v)) for n, v in zip(input.shape[2:], values, strict=True)]
    return out, [None] * nd if recompute_scale_factor else [float(v) for v in values]


def _area(input, size, scale_factor, recompute_scale_factor, antialias) -> torch.Tensor:
    if antialias:
        raise ValueError("antialias=True is not allowed with mode='area' (as in the stock op)")
    out_sizes, _ = _output_size(input, size, scale_factor, recompute_scale_factor)
    pool = {3: adaptive_avg_pool1d, 4: adaptive_avg_pool2d, 5: adaptive_avg_pool3d}.get(input.dim())
    if pool is None:
        raise NotImplementedError(f"mode='area' needs a 3-D, 4-D or 5-D input, got {input.dim()}-D")
    return pool(input, tuple(out_sizes))


def interpolate(
    input: torch.Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> torch.Tensor:
    """``F.interpolate`` with a deterministic backward on any device for the linear modes.

    Modes "linear", "bilinear", "bicubic", "trilinear": per axis, a sparse map
    with 2 (linear) or 4 (cubic) taps per output, taps and weights computed with
    PyTorch's formulas in its precision (float32 for float32/16 and bfloat16
    inputs, float64 for float64), the source coordinate rounded once as the
    stock kernels' fused multiply-add rounds it; applied W, then H, then D.
    Backward: the transposed maps (a gather and a fixed-order sum; on the CPU,
    bicubic uses the unfused coordinates of the stock CPU backward). Time
    O(taps * output size) per axis, transient memory taps x the output of each
    pass. uint8 images (bilinear, bicubic): the stock CPU algorithm, integer
    weights scaled by 2**p and a rounded uint8 result after each axis; other
    integer inputs go to the stock op (which raises ``NotImplementedError``).
    Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md): uint8 exact;
    float32 within 1.9e-6 (bilinear), 9.5e-6 (bicubic), 9.5e-7 (trilinear,
    area), 4.8e-7 (linear) on values up to 9, gradients within 9.5e-7; float64
    within 7e-13; float16/bfloat16 within 1 scaled ulp (0.0078/0.062
    absolute); "nearest" modes exact.
    Edge: "bicubic" with a ``scale_factor`` that leaves both sizes unchanged
    interpolates as PyTorch's CPU forward does (its CUDA kernel copies instead).

    "nearest" and "nearest-exact" call the stock op, whose backward is
    deterministic; "area" uses :func:`adaptive_avg_pool2d` and friends.
    ``antialias=True`` and "lanczos" raise ``ValueError`` (no deterministic
    replacement yet); unknown modes and invalid sizes raise what the stock op
    raises (``NotImplementedError``, ``ValueError``, ``RuntimeError``).
    """
    if mode in _DELEGATED:
        return _stock.interpolate(
            input, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias
        )
    if mode == "area":
        return _area(input, size, scale_factor, recompute_scale_factor, antialias)
    if mode == "lanczos":  # an antialiasing-only mode (stock: ValueError without antialias)
        raise ValueError(
            "mode='lanczos' is not supported by repro.ops.interpolate (it needs antialias=True, "
            "which has no deterministic replacement here)"
        )
    if mode not in _LINEAR:
        raise NotImplementedError(
            f"mode={mode!r} is not supported by repro.ops.interpolate: expected one of "
            "'linear', 'bilinear', 'bicubic', 'trilinear', 'nearest', 'nearest-exact', 'area'"
        )
    if antialias:
        raise ValueError(
            "antialias=True is not supported by repro.ops.interpolate: "
            "use antialias=False (or the stock op, which is nondeterministic on CUDA)"
        )
    if input.dim() != _LINEAR[mode]:
        raise NotImplementedError(
            f"mode={mode!r} needs a {_LINEAR[mode]}-D input (N, C, spatial...), got {input.dim()}-D"
        )
    out_sizes, scales = _output_size(input, size, scale_factor, recompute_scale_factor)
    nd = input.dim() - 2
    if 0 in input.shape[2:] or 0 in out_sizes:
        raise RuntimeError(
            f"input spatial sizes {list(input.shape[2:])} and output sizes {out_sizes} "
            "must all be greater than 0"
        )
    align = bool(align_corners)
    if not input.is_floating_point():
        if input.dtype == torch.uint8 and mode in ("bilinear", "bicubic"):
            y = resize_uint8(input, out_sizes, align, scales, mode == "bicubic")
            return keep_format(y, input)
        # Other integer inputs: the stock op (it raises NotImplementedError for them).
        return _stock.interpolate(
            input, size, scale_factor, mode, align_corners, recompute_scale_factor
        )
    low = input.dtype in (torch.float16, torch.bfloat16)
    math_dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    cpu = input.device.type == "cpu"
    y = input.to(math_dtype) if low else input
    for axis in range(nd - 1, -1, -1):
        key = (input.shape[2 + axis], out_sizes[axis], align, scales[axis], math_dtype)
        if mode != "bicubic":
            amap = _linear_map(*key)
        elif cpu:
            # The stock CPU bicubic backward lives outside the vectorised kernels and
            # computes its source coordinates without the fused multiply-add.
            amap = _cubic_cpu_map(*key)
        else:
            amap = _cubic_map(*key)
        y = apply_axis(y, 2 + axis, amap)
    return keep_format(y.to(input.dtype), input)
