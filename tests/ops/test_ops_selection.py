"""repro.ops.median / kthvalue vs the stock ops.

Values exact. Indices exact where the selected value is unique in its slice
(continuous random data); with ties or NaN, the index must point at an equal
element (the stock op's choice is unspecified). Gradients exact.
"""

from __future__ import annotations

import random

import pytest
import torch
from opcheck import compare, gradcheck, rng

import repro.ops as R


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("keepdim", [False, True])
def test_median_and_kthvalue_match_stock(seed, keepdim):
    r = random.Random(seed)
    shape = [r.randint(1, 5) for _ in range(r.randint(1, 3))]
    dim = r.randrange(-len(shape), len(shape))
    x = torch.randn(shape, generator=rng(seed))
    compare(lambda t: R.median(t, dim, keepdim), lambda t: torch.median(t, dim, keepdim), [x])
    k = r.randint(1, shape[dim])
    compare(
        lambda t: R.kthvalue(t, k, dim, keepdim), lambda t: torch.kthvalue(t, k, dim, keepdim), [x]
    )


def _points_at_value(x, dim, result):
    picked = x.gather(dim, result.indices.unsqueeze(dim)).squeeze(dim)
    assert torch.equal(picked.nan_to_num(7.0), result.values.nan_to_num(7.0))


def test_ties_and_nan():
    nan = float("nan")
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0, 2.0, 3.0, 3.0], [2.0, nan, 1.0, nan, 2.0, nan, 0.0]])
    for k in range(1, 8):
        ours, stock = R.kthvalue(x, k, 1), torch.kthvalue(x, k, 1)
        assert torch.equal(ours.values.nan_to_num(7.0), stock.values.nan_to_num(7.0))
        _points_at_value(x, 1, ours)
    ours, stock = R.median(x, 1), torch.median(x, 1)
    assert torch.equal(ours.values.nan_to_num(7.0), stock.values.nan_to_num(7.0))
    assert ours.indices.tolist() == [
        1,
        1,
    ]  # earliest 3 in stable order; the first NaN, as the stock op
    _points_at_value(x, 1, ours)


def test_scalar_noncontiguous_no_dim_and_errors():
    s = torch.tensor(1.5)
    compare(lambda t: R.median(t, 0), lambda t: torch.median(t, 0), [s])
    compare(lambda t: R.kthvalue(t, 1, 0), lambda t: torch.kthvalue(t, 1, 0), [s])
    x = torch.randn(5, 4, generator=rng(1)).t()
    compare(lambda t: R.median(t, 0), lambda t: torch.median(t, 0), [x])
    compare(lambda t: R.median(t), lambda t: torch.median(t), [x])
    for f in (torch.kthvalue, R.kthvalue):  # the stock error type and message
        with pytest.raises(RuntimeError, match="selected number k out of range for dimension 1"):
            f(x, 6, 1)
    t = torch.randn(10, generator=rng(3))
    for f in (torch.kthvalue, R.kthvalue):  # out= sharing memory with the input
        with pytest.raises(RuntimeError, match="unsupported operation"):
            f(t, 5, out=(t, torch.empty((), dtype=torch.long)))
        with pytest.raises(RuntimeError, match="indices must be of scalar type Long"):
            f(t, 5, out=(torch.empty(()), torch.empty((), dtype=torch.int32)))
    with pytest.raises(IndexError, match="dim=2 is out of range"):
        R.median(x, 2)


def test_gradcheck_float64():
    x = torch.randn(3, 5, generator=rng(2))
    gradcheck(lambda t: R.median(t, 1).values, [x], gradgrad=True)
    gradcheck(lambda t: R.kthvalue(t, 2, 0, True).values, [x])
