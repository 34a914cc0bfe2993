"""Exact, cheap digests of tensors, computed on their own device.

A tensor's bits are viewed as integers and reduced with int64 arithmetic:
``sum_i bits[i] * (2*i + 1)`` modulo 2**64. Integer sums are exact and do not
depend on reduction order, so the digest is the same on any device and with
any kernel; every weight is odd, so flipping any single bit changes it.
Only one int64 per call crosses to the host.

Cost: a few elementwise passes over the tensor on its device (O(numel)),
and temporary memory bounded by ``_SLAB`` elements per tensor, whatever
its size. Float sums would be neither exact nor order-independent.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

import torch

_CHUNK = 1 << 16  # weights 1, 3, 5, ... for one chunk, cached per device
_SLAB = 1 << 22  # elements reduced at once: bounds temporary memory
_BITS_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_weights: dict[torch.device, torch.Tensor] = {}


def _chunk_weights(device: torch.device) -> torch.Tensor:
    w = _weights.get(device)
    if w is None:
        w = torch.arange(_CHUNK, dtype=torch.int64, device=device) * 2 + 1
        _weights[device] = w
    return w


def _weighted_sum(bits: torch.Tensor, offset: int) -> torch.Tensor:
    """sum_j bits[j] * (2*(offset + j) + 1) mod 2**64, for a flat int64 tensor, on its device."""
    device = bits.device
    w = _chunk_weights(device)
    m = bits.numel()
    full = m // _CHUNK * _CHUNK
    total = torch.zeros((), dtype=torch.int64, device=device)
    if full:
        rows = bits[:full].view(-1, _CHUNK)
        # sum_j x_j * (2*(off + j) + 1) = sum_j x_j*(2j+1) + 2*off*sum_j x_j
        offs = torch.arange(rows.shape[0], dtype=torch.int64, device=device) * _CHUNK + offset
        total = total + ((rows * w).sum(1) + 2 * offs * rows.sum(1)).sum()
    if m > full:
        tail = bits[full:]
        total = total + (tail * w[: tail.numel()]).sum() + 2 * (offset + full) * tail.sum()
    return total


def _digest_flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The weighted bit sum over the concatenation of ``tensors`` (all on one device), as a 0-dim int64.

    Small tensors are concatenated so a model with many small parameters costs
    a handful of kernel launches; a large tensor is reduced in slabs of
    ``_SLAB`` elements, so temporary memory stays bounded.
    """
    fast = _one_group(tensors)
    if fast is not None:
        return _weighted_sum(fast, 0)
    device = tensors[0].device
    total = torch.zeros((), dtype=torch.int64, device=device)
    offset = 0
    group: list[torch.Tensor] = []
    group_size = 0

    def flush() -> None:
        nonlocal total, offset, group, group_size
        if group:
            bits = torch.cat(group).to(torch.int64) if len(group) > 1 else group[0].to(torch.int64)
            total = total + _weighted_sum(bits, offset)
            offset += group_size
            group, group_size = [], 0

    for t in tensors:
        flat = _raw(t)
        if group and (flat.dtype != group[0].dtype or group_size + flat.numel() > _SLAB):
            flush()
        if flat.numel() <= _SLAB:
            group.append(flat)
            group_size += flat.numel()
            continue
        flush()
        for lo in range(0, flat.numel(), _SLAB):
            part = flat[lo : lo + _SLAB].to(torch.int64)
            total = total + _weighted_sum(part, offset)
            offset += part.numel()
    flush()
    return total


