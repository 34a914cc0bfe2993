"""The example's models: a small CNN for the shapes, an MLP for the table, a small GPT for text (built from
``model`` by ``_target_``).

A model is a class and a YAML file in ``conf/model/`` naming it with ``_target_``. The entry point checks
the YAML's values against ``__init__``'s annotations before anything is written: the types, and the
ranges declared with ``Annotated[..., Range(...)]`` (``model.hidden=0`` is refused with one line).

A size that comes from the data (a vocabulary) is not in the YAML: the YAML says ``_partial_: true`` and
:func:`build_model` completes the call with the data's ``model_kwargs()``. The loop, ``repro.load_run``
(through ``[tool.repro] build`` in pyproject.toml) and the sampler all build the model that way.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

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


class Block(nn.Module):
    """Pre-norm Transformer block: causal self-attention, then a GELU MLP; dropout on both branches' outputs
    (not on the attention weights: that would take SDPA off its fused CPU kernel onto the slow math path)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, -1).unbind(2)
        att = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            is_causal=True,
        )
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(batch, length, width)))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    """A decoder-only Transformer: token and position embeddings, ``depth`` causal blocks, and an
    output layer that shares the token embedding's weights. Input (N, T) token ids, output (N, T, V)
    logits. ``vocab_size`` comes from the data (see :func:`build_model`)."""

    def __init__(
        self,
        vocab_size: Width,
        context: Width,
        width: Width = 64,
        depth: Annotated[int, Range(1, 64)] = 2,
        heads: Annotated[int, Range(1, 64)] = 4,
        dropout: DropoutP = 0.1,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"model.width={width} must be a multiple of model.heads={heads}")
        self.context = context
        self.tokens, self.positions = nn.Embedding(vocab_size, width), nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        # weight tying: one matrix for reading and writing tokens
        self.head.weight = self.tokens.weight
        # small initial weights (GPT-2's): tied embeddings of norm ~1 would start with huge logits
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def fsdp_units(self) -> list[nn.Module]:
        """Under ``train.strategy=fsdp``: one unit per block (each gathers its weights only for its own
        forward and backward); the embeddings, the tied head and the last norm stay with the root."""
        return list(self.blocks)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tokens(idx) + self.positions(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_model(cfg: Any, data: Any) -> nn.Module:
    """The ``model`` node instantiated; a ``_partial_`` one completed with ``data.model_kwargs()``."""
    from hydra.utils import instantiate

    made = instantiate(cfg.model)
    if isinstance(made, functools.partial):
        return made(**data.model_kwargs())
    return made


def check_own_targets(cfg: Any, *nodes: str) -> None:
    """Refuse (one line naming the key) a run's config whose ``nodes`` hold a ``_target_``, nested ones
    included, that does not resolve to this package's own code: the config comes from a run
    directory, which is data, and ``instantiate`` would follow it."""
    from omegaconf import OmegaConf

    from repro import ConfigValueError, check_targets

    package = __name__.rpartition(".")[0]
    for node in nodes:
        value = OmegaConf.select(cfg, node, default=None)
        plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if not isinstance(plain, dict) or "_target_" not in plain:
            raise ConfigValueError(f"{node}._target_", None, f"a target of the {package} package")
        check_targets(plain, f"{node}.", (f"{package}.",), f"a target of the {package} package")


def build(cfg: Any) -> nn.Module:
    """``[tool.repro] build``: a run's model from its config alone (its data's settings, not its data).

    The kit checked the model node's targets; the data node's are checked here before it is
    instantiated."""
    from hydra.utils import instantiate

    check_own_targets(cfg, "data")
    return build_model(cfg, instantiate(cfg.data))
