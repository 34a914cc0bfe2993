"""CUDA checks (marked ``gpu``; skipped without a CUDA device).

Under strict mode, where the stock op raises, the replacement runs, and 50
repeats give bitwise identical outputs and gradients. Also outside strict
mode (the replacements do not depend on the flag).
"""

from __future__ import annotations

import os

import pytest
import torch
from opcheck import cases

pytestmark = pytest.mark.gpu

#: Cases whose stock call raises under strict mode on CUDA (torch 2.13). The others
#: (nearest, bilinear/trilinear via PyTorch's strict-mode decomposition, replicate
#: padding, index_select) have a deterministic stock path under strict mode.
STOCK_RAISES = {
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
    "avg_pool3d",
    "interpolate-bicubic",
    "interpolate-linear",
    "interpolate-area",
    "pad-reflect",
    "nll_loss",
    "cross_entropy",
    "grid_sample",
    "grid_sample-nearest",
    "embedding_bag",
    "cumsum",
    "Tensor.cumsum",
    "median",
    "Tensor.median",
    "kthvalue",
    "scatter_reduce",
    "histc",
    "bincount",
}
REPEATS = 50


def _run(fn, inputs):
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = fn(*leaves)
    if out.requires_grad:
        out.backward(torch.ones_like(out))
    return out.detach(), [t.grad for t in leaves]


@pytest.fixture
def strict():
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def _cuda_cases():
    return cases("cuda") if torch.cuda.is_available() else []


@pytest.mark.parametrize("name", sorted(STOCK_RAISES))
def test_stock_raises_and_replacement_is_bitwise_stable_under_strict_mode(name, strict):
    """Under strict mode the stock op either refuses (torch 2.13 and older for every op listed) or, in a
    torch that has since gained a deterministic kernel for it (seen on an H200 with torch 2.11+cu130 for
    cumsum, kthvalue and reflect padding), must then be bitwise stable itself. Ours is bitwise stable."""
    _, ours, stock, inputs = next(c for c in _cuda_cases() if c[0] == name)
    try:
        _run(stock, inputs)
        torch.cuda.synchronize()
    except RuntimeError as exc:
        assert "does not have a deterministic implementation" in str(exc), exc
    else:
        _assert_repeats_bitwise(f"stock {name}", stock, inputs)
    _assert_repeats_bitwise(name, ours, inputs)


def _assert_repeats_bitwise(name, ours, inputs):
    """REPEATS runs of the replacement: the same output and gradients, bit for bit."""
    first_out, first_grads = _run(ours, inputs)
    for _ in range(REPEATS - 1):
        out, grads = _run(ours, inputs)
        assert torch.equal(out, first_out), name
        for a, b in zip(grads, first_grads, strict=True):
            assert (a is None and b is None) or torch.equal(a, b), name


def test_every_replacement_is_bitwise_stable_without_strict_mode():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        _stable_without_strict()
    finally:
        torch.use_deterministic_algorithms(before)


def _stable_without_strict():
    for name, ours, _, inputs in _cuda_cases():
        _assert_repeats_bitwise(name, ours, inputs)


def test_replacements_match_cpu_results():
    for (name, ours, _, inputs), (_, ours_cpu, _, inputs_cpu) in zip(
        _cuda_cases(), cases("cpu"), strict=True
    ):
        out, grads = _run(ours, inputs)
        cpu_out, cpu_grads = _run(ours_cpu, inputs_cpu)
        torch.testing.assert_close(out.cpu(), cpu_out, atol=1e-5, rtol=1e-5, msg=name)
        for a, b in zip(grads, cpu_grads, strict=True):
            if a is not None:
                torch.testing.assert_close(a.cpu(), b, atol=1e-5, rtol=1e-5, msg=name)
