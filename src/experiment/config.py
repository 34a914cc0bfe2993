"""Schemas of the experiment's config groups (``data``, ``model``, ``train``).

Stored in Hydra's ConfigStore as ``<group>/schema``; the YAML files in
``conf/<group>/`` list it first in their defaults and set values only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass
class DataConfig:
    #: Training images, generated from the seed (no download).
    train_size: int = 2048
    #: Validation images, generated from the seed, never augmented.
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
class ModelConfig:
    #: Channels of the two convolution blocks.
    channels1: int = 16
    channels2: int = 32
    #: Dropout before the classifier (drawn from the training RNG).
    dropout: float = 0.1


@dataclass
class TrainConfig:
    #: Passes over the training set.
    epochs: int = 8
    #: Stop after this many optimizer steps (null: run all epochs).
    max_steps: int | None = None
    batch_size: int = 64
    #: AdamW settings; the learning rate follows a cosine schedule to zero.
    lr: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.01
    #: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.
    device: str = "auto"
    #: Log the running loss every this many steps.
    log_every: int = 10
    #: Write a checkpoint every this many optimizer steps (null: only at the end of each epoch).
    checkpoint_every: int | None = 50
    #: Keep the newest this many checkpoints.
    keep_checkpoints: int = 3
    #: Continue a run: its directory, or ``auto`` (resume hydra.run.dir if it holds a checkpoint, else start).
    resume: str | None = None
    #: Test-only hook: SIGKILL this process right after optimizer step N is recorded (to test resume).
    kill_at_step: int | None = None
    #: Test-only hook: after the update of step ``perturb_step``, add noise drawn from OS entropy (not
    #: from the seed) to the parameter named ``perturb_param``: a stand-in for a nondeterministic kernel,
    #: so that ``repro verify`` and ``repro diff`` have a divergence to find.
    perturb_step: int | None = None
    perturb_param: str | None = None
    perturb_scale: float = 1e-3


#: Keys that may differ when a run is resumed: they change speed or bookkeeping, never the bits.
RESUME_SAFE_KEYS = (
    "repro.num_workers",
    "repro.persistent_workers",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.resume",
    "train.kill_at_step",
)


def check_config(cfg: Any) -> None:
    """Check values a type cannot express; runs before any run directory exists (no torch here)."""
    from repro import ConfigValueError

    d, t = cfg.data, cfg.train
    positive = {
        "data.train_size": d.train_size,
        "data.val_size": d.val_size,
        "data.image_size": d.image_size,
        "train.epochs": t.epochs,
        "train.batch_size": t.batch_size,
        "train.log_every": t.log_every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigValueError(key, value, "an int >= 1")
    if not 1 <= d.num_classes <= 4:
        raise ConfigValueError(
            "data.num_classes", d.num_classes, "an int in [1, 4] (circle, square, triangle, cross)"
        )
    if t.checkpoint_every is not None and t.checkpoint_every < 1:
        raise ConfigValueError("train.checkpoint_every", t.checkpoint_every, "an int >= 1 or null")
    if t.keep_checkpoints < 1:
        raise ConfigValueError("train.keep_checkpoints", t.keep_checkpoints, "an int >= 1")
    if t.max_steps is not None and t.max_steps < 1:
        raise ConfigValueError("train.max_steps", t.max_steps, "an int >= 1 or null")
    if d.train_size < t.batch_size:
        raise ConfigValueError(
            "train.batch_size", t.batch_size, f"at most data.train_size={d.train_size}"
        )
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device):
        raise ConfigValueError("train.device", t.device, "auto, cpu, cuda or cuda:N")


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore. Idempotent."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="data", name="schema", node=DataConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="train", name="schema", node=TrainConfig)
