"""``median`` and ``kthvalue`` along a dim with reproducible indices.

On CUDA the stock ops pick *which* of several equal elements to report by a
parallel selection whose outcome may vary, so they refuse strict mode. Here a
stable sort fixes the choice: among equal values, the one that comes first in
the input wins the first sorted slot. Values are gathered through
:func:`repro.ops.indexing.take_along`, whose backward has no atomics.
"""

from __future__ import annotations

import torch

from repro.ops import _out, _stock
from repro.ops.indexing import take_along


def _select(input: torch.Tensor, dim: int, keepdim: bool, rank: torch.Tensor | int):
    x = input.unsqueeze(0) if input.dim() == 0 else input
    d = dim % x.dim()
    with torch.no_grad():
        order = torch.sort(x.detach(), dim=d, stable=True).indices
        pos = (
            rank if isinstance(rank, torch.Tensor) else torch.full_like(order.narrow(d, 0, 1), rank)
        )
        index = torch.gather(order, d, pos)
    values = take_along(x, d, index)
    if not keepdim or input.dim() == 0:
        values, index = values.squeeze(d), index.squeeze(d)
    return values, index


def _check_dim(input: torch.Tensor, dim: int) -> None:
    ndim = max(input.dim(), 1)
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim={dim} is out of range for a tensor with {input.dim()} dimensions")


Pair = tuple[torch.Tensor, torch.Tensor]


def median(
    input: torch.Tensor,
    dim: int | None = None,
    keepdim: bool = False,
    *,
    out: Pair | torch.Tensor | None = None,
) -> torch.Tensor | torch.return_types.median:
    """``torch.median``; with ``dim``, values and indices deterministic on any device.

    Algorithm: a stable sort along ``dim``, then the lower median's slot
    ``(n - 1) // 2``, or the first NaN if the slice holds one (as the stock op);
    values are gathered at the chosen index. Time O(numel log n), memory
    O(numel) for the sort. Values equal the stock op exactly; indices equal it
    where the median value occurs once (with ties, this op picks the earliest
    equal element in stable order, the stock op an unspecified one). Without
    ``dim`` this is the stock op (no indices, deterministic). Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md):
    values and gradients exact, indices valid, for every dtype. ``out=``
    dtypes are checked as the stock op checks them (``RuntimeError``).
    """
    if dim is None:
        return _stock.median(input) if out is None else _stock.median(input, out=out)
    _check_dim(input, dim)
    if out is not None:
        _check_pair(input, out, "median")
    x = input.unsqueeze(0) if input.dim() == 0 else input
    if x.shape[dim] == 0 or x.numel() == 0:
        return (
            _stock.median(input, dim, keepdim, out=out)
            if out
            else _stock.median(input, dim, keepdim)
        )
    d = dim % x.dim()
    n = x.shape[d]
    with torch.no_grad():
        nans = x.detach().isnan().sum(d, keepdim=True)
        rank = torch.where(nans > 0, n - nans, (n - 1) // 2)
    values, indices = _select(input, dim, keepdim, rank)
    return _result(torch.return_types.median, values, indices, out, "median")


def kthvalue(
    input: torch.Tensor, k: int, dim: int = -1, keepdim: bool = False, *, out: Pair | None = None
) -> torch.return_types.kthvalue:
    """``torch.kthvalue``, values and indices deterministic on any device.

    Algorithm: a stable sort along ``dim`` and the slot ``k - 1`` (NaN sorts
    last). Time O(numel log n), memory O(numel). Values equal the stock op
    exactly; indices equal it where the k-th value occurs once (with ties or
    NaN, this op picks in stable order, the stock op an unspecified one).
    Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md): values and
    gradients exact, indices valid, for every dtype. Errors as the stock op:
    ``k`` out of range and an ``out=`` that shares memory with the input or
    has the wrong dtype raise ``RuntimeError``, a bad ``dim`` ``IndexError``.
    """
    _check_dim(input, dim)
    if out is not None:
        _check_pair(input, out, "kthvalue")
        _out.check(tuple(out), (input,))
    n = input.shape[dim] if input.dim() else 1
    if not 1 <= k <= n:
        raise RuntimeError(
            f"kthvalue(): selected number k out of range for dimension {dim} (k={k}, size {n})"
        )
    values, indices = _select(input, dim, keepdim, k - 1)
    return _result(torch.return_types.kthvalue, values, indices, out, "kthvalue")


def _check_pair(input: torch.Tensor, out, name: str) -> None:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{name}(): out must be a pair (values, indices)")
    values, indices = out
    if values.dtype != input.dtype:
        raise RuntimeError(f"{name}(): output values must be of same type as input ({input.dtype})")
    if indices.dtype != torch.int64:
        raise RuntimeError(f"{name}(): output indices must be of scalar type Long")


def _result(kind, values: torch.Tensor, indices: torch.Tensor, out: Pair | None, name: str):
    if out is not None:
        out_values, out_indices = out
        _out.write(out_values, values, name)
        _out.write(out_indices, indices, name)
        return kind((out_values, out_indices))
    return kind((values, indices))
