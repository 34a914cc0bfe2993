"""One master seed, named streams, and cheap per-sample seeding.

Every random stream derives from the master seed and a purpose name through
``numpy.random.SeedSequence`` (the name is hashed into the spawn key), so
adding a stream never shifts another one. Per-sample seeds are a pure
function of (seed, stream, epoch, index): they do not depend on the process
or worker that asks.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def _name_key(name: str) -> int:
    """A stable 64-bit key for a stream name (never Python's salted hash())."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def derive_seed(seed: int, name: str, bits: int = 64) -> int:
    """The seed of stream ``name`` under master ``seed``: stable across versions and processes."""
    words = np.random.SeedSequence(seed, spawn_key=(_name_key(name),)).generate_state(
        bits // 32, dtype=np.uint32
    )
    return sum(int(w) << (32 * i) for i, w in enumerate(words))


def mix64(*values: int) -> int:
    """Combine ints into one well-mixed 64-bit value (splitmix64 finaliser per input).

    About a microsecond in pure Python; used per sample, so it must stay cheap.
    """
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 29
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
    return h


def mix64_array(seed: int, epoch: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``mix64(seed, epoch[i], index[i])`` for every ``i`` at once, as uint64 (the same values).

    Vectorised for a whole batch of keys: a few numpy passes instead of a Python loop per sample.
    """
    with np.errstate(over="ignore"):
        h = np.full(np.shape(index), 0x9E3779B97F4A7C15, dtype=np.uint64)
        for v in (np.uint64(seed & _MASK64), np.asarray(epoch), np.asarray(index)):
            h = (h ^ np.asarray(v).astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(31))) * np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(29)
            h = h + np.uint64(0x9E3779B97F4A7C15)
    return h


def seed_globals(seed: int, *, cuda: bool = True) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU, and every CUDA device if asked)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    if cuda:
        torch.manual_seed(seed)  # also seeds every CUDA device, lazily if CUDA is not up yet
    else:
        torch.default_generator.manual_seed(seed)


def seed_globals_fast(seed: int) -> None:
    """Seed python, numpy and torch-CPU global RNGs in a few microseconds (per-sample use).

    Uses ``torch.default_generator.manual_seed`` (about 1 us) rather than
    ``torch.manual_seed`` (which touches every device).
    """
    random.seed(seed)
    np.random.seed([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF])  # all 64 bits, not just 32
    torch.default_generator.manual_seed(seed)


GLOBAL_RNGS = ("python", "numpy", "torch")


def _numpy_words(seeds: np.ndarray) -> np.ndarray:
    """Each 64-bit seed as the uint32 row ``[low word, high word]`` numpy's legacy ``seed`` takes."""
    return np.stack([seeds & np.uint64(0xFFFFFFFF), seeds >> np.uint64(32)], axis=1).astype(
        np.uint32
    )


def seed_globals_each(seeds: np.ndarray, rngs: tuple[str, ...] = GLOBAL_RNGS) -> Iterator[None]:
    """For each 64-bit seed in turn, the global RNGs in ``rngs`` seeded exactly as
    ``seed_globals_fast`` seeds them (the others are left alone).

    A generator: the caller loads one sample per step (``for _ in seed_globals_each(s): ...``).
    Cheaper per sample than ``seed_globals_fast``: numpy gets the two 32-bit words as a uint32
    array row made for the whole batch at once (the same state as the list, with fewer
    conversions), and the Python ints are made in one ``tolist()``.
    """
    seeds = np.asarray(seeds, dtype=np.uint64)
    py_seed = random.seed if "python" in rngs else None
    np_seed = np.random.seed if "numpy" in rngs else None
    manual_seed = torch.default_generator.manual_seed if "torch" in rngs else None
    words = _numpy_words(seeds) if np_seed is not None else seeds
    for seed, row in zip(seeds.tolist(), words, strict=True):
        if py_seed is not None:
            py_seed(seed)
        if np_seed is not None:
            np_seed(row)
        if manual_seed is not None:
            manual_seed(seed)
        yield


def seed_and_mark(rngs: tuple[str, ...], seed: int) -> dict[str, Any]:
    """Seed the global RNGs in ``rngs`` (``"python"``, ``"numpy"``) from ``seed`` as
    ``seed_globals_fast`` does, and return their states just after: :func:`drawn_since` tells
    later whether anything drew from them."""
    for _ in seed_globals_each(np.asarray([seed], dtype=np.uint64), rngs):
        pass
    marks: dict[str, Any] = {}
    if "python" in rngs:
        marks["python"] = random.getstate()
    if "numpy" in rngs:
        marks["numpy"] = _numpy_state()
    return marks


def drawn_since(marks: dict[str, Any]) -> list[str]:
    """The RNGs of :func:`seed_and_mark`'s ``marks`` whose state has moved since."""
    moved = []
    if "python" in marks and random.getstate() != marks["python"]:
        moved.append("python")
    if "numpy" in marks and _numpy_state() != marks["numpy"]:
        moved.append("numpy")
    return moved


def _numpy_state() -> tuple[Any, ...]:
    _, key, pos, has_gauss, cached = np.random.get_state()
    return key.tobytes(), pos, has_gauss, cached


def capture_global_state() -> dict[str, Any]:
    """The state of every global RNG the kit seeds: python, numpy, torch CPU and CUDA."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_global_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class Streams:
    """Named RNG streams derived from one master seed.

    ``streams.generator("model")`` and ``streams.numpy_rng("augment")`` return
    fresh generators at the start of their stream; asking twice gives two
    generators with the same sequence.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def seed_for(self, name: str) -> int:
        """The 64-bit seed of stream ``name``."""
        return derive_seed(self.seed, name)

    def generator(self, name: str, device: str | torch.device = "cpu") -> torch.Generator:
        """A torch Generator for stream ``name`` on ``device``."""
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed_for(name) & ((1 << 63) - 1))
        return gen

    def numpy_rng(self, name: str) -> np.random.Generator:
        """A numpy Generator (PCG64) for stream ``name``."""
        return np.random.Generator(
            np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(_name_key(name),)))
        )
