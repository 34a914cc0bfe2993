"""Deterministic by construction: what every replacement runs, checked on CPU.

Without a GPU the CUDA claim is checked by its premise: tracing forward and
backward of every replacement at the ATen level, every op that does work (not
shape checks on storage-less "meta" tensors) must be on an allowlist of ops
with a single, atomics-free CUDA algorithm, used only in their deterministic
form (integer cumsum, unweighted bincount, index_put without accumulate, no
scatter-add, no float atomics). The same cases also run through the torch
names while ``repro.ops.patch()`` is active.
"""

from __future__ import annotations

import pytest
import torch
from opcheck import cases
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import repro.ops as R

# ATen ops with one deterministic CUDA algorithm (no atomics on floats, stable or order-free results).
ALLOWED = {
    # creation, views, copies, shape
    "alias",
    "arange",
    "as_strided",
    "cat",
    "clone",
    "copy_",
    "detach",
    "empty",
    "empty_like",
    "expand",
    "flip",
    "full",
    "full_like",
    "lift_fresh",
    "new_empty",
    "new_full",
    "new_zeros",
    "ones",
    "ones_like",
    "permute",
    "scalar_tensor",
    "select",
    "select_backward",
    "slice",
    "slice_backward",
    "squeeze",
    "stack",
    "t",
    "transpose",
    "unsqueeze",
    "view",
    "_unsafe_view",
    "zeros",
    "zeros_like",
    "_to_copy",
    "_local_scalar_dense",
    "resize_",
    "unbind",
    "split",
    "new_empty_strided",
    "empty_strided",
    # elementwise
    "abs",
    "add",
    "add_",
    "bitwise_and",
    "bitwise_not",
    "bitwise_or",
    "clamp",
    "clamp_max",
    "clamp_min",
    "div",
    "eq",
    "floor",
    "fmod",
    "ge",
    "gt",
    "isnan",
    "isinf",
    "isfinite",
    "le",
    "lt",
    "masked_fill",
    "maximum",
    "minimum",
    "mul",
    "ne",
    "neg",
    "remainder",
    "round",
    "rsub",
    "sub",
    "where",
    "complex",
    "view_as_real",
    "real",
    "imag",
    "nan_to_num",
    "sign",
    "sgn",
    "logical_and",
    "logical_not",
    # reductions over fixed shapes (tree reductions, no atomics)
    "all",
    "amax",
    "any",
    "argmax",
    "max",
    "min",
    "sum",
    "_log_softmax",
    "_log_softmax_backward_data",
    # gathers (forward only), sort, search, compaction
    "gather",
    "index",
    "index_select",
    "nonzero",
    "searchsorted",
    "sort",
    # conditionally allowed (checked below)
    "bincount",
    "cumsum",
    "index_put",
    "index_put_",
    "embedding_renorm_",
    # delegated stock ops whose CUDA kernels are deterministic
    "upsample_nearest1d",
    "upsample_nearest2d",
    "upsample_nearest3d",
    "upsample_nearest2d_backward",
    "constant_pad_nd",
    "reflection_pad1d",
    "replication_pad1d",  # forward copies: builds pad maps "_embedding_bag", "_embedding_bag_backward", "_embedding_bag_dense_backward",
    "_embedding_bag_per_sample_weights_backward",
    "scatter_reduce",
    "median",
}


def _check(func, args, kwargs) -> str | None:
    name = func.overloadpacket.__name__
    if name not in ALLOWED:
        return f"{func} is not on the allowlist"
    named = dict(zip([a.name for a in func._schema.arguments], args, strict=False)) | kwargs
    if name == "cumsum" and named["self"].is_floating_point():
        return "float cumsum"
    if name == "bincount" and named.get("weights") is not None:
        return "weighted bincount"
    if name in ("index_put", "index_put_") and named.get("accumulate"):
        return "index_put with accumulate"
    if name == "_embedding_bag" and named.get("mode") == 2:
        return "stock embedding_bag max"
    if name == "scatter_reduce" and named["reduce"] not in ("amax", "amin"):
        return "stock scatter_reduce sum/prod/mean"
    if name == "median" and func._overloadname != "default":
        return "stock median with indices"
    return None


class _Audit(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.problems: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not any(isinstance(a, torch.Tensor) and a.is_meta for a in tree_leaves((args, kwargs))):
            problem = _check(func, args, kwargs)
            if problem:
                self.problems.add(problem)
        return func(*args, **kwargs)


def _run(fn, inputs):
    leaves = [
        t.detach().clone().requires_grad_(t.requires_grad or t.is_floating_point()) for t in inputs
    ]
    out = fn(*leaves)
    if out.requires_grad:
        out.backward(torch.ones_like(out))
    return out.detach(), [t.grad for t in leaves]


CASES = cases()


@pytest.mark.parametrize("name,ours,_,inputs", CASES, ids=[c[0] for c in CASES])
def test_replacement_uses_only_deterministic_kernels(name, ours, _, inputs):
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True)
    try:
        with _Audit() as audit:
            _run(ours, inputs)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    assert not audit.problems, f"{name}: {sorted(audit.problems)}"


def test_patch_routes_every_torch_name_to_the_replacement():
    for name, ours, through_torch, inputs in CASES:
        expected, expected_grads = _run(ours, inputs)
        with R.patch(), _Audit() as audit:
            got, grads = _run(through_torch, inputs)
        assert not audit.problems, f"{name} under patch(): {sorted(audit.problems)}"
        assert torch.equal(got, expected), name
        for a, b in zip(grads, expected_grads, strict=True):
            assert (a is None and b is None) or torch.equal(a, b), name


def test_repeated_runs_are_bitwise_identical():
    for name, ours, _, inputs in CASES:
        first_out, first_grads = _run(ours, inputs)
        for _ in range(2):
            out, grads = _run(ours, inputs)
            assert torch.equal(out, first_out), name
            assert all(
                (a is None and b is None) or torch.equal(a, b)
                for a, b in zip(grads, first_grads, strict=True)
            ), name
