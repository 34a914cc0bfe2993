"""Adaptive average/max pooling and 3-D average pooling with deterministic backward.

On CUDA the stock backward of these ops scatters gradients with atomics
(``adaptive_avg_pool2d_backward_cuda does not have a deterministic
implementation``). Average pooling here is separable: a window-sum map per
axis (:mod:`repro.ops.axismap`), then one division by the window size.
Max pooling finds the window maximum axis by axis with PyTorch's own
tie-breaking, then gathers the winners through :func:`repro.ops.indexing.gather_flat`,
whose backward is a sort-based segment sum.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from repro.ops import _stock
from repro.ops.axismap import AxisMap, apply_axis, keep_format, windows
from repro.ops.indexing import gather_flat

_LOW = (torch.float16, torch.bfloat16)
#: ``output_size`` of the adaptive pools: an int, or one int (or None: keep the input size) per axis.
OutputSize = int | None | Sequence[int | None]
IntOrTuple = int | Sequence[int]


def _meta(x: torch.Tensor) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def _check_nonempty(x: torch.Tensor, nd: int, name: str) -> None:
    if any(s == 0 for s in x.shape[1:]) or (x.dim() == nd + 1 and x.shape[0] == 0):
        raise RuntimeError(
            f"input has sizes {list(x.shape)}: {name} needs non-zero sizes in all non-batch dimensions"
        )


@functools.lru_cache(maxsize=512)
def _adaptive_map(in_size: int, out_size: int) -> tuple[AxisMap, torch.Tensor]:
    # PyTorch's windows: [floor(o * in / out), ceil((o + 1) * in / out)).
    starts = [o * in_size // out_size for o in range(out_size)]
    ends = [-(-(o + 1) * in_size // out_size) for o in range(out_size)]
    return windows(starts, ends, in_size), torch.tensor(ends) - torch.tensor(starts)


def _outer(per_axis: Sequence[torch.Tensor], lead: int) -> torch.Tensor:
    """The outer product of per-axis integer vectors, with ``lead`` leading size-1 dims."""
    total = torch.ones((), dtype=torch.int64)
    for i, v in enumerate(per_axis):
        shape = [1] * len(per_axis)
        shape[i] = v.numel()
        total = total * v.view(shape)
    return total.view((1,) * lead + tuple(total.shape))


def _sum_pool(x: torch.Tensor, maps: Sequence[AxisMap]) -> torch.Tensor:
    nd = len(maps)
    y = x
    for axis in range(nd - 1, -1, -1):  # last axis first, like the stock kernels
        y = apply_axis(y, x.dim() - nd + axis, maps[axis])
    return y


def _adaptive_avg(x: torch.Tensor, output_size: OutputSize, nd: int, stock) -> torch.Tensor:
    out_shape = stock(_meta(x), output_size).shape  # the stock checks and sizes
    if x.numel() == 0:  # nothing to sum: the stock op (it raises where it refuses the shape)
        return stock(x, output_size)
    _check_nonempty(x, nd, stock.__name__)
    spatial_in, spatial_out = x.shape[-nd:], out_shape[-nd:]
    built = [_adaptive_map(i, o) for i, o in zip(spatial_in, spatial_out, strict=True)]
    work = x.float() if x.dtype in _LOW else x
    total = _sum_pool(work, [m for m, _ in built])
    count = _outer([c for _, c in built], x.dim() - nd).to(device=x.device, dtype=work.dtype)
    return keep_format((total / count).to(x.dtype), x)


def adaptive_avg_pool1d(input: torch.Tensor, output_size: OutputSize) -> torch.Tensor:
    """``F.adaptive_avg_pool1d``, deterministic forward and backward.

    Algorithm: window sums along the axis as a padded gather (window
    [floor(o*L/Lo), ceil((o+1)*L/Lo))), divided by the window length; backward
    is the transposed gather. Time O(N*C*L) (about (1 + Lo/L) * L reads per row),
    extra memory one gathered buffer of that size. Equal to the stock op up to
    float summation order. Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md):
    forward exact (float32, float16, bfloat16), 8.9e-16 (float64); gradient
    exact (float32, float64), within 0.67 scaled ulps (float16, bfloat16).
    """
    return _adaptive_avg(input, output_size, 1, _stock.adaptive_avg_pool1d)


def adaptive_avg_pool2d(input: torch.Tensor, output_size: OutputSize) -> torch.Tensor:
    """``F.adaptive_avg_pool2d``, deterministic forward and backward on any device.

    Algorithm: separable window sums (W then H), each a padded gather plus a
    fixed-order sum, then division by kh*kw; backward is the transposed maps.
    Time O(N*C*H*W*(1 + Wo/W)) per axis, transient memory of the same order;
    float16/bfloat16 accumulate in float32. Equal to the stock op up to float
    summation order. Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md):
    within 4.8e-7 (float32; gradient 2.4e-7), 1.8e-15 (float64), forward exact
    and gradient within 0.61 scaled ulps (float16, bfloat16).
    """
    return _adaptive_avg(input, output_size, 2, _stock.adaptive_avg_pool2d)


def adaptive_avg_pool3d(input: torch.Tensor, output_size: OutputSize) -> torch.Tensor:
    """``F.adaptive_avg_pool3d``, deterministic forward and backward on any device.

    Algorithm and cost as :func:`adaptive_avg_pool2d`, with a third (depth) pass.
    Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md):
    within 9.5e-7 (float32; gradient 1.2e-7), 1.8e-15 (float64), 1.3 scaled
    ulps (float16, bfloat16).
    """
    return _adaptive_avg(input, output_size, 3, _stock.adaptive_avg_pool3d)


def _window_argmax(g: torch.Tensor, kdim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over ``kdim`` and its position, with PyTorch's pooling rule: the first
    maximum, or the last NaN if there is one (``val > max || isnan(val)``)."""
    m = g.amax(kdim)
    first = (g == m.unsqueeze(kdim)).to(torch.uint8).argmax(kdim)
    nan = g.isnan()
    if not bool(nan.any()):  # one host sync saves three passes in the common case
        return m, first
    last_nan = g.shape[kdim] - 1 - nan.flip(kdim).to(torch.uint8).argmax(kdim)
    return m, torch.where(nan.any(kdim), last_nan, first)


