"""Schemas of the experiment's config groups (``data``, ``model``, ``train``).

Stored in Hydra's ConfigStore as ``<group>/schema``; the YAML files in
``conf/<group>/`` list it first in their defaults and set values only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


#: One-shot test hooks: written as null in config.yaml (a replay must not repeat them) and reset to
#: null on resume unless given again.
ONE_SHOT_KEYS = ("train.kill_at_step",)

#: Keys that may differ when a run is resumed: they change speed or bookkeeping, never the bits.
RESUME_SAFE_KEYS = (
    "repro.num_workers",
    "repro.persistent_workers",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.resume",
    "train.kill_at_step",
)


@dataclass
class ExperimentConfig:
    """The whole config's schema: a replayed ``config.yaml`` is checked against it too."""

    repro: Any = None  # checked by the kit (repro.ReproConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def check_config(cfg: Any) -> None:
    """Check types and ranges before any run directory exists (no torch here)."""
    from omegaconf import OmegaConf

    from repro import ConfigValueError

    plain = OmegaConf.masked_copy(cfg, [k for k in ("data", "model", "train") if k in cfg])
    try:  # a config.yaml replayed with --config-path has no schema of its own: apply ours
        typed = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), plain)
    except Exception as exc:
        key = str(getattr(exc, "full_key", "") or "config")
        why = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigValueError(key, OmegaConf.select(plain, key, default=None), f"a valid value ({why})") from None
    d, m, t = typed.data, typed.model, typed.train
    ranges = [
        ("data.train_size", d.train_size >= 1, "an int >= 1"), ("data.val_size", d.val_size >= 1, "an int >= 1"),
        ("data.image_size", d.image_size >= 4, "an int >= 4 (two 2x2 poolings)"),
        ("data.num_classes", 1 <= d.num_classes <= 4, "an int in [1, 4] (circle, square, triangle, cross)"),
        ("data.noise", d.noise >= 0, "a float >= 0"), ("data.augment_noise", d.augment_noise >= 0, "a float >= 0"),
        ("data.max_shift", d.max_shift >= 0, "an int >= 0"),
        ("model.channels1", m.channels1 >= 1, "an int >= 1"), ("model.channels2", m.channels2 >= 1, "an int >= 1"),
        ("model.dropout", 0 <= m.dropout < 1, "a float in [0, 1)"),
        ("train.epochs", t.epochs >= 1, "an int >= 1"), ("train.batch_size", t.batch_size >= 1, "an int >= 1"),
        ("train.max_steps", t.max_steps is None or t.max_steps >= 1, "an int >= 1 or null"),
        ("train.lr", t.lr > 0, "a float > 0"), ("train.beta1", 0 <= t.beta1 < 1, "a float in [0, 1)"),
        ("train.beta2", 0 <= t.beta2 < 1, "a float in [0, 1)"),
        ("train.weight_decay", t.weight_decay >= 0, "a float >= 0"),
        ("train.log_every", t.log_every >= 1, "an int >= 1"),
        ("train.checkpoint_every", t.checkpoint_every is None or t.checkpoint_every >= 1, "an int >= 1 or null"),
        ("train.keep_checkpoints", t.keep_checkpoints >= 1, "an int >= 1"),
        ("train.batch_size", t.batch_size <= d.train_size, f"at most data.train_size={d.train_size}"),
        ("train.device", re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device) is not None, "auto, cpu, cuda or cuda:N"),
        ("train.perturb_scale", t.perturb_scale >= 0, "a float >= 0"),
    ]
    for key, ok, allowed in ranges:
        if not ok:
            raise ConfigValueError(key, OmegaConf.select(typed, key), allowed)


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore. Idempotent."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="data", name="schema", node=DataConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="train", name="schema", node=TrainConfig)
