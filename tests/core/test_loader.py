"""The DataLoader factory: batches depend on (seed, epoch, sample index) only."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from repro import make_dataloader


class Augmenting(Dataset):
    """Draws from all three global RNGs in __getitem__, as real augmentation code does."""

    def __len__(self) -> int:
        return 37

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(
            [float(i), random.random(), float(np.random.rand()), float(torch.rand(()))],
            dtype=torch.float64,
        )


def epochs(loader, n=2):
    out = []
    for e in range(n):
        loader.set_epoch(e)
        out.append([b.clone() for b in loader])
    return out


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module")
def reference():
    return epochs(make_dataloader(Augmenting(), seed=5, batch_size=4, shuffle=True))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("persistent", [False, True])
def test_same_batches_for_any_worker_count(reference, workers, persistent):
    loader = make_dataloader(
        Augmenting(),
        seed=5,
        batch_size=4,
        shuffle=True,
        num_workers=workers,
        persistent_workers=persistent,
    )
    assert same(epochs(loader), reference)


def test_each_epoch_has_a_new_order_and_new_augmentation(reference):
    first, second = reference
    order = lambda batches: torch.cat(batches)[:, 0].tolist()  # noqa: E731
    # every sample once per epoch
    assert sorted(order(first)) == sorted(order(second)) == list(range(37))
    assert order(first) != order(second)
    by_index = lambda batches: {int(r[0]): r[1:].tolist() for r in torch.cat(batches)}  # noqa: E731
    a, b = by_index(first), by_index(second)
    assert all(a[i] != b[i] for i in a)


def test_bare_loop_moves_to_the_next_epoch(reference):
    loader = make_dataloader(Augmenting(), seed=5, batch_size=4, shuffle=True)
    assert same([list(loader), list(loader)], reference)


def test_other_seed_gives_other_batches(reference):
    assert not same(
        epochs(make_dataloader(Augmenting(), seed=6, batch_size=4, shuffle=True)), reference
    )


def test_start_batch_resumes_mid_epoch_without_loading_earlier_samples(reference):
    loaded = []

    class Counting(Augmenting):
        def __getitem__(self, i):
            loaded.append(i)
            return super().__getitem__(i)

    loader = make_dataloader(Counting(), seed=5, batch_size=4, shuffle=True)
    loader.set_epoch(1, start_batch=3)
    rest = list(loader)
    assert same([rest], [reference[1][3:]])
    assert len(loaded) == sum(len(b) for b in reference[1][3:])


def test_loading_in_the_main_process_leaves_global_rngs_alone():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    list(make_dataloader(Augmenting(), seed=5, batch_size=4, shuffle=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_ranks_partition_the_epoch_by_global_index():
    single = make_dataloader(Augmenting(), seed=5, batch_size=1, shuffle=True)
    rows = {int(r[0, 0]): r for r in single}
    shards = [
        list(
            make_dataloader(Augmenting(), seed=5, batch_size=1, shuffle=True, rank=r, world_size=2)
        )
        for r in (0, 1)
    ]
    seen = [int(b[0, 0]) for shard in shards for b in shard]
    assert len(seen) == 38 and set(seen) == set(range(37))  # 37 padded to 38
    for shard in shards:  # the same sample gets the same augmentation whichever rank loads it
        for b in shard:
            assert torch.equal(b[0], rows[int(b[0, 0])][0])


def test_factory_refuses_what_it_owns():
    with pytest.raises(ValueError, match="generator"):
        make_dataloader(Augmenting(), seed=1, generator=torch.Generator())


class Normalising(Dataset):
    """A per-image normalisation: a large reduction whose rounding depends on torch's thread count."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.rand(3, 224, 224)
        return (x - x.mean()) / x.std()


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_large_reductions_in_getitem_do_not_depend_on_workers():
    torch.set_num_threads(2)
    ref = epochs(make_dataloader(Normalising(), seed=1, batch_size=4), 1)
    other = epochs(make_dataloader(Normalising(), seed=1, batch_size=4, num_workers=2), 1)
    assert same(ref, other)
    assert torch.get_num_threads() == 2  # the main process got its threads back


def test_iterable_datasets_are_refused_clearly():
    from torch.utils.data import IterableDataset

    class Stream(IterableDataset):
        def __iter__(self):
            yield from range(3)

    with pytest.raises(TypeError, match="map-style dataset"):
        make_dataloader(Stream(), seed=1)


def test_user_dataset_attributes_stay_reachable():
    ds = Augmenting()
    ds.classes = ["a", "b"]
    loader = make_dataloader(ds, seed=1, sampler=None)  # sampler=None is harmless
    assert loader.dataset.classes == ["a", "b"]


