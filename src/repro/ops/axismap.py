"""Sparse linear maps along one axis, applied with gathers in forward and in backward.

Pooling, interpolation and padding are separable: along each spatial axis,
output ``o`` is a short weighted sum of inputs, ``out[o] = sum_k w[o, k] *
x[idx[o, k]]``. Stock kernels compute the backward by scattering ``w * grad``
into the input with atomics. Here the backward is the *transposed* map, built
once per pattern on the host and stored in the same padded form: every input
position lists the outputs that read it, so the backward is again a gather
followed by a fixed-order sum. Forward and backward use only ``index_select``,
elementwise ops and (for wide windows) ``sum`` over a small axis, all
deterministic on CUDA; the backward of the backward is the forward map again.

Cost of one map applied along an axis of a tensor with P positions elsewhere:
O(P * O * K) time and a transient O(P * O * K) buffer (the gathered slice),
where K is the widest row (2 for linear, 4 for cubic, the window for pooling).
"""

from __future__ import annotations

import torch

from repro.ops import _stock

_LOOP_K = 8  # rows up to this width are summed term by term, left to right


class AxisMap:
    """``out[o] = sum_k weight[o, k] * x[index[o, k]]`` for ``valid[o, k]``, along one axis.

    ``weight`` None means all ones; ``valid`` None means all slots are used.
    Tensors are kept on the CPU; copies per device and dtype are cached.
    """

    def __init__(
        self,
        in_size: int,
        index: torch.Tensor,
        weight: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> None:
        self.in_size = in_size
        self.index = index
        self.weight = weight
        self.valid = valid
        self._on: dict[tuple, tuple] = {}
        self._transpose: AxisMap | None = None

    @property
    def out_size(self) -> int:
        return self.index.shape[0]

    def on(self, device: torch.device, dtype: torch.dtype) -> tuple:
        """(index, weight, valid, sparse_rows) on ``device``; ``sparse_rows[j]`` lists the rows
        that use slot j when few do (None: the slot is dense)."""
        key = (device, dtype)
        if key not in self._on:
            sparse: list[torch.Tensor | None] = []
            for j in range(self.index.shape[1]):
                used = None if self.valid is None else self.valid[:, j]
                if used is None or 2 * int(used.sum()) > used.numel():
                    sparse.append(None)
                else:
                    sparse.append(used.nonzero().squeeze(1).to(device))
            self._on[key] = (
                self.index.to(device),
                None if self.weight is None else self.weight.to(device=device, dtype=dtype),
                None if self.valid is None else self.valid.to(device),
                sparse,
            )
        return self._on[key]

    def with_backward(self, other: AxisMap) -> AxisMap:
        """This map forward, ``other``'s transpose as its backward (when the stock forward and
        backward kernels compute their weights slightly differently)."""
        twin = AxisMap(self.in_size, self.index, self.weight, self.valid)
        twin._transpose = other.T
        return twin

    @property
    def T(self) -> AxisMap:
        """The transposed map: for every input position, the outputs that read it."""
        if self._transpose is None:
            self._transpose = self._build_transpose()
            self._transpose._transpose = self
        return self._transpose

    def _build_transpose(self) -> AxisMap:
        n_out, k = self.index.shape
        idx = self.index.reshape(-1)
        src = torch.arange(n_out).repeat_interleave(k)
        w = None if self.weight is None else self.weight.reshape(-1)
        if self.valid is not None:
            keep = self.valid.reshape(-1)
            idx, src = idx[keep], src[keep]
            w = None if w is None else w[keep]
        order = torch.sort(idx, stable=True).indices
        idx, src = idx[order], src[order]
        counts = _stock.bincount(idx, minlength=self.in_size)
        width = max(int(counts.max()) if counts.numel() else 0, 1)
        slot = torch.arange(idx.numel()) - (_stock.cumsum(counts, 0) - counts)[idx]
        t_index = torch.zeros(self.in_size, width, dtype=torch.int64)
        t_index[idx, slot] = src
        t_valid = torch.zeros(self.in_size, width, dtype=torch.bool)
        t_valid[idx, slot] = True
        t_weight = None
        if w is not None:
            t_weight = torch.zeros(self.in_size, width, dtype=w.dtype)
            t_weight[idx, slot] = w[order]
        return AxisMap(n_out, t_index, t_weight, None if bool(t_valid.all()) else t_valid)


def _apply(x: torch.Tensor, dim: int, amap: AxisMap) -> torch.Tensor:
    index, weight, valid, sparse = amap.on(x.device, x.dtype)
    n_out, k = index.shape
    shape = list(x.shape)
    shape[dim] = n_out
    if x.numel() == 0 or n_out == 0:
        return x.new_zeros(shape)
    tail = (1,) * (x.dim() - dim - 1)
    if k > _LOOP_K:  # wide windows: one gather, then a fixed-shape sum over the window
        gathered = _stock.index_select(x, dim, index.reshape(-1)).unflatten(dim, (n_out, k))
        if weight is not None:
            gathered = gathered * weight.view(n_out, k, *tail)
        if valid is not None:
            gathered = torch.where(valid.view(n_out, k, *tail), gathered, 0)
        return gathered.sum(dim + 1)
    acc = None
    for j in range(k):  # term by term, left to right, as the stock kernels add taps
        rows = sparse[j]
        if rows is None:
            term = _stock.index_select(x, dim, index[:, j])
            if weight is not None:
                term = term * weight[:, j].view(n_out, *tail)
            if valid is not None:
                term = torch.where(valid[:, j].view(n_out, *tail), term, 0)
            acc = term if acc is None else acc + term
        elif rows.numel():
            # Few rows use this slot (borders of a pad, window overlaps): touch only those.
            # The rows are distinct, so the indexed write sets each place once.
            part = _stock.index_select(x, dim, index[rows, j])
            if weight is not None:
                part = part * weight[rows, j].view(-1, *tail)
            if acc is None:
                acc = x.new_zeros(shape)
            where = (slice(None),) * dim + (rows,)
            acc[where] = _stock.index_select(acc, dim, rows) + part
    return x.new_zeros(shape) if acc is None else acc


class _AxisApply(torch.autograd.Function):
    # A linear map: its forward-mode derivative (jvp) is the same map applied to the tangent.
    @staticmethod
    def forward(x: torch.Tensor, dim: int, amap: AxisMap) -> torch.Tensor:
        return _apply(x, dim, amap)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.dim, ctx.amap = inputs

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _AxisApply.apply(grad, ctx.dim, ctx.amap.T), None, None

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor, *_):
        return _apply(x_t, ctx.dim, ctx.amap)


