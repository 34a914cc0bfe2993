"""The example's models: a small CNN for the shapes, an MLP for the table (built from ``model`` by ``_target_``).

A model is a class and a YAML file in ``conf/model/`` naming it with ``_target_``. The entry point checks
the YAML's values against ``__init__``'s annotations before anything is written: the types, and the
ranges declared with ``Annotated[..., Range(...)]`` (``model.hidden=0`` is refused with one line).
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from repro import Range

#: A layer's width: far above anything the example needs, low enough to fail fast.
Width = Annotated[int, Range(1, 65_536)]
#: The probability of zeroing an activation.
DropoutP = Annotated[float, Range(0, lt=1)]


class SmallCNN(nn.Module):
    """Two conv blocks, global average pooling, dropout, a linear classifier."""

    def __init__(
        self,
        num_classes: Width,
        channels1: Width = 16,
        channels2: Width = 32,
        dropout: DropoutP = 0.1,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels1, channels2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        # Output size 1: on CUDA this is a mean, whose backward is deterministic.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


class MLP(nn.Module):
    """``depth`` hidden layers of ``hidden`` units (GELU, dropout), one output per sample."""

    def __init__(
        self,
        in_features: Width,
        hidden: Width = 64,
        depth: Annotated[int, Range(0, 64)] = 2,
        dropout: DropoutP = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)
