"""Shared checks for the repro.ops tests: compare a replacement with the stock op."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def _leaves(inputs: Sequence, grad: Sequence[bool] | None) -> list:
    out = []
    for i, t in enumerate(inputs):
        if isinstance(t, torch.Tensor):
            wants = (t.is_floating_point() or t.is_complex()) if grad is None else grad[i]
            c = t.detach().clone(memory_format=torch.preserve_format)
            out.append(c.requires_grad_(wants))
        else:
            out.append(t)
    return out


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def run(fn: Callable, inputs: Sequence, grad: Sequence[bool] | None = None, seed: int = 0):
    """``fn(*inputs)`` on fresh copies, and the gradients of every differentiable input."""
    leaves = _leaves(inputs, grad)
    out = fn(*leaves)
    main = _first(out)
    wrt = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
    grads: tuple = ()
    if wrt and main.requires_grad:
        gen = torch.Generator().manual_seed(seed)
        g = torch.randn(main.shape, generator=gen, dtype=torch.float64).to(main.dtype)
        grads = torch.autograd.grad(main, wrt, g, allow_unused=True)
    return out, grads


def assert_same(a: torch.Tensor, b: torch.Tensor, atol: float = 0.0, rtol: float = 0.0) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    if atol == 0 and rtol == 0:
        assert torch.equal(
            torch.nan_to_num(a, 7.0, 8.0, 9.0), torch.nan_to_num(b, 7.0, 8.0, 9.0)
        ) and torch.equal(a.isnan(), b.isnan()), (
            f"not bitwise equal: max diff {(a.double() - b.double()).abs().nan_to_num().max()}"
        )
    else:
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, equal_nan=True)


def compare(
    ours: Callable,
    stock: Callable,
    inputs: Sequence,
    *,
    atol: float = 0.0,
    rtol: float = 0.0,
    grad_atol: float | None = None,
    grad_rtol: float | None = None,
    grad: Sequence[bool] | None = None,
) -> None:
    """Forward outputs and input gradients of ``ours`` equal ``stock`` (tolerances 0: bitwise)."""
    out_a, grads_a = run(ours, inputs, grad)
    out_b, grads_b = run(stock, inputs, grad)
    outs_a = out_a if isinstance(out_a, tuple) else (out_a,)
    outs_b = out_b if isinstance(out_b, tuple) else (out_b,)
    assert len(outs_a) == len(outs_b)
    for a, b in zip(outs_a, outs_b, strict=True):
        exact = not (a.is_floating_point() or a.is_complex())
        assert_same(a.detach(), b.detach(), 0 if exact else atol, 0 if exact else rtol)
    assert len(grads_a) == len(grads_b)
    ga_tol = atol if grad_atol is None else grad_atol
    gr_tol = rtol if grad_rtol is None else grad_rtol
    for a, b in zip(grads_a, grads_b, strict=True):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() == 0
            continue
        assert_same(a, b, ga_tol, gr_tol)


def gradcheck(fn: Callable, inputs: Sequence, gradgrad: bool = False) -> None:
    """``torch.autograd.gradcheck`` in float64 (and ``gradgradcheck`` if asked)."""
    leaves = [
        t.detach().double().requires_grad_(True)
        if isinstance(t, torch.Tensor) and t.is_floating_point()
        else t
        for t in inputs
    ]
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5, rtol=1e-4)
    if gradgrad:
        assert torch.autograd.gradgradcheck(fn, leaves, eps=1e-6, atol=1e-5, rtol=1e-4)


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cases(device: str | torch.device = "cpu") -> list:
    """One call per replacement: (name, repro.ops call, the same call through torch's names, inputs).

    Inputs (on ``device``) are the tensors that get gradients; index tensors are closed over.
    """
    import torch.nn.functional as F

    import repro.ops as R

    def _x(*shape, seed=0):
        return torch.randn(shape, generator=rng(seed)).to(device)

    _T = torch.randint(0, 3, (2, 4, 5), generator=rng(1)).to(device)
    _T[0, 0, 0] = -100
    _G = torch.rand(2, 3, 4, 2, generator=rng(2)).to(device) * 2.4 - 1.2
    _I = torch.randint(0, 6, (9,), generator=rng(3)).to(device)
    _OFF = torch.tensor([0, 2, 2, 6], device=device)
    _IDX = torch.randint(0, 3, (5, 4), generator=rng(4)).to(device)

    # (name, replacement call, the same call through torch's names, inputs that get gradients)
    CASES = [
        (
            "adaptive_avg_pool1d",
            lambda x: R.adaptive_avg_pool1d(x, 3),
            lambda x: F.adaptive_avg_pool1d(x, 3),
            [_x(2, 3, 7)],
        ),
        (
            "adaptive_avg_pool2d",
            lambda x: R.adaptive_avg_pool2d(x, (2, 3)),
            lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
            [_x(2, 3, 5, 7)],
        ),
        (
            "adaptive_avg_pool3d",
            lambda x: R.adaptive_avg_pool3d(x, 2),
            lambda x: F.adaptive_avg_pool3d(x, 2),
            [_x(1, 2, 3, 5, 4)],
        ),
        (
            "adaptive_max_pool1d",
            lambda x: R.adaptive_max_pool1d(x, 3),
            lambda x: F.adaptive_max_pool1d(x, 3),
            [_x(2, 3, 7)],
        ),
        (
            "adaptive_max_pool2d",
            lambda x: R.adaptive_max_pool2d(x, 3, True)[0],
            lambda x: F.adaptive_max_pool2d(x, 3, True)[0],
            [_x(2, 3, 5, 7)],
        ),
        (
            "adaptive_max_pool2d_with_indices",
            lambda x: R.adaptive_max_pool2d(x, 2, True)[0],
            lambda x: F.adaptive_max_pool2d_with_indices(x, 2)[0],
            [_x(2, 3, 5, 7)],
        ),
        (
            "avg_pool3d",
            lambda x: R.avg_pool3d(x, 2, 1, 1),
            lambda x: F.avg_pool3d(x, 2, 1, 1),
            [_x(1, 2, 3, 5, 4)],
        ),
        (
            "interpolate-bilinear",
            lambda x: R.interpolate(x, scale_factor=2, mode="bilinear"),
            lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
            [_x(2, 3, 4, 5)],
        ),
        (
            "interpolate-bicubic",
            lambda x: R.interpolate(x, size=(7, 3), mode="bicubic", align_corners=True),
            lambda x: F.interpolate(x, size=(7, 3), mode="bicubic", align_corners=True),
            [_x(2, 3, 4, 5)],
        ),
        (
            "interpolate-linear",
            lambda x: R.interpolate(x, scale_factor=1.5, mode="linear"),
            lambda x: F.interpolate(x, scale_factor=1.5, mode="linear"),
            [_x(2, 3, 5)],
        ),
        (
            "interpolate-trilinear",
            lambda x: R.interpolate(x, scale_factor=2, mode="trilinear"),
            lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"),
            [_x(1, 2, 2, 3, 4)],
        ),
        (
            "interpolate-area",
            lambda x: R.interpolate(x, size=(3, 2), mode="area"),
            lambda x: F.interpolate(x, size=(3, 2), mode="area"),
            [_x(2, 3, 4, 5)],
        ),
        (
            "interpolate-nearest",
            lambda x: R.interpolate(x, scale_factor=2),
            lambda x: F.interpolate(x, scale_factor=2),
            [_x(2, 3, 4, 5)],
        ),
        (
            "pad-reflect",
            lambda x: R.pad(x, (1, 2, 2, 1), "reflect"),
            lambda x: F.pad(x, (1, 2, 2, 1), "reflect"),
            [_x(2, 3, 4, 5)],
        ),
        (
            "pad-replicate",
            lambda x: R.pad(x, (1, 2, 2, 1, 1, 1), "replicate"),
            lambda x: F.pad(x, (1, 2, 2, 1, 1, 1), "replicate"),
            [_x(1, 2, 3, 4, 5)],
        ),
        (
            "nll_loss",
            lambda x: R.nll_loss(x.log_softmax(1), _T),
            lambda x: F.nll_loss(x.log_softmax(1), _T),
            [_x(2, 3, 4, 5)],
        ),
        (
            "cross_entropy",
            lambda x: R.cross_entropy(x, _T, label_smoothing=0.1),
            lambda x: F.cross_entropy(x, _T, label_smoothing=0.1),
            [_x(2, 3, 4, 5)],
        ),
        (
            "grid_sample",
            lambda x, g: R.grid_sample(x, g, align_corners=False),
            lambda x, g: F.grid_sample(x, g, align_corners=False),
            [_x(2, 3, 4, 5), _G],
        ),
        (
            "grid_sample-nearest",
            lambda x, g: R.grid_sample(x, g, "nearest", "reflection", True),
            lambda x, g: F.grid_sample(x, g, "nearest", "reflection", True),
            [_x(2, 3, 4, 5), _G],
        ),
        (
            "embedding_bag",
            lambda w: R.embedding_bag(_I, w, _OFF, mode="max"),
            lambda w: F.embedding_bag(_I, w, _OFF, mode="max"),
            [_x(6, 3)],
        ),
        ("cumsum", lambda x: R.cumsum(x, 1), lambda x: torch.cumsum(x, 1), [_x(3, 70)]),
        ("Tensor.cumsum", lambda x: R.cumsum(x, 0), lambda x: x.cumsum(0), [_x(9, 2)]),
        (
            "median",
            lambda x: R.median(x, 1).values,
            lambda x: torch.median(x, 1).values,
            [_x(3, 7)],
        ),
        (
            "Tensor.median",
            lambda x: R.median(x, 0).values,
            lambda x: x.median(0).values,
            [_x(3, 7)],
        ),
        (
            "kthvalue",
            lambda x: R.kthvalue(x, 2, 1).values,
            lambda x: x.kthvalue(2, 1).values,
            [_x(3, 7)],
        ),
        (
            "index_select",
            lambda x: R.index_select(x, 0, _I),
            lambda x: x.index_select(0, _I),
            [_x(6, 3)],
        ),
        (
            "scatter_reduce",
            lambda x, s: R.scatter_reduce(x, 0, _IDX, s, "prod"),
            lambda x, s: x.scatter_reduce(0, _IDX, s, "prod"),
            [_x(3, 4), _x(5, 4, seed=5)],
        ),
        ("histc", lambda x: R.histc(x, 10), lambda x: torch.histc(x, 10), [_x(50).detach()]),
        ("bincount", lambda w: R.bincount(_I, w), lambda w: _I.bincount(w), [_x(9).detach()]),
    ]
    return CASES
