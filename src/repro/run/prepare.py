"""The run's device, and a model made ready to train on it (deterministic CUDA layers, DDP or FSDP2,
torch.compile)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from repro.base.errors import ConfigValueError
from repro.core.distributed import DistInfo, wrap_model
from repro.core.sharding import shard_model

log = logging.getLogger("repro.run")


def resolve_device(name: str, local_rank: int = 0, *, key: str = "train.device") -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` as a device; under torchrun ``cuda`` means this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank:
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigValueError(
            key, name, f"auto, cpu, or a CUDA device of the {torch.cuda.device_count()} present"
        )
    return device


def place(model: torch.nn.Module, device: torch.device, mode: str) -> None:
    """Move ``model`` to ``device``; on CUDA under determinism ``mode`` strict/warn, swap layers without
    a deterministic kernel for ``repro.ops`` replacements."""
    model.to(device)
    if device.type == "cuda" and mode != "off":
        from repro.ops import make_deterministic

        make_deterministic(model)


def compile_model(
    net: torch.nn.Module, device: torch.device, *, deterministic: bool, key: str
) -> torch.nn.Module:
    """``torch.compile(net)`` with random ops left to eager kernels (inductor's ``fallback_random``), so
    dropout draws from the checkpointed global RNG, and inductor's ``deterministic`` mode when
    ``deterministic``: both through ``torch.compile``'s public ``options``, so no global compiler setting
    changes. A compiler that does not work here is a :class:`ConfigValueError` on ``key``, before the
    first batch."""
    options = {"fallback_random": True, "deterministic": deterministic}
    # Compilation is lazy: try a tiny function now rather than fail at the first batch.
    try:
        torch.compile(lambda t: t * 2 + 1, options=options)(torch.zeros(2, device=device))
    # Any failure of the compiler stack.
    except Exception as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigValueError(
            key,
            True,
            f"false: torch.compile does not work here ({why[:200]})",
        ) from None
    return torch.compile(net, options=options)


def prepare_strategy(
    model: torch.nn.Module, settings: Any, dist: DistInfo, device: torch.device, node: str
) -> torch.nn.Module:
    """What to call under ``<node>.strategy``: ``ddp`` wraps the model in DistributedDataParallel under
    several ranks; ``fsdp`` shards it in place with FSDP2 (its parameters become DTensor shards, mixed
    precision through FSDP2's policy under ``bf16-mixed``). One process: the model itself either way."""
    if settings.strategy != "fsdp":
        return wrap_model(model, dist)
    if settings.precision == "16-mixed":
        raise ConfigValueError(
            f"{node}.precision",
            settings.precision,
            f"32-true or bf16-mixed under {node}.strategy=fsdp (no sharded gradient scaler here)",
        )
    if not dist.enabled:
        log.info("%s.strategy=fsdp with one process: nothing to shard, the model runs whole", node)
        return model
    param_dtype = torch.bfloat16 if settings.precision == "bf16-mixed" else None
    return shard_model(model, dist, device, param_dtype)
