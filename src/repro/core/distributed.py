"""Rank awareness: one process group, one seed, one writer, and ranks checked against each other.

Under ``torchrun`` (RANK/WORLD_SIZE/LOCAL_RANK in the environment)
``setup_reproducibility`` initialises the process group (gloo on CPU, nccl
on GPU, unless the config names one), shares rank 0's seed with every rank,
and the loader factory shards each epoch by global sample index. Only rank 0
writes the run record; every rank takes part in the per-step check that the
parameter digests agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from repro.base.errors import ReproError


class RankMismatchError(ReproError):
    """Ranks that must hold the same parameters do not."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """What torchrun (or any launcher setting RANK/WORLD_SIZE) says about this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(backend: str = "auto") -> DistInfo:
    """Join the process group when launched with several ranks; a no-op for one process."""
    info = from_environment()
    if not info.enabled:
        return info
    import torch.distributed as dist

    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(info.rank, info.world_size, info.local_rank, dist.get_backend())


def _device(info: DistInfo) -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if info.backend == "nccl"
        else torch.device("cpu")
    )


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's value of a 63-bit int, on every rank."""
    if not info.enabled:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=_device(info))
    dist.broadcast(t, src=0)
    return int(t.item())


def gather_ints(values: list[int], info: DistInfo) -> list[list[int]]:
    """Every rank's list of ints (all lists the same length), on every rank."""
    if not info.enabled:
        return [values]
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.int64, device=_device(info))
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return [o.cpu().tolist() for o in out]


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every rank's picklable object, on every rank (for small things such as RNG states)."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def check_same(step: int, name: str, hex_digest: str, info: DistInfo) -> None:
    """Fail on every rank, naming the step, when ranks hold different ``name`` digests."""
    if not info.enabled:
        return
    value = int(hex_digest, 16) & ((1 << 63) - 1)
    values = [v[0] for v in gather_ints([value], info)]
    if len(set(values)) > 1:
        ranks = ", ".join(f"rank {r}: {v:016x}" for r, v in enumerate(values))
        raise RankMismatchError(
            f"step {step}: the {name} digest differs across ranks ({ranks}); "
            "the replicas have drifted apart"
        )


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sums over ranks (float64), on every rank."""
    if not info.enabled:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_device(info))
    dist.all_reduce(t)
    return t.cpu().tolist()


def wrap_model(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` under several ranks; the model itself otherwise."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.cuda.current_device()] if info.backend == "nccl" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def shutdown_distributed(info: DistInfo) -> None:
    """Wait for every rank, then leave the process group (a no-op for one process).

    Call it when a run ends well: the barrier keeps a rank from tearing down its
    communication threads while another still uses them (gloo aborts the process then).
    """
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
