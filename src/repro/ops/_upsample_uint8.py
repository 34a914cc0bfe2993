"""uint8 images for ``interpolate`` bilinear/bicubic, with the stock CPU kernel's integer rounding.

PyTorch resizes uint8 images one axis at a time (width, then height), each
pass a fixed-point sum: per axis, the float64 tap weights are scaled by
``2**p`` and rounded to integers (``p`` the largest precision that keeps the
biggest weight under ``2**15``), each output is ``(sum(w_int * x) + 2**(p-1)) >> p``
clamped to [0, 255], and the pass result is uint8 again. Taps that fall
outside the image are merged into the edge tap. Everything after the weights
is integer arithmetic, so the result does not depend on the order of the sum:
computing the same weights gives the same bytes.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

from repro.ops import _stock

_A_NO_AA = -0.75  # the Keys cubic coefficient the stock kernels use without antialiasing


def _linear_filter(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _cubic_filter(x: float) -> float:
    a = _A_NO_AA
    x = abs(x)
    if x < 1.0:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2.0:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _scale(in_size: int, out_size: int, align_corners: bool, scale: float | None) -> float:
    if align_corners:
        return (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    if scale is not None and scale > 0:
        return 1.0 / scale
    return in_size / out_size


def _source(ratio: float, i: int, align_corners: bool, cubic: bool) -> float:
    if align_corners:
        return ratio * i
    # ratio * (i + 0.5) - 0.5, rounded once (the kernel's fused multiply-add).
    src = float(Fraction(ratio) * Fraction(2 * i + 1, 2) - Fraction(1, 2))
    return src if cubic or src >= 0 else 0.0


@functools.lru_cache(maxsize=256)
def int_map(
    in_size: int, out_size: int, align_corners: bool, scale: float | None, cubic: bool
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(taps [out, k], integer weights [out, k], precision p) for one axis."""
    k = 4 if cubic else 2
    support = k // 2
    kernel = _cubic_filter if cubic else _linear_filter
    ratio = _scale(in_size, out_size, align_corners, scale)
    taps, weights = [], []
    for i in range(out_size):
        real = _source(ratio, i, align_corners, cubic)
        index = min(math.floor(real), in_size - 1)
        lam = min(max(real - index, 0.0), 1.0)
        low = index - support + 1
        start = max(low, 0)
        count = max(0, min(min(index + support + 1, in_size) - start, k))
        w = [0.0] * k
        slot = 0
        for j in range(k):
            if low + j <= 0:
                slot = 0
            elif low + j >= in_size - 1:
                slot = count - 1
            w[slot] += kernel(float(j + 1 - support) - lam)
            slot += 1
        taps.append([min(start + j, in_size - 1) for j in range(k)])
        weights.append([w[j] if j < count else 0.0 for j in range(k)])
    biggest = max((max(row) for row in weights), default=0.0)
    precision = 0
    while precision < 22 and int(0.5 + biggest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = [[_round_away(v * (1 << precision)) for v in row] for row in weights]
    return torch.tensor(taps), torch.tensor(scaled, dtype=torch.int64), precision


def _round_away(v: float) -> int:
    return int(v - 0.5) if v < 0 else int(v + 0.5)


def _apply(x: torch.Tensor, dim: int, taps: torch.Tensor, weights: torch.Tensor, p: int):
    acc = None
    shape = [1] * x.dim()
    shape[dim] = taps.shape[0]
    for j in range(taps.shape[1]):
        term = _stock.index_select(x, dim, taps[:, j].to(x.device)).to(torch.int64)
        term = term * weights[:, j].to(x.device).view(shape)
        acc = term if acc is None else acc + term
    rounded = (acc + (1 << (p - 1))) >> p if p > 0 else acc
    return rounded.clamp(0, 255).to(torch.uint8)


def resize_uint8(
    x: torch.Tensor, out_sizes: list[int], align_corners: bool, scales: list, cubic: bool
) -> torch.Tensor:
    """A 4-D uint8 ``x`` resized to ``out_sizes`` (H, W) as the stock CPU kernel does."""
    y = x
    for axis in (1, 0):  # width, then height; an axis that keeps its size is left alone
        n_in, n_out = x.shape[2 + axis], out_sizes[axis]
        if n_in == n_out:
            continue
        taps, weights, p = int_map(n_in, n_out, align_corners, scales[axis], cubic)
        y = _apply(y, 2 + axis, taps, weights, p)
    return y if y is not x else x.clone()
