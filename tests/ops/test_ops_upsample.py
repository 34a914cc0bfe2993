"""repro.ops.interpolate vs F.interpolate: every linear mode, align_corners both ways, size and scale_factor.

Tolerance: taps and weights are PyTorch's, but the stock CPU kernels may fuse
multiply-adds and sum 2-D/3-D corners in another order: atol/rtol 1e-5 in
float32 (forward and backward). Nearest modes are the stock op (exact).
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from opcheck import compare, gradcheck, rng

import repro.ops as R

TOL = {"atol": 1e-5, "rtol": 1e-5}
NDIM = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _case(seed: int, mode: str):
    r = random.Random(seed)
    nd = NDIM[mode]
    shape = (r.randint(1, 2), r.randint(1, 3), *(r.choice([1, 2, 3, 5, 8]) for _ in range(nd)))
    if r.random() < 0.5:
        kwargs = {"size": tuple(r.choice([1, 2, 4, 7, 11]) for _ in range(nd))}
    else:
        scales = [r.choice([0.5, 0.7, 1.0, 1.3, 2.0, 3.0]) for _ in range(nd)]
        kwargs = {
            "scale_factor": tuple(
                s if n * s >= 1 else 1.0 for n, s in zip(shape[2:], scales, strict=True)
            )
        }
        if r.random() < 0.3:
            kwargs["recompute_scale_factor"] = True
    return shape, kwargs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode", list(NDIM))
def test_interpolate_matches_stock(seed, align_corners, mode):
    shape, kwargs = _case(seed, mode)
    x = torch.randn(shape, generator=rng(seed))
    out_shape = F.interpolate(x, mode=mode, align_corners=align_corners, **kwargs).shape
    if mode == "bicubic" and out_shape == x.shape:
        # The stock CPU bicubic backward copies the gradient when no size changes, while its
        # forward still interpolates (scale_factor != 1): it is not the forward's adjoint there.
        # This op keeps the CPU forward and its true adjoint; check that one numerically.
        compare(
            lambda t: R.interpolate(t, mode=mode, align_corners=align_corners, **kwargs),
            lambda t: F.interpolate(t, mode=mode, align_corners=align_corners, **kwargs),
            [x],
            grad=[False],
            **TOL,
        )
        gradcheck(lambda t: R.interpolate(t, mode=mode, align_corners=align_corners, **kwargs), [x])
        return
    compare(
        lambda t: R.interpolate(t, mode=mode, align_corners=align_corners, **kwargs),
        lambda t: F.interpolate(t, mode=mode, align_corners=align_corners, **kwargs),
        [x],
        **TOL,
    )


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_scalar_scale_factor_channels_last_and_noncontiguous(mode):
    x = torch.randn(2, 3, 6, 5, generator=rng(1)).to(memory_format=torch.channels_last)
    compare(
        lambda t: R.interpolate(t, scale_factor=1.5, mode=mode, align_corners=False),
        lambda t: F.interpolate(t, scale_factor=1.5, mode=mode, align_corners=False),
        [x],
        **TOL,
    )
    assert R.interpolate(x, scale_factor=2, mode=mode).is_contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randn(2, 5, 3, 6, generator=rng(2)).transpose(1, 2)
    compare(
        lambda t: R.interpolate(t, size=(4, 9), mode=mode),
        lambda t: F.interpolate(t, size=(4, 9), mode=mode),
        [y],
        **TOL,
    )


def test_same_size_copies_like_the_stock_kernel():
    x = torch.tensor([[[1.0, float("inf"), 3.0, 4.0]]])
    compare(
        lambda t: R.interpolate(t, size=4, mode="linear"),
        lambda t: F.interpolate(t, size=4, mode="linear"),
        [x],
    )


def test_nearest_and_area_modes():
    x = torch.randn(2, 3, 7, 5, generator=rng(3))
    for mode in ["nearest", "nearest-exact"]:
        compare(
            lambda t, m=mode: R.interpolate(t, scale_factor=1.7, mode=m),
            lambda t, m=mode: F.interpolate(t, scale_factor=1.7, mode=m),
            [x],
        )
    for kwargs in [{"size": (3, 4)}, {"scale_factor": 0.6}, {"scale_factor": (0.5, 1.3)}]:
        compare(
            lambda t, k=kwargs: R.interpolate(t, mode="area", **k),
            lambda t, k=kwargs: F.interpolate(t, mode="area", **k),
            [x],
            **TOL,
        )


def test_empty_batch_and_half_precision():
    e = torch.randn(0, 3, 4, 5)
    compare(
        lambda t: R.interpolate(t, scale_factor=2, mode="bilinear"),
        lambda t: F.interpolate(t, scale_factor=2, mode="bilinear"),
        [e],
    )
    h = torch.randn(1, 2, 4, 5, generator=rng(4)).to(torch.bfloat16)
    compare(
        lambda t: R.interpolate(t, size=(7, 3), mode="bilinear"),
        lambda t: F.interpolate(t, size=(7, 3), mode="bilinear"),
        [h],
        atol=2e-2,
        rtol=2e-2,
    )


def test_invalid_arguments_raise_what_stock_raises():
    x = torch.randn(1, 1, 4, 4)
    calls = [
        (
            NotImplementedError,
            r"mode='foo' is not supported.*'bilinear'",
            dict(scale_factor=2, mode="foo"),
        ),
        (ValueError, r"mode='lanczos' is not supported", dict(scale_factor=2, mode="lanczos")),
        (
            ValueError,
            "only one of size or scale_factor",
            dict(size=2, scale_factor=2, mode="bilinear"),
        ),
        (RuntimeError, "must all be greater than 0", dict(scale_factor=0.2, mode="bilinear")),
    ]
    for error, match, kwargs in calls:
        with pytest.raises(error):
            F.interpolate(x, **kwargs)
        with pytest.raises(error, match=match):
            R.interpolate(x, **kwargs)
    with pytest.raises(NotImplementedError):
        F.interpolate(x[0], scale_factor=2, mode="bilinear")
    with pytest.raises(NotImplementedError, match="mode='bilinear' needs a 4-D input"):
        R.interpolate(x[0], scale_factor=2, mode="bilinear")
    # Ours only: antialiasing is refused (no deterministic replacement yet).
    with pytest.raises(ValueError, match="antialias=True is not supported"):
        R.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)


def test_gradcheck_float64():
    x = torch.randn(1, 2, 3, 4, generator=rng(5))
    gradcheck(
        lambda t: R.interpolate(t, scale_factor=1.5, mode="bicubic", align_corners=False),
        [x[:, :1, :, :3]],
        gradgrad=True,
    )
    gradcheck(lambda t: R.interpolate(t, size=(5, 2), mode="bilinear", align_corners=True), [x])
    gradcheck(lambda t: R.interpolate(t, scale_factor=1.7, mode="trilinear"), [x.unsqueeze(2)])
    gradcheck(lambda t: R.interpolate(t, size=7, mode="linear"), [x[0]])


def test_uint8_images_are_rounded_as_stock_not_truncated_weights():
    # Issue 14: the weights used to be cast to uint8 (0 or 1).
    x = torch.tensor([[[[0, 100], [200, 50]]]], dtype=torch.uint8)
    expected = [[0, 50, 100], [100, 88, 75], [200, 125, 50]]
    stock = F.interpolate(x, size=(3, 3), mode="bilinear", align_corners=True)
    assert stock[0, 0].tolist() == expected
    assert (
        R.interpolate(x, size=(3, 3), mode="bilinear", align_corners=True)[0, 0].tolist()
        == expected
    )
    assert R.UpsamplingBilinear2d(size=(3, 3))(x)[0, 0].tolist() == expected
    with R.patch():
        patched = F.interpolate(x, size=(3, 3), mode="bilinear", align_corners=True)
    assert patched[0, 0].tolist() == expected
    img = torch.randint(0, 256, (2, 3, 17, 23), generator=rng(7), dtype=torch.uint8)
    for mode in ("bilinear", "bicubic"):
        for kwargs in (dict(size=(40, 9)), dict(scale_factor=1.7), dict(size=(5, 31))):
            for align in (False, True):
                compare(
                    lambda t, m=mode, k=kwargs, a=align: R.interpolate(
                        t, mode=m, align_corners=a, **k
                    ),
                    lambda t, m=mode, k=kwargs, a=align: F.interpolate(
                        t, mode=m, align_corners=a, **k
                    ),
                    [img],
                )


def test_forward_mode_ad_matches_stock():
    x = torch.randn(1, 2, 4, 5, generator=rng(8), dtype=torch.float64)
    t = torch.randn(1, 2, 4, 5, generator=rng(9), dtype=torch.float64)
    for mode in ("bilinear", "bicubic"):
        ours = torch.func.jvp(
            lambda v, m=mode: R.interpolate(v, scale_factor=2, mode=m), (x,), (t,)
        )[1]
        stock = torch.func.jvp(
            lambda v, m=mode: F.interpolate(v, scale_factor=2, mode=m), (x,), (t,)
        )[1]
        torch.testing.assert_close(ours, stock)
