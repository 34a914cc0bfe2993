"""repro.ops.index_select and scatter_reduce vs the stock ops.

index_select: forward exact; gradient sums repeated indices in another order:
atol/rtol 1e-6. scatter_reduce "prod"/"sum"/"mean": tree order of combination:
atol/rtol 1e-5 in float32, 1e-12 in float64 gradient checks.
"""

from __future__ import annotations

import random

import pytest
import torch
from opcheck import compare, gradcheck, rng

import repro.ops as R

TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.mark.parametrize("seed", range(8))
def test_index_select_matches_stock(seed):
    r = random.Random(seed)
    shape = [r.randint(1, 5) for _ in range(r.randint(1, 3))]
    dim = r.randrange(-len(shape), len(shape))
    index = torch.randint(0, shape[dim], (r.randint(0, 12),), generator=rng(seed))
    if r.random() < 0.3:
        index = index.to(torch.int32)
    x = torch.randn(shape, generator=rng(seed + 1))
    compare(
        lambda t: R.index_select(t, dim, index),
        lambda t: torch.index_select(t, dim, index),
        [x],
        atol=1e-6,
        rtol=1e-6,
    )


def test_index_select_noncontiguous_scalar_out_and_errors():
    x = torch.randn(6, 4, generator=rng(1)).t()
    idx = torch.tensor([5, 0, 5, 5, 2])
    compare(
        lambda t: R.index_select(t, 1, idx),
        lambda t: torch.index_select(t, 1, idx),
        [x],
        atol=1e-6,
        rtol=1e-6,
    )
    s = torch.tensor(3.0)
    compare(
        lambda t: R.index_select(t, 0, torch.tensor([0])),
        lambda t: torch.index_select(t, 0, torch.tensor([0])),
        [s],
    )
    out = torch.empty(0)
    assert R.index_select(x, 0, torch.tensor([1]), out=out) is out
    with pytest.raises(IndexError, match="dim=2 is out of range"):
        R.index_select(x, 2, idx)
    with pytest.raises(IndexError):
        R.index_select(x, 0, torch.tensor([4]))


def _scatter_case(seed: int):
    r = random.Random(seed)
    shape = [r.randint(1, 4) for _ in range(r.randint(1, 3))]
    dim = r.randrange(len(shape))
    index_shape = [r.randint(1, s) if d != dim else r.randint(1, 6) for d, s in enumerate(shape)]
    index = torch.randint(0, shape[dim], index_shape, generator=rng(seed))
    src = torch.randn(index_shape, generator=rng(seed + 1))
    src[torch.rand(index_shape, generator=rng(seed + 2)) < 0.1] = (
        0.0  # zeros exercise the prod gradient
    )
    return torch.randn(shape, generator=rng(seed + 3)), dim, index, src


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("reduce", ["prod", "sum", "mean", "amax"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_matches_stock(seed, reduce, include_self):
    x, dim, index, src = _scatter_case(seed)
    compare(
        lambda a, s: R.scatter_reduce(a, dim, index, s, reduce, include_self=include_self),
        lambda a, s: torch.scatter_reduce(a, dim, index, s, reduce, include_self=include_self),
        [x, src],
        **TOL,
    )


def test_scatter_reduce_larger_src_ints_and_errors():
    x = torch.randn(3, 4, generator=rng(4))
    src = torch.randn(5, 6, generator=rng(5))
    index = torch.tensor([[0, 2, 2, 1], [2, 2, 0, 1]])
    out_a = R.scatter_reduce(x, 0, index, src, "prod")
    assert torch.allclose(out_a, torch.scatter_reduce(x, 0, index, src, "prod"), **TOL)
    i = torch.randint(1, 4, (3, 4), generator=rng(6))
    assert torch.equal(
        R.scatter_reduce(i, 0, index, i[:2], "prod"),
        torch.scatter_reduce(i, 0, index, i[:2], "prod"),
    )
    with pytest.raises(RuntimeError, match="reduce='max' is not allowed"):
        R.scatter_reduce(x, 0, index, src, "max")
    with pytest.raises(RuntimeError, match=r"outside \[0, 3\)"):
        R.scatter_reduce(x, 0, index + 2, src, "prod")


def test_gradcheck_float64():
    x, dim, index, src = _scatter_case(3)
    for reduce in ["prod", "sum", "mean"]:
        gradcheck(lambda a, s, r=reduce: R.scatter_reduce(a, dim, index, s, r), [x, src + 0.5])
    gradcheck(lambda a, s: R.scatter_reduce(a, dim, index, s, "prod", include_self=False), [x, src])
    gradcheck(
        lambda t: R.index_select(t, 0, torch.tensor([2, 0, 2, 2])),
        [torch.randn(3, 4, generator=rng(9))],
        gradgrad=True,
    )
