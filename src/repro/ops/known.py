"""The PyTorch ops that are nondeterministic on CUDA (torch 2.13), and what replaces them.

One row per op family: the kernel name PyTorch puts in its strict-mode error
(``"<name> does not have a deterministic implementation"``), the ATen ops that
reveal the same call when traced on any device, and the ``repro.ops``
replacement. :func:`repro.ops.audit` reads this table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

Args = dict[str, object]


@dataclass(frozen=True)
class Known:
    api: str  # what the user calls
    replacement: str | None  # what to call instead (None: nothing in repro.ops)
    kernel: str  # regex for the kernel name in torch's strict-mode message
    aten: tuple[str, ...] = ()  # ATen op names (overload packets) seen when traced
    when: Callable[[str, Args], bool] | None = None  # condition on (overload, arguments)
    strict_ok: bool = False  # CUDA switches to a deterministic kernel under strict mode

    def matches_kernel(self, name: str) -> bool:
        return re.search(self.kernel, name) is not None


def _is_float(a: Args, key: str = "self") -> bool:
    t = a.get(key)
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def _float_result(_: str, a: Args) -> bool:
    dtype = a.get("dtype")
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point or dtype.is_complex
    return _is_float(a)


KNOWN: tuple[Known, ...] = (
    Known(
        "F.adaptive_avg_pool2d / nn.AdaptiveAvgPool2d (backward)",
        "repro.ops.adaptive_avg_pool2d / repro.ops.AdaptiveAvgPool2d",
        r"adaptive_avg_pool2d_backward",
        ("_adaptive_avg_pool2d_backward",),
    ),
    Known(
        "F.adaptive_avg_pool3d / nn.AdaptiveAvgPool3d (backward)",
        "repro.ops.adaptive_avg_pool3d / repro.ops.AdaptiveAvgPool3d",
        r"adaptive_avg_pool3d_backward",
        ("_adaptive_avg_pool3d_backward",),
    ),
    Known(
        "F.adaptive_max_pool2d / nn.AdaptiveMaxPool2d (backward)",
        "repro.ops.adaptive_max_pool2d / repro.ops.AdaptiveMaxPool2d",
        r"adaptive_max_pool2d_backward",
        ("adaptive_max_pool2d_backward",),
    ),
    Known(
        "F.avg_pool3d / nn.AvgPool3d (backward)",
        "repro.ops.avg_pool3d / repro.ops.AvgPool3d",
        r"(?<!adaptive_)avg_pool3d_backward",
        ("avg_pool3d_backward",),
    ),
    Known(
        "F.interpolate(mode='linear') / nn.Upsample (backward)",
        "repro.ops.interpolate / repro.ops.Upsample",
        r"upsample_linear1d_backward",
        ("upsample_linear1d_backward",),
    ),
    Known(
        "F.interpolate(mode='bilinear') / nn.Upsample (backward)",
        "repro.ops.interpolate / repro.ops.Upsample",
        r"upsample_bilinear2d_backward",
        ("upsample_bilinear2d_backward",),
        strict_ok=True,
    ),
    Known(
        "F.interpolate(mode='bicubic') / nn.Upsample (backward)",
        "repro.ops.interpolate / repro.ops.Upsample",
        r"upsample_bicubic2d_backward",
        ("upsample_bicubic2d_backward",),
    ),
    Known(
        "F.interpolate(mode='trilinear') / nn.Upsample (backward)",
        "repro.ops.interpolate / repro.ops.Upsample",
        r"upsample_trilinear3d_backward",
        ("upsample_trilinear3d_backward",),
        strict_ok=True,
    ),
    Known(
        "F.interpolate(antialias=True) (backward)",
        None,
        r"_aa_backward",
        ("_upsample_bilinear2d_aa_backward", "_upsample_bicubic2d_aa_backward"),
    ),
    Known(
        "F.pad(mode='reflect') / nn.ReflectionPad1d/2d/3d (backward)",
        "repro.ops.pad / repro.ops.ReflectionPad1d/2d/3d",
        r"reflection_pad[123]d_backward",
        ("reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward"),
    ),
    Known(
        "F.pad(mode='replicate') / nn.ReplicationPad1d/2d/3d (backward)",
        "repro.ops.pad / repro.ops.ReplicationPad1d/2d/3d",
        r"replication_pad[123]d_backward",
        ("replication_pad1d_backward", "replication_pad2d_backward", "replication_pad3d_backward"),
        strict_ok=True,
    ),
    Known(
        "F.nll_loss / F.cross_entropy with spatial targets, reduction 'mean'/'sum'",
        "repro.ops.nll_loss / repro.ops.cross_entropy (or NLLLoss / CrossEntropyLoss)",
        r"nll_loss2d_forward",
        ("nll_loss2d_forward",),
        when=lambda _, a: a.get("reduction", 1) != 0,
    ),
    Known(
        "torch.histc (floating point)",
        "repro.ops.histc",
        r"histc",
        ("histc",),
        when=lambda _, a: _is_float(a),
    ),
    Known(
        "torch.bincount with weights",
        "repro.ops.bincount",
        r"bincount",
        ("bincount",),
        when=lambda _, a: a.get("weights") is not None,
    ),
    Known(
        "torch.cumsum / Tensor.cumsum (floating point)",
        "repro.ops.cumsum",
        r"cumsum",
        ("cumsum", "cumsum_"),
        when=_float_result,
    ),
    Known(
        "torch.median(x, dim) with indices",
        "repro.ops.median",
        r"median CUDA with indices",
        ("median",),
        when=lambda overload, _: overload.startswith("dim"),
    ),
    Known(
        "torch.nanmedian(x, dim) with indices",
        None,
        r"nanmedian",
        ("nanmedian",),
        when=lambda overload, _: overload.startswith("dim"),
    ),
    Known("torch.kthvalue", "repro.ops.kthvalue", r"kthvalue", ("kthvalue",)),
    Known(
        "F.grid_sample (backward)",
        "repro.ops.grid_sample",
        r"grid_sampler_[23]d_backward",
        ("grid_sampler_2d_backward", "grid_sampler_3d_backward"),
    ),
    Known(
        "F.embedding_bag / nn.EmbeddingBag, mode='max' (backward)",
        "repro.ops.embedding_bag / repro.ops.EmbeddingBag",
        r"embedding_bag_backward_cuda_max",
        ("_embedding_bag_backward", "_embedding_bag_dense_backward"),
        when=lambda _, a: a.get("mode") == 2,
    ),
    Known(
        "Tensor.scatter_reduce(reduce='prod')",
        "repro.ops.scatter_reduce",
        r"scatter_reduce",
        ("scatter_reduce", "scatter_reduce_"),
        when=lambda _, a: a.get("reduce") == "prod",
    ),
    Known(
        "Tensor.scatter_reduce(reduce='sum'/'mean')",
        "repro.ops.scatter_reduce",
        r"scatter_reduce_sum_mean",
        ("scatter_reduce", "scatter_reduce_"),
        when=lambda _, a: a.get("reduce") in ("sum", "mean"),
        strict_ok=True,
    ),
    Known(
        "nn.FractionalMaxPool2d/3d (backward)",
        None,
        r"fractional_max_pool[23]d_backward",
        ("fractional_max_pool2d_backward", "fractional_max_pool3d_backward"),
    ),
    Known("nn.MaxUnpool1d/2d/3d", None, r"max_unpool", ("max_unpool2d", "max_unpool3d")),
    Known("nn.CTCLoss (backward)", None, r"ctc_loss_backward", ("_ctc_loss_backward",)),
    Known("Tensor.put_", None, r"put_", ("put_", "put")),
    Known(
        "torch.index_select / embedding (backward)",
        "repro.ops.index_select",
        r"index_select_backward",
        ("index_select_backward",),
        strict_ok=True,
    ),
    Known(
        "Tensor.index_add_ / index_copy_ / scatter_add_ / scatter_ / gather (backward)",
        None,
        r"index_add|index_copy|scatter_add",
        ("index_add", "index_add_", "index_copy", "index_copy_", "scatter_add", "scatter_add_"),
        strict_ok=True,
    ),
    Known(
        "Tensor.index_put_(accumulate=True) / x[idx] += (backward of advanced indexing)",
        None,
        r"index_put",
        ("index_put", "index_put_", "_index_put_impl_"),
        when=lambda _, a: bool(a.get("accumulate")),
        strict_ok=True,
    ),
    Known(
        "nn.MaxPool3d (backward)",
        None,
        r"max_pool3d_with_indices_backward",
        ("max_pool3d_with_indices_backward",),
        strict_ok=True,
    ),
)

CUBLAS = Known(
    "matmul / Linear / conv via cuBLAS without a workspace pin",
    "set CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA starts (repro.setup_reproducibility does it)",
    r"CUBLAS_WORKSPACE_CONFIG",
)

_BY_ATEN: dict[str, list[Known]] = {}
for _k in KNOWN:
    for _name in _k.aten:
        _BY_ATEN.setdefault(_name, []).append(_k)


def for_kernel(name: str) -> Known | None:
    """The row whose kernel pattern matches a name from torch's strict-mode message."""
    if CUBLAS.matches_kernel(name):
        return CUBLAS
    return next((k for k in KNOWN if k.matches_kernel(name)), None)


def for_aten(packet: str, overload: str, args: Args) -> Known | None:
    """The row for a traced ATen call, if it is nondeterministic on CUDA with these arguments."""
    for k in _BY_ATEN.get(packet, ()):
        if k.when is None or k.when(overload, args):
            return k
    return None