def _max_positions(
    x: torch.Tensor, maps: Sequence[AxisMap], nd: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window maxima and the flat in-plane position of each winner."""
    y = x
    args: list[torch.Tensor] = []  # winners' coordinates, last axis first
    for axis in range(nd - 1, -1, -1):
        dim = x.dim() - nd + axis
        index = maps[axis].on(x.device, x.dtype)[0]
        n_out, k = index.shape
        g = _stock.index_select(y, dim, index.reshape(-1)).unflatten(dim, (n_out, k))
        y, loc = _window_argmax(g, dim + 1)
        # index[o, loc]: loc + start clamped to the window's last element.
        start, last = index[:, 0], index[:, -1]
        view = (n_out,) + (1,) * (x.dim() - dim - 1)
        pos = torch.minimum(loc + start.view(view), last.view(view))
        args = [torch.gather(a, dim, pos) for a in args] + [pos]
    flat = torch.zeros_like(args[0])
    stride = 1
    for axis, a in zip(range(nd - 1, -1, -1), args, strict=True):
        flat = flat + a * stride
        stride *= x.shape[x.dim() - nd + axis]
    return y, flat


def _adaptive_max(x: torch.Tensor, output_size: OutputSize, nd: int, stock, return_indices: bool):
    # The stock checks and sizes (the aten-level op: F's wrappers call names patch() replaces).
    out_shape = stock(_meta(x), output_size)[0].shape
    if x.numel() == 0:  # nothing to search: the stock op (it raises where it refuses the shape)
        out, index = stock(x, output_size)
        return (out, index) if return_indices else out
    _check_nonempty(x, nd, f"adaptive_max_pool{nd}d")
    maps = [_adaptive_map(i, o)[0] for i, o in zip(x.shape[-nd:], out_shape[-nd:], strict=True)]
    with torch.no_grad():
        _, flat = _max_positions(x.detach(), maps, nd)
        plane = math.prod(x.shape[-nd:])
        lead = math.prod(x.shape[:-nd])
        base = (torch.arange(lead, device=x.device) * plane).view(x.shape[:-nd] + (1,) * nd)
    out = keep_format(gather_flat(x, flat + base), x)
    return (out, keep_format(flat, x)) if return_indices else out


def adaptive_max_pool2d(
    input: torch.Tensor, output_size: OutputSize, return_indices: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``F.adaptive_max_pool2d`` (and ``_with_indices``), deterministic backward on any device.

    Algorithm: window maxima along W then H (padded gathers), tracking winners
    with PyTorch's rule (first maximum, last NaN), so values and indices equal
    the stock op exactly; the output is then gathered at the winners, whose
    backward is a sort-based segment sum instead of an atomic scatter.
    Time O(N*C*H*W) for the search plus a sort of N*C*Ho*Wo keys in backward;
    transient memory about one input-sized buffer. Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md):
    values, indices and gradients exact for every dtype.
    """
    return _adaptive_max(
        input, output_size, 2, _stock.adaptive_max_pool2d_with_indices, return_indices
    )


def adaptive_max_pool1d(
    input: torch.Tensor, output_size: OutputSize, return_indices: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``F.adaptive_max_pool1d``: as :func:`adaptive_max_pool2d` along one axis."""
    return _adaptive_max(input, output_size, 1, _stock.adaptive_max_pool1d_aten, return_indices)


def _triple(v: IntOrTuple, name: str) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    v = tuple(v)
    if len(v) == 1:
        return (v[0],) * 3
    if len(v) != 3:
        raise ValueError(f"{name}={v!r} is not allowed: expected an int or 3 ints")
    return v  # type: ignore[return-value]


@functools.lru_cache(maxsize=512)
def _avg_map(in_size: int, out_size: int, k: int, s: int, p: int):
    starts, ends, pool, count = [], [], [], []
    for o in range(out_size):
        start = o * s - p
        end = min(start + k, in_size + p)
        pool.append(end - start)
        start, end = max(start, 0), min(end, in_size)
        starts.append(start)
        ends.append(end)
        count.append(end - start)
    return windows(starts, ends, in_size), torch.tensor(pool), torch.tensor(count)


def avg_pool3d(
    input: torch.Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> torch.Tensor:
    """``F.avg_pool3d``, deterministic forward and backward on any device.

    Algorithm: separable window sums (W, H, then D) as padded gathers, then one
    division by the stock divisor (window size with or without padding, or
    ``divisor_override``); backward is the transposed maps. Time about
    O(N*C*D*H*W*k/s) per axis, transient memory of the same order; float16 and
    bfloat16 accumulate in float32. Equal to the stock op up to float summation order.
    Measured against the stock CPU op on PyTorch's OpInfo samples (docs/ops.md): within 6.2e-6
    (float32, window sums of values up to 9; gradient 2.4e-7), 1.4e-14 (float64),
    exact for int64.
    """
    out_shape = _stock.avg_pool3d(
        _meta(input), kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    ).shape
    k = _triple(kernel_size, "kernel_size")
    s = (
        k
        if stride is None or (not isinstance(stride, int) and len(stride) == 0)
        else _triple(stride, "stride")
    )
    p = _triple(padding, "padding")
    built = [
        _avg_map(i, o, kk, ss, pp)
        for i, o, kk, ss, pp in zip(input.shape[-3:], out_shape[-3:], k, s, p, strict=True)
    ]
    work = input.float() if input.dtype in _LOW else input
    total = _sum_pool(work, [m for m, _, _ in built])
    if divisor_override:
        out = total / divisor_override
    else:
        per_axis = [pool if count_include_pad else count for _, pool, count in built]
        div = _outer(per_axis, input.dim() - 3).to(device=input.device, dtype=work.dtype)
        out = total / div
    return keep_format(out.to(input.dtype), input)