def _one_group(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """The int64 bits of ``tensors`` concatenated, in one call, when they make a single group of
    :func:`_digest_flat` (one dtype, neither bool nor complex, at most ``_SLAB`` elements in all);
    else None. The same bits as concatenating each tensor's :func:`_raw` view, for less Python per
    tensor: a model's few hundred parameters are concatenated by one call instead of four each."""
    if len(tensors) < 2:
        return None
    dtype = tensors[0].dtype
    if dtype == torch.bool or dtype.is_complex or any(t.dtype != dtype for t in tensors):
        return None
    if sum(t.numel() for t in tensors) > _SLAB:
        return None
    with torch.no_grad():
        flat = torch.cat([t.reshape(-1) for t in tensors])
    return flat.view(_BITS_VIEW[flat.element_size()]).to(torch.int64)


def _raw(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as a flat integer tensor of the same width (a view where possible)."""
    t = t.detach()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.is_complex():
        t = torch.view_as_real(t)
    flat = t.contiguous().reshape(-1)
    return flat.view(_BITS_VIEW[flat.element_size()])


def tensor_digest_device(t: torch.Tensor) -> torch.Tensor:
    """The digest of ``t`` as a 0-dim int64 tensor on ``t``'s device (no host sync)."""
    return _digest_flat([t])


def tensor_digest(t: torch.Tensor) -> str:
    """The digest of ``t`` as 16 hex digits; also covers its dtype and shape."""
    value = int(tensor_digest_device(t).item()) & ((1 << 64) - 1)
    meta = f"{t.dtype}{tuple(t.shape)}".encode()
    return hashlib.blake2b(struct.pack("<Q", value) + meta, digest_size=8).hexdigest()


def tensors_digest_parts(
    named: Iterable[tuple[str, torch.Tensor | None]],
) -> tuple[str, list[torch.Tensor]]:
    """The pieces of :func:`tensors_digest` before any host sync: the names/dtypes/shapes text and
    one 0-dim int64 tensor per device (sorted by device name), each still on its device.

    A caller that moves other per-step values to the host anyway can put these in the same
    transfer and finish with :func:`tensors_digest_from`; the digest is the same.
    """
    per_device: dict[torch.device, list[torch.Tensor]] = {}
    meta = []
    for name, t in named:
        if t is None:
            meta.append(f"{name}:none")
            continue
        meta.append(f"{name}:{t.dtype}{tuple(t.shape)}")
        per_device.setdefault(t.device, []).append(t)
    return "|".join(meta), [_digest_flat(per_device[d]) for d in sorted(per_device, key=str)]


def tensors_digest_from(meta: str, values: Iterable[int]) -> str:
    """Finish :func:`tensors_digest` from :func:`tensors_digest_parts` (``values`` as host ints)."""
    h = hashlib.blake2b(meta.encode(), digest_size=8)
    for value in values:
        h.update(struct.pack("<q", _signed64(int(value))))
    return h.hexdigest()


def _signed64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def tensors_digest(named: Iterable[tuple[str, torch.Tensor | None]]) -> str:
    """One digest over named tensors (e.g. ``model.named_parameters()``): one host sync per device.

    Covers every tensor's name, dtype, shape and bits, in the given order.
    """
    meta, values = tensors_digest_parts(named)
    return tensors_digest_from(meta, (int(v.item()) for v in values))


def float_bits(x: float | torch.Tensor) -> str:
    """The exact bits of a float or a one-element tensor as hex (big-endian): equal bits, equal string."""
    if isinstance(x, torch.Tensor):
        t = x.detach().reshape(-1).cpu()
        if t.numel() != 1:
            raise ValueError(
                f"float_bits needs one element, got a tensor of shape {tuple(x.shape)}"
            )
        size = t.element_size()
        value = int(t.view(_BITS_VIEW[size]).item()) & ((1 << (8 * size)) - 1)
        return f"{value:0{2 * size}x}"
    return struct.pack(">d", float(x)).hex()


def sample_digests_device(*tensors: torch.Tensor) -> torch.Tensor:
    """One exact digest per sample (row 0 of every tensor is sample 0, ...), as an int64 tensor on
    the first tensor's device: no host sync. :func:`sample_digests` is this, moved to the host."""
    if not tensors:
        return torch.zeros(0, dtype=torch.int64)
    n = tensors[0].shape[0]
    device = tensors[0].device
    w = _chunk_weights(device)
    total: torch.Tensor | None = None
    for k, t in enumerate(tensors):
        if t.shape[0] != n:
            raise ValueError(f"sample_digests: tensor {k} has {t.shape[0]} rows, expected {n}")
        rows = _raw(t.to(device)).to(torch.int64).view(n, -1)
        acc: torch.Tensor | None = None
        for lo in range(0, max(rows.shape[1], 1), _CHUNK):
            part = rows[:, lo : lo + _CHUNK]
            term = (part * w[: part.shape[1]]).sum(1)
            if lo:  # weights of a later chunk: 2*(lo + j) + 1 = (2j + 1) + 2*lo
                term = term + 2 * lo * part.sum(1)
            acc = term if acc is None else acc + term
        assert acc is not None
        # Combine tensors in order (wrapping int64 arithmetic): total * FNV prime + acc.
        total = acc if total is None else total * 0x100000001B3 + acc
    assert total is not None
    return total


def sample_digests(*tensors: torch.Tensor) -> list[int]:
    """One exact digest per sample (row 0 of every tensor is sample 0, ...), in one host transfer.

    Used to fingerprint a batch as the *set* of samples it holds, so the
    batches of one process and the shards of several ranks can be compared.
    """
    if not tensors:
        return []
    return sample_digests_device(*tensors).cpu().tolist()


def set_digest(values: Iterable[int]) -> str:
    """A digest of a multiset of ints, independent of their order."""
    items = sorted(values)
    return hashlib.blake2b(struct.pack(f"<{len(items)}q", *items), digest_size=8).hexdigest()
