"""Resume-to-first-step time at the start and at the end of a long epoch (ratio measured in one run).

    python scripts/bench_resume.py [--samples 1000000] [--workers 0 2]

The loader jumps to the saved position: its cost is the epoch's permutation
(O(epoch length), the same at every position) plus the first batch. For
contrast it also times the approach of reaching the position by loading and
discarding the batches before it (what Composer-style resumes do), over a
prefix of the epoch, extrapolated to the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from repro import make_dataloader


class Synthetic(Dataset):
    """A long map-style dataset whose items use the global RNGs, like real augmentation."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.full((3, 8, 8), float(i % 251))
        return x + torch.rand(()) + float(np.random.rand()) + random.random()


def first_batch_time(dataset: Dataset, start_batch: int, workers: int, batch_size: int) -> float:
    """Seconds from building the loader at a position to holding its first batch."""
    t0 = time.perf_counter()
    loader = make_dataloader(
        dataset, seed=1, batch_size=batch_size, shuffle=True, num_workers=workers
    )
    loader.set_epoch(3, start_batch=start_batch)
    next(iter(loader))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--replay-batches", type=int, default=300)
    args = parser.parse_args()
    data = Synthetic(args.samples)
    batches = args.samples // args.batch_size
    print(f"epoch: {args.samples:,} samples, {batches:,} batches of {args.batch_size}")
    print(
        f"{'workers':>7} {'at start ms':>12} {'at end ms':>10} {'end/start':>10} {'replay to end s (est.)':>23}"
    )
    for workers in args.workers:
        start = statistics.median(
            first_batch_time(data, 0, workers, args.batch_size) for _ in range(args.repeats)
        )
        end = statistics.median(
            first_batch_time(data, batches - 1, workers, args.batch_size)
            for _ in range(args.repeats)
        )
        # Contrast: reach the position by iterating and discarding (measured on a prefix).
        loader = make_dataloader(
            data, seed=1, batch_size=args.batch_size, shuffle=True, num_workers=workers
        )
        loader.set_epoch(3)
        t0 = time.perf_counter()
        for i, _ in enumerate(loader):
            if i + 1 >= args.replay_batches:
                break
        replay = (time.perf_counter() - t0) / args.replay_batches * (batches - 1)
        print(
            f"{workers:>7} {start * 1e3:>12.1f} {end * 1e3:>10.1f} {end / start:>10.2f} {replay:>23.1f}"
        )


if __name__ == "__main__":
    main()
