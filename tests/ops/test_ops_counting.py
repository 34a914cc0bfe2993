"""repro.ops.histc / bincount vs the stock ops.

histc: exact (same bin formula, integer counts). bincount with weights: sums
in another order than the stock CPU loop: rtol 1e-6 (float32), exact counts.
"""

from __future__ import annotations

import pytest
import torch
from opcheck import assert_same, rng

import repro.ops as R


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_histc_matches_stock_exactly(seed, dtype):
    g = rng(seed)
    x = (torch.randn(int(torch.randint(0, 500, (1,), generator=g)), generator=g) * 3).to(dtype)
    for bins, lo, hi in [(100, 0, 0), (7, -1.0, 2.0), (1, 0, 0), (13, -0.5, -0.5), (5, 0.25, 0.75)]:
        assert_same(R.histc(x, bins, lo, hi), torch.histc(x, bins, lo, hi))


def test_histc_edges_nan_half_and_2d():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 3.0, -0.1, 3.1, float("nan"), 1.5])
    assert_same(R.histc(x, 3, 0, 3), torch.histc(x, 3, 0, 3))
    edges = torch.linspace(-2, 2, 41)  # values on bin edges
    assert_same(R.histc(edges, 40, -2, 2), torch.histc(edges, 40, -2, 2))
    assert_same(R.histc(torch.full((4,), 5.0)), torch.histc(torch.full((4,), 5.0)))
    h = torch.randn(300, generator=rng(1)).half()
    assert_same(R.histc(h, 10, -1, 1), torch.histc(h, 10, -1, 1))
    m = torch.randn(6, 7, generator=rng(2))
    assert_same(R.histc(m, 9), torch.histc(m, 9))
    assert_same(R.histc(torch.tensor([]), 4), torch.histc(torch.tensor([]), 4))
    out = torch.empty(0)
    assert R.histc(m, 9, out=out) is out and torch.equal(out, torch.histc(m, 9))


def test_histc_errors_are_the_stock_ones():
    calls = [
        (lambda f: f(torch.randn(3), bins=0), "bins must be > 0"),
        (lambda f: f(torch.randn(3), 4, 2.0, 1.0), "max must be larger than min"),
        (lambda f: f(torch.tensor([1.0, float("inf")])), "not finite"),
        (lambda f: f(torch.randn(3), 4, out=torch.empty(4, dtype=torch.float64)), "same dtype"),
    ]
    for call, match in calls:
        with pytest.raises(RuntimeError):
            call(torch.histc)
        with pytest.raises(RuntimeError, match=match):
            call(R.histc)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("wdtype", [torch.float32, torch.float64, torch.float16, torch.int32])
def test_bincount_matches_stock(seed, wdtype):
    g = rng(seed)
    n = int(torch.randint(1, 400, (1,), generator=g))
    x = torch.randint(0, int(torch.randint(1, 30, (1,), generator=g)), (n,), generator=g)
    w = (torch.randn(n, generator=g) * 4).to(wdtype)
    for minlength in [0, 5, 40]:
        assert_same(
            R.bincount(x, w, minlength), torch.bincount(x, w, minlength), atol=1e-5, rtol=1e-6
        )
        assert_same(R.bincount(x, None, minlength), torch.bincount(x, None, minlength))


def test_bincount_empty_small_ints_and_errors():
    empty = torch.tensor([], dtype=torch.long)
    assert_same(R.bincount(empty, torch.tensor([]), 3), torch.bincount(empty, torch.tensor([]), 3))
    u = torch.tensor([3, 0, 3], dtype=torch.uint8)
    assert_same(
        R.bincount(u, torch.tensor([0.5, 1.0, 2.0])),
        torch.bincount(u, torch.tensor([0.5, 1.0, 2.0])),
    )
    with pytest.raises(RuntimeError, match="holds -1"):
        R.bincount(torch.tensor([1, -1]), torch.ones(2))
    with pytest.raises(RuntimeError, match="weights has shape"):
        R.bincount(torch.tensor([1, 2]), torch.ones(3))
    with pytest.raises(RuntimeError, match="minlength should be >= 0"):
        R.bincount(torch.tensor([1, 2]), torch.ones(2), -1)
    with pytest.raises((RuntimeError, NotImplementedError), match="bincount"):
        R.bincount(torch.tensor([1.0]), torch.ones(1))