def apply_axis(x: torch.Tensor, dim: int, amap: AxisMap) -> torch.Tensor:
    """Apply ``amap`` along ``dim`` of ``x`` (deterministic forward and backward)."""
    if x.shape[dim] != amap.in_size:
        raise ValueError(f"axis {dim} has size {x.shape[dim]}, the map expects {amap.in_size}")
    return _AxisApply.apply(x, dim % x.dim(), amap)


def windows(starts: list[int], ends: list[int], in_size: int) -> AxisMap:
    """A 0/1 map summing ``x[starts[o]:ends[o]]`` for each output ``o`` (every window non-empty)."""
    start = torch.tensor(starts, dtype=torch.int64)
    end = torch.tensor(ends, dtype=torch.int64)
    width = max(int((end - start).max()) if start.numel() else 1, 1)
    pos = start[:, None] + torch.arange(width)
    valid = pos < end[:, None]
    index = torch.minimum(pos, (end - 1)[:, None])
    return AxisMap(in_size, index, None, None if bool(valid.all()) else valid)


def keep_format(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``out`` in ``like``'s channels-last memory format if ``like`` uses one."""
    if (
        like.dim() == 4
        and not like.is_contiguous()
        and like.is_contiguous(memory_format=torch.channels_last)
    ):
        return out.contiguous(memory_format=torch.channels_last)
    if (
        like.dim() == 5
        and not like.is_contiguous()
        and like.is_contiguous(memory_format=torch.channels_last_3d)
    ):
        return out.contiguous(memory_format=torch.channels_last_3d)
    return out
