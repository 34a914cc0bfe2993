"""``patch()``: route the torch functions that have a replacement to ``repro.ops`` while active.

Opt-in and process-wide: while enabled, ``torch.nn.functional.interpolate``,
``torch.cumsum``, ``Tensor.cumsum`` and the others listed in :data:`TARGETS`
are the ``repro.ops`` functions, so library code and stock layers
(``nn.Upsample``, ``nn.AdaptiveAvgPool2d``, ``nn.CrossEntropyLoss`` ...) use
them too. Exiting restores the exact original objects, also after an
exception. Not covered: references taken before enabling
(``from torch.nn.functional import interpolate``), TorchScript, and C++ code.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from repro.ops import (
    counting,
    embedding,
    indexing,
    losses,
    padding,
    pooling,
    sampling,
    scan,
    selection,
    upsample,
)

_F_NAMES = {
    "adaptive_avg_pool1d": pooling.adaptive_avg_pool1d,
    "adaptive_avg_pool2d": pooling.adaptive_avg_pool2d,
    "adaptive_avg_pool3d": pooling.adaptive_avg_pool3d,
    "adaptive_max_pool1d": pooling.adaptive_max_pool1d,
    "adaptive_max_pool2d": pooling.adaptive_max_pool2d,
    "avg_pool3d": pooling.avg_pool3d,
    "interpolate": upsample.interpolate,
    "pad": padding.pad,
    "nll_loss": losses.nll_loss,
    "cross_entropy": losses.cross_entropy,
    "grid_sample": sampling.grid_sample,
    "embedding_bag": embedding.embedding_bag,
}


def _with_indices(fn):
    def call(input, output_size, return_indices: bool = False):
        return fn(input, output_size, True)

    call.__name__ = fn.__name__ + "_with_indices"
    call.__doc__ = fn.__doc__
    return call


_F_NAMES["adaptive_max_pool1d_with_indices"] = _with_indices(pooling.adaptive_max_pool1d)
_F_NAMES["adaptive_max_pool2d_with_indices"] = _with_indices(pooling.adaptive_max_pool2d)

_TORCH_NAMES = {
    "adaptive_avg_pool1d": pooling.adaptive_avg_pool1d,
    "adaptive_max_pool1d": lambda input, output_size: pooling.adaptive_max_pool1d(
        input, output_size, True
    ),
    "bincount": counting.bincount,
    "cumsum": scan.cumsum,
    "histc": counting.histc,
    "index_select": indexing.index_select,
    "kthvalue": selection.kthvalue,
    "median": selection.median,
    "scatter_reduce": indexing.scatter_reduce,
}
# Tensor methods: the same functions as torch.*, minus the pooling ones (no Tensor method of that name).
_TENSOR_NAMES = {name: fn for name, fn in _TORCH_NAMES.items() if not name.startswith("adaptive_")}

#: (owner, attribute, replacement) for every name the patch swaps.
TARGETS: list[tuple[object, str, object]] = (
    [(F, n, f) for n, f in _F_NAMES.items()]
    + [(torch, n, f) for n, f in _TORCH_NAMES.items()]
    + [(torch.Tensor, n, f) for n, f in _TENSOR_NAMES.items()]
)

_MISSING = object()
_lock = threading.Lock()
_saved: list[tuple[object, str, object]] = []


def is_enabled() -> bool:
    """True while the patch is active."""
    return bool(_saved)


def enable() -> None:
    """Route the torch functions in :data:`TARGETS` to ``repro.ops``. Idempotent."""
    with _lock:
        if _saved:
            return
        for owner, name, replacement in TARGETS:
            _saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
            setattr(owner, name, replacement)


def disable() -> None:
    """Restore the original torch functions. Idempotent."""
    with _lock:
        while _saved:
            owner, name, original = _saved.pop()
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


@contextlib.contextmanager
def patch() -> Iterator[None]:
    """Context manager: :func:`enable` on entry, :func:`disable` on exit (also on error).

    Nesting is safe: only the outermost ``patch()`` that enabled it disables it.
    Process-wide, so avoid it while other threads run unrelated torch code.
    """
    owner = not is_enabled()
    if owner:
        enable()
    try:
        yield
    finally:
        if owner:
            disable()
