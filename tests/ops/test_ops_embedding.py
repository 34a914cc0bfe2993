"""repro.ops.embedding_bag(mode="max") vs F.embedding_bag: forward exact, weight gradient 1e-6."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from opcheck import compare, gradcheck, rng

import repro.ops as R

GRAD = {"grad_atol": 1e-6, "grad_rtol": 1e-6}


def _bags(seed: int):
    r = random.Random(seed)
    num, dim = r.randint(1, 8), r.randint(1, 4)
    m = r.randint(0, 20)
    input = torch.randint(0, num, (m,), generator=rng(seed))
    cuts = sorted(r.randint(0, m) for _ in range(r.randint(1, 5)))
    offsets = torch.tensor([0, *cuts[1:]], dtype=torch.long)
    weight = torch.randn(num, dim, generator=rng(seed + 1))
    padding_idx = r.choice([None, 0, -1])
    return input, offsets, weight, padding_idx


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_embedding_bag_max_matches_stock(seed, include_last_offset):
    input, offsets, weight, padding_idx = _bags(seed)
    if include_last_offset:
        offsets = torch.cat([offsets, torch.tensor([input.numel()])])
    compare(
        lambda w: R.embedding_bag(
            input,
            w,
            offsets,
            mode="max",
            padding_idx=padding_idx,
            include_last_offset=include_last_offset,
        ),
        lambda w: F.embedding_bag(
            input,
            w,
            offsets,
            mode="max",
            padding_idx=padding_idx,
            include_last_offset=include_last_offset,
        ),
        [weight],
        **GRAD,
    )


def test_2d_input_ties_and_other_modes():
    weight = torch.randn(6, 3, generator=rng(1))
    input = torch.tensor([[1, 2, 1], [5, 5, 0]])
    compare(
        lambda w: R.embedding_bag(input, w, mode="max"),
        lambda w: F.embedding_bag(input, w, mode="max"),
        [weight],
        **GRAD,
    )
    flat, even = torch.tensor([1, 2, 1, 5, 5, 0, 4, 4, 4]), torch.tensor([0, 3, 6])
    for padding_idx in [None, 4, 5]:
        compare(
            lambda w, p=padding_idx: R.embedding_bag(flat, w, even, mode="max", padding_idx=p),
            lambda w, p=padding_idx: F.embedding_bag(flat, w, even, mode="max", padding_idx=p),
            [weight],
            **GRAD,
        )
    ties = torch.zeros(4, 2)
    compare(
        lambda w: R.embedding_bag(input % 4, w, mode="max"),
        lambda w: F.embedding_bag(input % 4, w, mode="max"),
        [ties],
    )
    for mode in ["sum", "mean"]:
        compare(
            lambda w, m=mode: R.embedding_bag(input, w, mode=m),
            lambda w, m=mode: F.embedding_bag(input, w, mode=m),
            [weight],
            **GRAD,
        )


def test_max_norm_renormalizes_like_stock():
    a = torch.randn(5, 3, generator=rng(2)) * 3
    b = a.clone()
    input, offsets = torch.tensor([0, 1, 4, 4]), torch.tensor([0, 2])
    out_a = R.embedding_bag(input, a, offsets, max_norm=1.0, mode="max")
    out_b = F.embedding_bag(input, b, offsets, max_norm=1.0, mode="max")
    assert torch.equal(out_a, out_b) and torch.equal(a, b)


def test_errors():
    w = torch.randn(4, 2)
    i, o = torch.tensor([0, 1]), torch.tensor([0])
    with pytest.raises(ValueError, match="scale_grad_by_freq=True is not allowed with mode='max'"):
        R.embedding_bag(i, w, o, mode="max", scale_grad_by_freq=True)
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        R.embedding_bag(i, w, o, mode="max", sparse=True)
    with pytest.raises(RuntimeError, match="offsets\\[0\\] has to be 0"):
        R.embedding_bag(i, w, torch.tensor([1]), mode="max")
    with pytest.raises(ValueError, match="offsets must be None when input is 2-D"):
        R.embedding_bag(i[None], w, o, mode="max")
    with pytest.raises(RuntimeError, match="padding_idx=9 is out of range"):
        R.embedding_bag(i, w, o, mode="max", padding_idx=9)


def test_gradcheck_float64():
    input, offsets = torch.tensor([0, 2, 2, 1, 3, 0, 2]), torch.tensor([0, 3, 3, 5])
    weight = torch.randn(4, 3, generator=rng(3))
    gradcheck(lambda w: R.embedding_bag(input, w, offsets, mode="max"), [weight], gradgrad=True)
