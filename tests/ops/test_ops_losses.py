"""repro.ops.nll_loss / cross_entropy vs the stock ops.

reduction "none" is exact; "mean"/"sum" sum in another order: atol/rtol 1e-6
in float32. Gradients: 1e-6 (cross_entropy's softmax backward is the stock one).
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from opcheck import compare, gradcheck, rng

import repro.ops as R

TOL = {"atol": 1e-6, "rtol": 1e-6}


def _case(seed: int):
    r = random.Random(seed)
    classes = r.randint(1, 5)
    extra = [r.choice([1, 2, 3]) for _ in range(r.choice([0, 0, 1, 2, 3]))]
    n = r.randint(1, 4)
    x = torch.randn([n, classes, *extra], generator=rng(seed))
    target = torch.randint(0, classes, [n, *extra], generator=rng(seed + 100))
    if r.random() < 0.6:
        target[torch.rand(target.shape, generator=rng(seed + 200)) < 0.3] = -100
    weight = torch.rand(classes, generator=rng(seed + 300)) + 0.1 if r.random() < 0.5 else None
    return x, target, weight


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_stock(seed, reduction):
    x, target, weight = _case(seed)
    logp = x.log_softmax(1)
    compare(
        lambda t: R.nll_loss(t, target, weight, reduction=reduction),
        lambda t: F.nll_loss(t, target, weight, reduction=reduction),
        [logp],
        **TOL,
    )


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_matches_stock(seed, reduction, smoothing):
    x, target, weight = _case(seed)
    compare(
        lambda t: R.cross_entropy(
            t, target, weight, reduction=reduction, label_smoothing=smoothing
        ),
        lambda t: F.cross_entropy(
            t, target, weight, reduction=reduction, label_smoothing=smoothing
        ),
        [x],
        **TOL,
    )


def test_other_ignore_index_unbatched_legacy_args_and_channels_last():
    x = torch.randn(4, 3, 2, 5, generator=rng(1)).to(memory_format=torch.channels_last)
    t = torch.randint(0, 3, (4, 2, 5), generator=rng(2))
    compare(
        lambda a: R.cross_entropy(a, t, ignore_index=1),
        lambda a: F.cross_entropy(a, t, ignore_index=1),
        [x],
        **TOL,
    )
    u = torch.randn(5, generator=rng(3))
    for target in [torch.tensor(2), torch.tensor(-100)]:
        compare(
            lambda a, g=target: R.cross_entropy(a, g),
            lambda a, g=target: F.cross_entropy(a, g),
            [u],
            **TOL,
        )
        compare(
            lambda a, g=target: R.nll_loss(a, g, reduction="none"),
            lambda a, g=target: F.nll_loss(a, g, reduction="none"),
            [u],
        )
    y = torch.randn(3, 4, generator=rng(4))
    tt = torch.tensor([0, 3, 1])
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        compare(
            lambda a: R.nll_loss(a, tt, size_average=False),
            lambda a: F.nll_loss(a, tt, size_average=False),
            [y],
            **TOL,
        )
    compare(
        lambda a: R.nll_loss(a, tt.to(torch.uint8)),
        lambda a: F.nll_loss(a, tt.to(torch.uint8)),
        [y],
        **TOL,
    )


def test_all_ignored_and_empty_batches_match_stock():
    x = torch.randn(3, 4, generator=rng(5))
    ignored = torch.full((3,), -100)
    for reduction in ["mean", "sum", "none"]:
        compare(
            lambda a, r=reduction: R.nll_loss(a, ignored, reduction=r),
            lambda a, r=reduction: F.nll_loss(a, ignored, reduction=r),
            [x],
        )
    e = torch.randn(0, 3, 2)
    et = torch.zeros(0, 2, dtype=torch.long)
    for reduction in ["mean", "sum", "none"]:
        compare(
            lambda a, r=reduction: R.cross_entropy(a, et, reduction=r, label_smoothing=0.1),
            lambda a, r=reduction: F.cross_entropy(a, et, reduction=r, label_smoothing=0.1),
            [e],
        )


def test_probability_targets_delegate():
    x = torch.randn(3, 4, generator=rng(6))
    p = torch.rand(3, 4, generator=rng(7)).softmax(1)
    compare(
        lambda a: R.cross_entropy(a, p, label_smoothing=0.1),
        lambda a: F.cross_entropy(a, p, label_smoothing=0.1),
        [x],
        grad=[True, False],
    )


def test_errors_name_the_bad_value():
    x = torch.randn(2, 3)
    with pytest.raises(IndexError, match=r"class 5, outside \[0, 3\)"):
        R.nll_loss(x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="reduction='avg' is not allowed"):
        R.cross_entropy(x, torch.tensor([0, 1]), reduction="avg")
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0, got 1.5"):
        R.cross_entropy(x, torch.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="target has dtype torch.int32"):
        R.nll_loss(x, torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(
        ValueError, match=r"target has shape \(3,\): for input of shape \(2, 3\) expected \(2,\)"
    ):
        R.nll_loss(x, torch.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match=r"weight has shape \(4,\): expected \(3,\)"):
        R.nll_loss(x, torch.tensor([0, 1]), torch.ones(4))


def test_gradcheck_float64():
    x = torch.randn(2, 3, 2, 2, generator=rng(8))
    t = torch.tensor([[[0, 2], [-100, 1]], [[1, 1], [2, 0]]])
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    gradcheck(lambda a: R.cross_entropy(a, t, w, label_smoothing=0.1), [x], gradgrad=True)
    gradcheck(lambda a: R.nll_loss(a, t, w, reduction="sum"), [x])
