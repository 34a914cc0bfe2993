"""The training loop of the example experiment, top to bottom.

setup_reproducibility -> run record -> data -> model -> epochs of
(train steps, evaluation, checkpoint) -> final weights. Everything random
comes from the ``repro`` object: named streams for data and model, its
DataLoader factory for batches and augmentation, the seeded global RNG for
dropout. A checkpoint holds all of that state, so a resumed run continues
with exactly the bits an uninterrupted run would have.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiment.config import ONE_SHOT_KEYS, RESUME_SAFE_KEYS
from experiment.data import ShapesDataset, draw_shapes
from experiment.model import SmallCNN
from repro import (
    ConfigValueError,
    RunCompleted,
    RunRecord,
    all_reduce_sum,
    atomic_write,
    config_sha256,
    find_resumption,
    float_bits,
    gather_objects,
    make_deterministic,
    save_checkpoint,
    setup_reproducibility,
    sha256_file,
    shutdown_distributed,
    tensors_digest,
    wrap_model,
)

log = logging.getLogger(__name__)
WEIGHTS_FILE = "weights.pt"

# Checkpoint keys, in one place.
MODEL, OPTIMIZER, SCHEDULER, RNG = "model", "optimizer", "scheduler", "rng"
STEP, EPOCH, BATCH, EPOCH_STATS = "step", "epoch", "batch", "epoch_stats"
RANKS = "ranks"  # one entry per rank: its RNG state and its share of the epoch's running sums


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank:
        name = f"cuda:{local_rank}"  # under torchrun: one GPU per rank
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigValueError(
            "train.device", name, f"auto, cpu, or a CUDA device of the {torch.cuda.device_count()} present"
        )
    return device


def train(cfg: DictConfig) -> dict[str, Any]:
    resolve_device(cfg.train.device)  # a bad device fails before anything is written
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)

    # A resume runs on the run's own config (with the safe keys of this command line).
    try:
        given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        resumption = find_resumption(cfg, run_dir, key="train.resume", safe_keys=RESUME_SAFE_KEYS,
                                     is_main=int(os.environ.get("RANK", "0")) == 0, given=given,
                                     reset=ONE_SHOT_KEYS)
    except RunCompleted as done:  # a requeued sweep job that had already finished
        log.info("%s", done)
        return json.loads((run_dir / "run.json").read_text()).get("result") or {}
    if resumption is not None:
        cfg = resumption.config
    repro = setup_reproducibility(cfg)  # before anything draws a random number
    config_hash = config_sha256(cfg, ignore=RESUME_SAFE_KEYS)
    if resumption is not None:
        info, state = resumption.load_latest()
        record = RunRecord.resume(run_dir, repro, from_step=info.step, checkpoint=info.path, overrides=overrides)
        if repro.dist.is_main:
            log.info("resuming %s from %s (step %d)", run_dir, info.path.name, info.step)
    else:
        state = None
        record = RunRecord.start(run_dir, cfg, repro, overrides=overrides, null_keys=ONE_SHOT_KEYS)
    try:
        result = fit(cfg, repro, run_dir, record, config_hash, state)
        record.finish("completed", weights_path=run_dir / WEIGHTS_FILE, result=result)
    except BaseException as exc:  # KeyboardInterrupt and SIGTERM too: the record must say the run failed
        record.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    shutdown_distributed(repro.dist)  # every rank done: leave the process group together
    if repro.dist.is_main:
        print(f"run directory:  {run_dir}")
        print(f"weights sha256: {record.manifest['weights_sha256']}")
    return result


def audit_target(cfg: DictConfig) -> tuple[torch.nn.Module, torch.Tensor, Any]:
    """The example's model, one training batch and its loss, for ``repro audit`` (no run is started)."""
    d, m, t = cfg.data, cfg.model, cfg.train
    device = resolve_device(t.device)
    rng = np.random.default_rng(0)
    images, labels = draw_shapes(rng, t.batch_size, d.image_size, d.num_classes, d.noise)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCNN(d.num_classes, m.channels1, m.channels2, m.dropout)
    x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    return model.to(device), x, (lambda out: F.cross_entropy(out, y))


