"""Cost of each repro.ops replacement relative to the stock op, on the current device.

    python scripts/bench_ops.py [--device cpu|cuda] [--quick] [--repeats N]

For every replacement, times (median of the repeats, after two warm-up
steps) forward + backward (forward only for histc and
bincount) of the replacement and of the stock op with deterministic
algorithms off (the stock op's fast, nondeterministic path), and prints an
aligned table: milliseconds per call, the time ratio (replacement / stock),
and on CUDA the peak-memory ratio from ``torch.cuda.max_memory_allocated``.
On CPU peak memory is not measured (PyTorch's CPU allocator is invisible to
tracemalloc): the column reads n/a.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import repro.ops as R


def _cases(
    device: torch.device, quick: bool
) -> list[tuple[str, Callable, Callable, list[torch.Tensor]]]:
    s = 2 if quick else 1  # divisor for sizes in --quick mode
    g = torch.Generator().manual_seed(0)

    def x(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g).to(device)

    def ints(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=g).to(device)

    n = 16 // s
    seg_t = ints(21, n, 128 // s, 128 // s)
    grid = (torch.rand(n, 64 // s, 64 // s, 2, generator=g) * 2 - 1).to(device)
    bags = ints(10000, 4096 // s * 20)
    offsets = torch.arange(0, bags.numel(), 20, device=device)
    sc_index = ints(1000, 20000 // s, 64)
    sel_index = ints(10000, 20000 // s)
    return [
        (
            "adaptive_avg_pool2d",
            lambda t: R.adaptive_avg_pool2d(t, 7),
            lambda t: F.adaptive_avg_pool2d(t, 7),
            [x(n, 64, 50, 50)],
        ),
        (
            "adaptive_avg_pool3d",
            lambda t: R.adaptive_avg_pool3d(t, (4, 7, 7)),
            lambda t: F.adaptive_avg_pool3d(t, (4, 7, 7)),
            [x(n // 4, 16, 16, 32, 32)],
        ),
        (
            "adaptive_max_pool2d",
            lambda t: R.adaptive_max_pool2d(t, 7),
            lambda t: F.adaptive_max_pool2d(t, 7),
            [x(n, 64, 50, 50)],
        ),
        (
            "avg_pool3d",
            lambda t: R.avg_pool3d(t, 3, 2, 1),
            lambda t: F.avg_pool3d(t, 3, 2, 1),
            [x(n // 4, 16, 16, 32, 32)],
        ),
        (
            "interpolate linear x2",
            lambda t: R.interpolate(t, scale_factor=2, mode="linear"),
            lambda t: F.interpolate(t, scale_factor=2, mode="linear"),
            [x(n, 64, 512)],
        ),
        (
            "interpolate bilinear x2",
            lambda t: R.interpolate(t, scale_factor=2, mode="bilinear"),
            lambda t: F.interpolate(t, scale_factor=2, mode="bilinear"),
            [x(n, 64, 64 // s, 64 // s)],
        ),
        (
            "interpolate bicubic x2",
            lambda t: R.interpolate(t, scale_factor=2, mode="bicubic"),
            lambda t: F.interpolate(t, scale_factor=2, mode="bicubic"),
            [x(n, 32, 64 // s, 64 // s)],
        ),
        (
            "interpolate trilinear x2",
            lambda t: R.interpolate(t, scale_factor=2, mode="trilinear"),
            lambda t: F.interpolate(t, scale_factor=2, mode="trilinear"),
            [x(n // 8 or 1, 16, 16, 32 // s, 32 // s)],
        ),
        (
            "pad reflect 3",
            lambda t: R.pad(t, (3, 3, 3, 3), "reflect"),
            lambda t: F.pad(t, (3, 3, 3, 3), "reflect"),
            [x(n, 64, 64, 64)],
        ),
        (
            "pad replicate 3",
            lambda t: R.pad(t, (3, 3, 3, 3), "replicate"),
            lambda t: F.pad(t, (3, 3, 3, 3), "replicate"),
            [x(n, 64, 64, 64)],
        ),
        (
            "nll_loss 2d",
            lambda t: R.nll_loss(t, seg_t),
            lambda t: F.nll_loss(t, seg_t),
            [x(n, 21, 128 // s, 128 // s)],
        ),
        (
            "cross_entropy 2d ls=0.1",
            lambda t: R.cross_entropy(t, seg_t, label_smoothing=0.1),
            lambda t: F.cross_entropy(t, seg_t, label_smoothing=0.1),
            [x(n, 21, 128 // s, 128 // s)],
        ),
        (
            "grid_sample bilinear",
            lambda t, u: R.grid_sample(t, u, align_corners=False),
            lambda t, u: F.grid_sample(t, u, align_corners=False),
            [x(n, 32, 64, 64), grid],
        ),
        (
            "embedding_bag max",
            lambda w: R.embedding_bag(bags, w, offsets, mode="max"),
            lambda w: F.embedding_bag(bags, w, offsets, mode="max"),
            [x(10000, 64)],
        ),
        (
            "scatter_reduce prod",
            lambda a, b: R.scatter_reduce(a, 0, sc_index, b, "prod"),
            lambda a, b: a.scatter_reduce(0, sc_index, b, "prod"),
            [x(1000, 64), x(20000 // s, 64).sigmoid() + 0.5],
        ),
        (
            "index_select",
            lambda t: R.index_select(t, 0, sel_index),
            lambda t: t.index_select(0, sel_index),
            [x(10000, 64)],
        ),
        ("cumsum", lambda t: R.cumsum(t, 1), lambda t: t.cumsum(1), [x(64, 4096 // s)]),
        (
            "median dim",
            lambda t: R.median(t, 1).values,
            lambda t: t.median(1).values,
            [x(256, 1024 // s)],
        ),
        (
            "kthvalue",
            lambda t: R.kthvalue(t, 100, 1).values,
            lambda t: t.kthvalue(100, 1).values,
            [x(256, 1024 // s)],
        ),
        (
            "histc (fwd)",
            lambda t: R.histc(t, 1000),
            lambda t: torch.histc(t, 1000),
            [_fwd_only(x(1_000_000 // s))],
        ),
        (
            "bincount weights (fwd)",
            lambda w: R.bincount(bags, w),
            lambda w: torch.bincount(bags, w),
            [_fwd_only(x(bags.numel()))],
        ),
    ]


def _fwd_only(t: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():  # marks inputs of non-differentiable ops
        return t.clone()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(fn: Callable, inputs: list[torch.Tensor]) -> None:
    leaves = [
        t.detach().requires_grad_(t.is_floating_point() and not t.is_inference()) for t in inputs
    ]
    out = fn(*leaves)
    if out.requires_grad:
        out.backward(torch.ones_like(out))


def _measure(
    fn: Callable, inputs: list[torch.Tensor], repeats: int, device: torch.device
) -> tuple[float, int | None]:
    """Median seconds per step over ``repeats`` timed steps, and the peak extra memory (CUDA)."""
    for _ in range(2):  # warm-up: index-map caches, allocator
        _step(fn, inputs)
    _sync(device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _step(fn, inputs)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _step(fn, inputs)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default on CPU: 1, steadier timings on a shared machine)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    repeats = args.repeats or (3 if args.quick else 10)
    torch.use_deterministic_algorithms(False)  # the stock ops' fast paths
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    print(
        f"device: {device} {name}; torch {torch.__version__}; threads: {torch.get_num_threads()}; repeats: {repeats}"
    )
    if device.type != "cuda":
        print(
            "peak memory: n/a on CPU (the CPU allocator is not instrumented); run on CUDA for memory ratios"
        )
    rows = []
    for label, ours, stock, inputs in _cases(device, args.quick):
        t_ours, m_ours = _measure(ours, inputs, repeats, device)
        t_stock, m_stock = _measure(stock, inputs, repeats, device)
        mem = f"{m_ours / m_stock:.2f}" if m_ours is not None and m_stock else "n/a"
        rows.append(
            (label, f"{t_stock * 1e3:.3f}", f"{t_ours * 1e3:.3f}", f"{t_ours / t_stock:.2f}", mem)
        )
        print(f"  measured {label}", flush=True, file=sys.stderr)
    header = ("op (forward+backward)", "stock ms", "repro.ops ms", "time ratio", "peak mem ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )  # noqa: E731

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


if __name__ == "__main__":
    main()
