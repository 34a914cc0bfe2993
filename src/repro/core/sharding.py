"""A model sharded across ranks with FSDP2 (``train.strategy=fsdp``), its full tensors, and its shards on disk.

Everything here is torch's public API: ``torch.distributed.fsdp.fully_shard`` (FSDP2: parameters
become ``DTensor`` shards), ``torch.distributed.checkpoint`` (DCP: each rank writes its own shards)
and ``torch.distributed.checkpoint.state_dict`` (sharded or full state dicts of a model and its
optimizers). Functions that gather (``full``, :func:`full_model_state`) or write shards are
collective: every rank calls them, in the same order.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from repro.base.files import fsync_dir, sha256_file
from repro.core.distributed import DistInfo

#: The file DCP writes last, once every rank's shards are on disk: a folder without it is incomplete.
METADATA_FILE = ".metadata"


def is_sharded(tensor: Any) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (a shard of a tensor spread over ranks). Without FSDP nothing
    has imported the DTensor module, and no tensor can be one: importing it here would cost every
    single-process run about a second."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor (gathered from every rank: collective) for a shard; the tensor itself otherwise."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def module_is_sharded(module: torch.nn.Module) -> bool:
    return any(is_sharded(p) for p in module.parameters())


def optimizer_is_sharded(optimizer: Any) -> bool:
    groups = getattr(optimizer, "param_groups", None) or []
    return any(is_sharded(p) for group in groups for p in group.get("params", []))


def shard_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The wrapping policy: ``model.fsdp_units()`` where the model declares it (a Transformer's blocks),
    else each direct child that holds parameters. Each unit gathers its parameters only for its own
    forward and backward; the root holds what is left."""
    declared = getattr(model, "fsdp_units", None)
    if callable(declared):
        return list(declared())
    return [child for child in model.children() if any(True for _ in child.parameters())]


def shard_model(
    model: torch.nn.Module, info: DistInfo, device: torch.device, param_dtype: Any = None
) -> torch.nn.Module:
    """Shard ``model`` in place with FSDP2 over all ranks: each unit of :func:`shard_units`, then the
    root. ``param_dtype`` (bfloat16 under ``bf16-mixed``) is the dtype of the gathered parameters in
    forward and backward; gradients are reduced and the optimizer steps in float32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (info.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def full_model_state(model: torch.nn.Module, is_main: bool) -> dict[str, torch.Tensor]:
    """The model's whole state dict, on the CPU, on rank 0 (``{}`` on the others); collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    return state if is_main else {}


def _sharded_state(model: torch.nn.Module, optimizers: Mapping[str, Any]) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    for name, optimizer in optimizers.items():
        state[f"optimizer.{name}"] = get_optimizer_state_dict(model, optimizer)
    return state


def save_shards(
    folder: Path, model: torch.nn.Module, optimizers: Mapping[str, Any], info: DistInfo
) -> None:
    """Every rank writes its shards of ``model`` and ``optimizers`` into ``folder`` (DCP), atomically:
    into a temporary folder, then, once every rank is done, rank 0 renames it. A SIGKILL at any moment
    leaves the previous checkpoints intact and at most a temporary folder, which is never read."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    partial = folder.with_name(f".{folder.name}.partial")
    if info.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    dist.barrier()
    dcp.save(_sharded_state(model, optimizers), checkpoint_id=str(partial))
    dist.barrier()
    if info.is_main:
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
        fsync_dir(folder.parent)
    dist.barrier()


#: What DCP's metadata file may hold (it is a pickle, and a run directory is data): its own record
#: classes, paths, sizes, dtypes and layouts, nothing that runs code.
_METADATA_CLASSES = {
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    *(
        ("torch.distributed.checkpoint.metadata", name)
        for name in (
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "Metadata",
            "MetadataIndex",
            "StorageMeta",
            "TensorProperties",
            "TensorStorageMetadata",
            "_MEM_FORMAT_ENCODING",
        )
    ),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _METADATA_CLASSES:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} has no place in a checkpoint's metadata")


def _safe_reader(folder: Path) -> Any:
    """DCP's file reader, reading the metadata with :class:`_MetadataUnpickler` (DCP's own reader
    unpickles it with no restriction)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

    class Reader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
            with open(folder / METADATA_FILE, "rb") as f:
                metadata = _MetadataUnpickler(f).load()
            if not isinstance(metadata, Metadata):
                raise pickle.UnpicklingError("the metadata file holds no DCP metadata")
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = getattr(self, "load_id", None)
            return metadata

    return Reader(str(folder))


def _safe_planner() -> Any:
    """DCP's load planner, loading the non-tensor items (an optimizer's param groups) with
    ``torch.load(weights_only=True)``: plain values only (DCP's own planner allows any pickle)."""
    from torch.distributed.checkpoint import DefaultLoadPlanner

    class Planner(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            plain = torch.load(value, weights_only=True)
            # handed on re-serialized: only the plain values just loaded
            buffer = io.BytesIO()
            torch.save(plain, buffer)
            buffer.seek(0)
            super().load_bytes(read_item, buffer)

    return Planner()


def shard_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of a shards folder, by name (recorded with the checkpoint)."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def load_shards(folder: Path, model: torch.nn.Module, optimizers: Mapping[str, Any]) -> None:
    """Load what :func:`save_shards` wrote into ``model`` and ``optimizers`` (every rank; DCP reshards
    when the world size differs from the writer's). The files are data: the metadata is unpickled
    with an allow-list and the other values with ``weights_only``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = _sharded_state(model, optimizers)
    dcp.load(state, storage_reader=_safe_reader(folder), planner=_safe_planner())
    set_model_state_dict(model, state["model"])
    for name, optimizer in optimizers.items():
        set_optimizer_state_dict(model, optimizer, state[f"optimizer.{name}"])


def shards_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished DCP save (its metadata file is written last)."""
    return (folder / METADATA_FILE).is_file()
