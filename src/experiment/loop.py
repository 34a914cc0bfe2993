"""The example's training loop, top to bottom.

Data, model, task and optimizer are built from the config (``_target_``), so
switching them needs no edit here. Everything random comes from the run:
named streams for data and the model's initial weights, its loaders for
batches and augmentation, the seeded global RNG for dropout. The run object
keeps every guarantee: it tracks what has state, checkpoints it with every
RNG and loader position, resumes mid-epoch, fingerprints each step and
writes the record.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from hydra.utils import instantiate

from experiment.model import build_model
from repro import ConfigValueError, Run

log = logging.getLogger(__name__)


def train(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    data, task = instantiate(cfg.data), instantiate(cfg.task)
    # drawn from named streams of the seed
    train_set, val_set = data.build(run.numpy_rng)
    # what the data holds, in the record: `repro diff` names a dataset that differs
    if hasattr(data, "contents"):
        for name, content in data.contents().items():
            run.fingerprint_data(name, content)

    # Under torchrun each rank takes its share of every epoch by global sample index.
    world = run.dist.world_size
    if cfg.train.batch_size % world:
        raise ConfigValueError(
            "train.batch_size",
            cfg.train.batch_size,
            f"a multiple of the number of ranks ({world}): it is the global batch",
        )
    train_loader = run.dataloader(
        train_set, cfg.train.batch_size // world, shuffle=True, stream="train", drop_last=True
    )
    val_loader = run.dataloader(val_set, 256, stream="val", shard=False)

    # initial weights from their own stream: the same on every rank
    with run.scope("model"):
        model = build_model(cfg, data)
    # device, deterministic CUDA layers, DDP, torch.compile (train.compile)
    net = run.prepare(model)
    optimizer = instantiate(cfg.optimizer)(params=model.parameters())
    scheduler = schedule(optimizer, run.total_steps(train_loader), cfg.train.warmup_steps)
    # saved in checkpoints, restored on resume
    run.track(optimizer=optimizer, scheduler=scheduler)
    # what the throughput counts (samples, tokens) and metrics computed from the epoch's means
    run.set_unit(task.unit)
    run.derive(**task.derived())

    # a resumed run starts at its epoch...
    for _epoch in run.epochs():
        net.train()
        # ...and its batch, with no replay
        for x, y in train_loader:
            x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
            # train.precision: bf16-mixed / 16-mixed autocast, else nothing
            with run.autocast():
                out = net(x)
                loss = task.loss(out, y)
            # divided by the accumulation window (train.accumulate_grad_batches)
            run.backward(loss)
            # a window's last batch: clip, step, zero the gradients
            if run.optimizer_step(optimizer):
                scheduler.step()
            run.step(loss, batch=(x, y), n=task.count(y), **task.metrics(out.detach(), y))
        # evaluation over the whole validation set: on rank 0, or on every rank when the model is
        # sharded (its forward needs them all); rank 0 writes the row
        if run.dist.is_main or run.sharded:
            run.log(**task.evaluate(model, val_loader, run.device))
    # a language model writes a few lines with a seeded generator of its own
    if hasattr(task, "sample") and (run.dist.is_main or run.sharded):
        from experiment.sample import sample_text

        text = sample_text(model, data, task, device=run.device)
        if run.dist.is_main:
            log.info("sampled text (seed 0):\n%s", text)
    return {}


def audit_target(cfg: Any) -> tuple[torch.nn.Module, torch.Tensor, Any]:
    """The example's model, one training batch and its loss, for ``repro audit`` (no run is started)."""
    import numpy as np

    from repro import resolve_device

    device = resolve_device(cfg.train.device)
    data, task = instantiate(cfg.data), instantiate(cfg.task)
    train_set, _ = data.build(lambda name: np.random.default_rng(0))
    x, y = (
        torch.stack(t)
        for t in zip(*(train_set[i] for i in range(cfg.train.batch_size)), strict=True)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg, data)
    x, y = x.to(device), y.to(device)
    return model.to(device), x, (lambda out: task.loss(out, y))


def schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> Any:
    """Cosine decay to zero over ``total`` steps; with ``warmup`` > 0 a linear warmup first."""
    if warmup == 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
