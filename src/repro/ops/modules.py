"""``nn.Module`` counterparts of the replacements.

Each class subclasses the torch module it replaces (same constructor, same
attributes and state dict, ``isinstance`` checks still pass) and only
overrides ``forward`` to call the ``repro.ops`` function.
:func:`repro.ops.make_deterministic` swaps them in by changing an instance's
class, so parameters, buffers and hooks stay as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.ops.embedding import embedding_bag
from repro.ops.losses import cross_entropy, nll_loss
from repro.ops.padding import pad
from repro.ops.pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool3d,
)
from repro.ops.upsample import interpolate


class AdaptiveAvgPool1d(nn.AdaptiveAvgPool1d):
    """``nn.AdaptiveAvgPool1d`` running :func:`repro.ops.adaptive_avg_pool1d`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` running :func:`repro.ops.adaptive_avg_pool2d`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(input, self.output_size)


class AdaptiveAvgPool3d(nn.AdaptiveAvgPool3d):
    """``nn.AdaptiveAvgPool3d`` running :func:`repro.ops.adaptive_avg_pool3d`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool3d(input, self.output_size)


class AdaptiveMaxPool1d(nn.AdaptiveMaxPool1d):
    """``nn.AdaptiveMaxPool1d`` running :func:`repro.ops.adaptive_max_pool1d`."""

    def forward(self, input: torch.Tensor):
        return adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(nn.AdaptiveMaxPool2d):
    """``nn.AdaptiveMaxPool2d`` running :func:`repro.ops.adaptive_max_pool2d`."""

    def forward(self, input: torch.Tensor):
        return adaptive_max_pool2d(input, self.output_size, self.return_indices)


class AvgPool3d(nn.AvgPool3d):
    """``nn.AvgPool3d`` running :func:`repro.ops.avg_pool3d`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return avg_pool3d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class Upsample(nn.Upsample):
    """``nn.Upsample`` running :func:`repro.ops.interpolate`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return interpolate(
            input,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            recompute_scale_factor=self.recompute_scale_factor,
        )


class UpsamplingBilinear2d(nn.UpsamplingBilinear2d, Upsample):
    """``nn.UpsamplingBilinear2d`` (align_corners=True) running :func:`repro.ops.interpolate`."""

    forward = Upsample.forward


class ReflectionPad1d(nn.ReflectionPad1d):
    """``nn.ReflectionPad1d`` running :func:`repro.ops.pad` (mode "reflect")."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return pad(input, self.padding, "reflect")


class ReflectionPad2d(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` running :func:`repro.ops.pad` (mode "reflect")."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return pad(input, self.padding, "reflect")


class ReflectionPad3d(nn.ReflectionPad3d):
    """``nn.ReflectionPad3d`` running :func:`repro.ops.pad` (mode "reflect")."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return pad(input, self.padding, "reflect")


class ReplicationPad1d(nn.ReplicationPad1d):
    """``nn.ReplicationPad1d`` running :func:`repro.ops.pad` (mode "replicate")."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return pad(input, self.padding, "replicate")


class ReplicationPad2d(nn.ReplicationPad2d):
    """``nn.ReplicationPad2d`` running :func:`repro.ops.pad` (mode "replicate")."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return pad(input, self.padding, "replicate")


class ReplicationPad3d(nn.ReplicationPad3d):
    """``nn.ReplicationPad3d`` running :func:`repro.ops.pad` (mode "replicate")."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return pad(input, self.padding, "replicate")


class NLLLoss(nn.NLLLoss):
    """``nn.NLLLoss`` running :func:`repro.ops.nll_loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll_loss(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` running :func:`repro.ops.cross_entropy`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class EmbeddingBag(nn.EmbeddingBag):
    """``nn.EmbeddingBag`` running :func:`repro.ops.embedding_bag` (deterministic for mode "max")."""

    def forward(
        self,
        input: torch.Tensor,
        offsets: torch.Tensor | None = None,
        per_sample_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return embedding_bag(
            input,
            self.weight,
            offsets,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.mode,
            self.sparse,
            per_sample_weights,
            self.include_last_offset,
            self.padding_idx,
        )


#: Stock module class -> deterministic counterpart (used by make_deterministic).
REPLACEMENTS: dict[type[nn.Module], type[nn.Module]] = {
    nn.AdaptiveAvgPool1d: AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d: AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d: AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d: AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d: AdaptiveMaxPool2d,
    nn.AvgPool3d: AvgPool3d,
    nn.Upsample: Upsample,
    nn.UpsamplingBilinear2d: UpsamplingBilinear2d,
    nn.ReflectionPad1d: ReflectionPad1d,
    nn.ReflectionPad2d: ReflectionPad2d,
    nn.ReflectionPad3d: ReflectionPad3d,
    nn.ReplicationPad1d: ReplicationPad1d,
    nn.ReplicationPad2d: ReplicationPad2d,
    nn.ReplicationPad3d: ReplicationPad3d,
    nn.NLLLoss: NLLLoss,
    nn.CrossEntropyLoss: CrossEntropyLoss,
    nn.EmbeddingBag: EmbeddingBag,
}
