"""repro.ops.grid_sample vs F.grid_sample: 4-D and 5-D, bilinear and nearest, every padding mode.

Tolerance: same formulas as PyTorch, but the stock CPU 2-D kernel unnormalizes
with a different expression (rounding) and sums corners in its own order:
forward and input gradient atol/rtol 1e-5; the grid gradient scales with the
input size, atol 1e-4, rtol 1e-5.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from opcheck import compare, gradcheck, rng

import repro.ops as R


def _case(seed: int, nd: int):
    g = rng(seed)
    sizes = [int(s) for s in torch.randint(1, 6, (nd,), generator=g)]
    n, c = int(torch.randint(1, 3, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
    points = [int(s) for s in torch.randint(1, 5, (nd,), generator=g)]
    x = torch.randn([n, c, *sizes], generator=g)
    grid = torch.rand([n, *points, nd], generator=g) * 2.6 - 1.3
    return x, grid


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_matches_stock(seed, nd, mode, padding_mode, align_corners):
    x, grid = _case(seed, nd)
    compare(
        lambda a, b: R.grid_sample(a, b, mode, padding_mode, align_corners),
        lambda a, b: F.grid_sample(a, b, mode, padding_mode, align_corners),
        [x, grid],
        atol=1e-5,
        rtol=1e-5,
        grad_atol=1e-4,
        grad_rtol=1e-5,
    )


def test_channels_last_far_and_nonfinite_coordinates_and_empty():
    x = torch.randn(2, 3, 5, 4, generator=rng(1)).to(memory_format=torch.channels_last)
    grid = torch.tensor([[[[0.2, -0.4], [5.0, 0.1], [-7.0, 2.0], [1.0, 1.0]]]]).expand(2, 1, 4, 2)
    for pad in ["zeros", "border", "reflection"]:
        compare(
            lambda a, b, p=pad: R.grid_sample(a, b, "bilinear", p, False),
            lambda a, b, p=pad: F.grid_sample(a, b, "bilinear", p, False),
            [x, grid.contiguous()],
            atol=1e-5,
            rtol=1e-5,
            grad_atol=1e-4,
            grad_rtol=1e-5,
        )
    bad = torch.tensor([[[[float("nan"), 0.0], [float("inf"), 0.5], [-float("inf"), 0.5]]]])
    for mode in ["bilinear", "nearest"]:
        for pad in ["border", "reflection"]:
            compare(
                lambda a, m=mode, p=pad: R.grid_sample(a, bad, m, p, True),
                lambda a, m=mode, p=pad: F.grid_sample(a, bad, m, p, True),
                [x[:1]],
                grad=[False],  # the stock CPU backward crashes on non-finite grids
            )
    # "zeros": non-finite coordinates sample 0, as in the CUDA kernel (the CPU 2-D kernel gives NaN).
    assert torch.equal(
        R.grid_sample(x[:1], bad, "bilinear", "zeros", True), torch.zeros(1, 3, 1, 3)
    )
    e = torch.randn(0, 2, 3, 3)
    compare(
        lambda a, b: R.grid_sample(a, b, align_corners=True),
        lambda a, b: F.grid_sample(a, b, align_corners=True),
        [e, torch.zeros(0, 2, 2, 2)],
    )


def test_nearest_gives_grid_a_zero_gradient():
    x = torch.randn(1, 1, 3, 3)
    grid = torch.rand(1, 2, 2, 2, requires_grad=True)
    R.grid_sample(x, grid, "nearest", align_corners=False).sum().backward()
    assert grid.grad is not None and torch.equal(grid.grad, torch.zeros_like(grid))


def test_errors_and_default_align_corners_warning():
    x, grid = torch.randn(1, 1, 3, 3), torch.rand(1, 2, 2, 2)
    with pytest.raises(
        ValueError, match="mode='bicubic' is not supported.*'bilinear' or 'nearest'"
    ):
        R.grid_sample(x, grid, "bicubic", align_corners=False)
    with pytest.raises(ValueError, match="padding_mode='wrap' is not allowed"):
        R.grid_sample(x, grid, padding_mode="wrap", align_corners=False)
    with pytest.raises(RuntimeError, match="do not fit"):
        R.grid_sample(x, grid[..., :1], align_corners=False)
    with pytest.raises(RuntimeError, match="grid has dtype torch.float64"):
        R.grid_sample(x, grid.double(), align_corners=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        R.grid_sample(x, grid)
    assert any("align_corners=False since 1.3.0" in str(w.message) for w in caught)


def test_gradcheck_float64():
    x, grid = _case(7, 2)
    x, grid = x[:1, :1], grid[:1, :2, :2]
    for pad in ["zeros", "border", "reflection"]:
        gradcheck(lambda a, b, p=pad: R.grid_sample(a, b, "bilinear", p, True), [x, grid * 0.9])
    x3, grid3 = _case(8, 3)
    x3, grid3 = x3[:1, :1], grid3[:1, :2, :2, :2]
    gradcheck(lambda a, b: R.grid_sample(a, b, "bilinear", "zeros", False), [x3, grid3])
    gradcheck(lambda a: R.grid_sample(a, grid.double(), "nearest", "reflection", False), [x])
