"""``out=`` arguments handled as the stock ops handle them: same checks, same errors.

The stock ops refuse an ``out`` tensor whose elements share memory with each
other (an expanded tensor) or, for some ops, with an input; both raise
``RuntimeError`` with PyTorch's "unsupported operation" message. Overlap is
decided as PyTorch's ``get_overlap_status`` does: only dense tensors in one
storage whose byte ranges intersect count (anything else is "too hard" and
allowed).
"""

from __future__ import annotations

import warnings

import torch

_INTERNAL = (
    "unsupported operation: more than one element of the written-to tensor refers to a single "
    "memory location. Please clone() the tensor before performing the operation."
)
_SHARED = (
    "unsupported operation: some elements of the input tensor and the written-to tensor refer "
    "to a single memory location. Please clone() the tensor before performing the operation."
)


def _dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: some permutation of the dims is contiguous."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda p: p[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _internal_overlap(t: torch.Tensor) -> bool:
    if t.numel() <= 1 or _dense(t):
        return False
    return any(stride == 0 and size > 1 for size, stride in zip(t.shape, t.stride(), strict=True))


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when dense ``a`` and ``b`` share at least one byte of one storage."""
    if a.numel() == 0 or b.numel() == 0 or not (_dense(a) and _dense(b)):
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    a1, b1 = a0 + a.numel() * a.element_size(), b0 + b.numel() * b.element_size()
    return a0 < b1 and b0 < a1


def check(outs: tuple[torch.Tensor, ...], inputs: tuple[torch.Tensor, ...] = ()) -> None:
    """Raise ``RuntimeError`` as the stock op does for overlapping ``out`` tensors."""
    for o in outs:
        if _internal_overlap(o):
            raise RuntimeError(_INTERNAL)
        if any(overlaps(o, t) for t in inputs):
            raise RuntimeError(_SHARED)


def check_dtype(out: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Raise ``RuntimeError`` when ``out`` does not have ``dtype`` (the stock ops do not cast)."""
    if out.dtype != dtype:
        raise RuntimeError(f"{what}: expected out dtype {dtype}, got {out.dtype}")


def write(out: torch.Tensor, result: torch.Tensor, name: str) -> torch.Tensor:
    """Resize ``out`` as the stock ops do (with their warning when it had elements) and copy.

    As the stock ops, refuses (``RuntimeError``) when autograd would have to flow through ``out``.
    """
    if torch.is_grad_enabled() and result.requires_grad:
        raise RuntimeError(
            f"{name}(): functions with out=... arguments don't support automatic differentiation, "
            "but one of the arguments requires grad."
        )
    if out.device != result.device:
        raise RuntimeError(f"{name}(): expected out on {result.device}, got {out.device}")
    if out.shape != result.shape:
        if out.numel():
            warnings.warn(
                f"An output with one or more elements was resized since it had shape "
                f"{list(out.shape)}, which does not match the required output shape "
                f"{list(result.shape)}. This behavior is deprecated, and in a future PyTorch "
                "release outputs will not be resized unless they have zero elements.",
                UserWarning,
                stacklevel=3,
            )
        out.resize_(result.shape)
    return out.copy_(result)
