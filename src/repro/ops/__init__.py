"""repro.ops: deterministic replacements for the PyTorch ops that refuse strict mode.

Each function has the name and the arguments of the torch function it
replaces and is deterministic by construction, in forward and backward, on
every device: it is built only from ops that have a single, atomics-free CUDA
algorithm (gathers, sorts with stable ties, elementwise math, fixed-shape
reductions), so it gives the same bits run after run with or without
``torch.use_deterministic_algorithms``. Results equal the stock op's up to
float rounding order; each docstring states the algorithm, its cost, where it
differs and the agreement measured on PyTorch's own OpInfo samples (the table
is docs/ops.md; ``tests/ops/test_ops_opinfo.py`` checks it). Invalid
arguments raise the stock op's exception type.

- Functions: ``repro.ops.interpolate(x, scale_factor=2, mode="bilinear")`` ...
- Modules: ``repro.ops.make_deterministic(model)`` swaps layers in place.
- Calls you do not control: ``with repro.ops.patch(): ...`` routes the torch
  functions to these while active.
- Finding what needs replacing: ``print(repro.ops.audit(model, batch))``.
"""

from __future__ import annotations

from repro.ops.auditing import AuditReport, audit
from repro.ops.counting import bincount, histc
from repro.ops.embedding import embedding_bag
from repro.ops.indexing import index_select, scatter_reduce
from repro.ops.losses import cross_entropy, nll_loss
from repro.ops.modules import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool3d,
    CrossEntropyLoss,
    EmbeddingBag,
    NLLLoss,
    ReflectionPad1d,
    ReflectionPad2d,
    ReflectionPad3d,
    ReplicationPad1d,
    ReplicationPad2d,
    ReplicationPad3d,
    Upsample,
    UpsamplingBilinear2d,
)
from repro.ops.padding import pad
from repro.ops.patching import disable, enable, is_enabled, patch
from repro.ops.pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool3d,
)
from repro.ops.sampling import grid_sample
from repro.ops.scan import cumsum
from repro.ops.selection import kthvalue, median
from repro.ops.swap import SwapReport, make_deterministic
from repro.ops.upsample import interpolate

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AuditReport",
    "AvgPool3d",
    "CrossEntropyLoss",
    "EmbeddingBag",
    "NLLLoss",
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReflectionPad3d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ReplicationPad3d",
    "SwapReport",
    "Upsample",
    "UpsamplingBilinear2d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "audit",
    "avg_pool3d",
    "bincount",
    "cross_entropy",
    "cumsum",
    "disable",
    "embedding_bag",
    "enable",
    "grid_sample",
    "histc",
    "index_select",
    "interpolate",
    "is_enabled",
    "kthvalue",
    "make_deterministic",
    "median",
    "nll_loss",
    "pad",
    "patch",
    "scatter_reduce",
]
