"""``cumsum`` for floating-point data as a fixed-shape scan.

The stock CUDA ``cumsum`` for floats is flagged nondeterministic (its
parallel scan may combine partial sums differently between runs). Here the
scan is Hillis-Steele: ``ceil(log2 n)`` steps, each adding the tensor shifted
by 1, 2, 4, ... positions, so every output is a sum tree fixed by ``n`` alone.
"""

from __future__ import annotations

import torch

from repro.ops import _out, _stock

_WIDER = {torch.float16: torch.float64, torch.bfloat16: torch.float64, torch.float32: torch.float64}


def _scan(x: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    d = 1
    while d < n:
        head = x.narrow(dim, 0, d)
        tail = x.narrow(dim, d, n - d) + x.narrow(dim, 0, n - d)
        x = torch.cat([head, tail], dim)
        d *= 2
    return x


def _cumsum_real(x: torch.Tensor, dim: int) -> torch.Tensor:
    wide = _WIDER.get(x.dtype)
    y = _scan(x.to(wide) if wide is not None else x, dim)
    return y.to(x.dtype)


def _cumsum_any(x: torch.Tensor, dim: int) -> torch.Tensor:
    if x.is_complex():
        return torch.complex(_cumsum_real(x.real, dim), _cumsum_real(x.imag, dim))
    return _cumsum_real(x, dim)


class _Cumsum(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, dim: int) -> torch.Tensor:
        return _cumsum_any(x, dim)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.dim = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # d(cumsum)/dx is the reversed cumsum of the gradient.
        return _Cumsum.apply(grad.flip(ctx.dim), ctx.dim).flip(ctx.dim), None

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor, _):
        return _cumsum_any(x_t, ctx.dim)  # linear: the tangent's cumsum


def cumsum(
    input: torch.Tensor,
    dim: int,
    *,
    dtype: torch.dtype | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``torch.cumsum``, deterministic on any device for floating-point and complex data.

    Algorithm: a Hillis-Steele scan (``ceil(log2 n)`` shifted adds along
    ``dim``), accumulating float16/bfloat16/float32 in float64 like PyTorch's CPU
    kernel; backward: the same scan over the flipped gradient. Time
    O(numel * log2 n), memory about 2 x numel in the widened dtype.
    Integer and bool results (``dtype`` integer, or integer input without
    ``dtype``) call the stock op: integer sums do not depend on order, and it
    keeps the stock dtype rules (int64 by default, ``dtype=`` honoured, wrapping
    as the stock op wraps). ``out=`` and ``dtype=`` follow the stock rules
    (``out``'s dtype is the result dtype; an overlapping ``out`` raises
    ``RuntimeError``). Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md):
    exact for float32, float16, bfloat16, complex64 and the integer dtypes;
    float64 and complex128 within 3.6e-15 (gradient 8.9e-16).
    """
    if out is not None:
        _out.check((out,))
        if dtype is None:
            dtype = out.dtype
        elif out.dtype != dtype:
            raise RuntimeError(
                f"Expected out tensor to have dtype {dtype}, but got {out.dtype} instead"
            )
    target = dtype if dtype is not None else input.dtype
    if not (target.is_floating_point or target.is_complex):
        if out is not None:
            return _stock.cumsum(input, dim, dtype=dtype, out=out)
        return _stock.cumsum(input, dim, dtype=dtype)
    x = input if dtype is None else input.to(dtype)
    ndim = max(x.dim(), 1)
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim={dim} is out of range for a tensor with {x.dim()} dimensions")
    result = x.clone() if x.dim() == 0 else _Cumsum.apply(x, dim % ndim)
    return result if out is None else _out.write(out, result, "cumsum")
