"""repro.ops pooling vs the stock ops: forward and backward over a seeded sweep of shapes.

Tolerances: adaptive max pooling is exact (values and indices; gradients too,
except float reordering where windows overlap: 1e-6). Average pooling sums in
a different order than the stock kernels: atol/rtol 1e-5 in float32.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from opcheck import compare, gradcheck, rng

import repro.ops as R

AVG_TOL = {"atol": 1e-5, "rtol": 1e-5}


def _shapes(seed: int, nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    r = random.Random(seed)
    spatial = tuple(r.choice([1, 2, 3, 5, 7, 9]) for _ in range(nd))
    out = tuple(r.choice([1, 2, 3, 4, s, s + 2]) for s in spatial)
    return (r.randint(1, 3), r.randint(1, 3), *spatial), out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_avg_pool_matches_stock(seed, nd):
    shape, out = _shapes(seed, nd)
    x = torch.randn(shape, generator=rng(seed))
    ours = {1: R.adaptive_avg_pool1d, 2: R.adaptive_avg_pool2d, 3: R.adaptive_avg_pool3d}[nd]
    stock = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[nd]
    compare(lambda t: ours(t, out), lambda t: stock(t, out), [x], **AVG_TOL)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("nd", [1, 2])
def test_adaptive_max_pool_matches_stock_exactly(seed, nd):
    shape, out = _shapes(seed, nd)
    x = torch.randn(shape, generator=rng(seed))
    ours = {1: R.adaptive_max_pool1d, 2: R.adaptive_max_pool2d}[nd]
    stock = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d}[nd]
    compare(
        lambda t: ours(t, out, True),
        lambda t: stock(t, out, True),
        [x],
        grad_atol=1e-6,
        grad_rtol=1e-6,
    )


def test_adaptive_max_pool_ties_and_nan_follow_stock_rule():
    # First maximum wins; any NaN wins, the last one.
    x = torch.tensor(
        [[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, float("nan"), 1.0], [0.0, 3.0, float("nan"), 2.0]]]]
    )
    for out in [(1, 1), (1, 2), (2, 2), (3, 4), (2, 3)]:
        compare(
            lambda t, o=out: R.adaptive_max_pool2d(t, o, True),
            lambda t, o=out: F.adaptive_max_pool2d(t, o, True),
            [x],
        )
    ties = torch.zeros(1, 1, 4, 5)
    compare(
        lambda t: R.adaptive_max_pool2d(t, 2, True),
        lambda t: F.adaptive_max_pool2d(t, 2, True),
        [ties],
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(1, 2, 3), stride=(2, 1, 2), padding=(0, 1, 1), ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=2, stride=3, divisor_override=3),
        dict(kernel_size=3, stride=1, padding=1, ceil_mode=True),
    ],
)
@pytest.mark.parametrize("shape", [(2, 3, 5, 6, 7), (3, 4, 4, 5), (1, 1, 3, 3, 3)])
def test_avg_pool3d_matches_stock(kwargs, shape):
    x = torch.randn(shape, generator=rng(len(shape)))
    compare(
        lambda t: R.avg_pool3d(t, **kwargs), lambda t: F.avg_pool3d(t, **kwargs), [x], **AVG_TOL
    )


def test_channels_last_and_noncontiguous_inputs():
    x = torch.randn(2, 3, 7, 9, generator=rng(1)).to(memory_format=torch.channels_last)
    compare(
        lambda t: R.adaptive_avg_pool2d(t, (3, 4)),
        lambda t: F.adaptive_avg_pool2d(t, (3, 4)),
        [x],
        **AVG_TOL,
    )
    compare(
        lambda t: R.adaptive_max_pool2d(t, (3, 4), True),
        lambda t: F.adaptive_max_pool2d(t, (3, 4), True),
        [x],
        grad_atol=1e-6,
        grad_rtol=1e-6,
    )
    assert R.adaptive_avg_pool2d(x, 3).is_contiguous(memory_format=torch.channels_last)
    y = torch.randn(2, 9, 3, 7, generator=rng(2)).transpose(1, 2)
    compare(
        lambda t: R.adaptive_avg_pool2d(t, 2), lambda t: F.adaptive_avg_pool2d(t, 2), [y], **AVG_TOL
    )
    z = torch.randn(2, 3, 6, 5, 4, generator=rng(3)).to(memory_format=torch.channels_last_3d)
    compare(lambda t: R.avg_pool3d(t, 2, 1, 1), lambda t: F.avg_pool3d(t, 2, 1, 1), [z], **AVG_TOL)
    compare(
        lambda t: R.adaptive_avg_pool3d(t, (2, 3, 3)),
        lambda t: F.adaptive_avg_pool3d(t, (2, 3, 3)),
        [z],
        **AVG_TOL,
    )


def test_empty_batch_unbatched_and_none_sizes():
    e = torch.randn(0, 3, 5, 7)
    compare(lambda t: R.adaptive_avg_pool2d(t, 3), lambda t: F.adaptive_avg_pool2d(t, 3), [e])
    compare(lambda t: R.adaptive_max_pool2d(t, 3), lambda t: F.adaptive_max_pool2d(t, 3), [e])
    u = torch.randn(3, 5, 7, generator=rng(4))
    compare(
        lambda t: R.adaptive_avg_pool2d(t, (None, 2)),
        lambda t: F.adaptive_avg_pool2d(t, (None, 2)),
        [u],
        **AVG_TOL,
    )
    compare(
        lambda t: R.adaptive_max_pool2d(t, (2, None)),
        lambda t: F.adaptive_max_pool2d(t, (2, None)),
        [u],
    )
    compare(
        lambda t: R.avg_pool3d(t, 2), lambda t: F.avg_pool3d(t, 2), [torch.randn(0, 2, 4, 4, 4)]
    )


def test_low_precision_inputs_accumulate_in_float32():
    x = torch.randn(2, 3, 9, 9, generator=rng(5)).to(torch.bfloat16)
    compare(
        lambda t: R.adaptive_avg_pool2d(t, 4),
        lambda t: F.adaptive_avg_pool2d(t, 4),
        [x],
        atol=1e-2,
        rtol=1e-2,
    )


def test_stock_argument_errors_are_kept():
    with pytest.raises(RuntimeError, match="non-zero size"):
        R.adaptive_avg_pool2d(torch.randn(2, 3, 0, 4), 2)
    with pytest.raises(RuntimeError, match="non-zero size"):
        R.adaptive_max_pool2d(torch.randn(3, 0, 4), 2)
    # Empty but valid (no channels): an empty result, as stock.
    assert R.adaptive_max_pool2d(torch.randn(0, 4, 4), 2).shape == (0, 2, 2)
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        R.avg_pool3d(torch.randn(1, 1, 4, 4, 4), 3, 2, 2)


def test_gradcheck_float64():
    x = torch.randn(1, 2, 5, 7, generator=rng(6))
    gradcheck(lambda t: R.adaptive_avg_pool2d(t, (3, 4)), [x], gradgrad=True)
    gradcheck(lambda t: R.adaptive_max_pool2d(t, (2, 3)), [x], gradgrad=True)
    gradcheck(
        lambda t: R.adaptive_avg_pool3d(t, (2, 2, 3)),
        [x.unsqueeze(2).expand(1, 2, 3, 5, 7).contiguous()],
    )
    gradcheck(
        lambda t: R.avg_pool3d(t, 2, 1, 1, count_include_pad=False),
        [torch.randn(1, 1, 3, 4, 3, generator=rng(7))],
    )


def test_wide_windows_take_the_fixed_shape_sum_path():
    x = torch.randn(2, 3, 23, 19, generator=rng(8))
    compare(
        lambda t: R.adaptive_avg_pool2d(t, (1, 2)),
        lambda t: F.adaptive_avg_pool2d(t, (1, 2)),
        [x],
        **AVG_TOL,
    )
    compare(
        lambda t: R.adaptive_max_pool2d(t, (2, 1), True),
        lambda t: F.adaptive_max_pool2d(t, (2, 1), True),
        [x],
    )
    compare(
        lambda t: R.avg_pool3d(t, (1, 11, 9), 2),
        lambda t: F.avg_pool3d(t, (1, 11, 9), 2),
        [x.unsqueeze(2)],
        **AVG_TOL,
    )
