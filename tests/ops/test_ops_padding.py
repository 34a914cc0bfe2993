"""repro.ops.pad vs F.pad: reflect and replicate over 1-3 padded dims.

Forward is a pure gather: bitwise equal. Backward sums the few copies of each
border element in another order than the stock kernel: atol/rtol 1e-6.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from opcheck import compare, gradcheck, rng

import repro.ops as R

GRAD_TOL = {"grad_atol": 1e-6, "grad_rtol": 1e-6}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_pad_matches_stock(seed, mode, nd):
    r = random.Random(seed)
    spatial = [
        r.choice([1, 2, 3, 5]) if mode == "replicate" else r.choice([2, 3, 5]) for _ in range(nd)
    ]
    shape = [r.randint(1, 2), r.randint(1, 3), *spatial]
    if r.random() < 0.3:
        shape = shape[1:]  # unbatched
    pads = []
    for size in reversed(spatial):
        limit = size - 1 if mode == "reflect" else 3
        pads += [r.randint(-1 if size > 2 else 0, limit), r.randint(0, limit)]
    x = torch.randn(shape, generator=rng(seed))
    compare(lambda t: R.pad(t, pads, mode), lambda t: F.pad(t, pads, mode), [x], **GRAD_TOL)


def test_only_some_dims_padded_channels_last_and_noncontiguous():
    x = torch.randn(2, 3, 5, 6, generator=rng(1)).to(memory_format=torch.channels_last)
    for mode in ["reflect", "replicate"]:
        compare(
            lambda t, m=mode: R.pad(t, (2, 1, 0, 0), m),
            lambda t, m=mode: F.pad(t, (2, 1, 0, 0), m),
            [x],
            **GRAD_TOL,
        )
        compare(
            lambda t, m=mode: R.pad(t, (0, 0, 3, 1), m),
            lambda t, m=mode: F.pad(t, (0, 0, 3, 1), m),
            [x],
            **GRAD_TOL,
        )
    assert R.pad(x, (1, 1, 1, 1), "reflect").is_contiguous(memory_format=torch.channels_last)
    y = torch.randn(4, 3, 5, generator=rng(2)).transpose(0, 2)
    compare(
        lambda t: R.pad(t, (2, 2), "reflect"),
        lambda t: F.pad(t, (2, 2), "reflect"),
        [y],
        **GRAD_TOL,
    )
    z = torch.randn(0, 2, 4, generator=rng(3))
    compare(lambda t: R.pad(t, (1, 2), "replicate"), lambda t: F.pad(t, (1, 2), "replicate"), [z])


def test_constant_and_circular_delegate():
    x = torch.randn(1, 2, 4, 5, generator=rng(4))
    compare(
        lambda t: R.pad(t, (1, 2, 0, 1), "constant", 0.5),
        lambda t: F.pad(t, (1, 2, 0, 1), "constant", 0.5),
        [x],
    )
    compare(
        lambda t: R.pad(t, (1, 2, 0, 1), "circular"),
        lambda t: F.pad(t, (1, 2, 0, 1), "circular"),
        [x],
    )
    compare(lambda t: R.pad(t, (0, 0), "reflect"), lambda t: F.pad(t, (0, 0), "reflect"), [x[0]])


def test_errors():
    x = torch.randn(1, 2, 3)
    with pytest.raises(NotImplementedError, match=r"mode='wrap' is not supported.*'reflect'"):
        R.pad(x, (1, 1), "wrap")
    with pytest.raises(NotImplementedError, match="Padding size 2 is not supported for 4D"):
        R.pad(x[None], (1, 1), "reflect")
    with pytest.raises(RuntimeError, match="Padding size should be less than"):
        R.pad(x, (3, 1), "reflect")


def test_gradcheck_float64():
    x = torch.randn(1, 2, 3, 4, generator=rng(5))
    gradcheck(lambda t: R.pad(t, (2, 3, 1, 2), "reflect"), [x], gradgrad=True)
    gradcheck(lambda t: R.pad(t, (2, 3, 1, 2), "replicate"), [x])
    gradcheck(
        lambda t: R.pad(t, (1, 1, 1, 1, 1, 1), "reflect"),
        [torch.randn(1, 1, 2, 3, 2, generator=rng(6))],
    )
