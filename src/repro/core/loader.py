"""A DataLoader whose batches depend on (seed, epoch, sample index) only.

Two pieces make that hold for any ``num_workers``, with or without
persistent workers, and after a resume:

* :class:`ReproSampler` yields ``(epoch, index)`` keys in an order drawn from
  (seed, epoch). It can start part-way through an epoch without touching the
  samples before that point.
* :class:`SeededDataset` wraps the user's dataset: each ``__getitem__`` runs
  with python ``random``, numpy's global RNG and torch's CPU generator seeded
  from (seed, epoch, index) (python's and numpy's only once the dataset is
  seen drawing from them: the same samples for less), so augmentation code
  written against the global RNGs gives the same sample wherever it runs. In the main
  process (``num_workers=0``) it restores the global RNG state afterwards, so
  loading data never shifts dropout or anything else in the training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from repro.core.seeding import (
    GLOBAL_RNGS,
    capture_global_state,
    drawn_since,
    mix64,
    mix64_array,
    restore_global_state,
    seed_and_mark,
    seed_globals_each,
    seed_globals_fast,
)


class ReproSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` keys; the order is a function of (seed, epoch).

    With ``world_size > 1`` the epoch's order is padded to a multiple of the
    world size (repeating its first indices, as DistributedSampler does) and
    rank ``r`` takes positions ``r, r + world_size, ...``.

    A bare ``iter()`` moves to the next epoch, so a plain loop gets a new
    order every epoch; :meth:`set_epoch` says which epoch (and which position
    in it) the next ``iter()`` starts at.
    """

    def __init__(
        self, length: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self._epoch = 0
        self._start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next ``iter()`` yield epoch ``epoch`` from this rank's position ``start``."""
        if epoch < 0 or start < 0:
            raise ValueError(f"epoch={epoch} and start={start} must be >= 0")
        self._epoch, self._start = epoch, start

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` yields."""
        return self._epoch

    @property
    def start(self) -> int:
        """This rank's position in the epoch's order where the next ``iter()`` starts."""
        return self._start

    def order(self, epoch: int) -> np.ndarray:
        """This rank's sample indices for ``epoch``, in order."""
        if self.shuffle:
            rng = np.random.Generator(np.random.PCG64(mix64(self.seed, epoch)))
            order = rng.permutation(self.length)
        else:
            order = np.arange(self.length)
        if self.world_size > 1:
            total = -(-self.length // self.world_size) * self.world_size
            if total > self.length:
                order = np.concatenate([order, order[: total - self.length]])
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self._epoch, self._start
        self._epoch, self._start = epoch + 1, 0
        order = self.order(epoch)
        for lo in range(start, len(order), 4096):  # in chunks: no per-epoch list of every index
            for index in order[lo : lo + 4096].tolist():
                yield (epoch, index)

    def __len__(self) -> int:
        return -(-self.length // self.world_size)


GLOBAL_RNG_MODES = ("used", "all")
_WATCH_FROM = (
    8  # samples in a batch from which watching an RNG is cheaper than seeding it per sample
)


class SeededDataset(Dataset):
    """Wraps a map-style dataset: ``ds[(epoch, index)]`` seeds the global RNGs, then returns ``inner[index]``.

    ``global_rngs="all"`` seeds python ``random``, numpy's global RNG and torch's CPU generator
    before every sample. ``"used"`` (the default) gives the same samples for less: torch's
    generator is always seeded per sample (about a microsecond, and ``torch.initial_seed()`` then
    names the sample's seed), while python's and numpy's are seeded per sample only once this
    process has seen the dataset draw from them. Until then each batch seeds them once, from its
    last key (the state per-sample seeding would leave them in), and checks after the batch that
    nothing drew from them; if something did, the batch is loaded again with every RNG seeded per
    sample, and that RNG is seeded per sample from then on. So ``__getitem__`` may run twice for
    the samples of the batch in which an RNG is first seen in use (once per process: each worker
    learns for itself, and non-persistent workers start each epoch from the main process's copy).
    ``"used"`` needs a ``__getitem__`` that keeps nothing it drew between calls (no per-index cache
    of random values, no random state drawn lazily on first use: the first pass's draws would
    survive the reload) and that does not read an RNG's state without drawing from it, or draw and
    put the state back with ``set_state``; such a dataset needs ``"all"``.
    """

    def __init__(self, dataset: Dataset, seed: int, global_rngs: str = "used") -> None:
        if global_rngs not in GLOBAL_RNG_MODES:
            raise ValueError(
                f"dataloader(global_rngs={global_rngs!r}): expected one of {', '.join(GLOBAL_RNG_MODES)}"
            )
        self.dataset = dataset
        self.seed = seed
        self.global_rngs = global_rngs
        # RNGs not yet seen in use: seeded once per batch and watched instead of seeded per sample.
        self._watched: tuple[str, ...] = ("python", "numpy") if global_rngs == "used" else ()
        self.reloads = 0  # batches loaded a second time because a watched RNG was drawn from

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _load(self, keys: Sequence[tuple[int, int]]) -> list[Any]:
        # The seeds of the whole batch in one vectorised pass; then, per sample, seed and load.
        epochs, indices = np.asarray(keys, dtype=np.int64).reshape(-1, 2).T
        seeds = mix64_array(self.seed, epochs, indices)
        watched = self._watched if len(seeds) >= _WATCH_FROM else ()
        if watched:
            marks = seed_and_mark(watched, int(seeds[-1]))
            try:
                out = self._fetch(seeds, indices, tuple(r for r in GLOBAL_RNGS if r not in watched))
            except Exception:
                # Drawn from a shared seed, a sample may fail where its own seed would not: the full
                # pass decides. An error with no watched RNG drawn is the dataset's own.
                drawn = drawn_since(marks)
                if not drawn:
                    raise
            else:
                drawn = drawn_since(marks)
                if not drawn:
                    return out
            self._watched = tuple(r for r in self._watched if r not in drawn)
            self.reloads += 1
        return self._fetch(seeds, indices, GLOBAL_RNGS)

    def _fetch(self, seeds: np.ndarray, indices: np.ndarray, rngs: tuple[str, ...]) -> list[Any]:
        out, dataset = [], self.dataset
        for _, index in zip(seed_globals_each(seeds, rngs), indices.tolist(), strict=True):
            out.append(dataset[index])
        return out

    def __getitem__(self, key: tuple[int, int]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[Any]:
        """The samples of ``keys``: each drawn with the global RNGs seeded from (seed, epoch, index).

        In a worker the global RNGs belong to nobody else and are left seeded. In the main process
        they are saved before the batch and restored after it (once per batch), and torch runs on
        one thread while loading, as in a worker: a large reduction (a per-image mean) can round
        differently with more threads.
        """
        if get_worker_info() is not None:
            return self._load(keys)
        saved, threads = capture_global_state(), torch.get_num_threads()
        if threads != 1:  # already one under a pinned ``threads: 1``: nothing to switch
            torch.set_num_threads(1)
        try:
            return self._load(keys)
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
            restore_global_state(saved)

    def __getattr__(self, name: str) -> Any:
        # Attributes of the user's dataset (classes, transforms, ...) stay reachable via loader.dataset.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _WorkerInit:
    """Seeds a worker's global RNGs from (seed, worker id), then runs the user's init function.

    Per-sample seeding already decides what ``__getitem__`` draws; this makes
    code that runs outside ``__getitem__`` deterministic too. A class, not a
    closure, so it pickles under the spawn start method.
    """

    def __init__(self, seed: int, user_fn: Callable[[int], None] | None) -> None:
        self.seed = seed
        self.user_fn = user_fn

    def __call__(self, worker_id: int) -> None:
        seed_globals_fast(mix64(self.seed, 0x574F524B, worker_id))
        if self.user_fn is not None:
            self.user_fn(worker_id)


class ReproDataLoader(DataLoader):
    """A DataLoader built by :func:`make_dataloader`: it knows its position.

    It speaks the ``state_dict()``/``load_state_dict()`` protocol of torchdata's
    ``StatefulDataLoader``: the state is ``{"epoch", "batch"}`` (the epoch being
    or about to be read, and how many of its batches were handed out), and
    after ``load_state_dict`` the next pass continues from there without loading
    the batches before it. A bare ``for batch in loader`` moves to the next
    epoch by itself.
    """

    repro_sampler: ReproSampler
    _position: list[int] | None = None
    _hooks: Any = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next pass yield epoch ``epoch`` from batch ``start_batch`` on, without loading earlier batches."""
        self.repro_sampler.set_epoch(epoch, start_batch * (self.batch_size or 1))

    def state_dict(self) -> dict[str, int]:
        """Where the next batch comes from: ``{"epoch": e, "batch": b}`` (plain ints)."""
        if self._position is not None:
            epoch, batch = self._position
        else:
            epoch, batch = (
                self.repro_sampler.epoch,
                self.repro_sampler.start // (self.batch_size or 1),
            )
        if batch >= len(self):  # the epoch is used up: the next pass starts the next one
            epoch, batch = epoch + 1, 0
        return {"epoch": int(epoch), "batch": int(batch)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next pass starts exactly there."""
        try:
            epoch, batch = int(state["epoch"]), int(state["batch"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"loader state {state!r}: expected {{'epoch': int, 'batch': int}}"
            ) from None
        self.set_epoch(epoch, start_batch=batch)

    def bind(self, hooks: Any) -> None:
        """Let a run object follow this loader: ``hooks.loader_started(loader)``,
        ``hooks.loader_stopped(loader)`` and ``hooks.should_stop(steps_at_start) -> bool``
        (a pass that drove optimizer steps ends once the run has reached its last step)."""
        self._hooks = hooks

    @property
    def at_epoch_start(self) -> bool:
        """True when the next pass starts an epoch at its first batch; False when it continues one (a run
        resumed mid-epoch). The place to reset state carried across batches, such as a hidden state."""
        return self.state_dict()["batch"] == 0

    @property
    def position(self) -> tuple[int, int] | None:
        """``(epoch, batches handed out)`` while a pass is under way, else None."""
        return None if self._position is None else (self._position[0], self._position[1])

    def __iter__(self) -> Iterator[Any]:
        sampler = self.repro_sampler
        epoch, start = sampler.epoch, sampler.start // (self.batch_size or 1)
        return self._follow(super().__iter__(), epoch, start)

    def _follow(self, inner: Iterator[Any], epoch: int, start: int) -> Iterator[Any]:
        hooks = self._hooks
        self._position = [epoch, start]
        steps_at_start = hooks.loader_started(self) if hooks is not None else 0
        try:
            while True:
                if hooks is not None and hooks.should_stop(steps_at_start):
                    return
                try:
                    item = next(inner)
                except StopIteration:
                    return
                self._position[1] += (
                    1  # counted when handed out: a checkpoint taken during this step
                )
                yield item  # resumes after it
        finally:
            self._position = None
            if hooks is not None:
                hooks.loader_stopped(self)


def make_dataloader(
    dataset: Dataset,
    *,
    seed: int,
    batch_size: int = 1,
    shuffle: bool = False,
    num_workers: int = 0,
    persistent_workers: bool = False,
    rank: int = 0,
    world_size: int = 1,
    worker_init_fn: Callable[[int], None] | None = None,
    global_rngs: str = "used",
    **kwargs: Any,
) -> ReproDataLoader:
    """Build a DataLoader whose batches are a function of (seed, epoch, sample index) only.

    ``kwargs`` go to :class:`torch.utils.data.DataLoader` (``collate_fn``,
    ``drop_last``, ``pin_memory``, ...); ``sampler``, ``batch_sampler`` and
    ``generator`` are set here and refused if given. ``global_rngs``: ``"used"`` seeds python's and
    numpy's global RNGs per sample only once the dataset is seen drawing from them (the same
    samples, cheaper), ``"all"`` seeds all three before every sample (see :class:`SeededDataset`).
    """
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise TypeError(
            f"dataloader(dataset={type(dataset).__name__}): needs a map-style dataset (__getitem__ and "
            "__len__); an IterableDataset decides its own order, so the kit cannot make it worker-invariant"
        )
    for key in ("sampler", "batch_sampler", "generator"):
        if kwargs.pop(key, None) is not None:
            raise ValueError(
                f"dataloader({key}=...) is set by the reproducibility kit; do not pass it"
            )
    sampler = ReproSampler(
        len(dataset),
        seed=mix64(seed, 0x4F52444552),
        shuffle=shuffle,
        rank=rank,
        world_size=world_size,  # type: ignore[arg-type]
    )
    generator = torch.Generator().manual_seed(mix64(seed, 0x47454E) & ((1 << 63) - 1))
    loader = ReproDataLoader(
        SeededDataset(dataset, mix64(seed, 0x53414D504C45), global_rngs),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=_WorkerInit(seed, worker_init_fn),
        generator=generator,
        **kwargs,
    )
    loader.repro_sampler = sampler
    return loader
