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

from typing import Any

import torch
from hydra.utils import instantiate

from repro import ConfigValueError, Run


def train(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    data, task = instantiate(cfg.data), instantiate(cfg.task)
    train_set, val_set = data.build(run.numpy_rng)  # drawn from named streams of the seed

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

    with run.scope("model"):  # initial weights from their own stream: the same on every rank
        model = instantiate(cfg.model)
    net = run.prepare(
        model
    )  # device, deterministic CUDA layers, DDP, torch.compile (train.compile)
    optimizer = instantiate(cfg.optimizer)(params=model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=run.total_steps(train_loader)
    )
    run.track(optimizer=optimizer, scheduler=scheduler)  # saved in checkpoints, restored on resume

    for _epoch in run.epochs():  # a resumed run starts at its epoch...
        net.train()
        for x, y in train_loader:  # ...and its batch, with no replay
            x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
            with run.autocast():  # train.precision: bf16-mixed / 16-mixed autocast, else nothing
                out = net(x)
                loss = task.loss(out, y)
            run.backward(loss)  # divided by the accumulation window (train.accumulate_grad_batches)
            if run.optimizer_step(
                optimizer
            ):  # a window's last batch: clip, step, zero the gradients
                scheduler.step()
            run.step(loss, batch=(x, y), **task.metrics(out.detach(), y))
        if run.dist.is_main:  # evaluation on one rank, over the whole validation set
            run.log(**task.evaluate(model, val_loader, run.device))
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
        model = instantiate(cfg.model)
    x, y = x.to(device), y.to(device)
    return model.to(device), x, (lambda out: task.loss(out, y))
