"""Schemas of the example's config groups (``data``, ``model``, ``task``, ``optimizer``, ``train``).

Stored in Hydra's ConfigStore; the YAML files in ``conf/<group>/`` list their
schema first in their defaults and set values only, so a wrong type or an
unknown key fails when Hydra composes the config. Groups that build an object
name it with ``_target_`` (switching the data or the model needs no loop
edit). ``train`` extends the kit's :class:`repro.RunConfig` (epochs,
max_steps, checkpoints, resume, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from repro import RunConfig

#: Upper bounds for sizes: far above anything the example needs, low enough to fail fast.
MAX_ITEMS = 10_000_000
MAX_WIDTH = 65_536


@dataclass
class ShapesDataConfig:
    _target_: str = "experiment.data.ShapesData"
    #: Training / validation images, generated from the seed (no download).
    train_size: int = 2048
    val_size: int = 512
    #: Side of the square canvas, in pixels.
    image_size: int = 32
    #: Number of shape classes (at most 4: circle, square, triangle, cross).
    num_classes: int = 4
    #: Std of the background noise baked into each canvas.
    noise: float = 0.1
    #: Std of the extra noise added by augmentation.
    augment_noise: float = 0.1
    #: Largest random shift (pixels) applied by augmentation.
    max_shift: int = 2


@dataclass
class TabularDataConfig:
    _target_: str = "experiment.data.TabularData"
    #: Training / validation rows, generated from the seed (no download).
    train_size: int = 2048
    val_size: int = 512
    #: Input columns.
    features: int = 8
    #: Std of the noise added to the target.
    noise: float = 0.1


@dataclass
class CNNConfig:
    _target_: str = "experiment.model.SmallCNN"
    num_classes: int = 4
    #: Channels of the two convolution blocks.
    channels1: int = 16
    channels2: int = 32
    #: Dropout before the classifier (drawn from the training RNG).
    dropout: float = 0.1


@dataclass
class MLPConfig:
    _target_: str = "experiment.model.MLP"
    in_features: int = 8
    hidden: int = 64
    depth: int = 2
    dropout: float = 0.0


@dataclass
class TaskConfig:
    #: experiment.tasks.Classification or experiment.tasks.Regression.
    _target_: str = "experiment.tasks.Classification"


@dataclass
class AdamWConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    #: Peak learning rate; a cosine schedule takes it to zero over the run.
    lr: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.01


@dataclass
class TrainConfig(RunConfig):
    #: Samples per batch (the global batch under torchrun); an optimizer step takes
    #: ``accumulate_grad_batches`` batches.
    batch_size: int = 64


def check_config(cfg: Any) -> None:
    """Ranges a type cannot express, checked before any run directory exists (no torch here)."""
    from omegaconf import OmegaConf

    from repro import ConfigValueError

    def get(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None)

    def finite(x: Any) -> bool:
        return isinstance(x, int | float) and math.isfinite(x)

    sizes = [k for k in ("data.train_size", "data.val_size") if get(k) is not None]
    ranges = [
        (k, isinstance(get(k), int) and 1 <= get(k) <= MAX_ITEMS, f"an int in [1, {MAX_ITEMS}]")
        for k in sizes
    ]
    for key in ("data.noise", "data.augment_noise"):
        if get(key) is not None:
            ranges.append((key, finite(get(key)) and get(key) >= 0, "a finite float >= 0"))
    if get("data.image_size") is not None:
        ranges.append(
            ("data.image_size", 4 <= get("data.image_size") <= 1024, "an int in [4, 1024]")
        )
    if get("data.num_classes") is not None:
        ranges.append(("data.num_classes", 1 <= get("data.num_classes") <= 4, "an int in [1, 4]"))
    if get("data.max_shift") is not None:
        ranges.append(("data.max_shift", 0 <= get("data.max_shift") <= 64, "an int in [0, 64]"))
    if get("data.features") is not None:
        ranges.append(
            ("data.features", 1 <= get("data.features") <= MAX_WIDTH, f"an int in [1, {MAX_WIDTH}]")
        )
    for key in (
        "model.channels1",
        "model.channels2",
        "model.hidden",
        "model.in_features",
        "model.num_classes",
    ):
        if get(key) is not None:
            ranges.append((key, 1 <= get(key) <= MAX_WIDTH, f"an int in [1, {MAX_WIDTH}]"))
    if get("model.depth") is not None:
        ranges.append(("model.depth", 0 <= get("model.depth") <= 64, "an int in [0, 64]"))
    if get("model.dropout") is not None:
        ranges.append(
            (
                "model.dropout",
                finite(get("model.dropout")) and 0 <= get("model.dropout") < 1,
                "a float in [0, 1)",
            )
        )
    ranges += [
        (
            "optimizer.lr",
            finite(get("optimizer.lr")) and get("optimizer.lr") > 0,
            "a finite float > 0",
        ),
        (
            "optimizer.weight_decay",
            finite(get("optimizer.weight_decay")) and get("optimizer.weight_decay") >= 0,
            "a finite float >= 0",
        ),
        (
            "optimizer.betas",
            len(get("optimizer.betas") or []) == 2
            and all(finite(b) and 0 <= b < 1 for b in get("optimizer.betas")),
            "two floats in [0, 1)",
        ),
        (
            "train.batch_size",
            1 <= get("train.batch_size") <= MAX_ITEMS,
            f"an int in [1, {MAX_ITEMS}]",
        ),
    ]
    if get("data.train_size") is not None:
        ranges.append(
            (
                "train.batch_size",
                get("train.batch_size") <= get("data.train_size"),
                f"at most data.train_size={get('data.train_size')}",
            )
        )
    for key, ok, allowed in ranges:
        if not ok:
            raise ConfigValueError(key, get(key), allowed)


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore. Idempotent."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, name, node in [
        ("data", "shapes_schema", ShapesDataConfig),
        ("data", "tabular_schema", TabularDataConfig),
        ("model", "cnn_schema", CNNConfig),
        ("model", "mlp_schema", MLPConfig),
        ("task", "schema", TaskConfig),
        ("optimizer", "adamw_schema", AdamWConfig),
        ("train", "schema", TrainConfig),
    ]:
        cs.store(group=group, name=name, node=node)
