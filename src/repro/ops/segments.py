"""Sort-based segment reductions: the deterministic core of every scatter in ``repro.ops``.

A CUDA scatter-add (``out[key[i]] += value[i]``) adds with atomics in whatever
order threads arrive, so float results change from run to run. Here the values
are first put in a fixed order (a stable sort by key), then every segment (a
run of equal keys) is reduced by a segmented Hillis-Steele scan built from
elementwise ops on shifted slices. The order of every floating-point operation
therefore depends only on the keys, never on thread timing, on any device.

Cost for M values of R columns whose longest segment holds L values: one
stable sort of M keys, ``ceil(log2 L)`` elementwise steps of O(M * R) each,
O(M * R) temporary memory, and two host syncs (reading L and the segment ends).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from repro.ops import _stock

State = tuple[torch.Tensor, ...]
#: ``combine(left, right, take)`` merges the state ``d`` places to the left
#: into ``right`` where ``take`` (same segment) is true, else returns ``right``.
Combine = Callable[[State, State, torch.Tensor], State]


@dataclass(frozen=True)
class Segments:
    """A stable sort of keys and the segment structure of the sorted keys."""

    perm: torch.Tensor  # positions that sort the keys (stable: ties keep input order)
    keys: torch.Tensor  # the sorted keys
    offset: torch.Tensor  # position of each sorted value inside its segment
    length: int  # the longest segment
    ends: torch.Tensor  # sorted positions of each segment's last value, ascending

    @property
    def unique_keys(self) -> torch.Tensor:
        return self.keys[self.ends]


def sort_segments(keys: torch.Tensor) -> Segments:
    """Sort 1-D integer ``keys`` stably and describe their segments."""
    keys = keys.reshape(-1).to(torch.int64)
    m = keys.numel()
    device = keys.device
    if m == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return Segments(empty, empty, empty, 0, empty)
    sorted_keys, perm = torch.sort(keys, stable=True)
    start = torch.searchsorted(sorted_keys, sorted_keys, side="left")
    offset = torch.arange(m, device=device) - start
    is_end = torch.ones(m, dtype=torch.bool, device=device)
    is_end[:-1] = sorted_keys[1:] != sorted_keys[:-1]
    ends = is_end.nonzero().squeeze(1)
    return Segments(perm, sorted_keys, offset, int(offset.max()) + 1, ends)


def _column(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(mask.shape + (1,) * (like.dim() - 1))


def segment_scan(state: State, seg: Segments, combine: Combine) -> State:
    """Inclusive scan of ``state`` (tensors of M rows, in sorted order) within each segment.

    Steps d = 1, 2, 4, ... merge row i-d into row i while both lie in one
    segment. Differentiable when ``combine`` is; each step's backward is
    elementwise too, so gradients are as deterministic as the forward.
    """
    d = 1
    while d < seg.length:
        take = seg.offset[d:] >= d
        left = tuple(s[:-d] for s in state)
        right = tuple(s[d:] for s in state)
        merged = combine(left, right, take)
        state = tuple(torch.cat([s[:d], t]) for s, t in zip(state, merged, strict=True))
        d *= 2
    return state


def add_combine(left: State, right: State, take: torch.Tensor) -> State:
    (a,), (b,) = left, right
    return (torch.where(_column(take, a), a, 0) + b,)


def mul_combine(left: State, right: State, take: torch.Tensor) -> State:
    (a,), (b,) = left, right
    return (torch.where(_column(take, a), a, 1) * b,)


def segment_sum(keys: torch.Tensor, values: torch.Tensor, num_segments: int) -> torch.Tensor:
    """``out[k] = sum(values[i] for keys[i] == k)``; ``values`` is (M, ...), ``out`` (num_segments, ...).

    Deterministic on every device (see the module docstring); not differentiable
    (callers wrap it in an autograd Function). Keys must lie in [0, num_segments).
    """
    out = values.new_zeros((num_segments,) + tuple(values.shape[1:]))
    seg = sort_segments(keys)
    if seg.length == 0:
        return out
    v = _stock.index_select(values, 0, seg.perm)
    d = 1
    while d < seg.length:  # segment_scan with add_combine, in place (no autograd here)
        shifted = torch.where(_column(seg.offset[d:] >= d, v), v[:-d], 0)
        v[d:] += shifted
        d *= 2
    out[seg.unique_keys] = _stock.index_select(v, 0, seg.ends)
    return out