def test_batched_seeding_draws_what_per_sample_seeding_draws():
    from repro.core.loader import SeededDataset
    from repro.core.seeding import mix64, seed_globals_fast

    keys = [(0, 0), (0, 36), (3, 5), (2**40, 2**31 + 7), (7, 2**62)]
    inner = Augmenting()
    per_sample = []
    for epoch, index in keys:  # the definition: seed from (seed, epoch, index), then load
        seed_globals_fast(mix64(11, epoch, index))
        per_sample.append(inner[index % 37])
    batched = SeededDataset(_Modulo(inner), 11).__getitems__(keys)
    assert all(torch.equal(a, b) for a, b in zip(per_sample, batched, strict=True))


class _Modulo(Dataset):
    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return 2**63 - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.inner[i % 37]


@pytest.mark.parametrize("threads", [1, 2])
def test_main_process_loading_keeps_rngs_and_threads_whatever_the_thread_count(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        expected = (torch.rand(3), random.random(), np.random.rand())
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        got = epochs(make_dataloader(Augmenting(), seed=5, batch_size=4, shuffle=True))
        assert torch.get_num_threads() == threads
        assert torch.equal(torch.rand(3), expected[0])
        assert random.random() == expected[1] and np.random.rand() == expected[2]
    finally:
        torch.set_num_threads(before)
    assert same(got, epochs(make_dataloader(Augmenting(), seed=5, batch_size=4, shuffle=True)))


def test_state_dict_protocol_resumes_mid_epoch_in_a_new_loader():
    """The StatefulDataLoader protocol docs/run.md promises: state_dict() during a pass, load_state_dict()
    into a new loader, and the rest of that epoch and the next one come out the same."""

    def make():
        return make_dataloader(Augmenting(), seed=5, batch_size=4, shuffle=True)

    def flat(batches):
        return [torch.cat([t.reshape(-1).float() for t in b]) for b in batches]

    whole = make()
    first = flat(list(whole))
    second = flat(list(whole))
    loader = make()
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": 0, "batch": 3}
    other = make()
    other.load_state_dict(state)
    # Before its pass, the state says where it starts (a resume tells mid-epoch from it).
    assert other.state_dict() == state
    rest, after = flat(list(other)), flat(list(other))
    assert all(torch.equal(a, b) for a, b in zip(rest, first[3:], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(after, second, strict=True))
    assert other.state_dict() == {"epoch": 2, "batch": 0}
    with pytest.raises(ValueError, match="expected"):
        other.load_state_dict({"epoch": "x"})


class _Draws(Dataset):
    """Draws from torch's global RNG for every sample, from python's and numpy's for some only."""

    def __init__(self, python_every: int = 0, numpy_every: int = 0) -> None:
        self.python_every, self.numpy_every, self.calls = python_every, numpy_every, 0

    def __len__(self) -> int:
        return 96

    def __getitem__(self, i: int) -> torch.Tensor:
        self.calls += 1
        py = (
            random.random()
            if self.python_every and i % self.python_every == 3 % self.python_every
            else 0.0
        )
        npy = (
            float(np.random.rand())
            if self.numpy_every and i % self.numpy_every == 5 % self.numpy_every
            else 0.0
        )
        return torch.tensor([float(i), py, npy, float(torch.rand(()))], dtype=torch.float64)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize(
    "draws", [(0, 0), (0, 1), (1, 0), (13, 0), (0, 17), (11, 7)], ids=lambda d: f"py{d[0]}-np{d[1]}"
)
def test_seeding_only_the_rngs_in_use_gives_the_samples_of_seeding_all(workers, draws):
    """global_rngs="used" (the default) and "all" give the same batches, whichever global RNGs the
    dataset draws from and however rarely (one sample in 13 or 17: the batch that first draws is
    loaded again), in the main process and in workers."""

    def load(mode):
        return epochs(
            make_dataloader(
                _Draws(*draws),
                seed=3,
                batch_size=16,
                shuffle=True,
                num_workers=workers,
                global_rngs=mode,
            ),
            3,
        )

    used, every = load("used"), load("all")
    assert same(used, every)
    if draws[0]:
        assert len({float(b[k, 1]) for e in used for b in e for k in range(len(b))}) > 1


def test_a_dataset_seen_drawing_is_reloaded_once_and_then_seeded_per_sample():
    from repro.core.loader import SeededDataset

    keys = [(0, i) for i in range(32)]
    quiet = SeededDataset(_Draws(), 9)
    quiet._load(keys)
    quiet._load(keys)
    assert (quiet.reloads, quiet.dataset.calls) == (0, 64)  # torch only: never loaded twice
    assert quiet._watched == ("python", "numpy")

    rare = SeededDataset(_Draws(python_every=13), 9)
    first = rare._load(keys)
    assert (rare.reloads, rare.dataset.calls, rare._watched) == (1, 64, ("numpy",))
    again = rare._load(keys)
    assert (rare.reloads, rare.dataset.calls) == (1, 96)  # python now seeded per sample
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize("draws", [(0, 0), (13, 0), (0, 17)])
def test_watched_rngs_end_a_batch_where_seeding_all_leaves_them(draws):
    """In a worker nothing restores the global RNGs after a batch (collate_fn and the next batch see
    them): an RNG that was only watched must end where per-sample seeding would have left it."""
    from repro.core.loader import SeededDataset

    keys = [(1, i) for i in range(5, 45)]
    states = []
    for mode in ("used", "all"):
        random.seed(0)
        np.random.seed(0)
        SeededDataset(_Draws(*draws), 4, mode)._load(keys)
        np_state = np.random.get_state()
        states.append(
            (random.getstate(), np_state[1].tobytes(), np_state[2:], torch.get_rng_state())
        )
    assert states[0][:3] == states[1][:3]
    assert torch.equal(states[0][3], states[1][3])


def test_global_rngs_takes_used_or_all():
    with pytest.raises(ValueError, match=r"global_rngs='some'.*used, all"):
        make_dataloader(Augmenting(), seed=1, global_rngs="some")


class _Strict(Dataset):
    """Raises unless python's RNG was seeded from this sample's own key: what a crop does with a size
    drawn out of range. Loads only under per-sample seeding."""

    def __init__(self, seed: int, fails_at: int | None = None) -> None:
        self.seed, self.fails_at = seed, fails_at

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> float:
        from repro.core.seeding import mix64

        if i == self.fails_at:
            raise KeyError(i)  # the dataset's own error, before any draw
        value = random.random()
        random.seed(mix64(self.seed, 0, i))
        if value != random.random():
            raise ValueError(f"sample {i}: a draw its own seed would not give")
        return value


def test_a_sample_that_fails_on_the_shared_seed_is_loaded_with_its_own():
    from repro.core.loader import SeededDataset

    keys = [(0, i) for i in range(16)]
    loose = SeededDataset(_Strict(9), 9)
    values = loose._load(keys)
    assert loose.reloads == 1 and loose._watched == ("numpy",) and len(values) == 16
    assert values == SeededDataset(_Strict(9), 9, "all")._load(keys)
    with pytest.raises(KeyError):  # an error that no watched RNG caused is the dataset's own
        SeededDataset(_Strict(9, fails_at=0), 9)._load(keys)


def test_the_kit_loader_factory_passes_global_rngs_through():
    """docs/run.md tells users to pass global_rngs="all" to run.dataloader (which hands its keyword
    arguments to Repro.dataloader): the choice must reach the loader's dataset."""
    from repro import ReproConfig, setup_reproducibility

    repro = setup_reproducibility(
        ReproConfig(seed=4, pythonhashseed=None, cublas_workspace_config=None)
    )
    chosen = repro.dataloader(Augmenting(), 4, stream="all", global_rngs="all")
    assert chosen.dataset.global_rngs == "all" and chosen.dataset._watched == ()
    assert repro.dataloader(Augmenting(), 4, stream="default").dataset.global_rngs == "used"


def test_an_ordered_loader_over_bptt_streams_must_keep_each_rank_on_its_streams():
    """TokenWindows(streams=B) read in order: batch_size * world_size must be B, or a carried hidden
    state would move between streams (refused, naming the key)."""
    import numpy as np

    from repro import ConfigValueError, ReproConfig, TokenWindows, setup_reproducibility

    repro = setup_reproducibility(ReproConfig(pythonhashseed=None), in_process=True)
    windows = TokenWindows(np.arange(1000), 10, streams=4)
    loader = repro.dataloader(windows, 4, shuffle=False, stream="bptt")
    x, y = next(iter(loader))
    # batch 0: window 0 of each of the 4 streams, in stream order
    assert x[:, 0].tolist() == [0, 250, 500, 750] and torch.equal(y[:, :-1], x[:, 1:])
    with pytest.raises(ConfigValueError, match=r"batch_size=3 is not allowed"):
        repro.dataloader(windows, 3, shuffle=False, stream="bptt3")
    # shuffled windows are not streams: any batch size
    repro.dataloader(windows, 3, shuffle=True, stream="shuffled")
