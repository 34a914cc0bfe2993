"""The training loop of the example experiment, top to bottom.

setup_reproducibility -> run record -> data -> model -> epochs of
(train steps, evaluation) -> final weights. Everything random comes from the
``repro`` object: named streams for data and model, its DataLoader factory
for batches and augmentation, the seeded global RNG for dropout.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiment.data import ShapesDataset, draw_shapes
from experiment.model import SmallCNN
from repro import (
    ConfigValueError,
    RunRecord,
    atomic_write,
    float_bits,
    setup_reproducibility,
    sha256_file,
    tensors_digest,
)

log = logging.getLogger(__name__)
WEIGHTS_FILE = "weights.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigValueError(
            "train.device",
            name,
            f"auto, cpu, or a CUDA device of the {torch.cuda.device_count()} present",
        )
    return device


def train(cfg: DictConfig) -> dict[str, Any]:
    resolve_device(cfg.train.device)  # a bad device fails before anything is written
    repro = setup_reproducibility(cfg)  # before anything draws a random number
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    record = RunRecord.start(run_dir, cfg, repro, overrides=list(hydra_cfg.overrides.task))
    try:
        result = fit(cfg, repro, run_dir, record)
    except BaseException as exc:  # KeyboardInterrupt too: the record must say the run failed
        record.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    record.finish("completed", weights_path=run_dir / WEIGHTS_FILE, result=result)
    print(f"run directory:  {run_dir}")
    print(f"weights sha256: {record.manifest['weights_sha256']}")
    return result


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Any, device: torch.device) -> tuple[float, float]:
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def fit(cfg: DictConfig, repro: Any, run_dir: Path, record: RunRecord) -> dict[str, Any]:
    d, m, t = cfg.data, cfg.model, cfg.train
    device = resolve_device(t.device)
    log.info(
        "seed %d (%s), determinism %s, device %s",
        repro.seed,
        repro.seed_source,
        repro.report.mode,
        device,
    )

    # Data: canvases drawn from named streams; batches and augmentation from the loader factory.
    train_set = ShapesDataset(
        *draw_shapes(
            repro.numpy_rng("data.train"), d.train_size, d.image_size, d.num_classes, d.noise
        ),
        augment=True,
        augment_noise=d.augment_noise,
        max_shift=d.max_shift,
    )
    val_set = ShapesDataset(
        *draw_shapes(repro.numpy_rng("data.val"), d.val_size, d.image_size, d.num_classes, d.noise),
        augment=False,
    )
    pin = device.type == "cuda"
    train_loader = repro.dataloader(
        train_set,
        batch_size=t.batch_size,
        shuffle=True,
        stream="loader.train",
        drop_last=True,
        pin_memory=pin,
    )
    val_loader = repro.dataloader(
        val_set, batch_size=256, shuffle=False, stream="loader.val", pin_memory=pin
    )

    # Model: initialised from its own stream, so nothing before it can shift its weights.
    with repro.scope("model"):
        model = SmallCNN(d.num_classes, m.channels1, m.channels2, m.dropout)
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay
    )
    steps_per_epoch = len(train_loader)
    total_steps = (
        steps_per_epoch * t.epochs
        if t.max_steps is None
        else min(t.max_steps, steps_per_epoch * t.epochs)
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))

    step, val_loss, val_acc = 0, float("nan"), float("nan")
    for epoch in range(t.epochs):
        model.train()
        train_loader.set_epoch(epoch)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1

            # One host sync per step: the loss value, and the parameter digest computed on the device.
            loss_value = loss.item()
            record.log_fingerprint(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": float_bits(loss),
                    "params": tensors_digest(model.named_parameters()),
                }
            )
            seen += len(y)
            loss_sum += loss_value * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            if step % t.log_every == 0:
                record.log_metrics(
                    {
                        "split": "train",
                        "epoch": epoch,
                        "step": step,
                        "loss": loss_value,
                        "lr": scheduler.get_last_lr()[0],
                    }
                )
            if t.max_steps is not None and step >= t.max_steps:
                break
        elapsed = time.perf_counter() - t0
        val_loss, val_acc = evaluate(model, val_loader, device)
        row = {
            "split": "epoch",
            "epoch": epoch,
            "step": step,
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "time_s": round(elapsed, 4),
            "samples_per_s": round(seen / max(elapsed, 1e-9), 1),
        }
        record.log_metrics(row)
        log.info(
            "epoch %d/%d  step %d  loss %.4f  acc %.3f  val_loss %.4f  val_acc %.3f  %.0f samples/s",
            epoch + 1,
            t.epochs,
            step,
            row["train_loss"],
            row["train_acc"],
            val_loss,
            val_acc,
            row["samples_per_s"],
        )
        if t.max_steps is not None and step >= t.max_steps:
            break

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write(run_dir / WEIGHTS_FILE, buffer.getvalue())
    log.info("final weights: %s", sha256_file(run_dir / WEIGHTS_FILE))
    return {
        "steps": step,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "params_digest": tensors_digest(model.named_parameters()),
    }