@torch.no_grad()
def perturb(model: torch.nn.Module, name: str, scale: float) -> None:
    """Test-only: add noise from OS entropy (never the same twice) to one parameter."""
    param = dict(model.named_parameters())[name]
    gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    param.add_(torch.randn(param.shape, generator=gen).to(param.device) * scale)


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


def fit(cfg: DictConfig, repro: Any, run_dir: Path, record: RunRecord, config_hash: str,
        state: dict[str, Any] | None) -> dict[str, Any]:
    d, m, t = cfg.data, cfg.model, cfg.train
    dist = repro.dist  # one process, or one rank of a torchrun job
    device = resolve_device(t.device, dist.local_rank)
    if t.batch_size % dist.world_size:
        raise ConfigValueError("train.batch_size", t.batch_size,
                               f"a multiple of the number of ranks ({dist.world_size}): it is the global batch")
    say = log.info if dist.is_main else (lambda *a, **k: None)
    say("seed %d (%s), determinism %s, device %s, %d rank(s)", repro.seed, repro.seed_source,
        repro.report.mode, device, dist.world_size)

    # Data: canvases drawn from named streams; batches and augmentation from the loader factory,
    # each rank taking its share of every epoch by global sample index.
    train_set = ShapesDataset(
        *draw_shapes(repro.numpy_rng("data.train"), d.train_size, d.image_size, d.num_classes, d.noise),
        augment=True, augment_noise=d.augment_noise, max_shift=d.max_shift,
    )
    val_set = ShapesDataset(
        *draw_shapes(repro.numpy_rng("data.val"), d.val_size, d.image_size, d.num_classes, d.noise), augment=False
    )
    pin = device.type == "cuda"
    train_loader = repro.dataloader(train_set, batch_size=t.batch_size // dist.world_size, shuffle=True,
                                    stream="loader.train", drop_last=True, pin_memory=pin)
    val_loader = repro.dataloader(val_set, batch_size=256, shuffle=False, stream="loader.val", pin_memory=pin,
                                  shard=False)

    # Model: initialised from its own stream (the same on every rank), so nothing can shift its weights.
    with repro.scope("model"):
        model = SmallCNN(d.num_classes, m.channels1, m.channels2, m.dropout)
    model.to(device)
    if device.type == "cuda" and repro.report.mode != "off":
        make_deterministic(model)  # deterministic CUDA replacements for the layers that have none
    record.watch(model)  # lets `repro diff` capture one step's tensors; nothing happens in a normal run
    if t.perturb_param is not None and t.perturb_param not in dict(model.named_parameters()):
        raise ConfigValueError("train.perturb_param", t.perturb_param,
                               f"one of {[n for n, _ in model.named_parameters()]}")
    net = wrap_model(model, dist)  # DistributedDataParallel under torchrun
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * t.epochs if t.max_steps is None else min(t.max_steps, steps_per_epoch * t.epochs)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))

    # Where training starts: the beginning, or exactly where the checkpoint left off.
    step, start_epoch, start_batch = 0, 0, 0
    stats = {"seen": 0, "loss_sum": 0.0, "correct": 0}
    if state is not None:
        if len(state[RANKS]) != dist.world_size:
            raise ConfigValueError("world size", dist.world_size,
                                   f"{len(state[RANKS])} ranks, as the checkpoint was written with")
        model.load_state_dict(state[MODEL])
        optimizer.load_state_dict(state[OPTIMIZER])
        scheduler.load_state_dict(state[SCHEDULER])
        mine = state[RANKS][dist.rank]
        repro.load_state_dict(mine[RNG])
        stats = dict(mine[EPOCH_STATS])
        step, start_epoch, start_batch = state[STEP], state[EPOCH], state[BATCH]

    def checkpoint(epoch: int, batch: int) -> None:
        """Everything needed to continue at (epoch, batch) with the same bits; every rank takes part."""
        ranks = gather_objects({RNG: repro.state_dict(), EPOCH_STATS: dict(stats)}, dist)
        if dist.is_main:
            save_checkpoint(run_dir, step, {
                MODEL: model.state_dict(), OPTIMIZER: optimizer.state_dict(), SCHEDULER: scheduler.state_dict(),
                STEP: step, EPOCH: epoch, BATCH: batch, RANKS: ranks,
            }, config_sha256=config_hash, keep=t.keep_checkpoints,
                meta={"epoch": epoch, "batch": batch, "world_size": dist.world_size})

    def finished() -> bool:
        return t.max_steps is not None and step >= t.max_steps

    val_loss, val_acc = float("nan"), float("nan")
    for epoch in range(start_epoch, t.epochs):
        if finished():
            break
        net.train()
        first = start_batch if epoch == start_epoch else 0
        if first == 0:
            stats = {"seen": 0, "loss_sum": 0.0, "correct": 0}
        train_loader.set_epoch(epoch, start_batch=first)  # jumps to the position: no batch is replayed
        t0, seen_before = time.perf_counter(), stats["seen"]
        for batch, (x, y) in enumerate(train_loader, start=first):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if t.perturb_step == step and t.perturb_param is not None:
                perturb(model, t.perturb_param, t.perturb_scale)  # test-only

            # One host sync per step: the loss, and digests computed on the device (every rank checks
            # that its parameters agree with the others').
            loss_host = loss.detach().cpu()
            loss_value = loss_host.item()
            record.log_fingerprint({"step": step, "epoch": epoch, "loss": float_bits(loss_host),
                                    "params": tensors_digest(model.named_parameters())}, batch=(x, y))
            stats["seen"] += len(y)
            stats["loss_sum"] += loss_value * len(y)
            stats["correct"] += (logits.argmax(1) == y).sum().item()
            if step % t.log_every == 0:
                record.log_metrics({"split": "train", "epoch": epoch, "step": step, "loss": loss_value,
                                    "lr": scheduler.get_last_lr()[0]})
            if t.kill_at_step is not None and step == t.kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)  # test-only: die as a preempted job would
            end_of_epoch = batch + 1 == steps_per_epoch
            if t.checkpoint_every and step % t.checkpoint_every == 0 and not end_of_epoch and not finished():
                checkpoint(epoch, batch + 1)
            if finished():
                break
        elapsed = time.perf_counter() - t0
        seen, loss_sum, correct = all_reduce_sum([stats["seen"], stats["loss_sum"], stats["correct"]], dist)
        if dist.is_main:  # evaluation on one rank, over the whole validation set
            val_loader.set_epoch(epoch)
            val_loss, val_acc = evaluate(model, val_loader, device)
            row = {"split": "epoch", "epoch": epoch, "step": step, "train_loss": loss_sum / max(seen, 1),
                   "train_acc": correct / max(seen, 1), "val_loss": val_loss, "val_acc": val_acc,
                   "time_s": round(elapsed, 4),
                   "samples_per_s": round((stats["seen"] - seen_before) * dist.world_size / max(elapsed, 1e-9), 1)}
            record.log_metrics(row)
            say("epoch %d/%d  step %d  loss %.4f  acc %.3f  val_loss %.4f  val_acc %.3f  %.0f samples/s",
                epoch + 1, t.epochs, step, row["train_loss"], row["train_acc"], val_loss, val_acc,
                row["samples_per_s"])
        checkpoint(epoch + 1, 0)

    if dist.is_main:
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        atomic_write(run_dir / WEIGHTS_FILE, buffer.getvalue())
        say("final weights: %s", sha256_file(run_dir / WEIGHTS_FILE))
    return {"steps": step, "val_loss": val_loss, "val_acc": val_acc,
            "params_digest": tensors_digest(model.named_parameters())}
