"""repro.ops.cumsum vs torch.cumsum.

float32 and lower accumulate in float64 like the stock CPU kernel: results are
expected bitwise equal to the CPU op (checked). float64: a tree of at most
log2(n) roundings per element: rtol 1e-13, atol 1e-12 * sum|x|.
"""

from __future__ import annotations

import pytest
import torch
from opcheck import assert_same, compare, gradcheck, rng

import repro.ops as R


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "shape_dim",
    [((1000,), 0), ((3, 257, 2), 1), ((4, 5), -1), ((1, 1), 0), ((0, 3), 1), ((2, 0), 1)],
)
def test_float32_cumsum_equals_cpu_stock_bitwise(seed, shape_dim):
    shape, dim = shape_dim
    x = torch.randn(shape, generator=rng(seed)) * 10
    compare(lambda t: R.cumsum(t, dim), lambda t: torch.cumsum(t, dim), [x])


def test_float64_noncontiguous_dtype_arg_complex_int_and_scalar():
    x = torch.randn(7, 300, generator=rng(1), dtype=torch.float64).t()
    compare(lambda t: R.cumsum(t, 0), lambda t: torch.cumsum(t, 0), [x], atol=1e-11, rtol=1e-13)
    h = torch.randn(50, generator=rng(2)).half()
    assert_same(R.cumsum(h, 0), torch.cumsum(h, 0))
    assert_same(R.cumsum(h, 0, dtype=torch.float32), torch.cumsum(h, 0, dtype=torch.float32))
    i = torch.randint(-5, 5, (40,), generator=rng(3))
    assert_same(R.cumsum(i, 0), torch.cumsum(i, 0))
    assert_same(R.cumsum(i, 0, dtype=torch.float32), torch.cumsum(i, 0, dtype=torch.float32))
    c = torch.randn(30, generator=rng(4), dtype=torch.complex64)
    assert_same(R.cumsum(c, 0), torch.cumsum(c, 0))
    s = torch.tensor(2.5)
    assert_same(R.cumsum(s, 0), torch.cumsum(s, 0))
    out = torch.empty(0)
    assert R.cumsum(torch.ones(3), 0, out=out) is out and out.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(IndexError, match="dim=2 is out of range"):
        R.cumsum(torch.ones(3, 2), 2)


def test_gradcheck_float64():
    x = torch.randn(3, 6, generator=rng(5))
    gradcheck(lambda t: R.cumsum(t, 1), [x], gradgrad=True)
    gradcheck(lambda t: R.cumsum(t, 0), [x])


def test_integer_dtype_is_honoured_and_wraps_as_stock():
    # Issue 14: dtype=torch.uint8 / int32 used to return int64 without wrapping.
    x = torch.full((300,), 1, dtype=torch.int8)
    for dtype in (torch.uint8, torch.int32, torch.int16):
        assert_same(R.cumsum(x, 0, dtype=dtype), torch.cumsum(x, 0, dtype=dtype))
    assert R.cumsum(x, 0, dtype=torch.uint8)[-1].item() == 300 % 256
    out = torch.empty(0, dtype=torch.int32)
    assert R.cumsum(x, 0, out=out) is out and out.dtype == torch.int32
    with pytest.raises(RuntimeError, match="Expected out tensor to have dtype"):
        R.cumsum(torch.ones(3), 0, dtype=torch.float64, out=torch.empty(3))
    with pytest.raises(RuntimeError, match="unsupported operation"):
        R.cumsum(torch.ones(3), 0, out=torch.empty(1).expand(3))


def test_forward_mode_ad():
    x = torch.randn(4, 6, generator=rng(6), dtype=torch.float64)
    t = torch.randn(4, 6, generator=rng(7), dtype=torch.float64)
    ours = torch.func.jvp(lambda v: R.cumsum(v, 1), (x,), (t,))[1]
    torch.testing.assert_close(ours, torch.cumsum(t, 1))
