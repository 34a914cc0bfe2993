"""The example's data, made from the seed (no download): shapes to classify, a table to regress.

Each data class holds settings only (it is built from the ``data`` config by
``_target_``); ``build(rng)`` makes the training and validation sets from
named streams of the run (``rng`` is ``run.numpy_rng``).

Shapes: the canvases are drawn once from a numpy Generator the caller passes in (a
named stream of the run). Augmentation in ``__getitem__`` deliberately uses
the three global RNGs (python ``random``, ``numpy.random``, ``torch``), as
real dataset code does; the reproducibility kit's loader seeds them per
sample, so the result depends on (seed, epoch, index) only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Annotated

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from repro import Range

Streams = Callable[[str], np.random.Generator]

SHAPES = ("circle", "square", "triangle", "cross")
#: Upper bounds for sizes: far above anything the example needs, low enough to fail fast.
MAX_ITEMS = 10_000_000
MAX_WIDTH = 65_536
#: A number of samples.
Items = Annotated[int, Range(1, MAX_ITEMS)]
#: A noise's standard deviation.
Std = Annotated[float, Range(0)]


def draw_shapes(
    rng: np.random.Generator, n: int, size: int, num_classes: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` canvases of shape (1, size, size) float32 and their labels, all drawn from ``rng``."""
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"data.num_classes={num_classes}: expected 1..{len(SHAPES)}")
    labels = rng.integers(0, num_classes, n)
    r = rng.uniform(size * 0.15, size * 0.3, (n, 1, 1))
    cx = rng.uniform(size * 0.3, size * 0.7, (n, 1, 1))
    cy = rng.uniform(size * 0.3, size * 0.7, (n, 1, 1))
    level = rng.uniform(0.6, 1.0, (n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # Each canvas gets only its own class's mask (elementwise, so the same bits as drawing all four
    # and picking one, at a quarter of the work).
    shape = np.empty((n, size, size), dtype=bool)
    for k in range(num_classes):
        i = np.flatnonzero(labels == k)
        rk, dx, dy = r[i], np.abs(xx - cx[i]), np.abs(yy - cy[i])
        if k == 0:  # circle
            shape[i] = dx**2 + dy**2 <= rk**2
        elif k == 1:  # square
            shape[i] = np.maximum(dx, dy) <= rk * 0.85
        elif k == 2:  # triangle
            shape[i] = (yy <= cy[i] + rk * 0.8) & (dx <= (yy - (cy[i] - rk)) * 0.5)
        else:  # cross
            shape[i] = ((dx <= rk / 3) & (dy <= rk)) | ((dy <= rk / 3) & (dx <= rk))
    images = shape * level + rng.normal(0.0, noise, (n, size, size))
    return images[:, None].astype(np.float32), labels.astype(np.int64)


class ShapesDataset(Dataset):
    """Images and labels in memory; ``augment`` adds flips, shifts and noise from the global RNGs."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        augment: bool,
        augment_noise: float = 0.1,
        max_shift: int = 2,
    ) -> None:
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels)
        self.augment = augment
        self.augment_noise = augment_noise
        self.max_shift = max_shift

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.augment:
            if random.random() < 0.5:  # python's global RNG
                image = image.flip(-1)
            noise = np.random.normal(0.0, self.augment_noise, image.shape)  # numpy's global RNG
            image = image + torch.from_numpy(noise.astype(np.float32))
            shift = torch.randint(-self.max_shift, self.max_shift + 1, (2,))  # torch's global RNG
            image = torch.roll(image, shifts=(int(shift[0]), int(shift[1])), dims=(-2, -1))
        return image, self.labels[index]


class ShapesData:
    """Procedural shapes (circle, square, triangle, cross) on noisy ``image_size`` canvases."""

    def __init__(
        self,
        train_size: Items = 2048,
        val_size: Items = 512,
        image_size: Annotated[int, Range(4, 1024)] = 32,
        num_classes: Annotated[int, Range(1, len(SHAPES))] = 4,
        noise: Std = 0.1,
        augment_noise: Std = 0.1,
        max_shift: Annotated[int, Range(0, 64)] = 2,
    ) -> None:
        self.train_size, self.val_size, self.image_size = train_size, val_size, image_size
        self.num_classes, self.noise = num_classes, noise
        self.augment_noise, self.max_shift = augment_noise, max_shift

    def build(self, rng: Streams) -> tuple[Dataset, Dataset]:
        train = draw_shapes(
            rng("data.train"), self.train_size, self.image_size, self.num_classes, self.noise
        )
        val = draw_shapes(
            rng("data.val"), self.val_size, self.image_size, self.num_classes, self.noise
        )
        return (
            ShapesDataset(
                *train, augment=True, augment_noise=self.augment_noise, max_shift=self.max_shift
            ),
            ShapesDataset(*val, augment=False),
        )


class TabularData:
    """A regression table: ``features`` Gaussian inputs, a smooth nonlinear target plus noise.

    The target function (its weights) comes from its own stream, so training and validation rows
    follow the same function.
    """

    def __init__(
        self,
        train_size: Items = 2048,
        val_size: Items = 512,
        features: Annotated[int, Range(1, MAX_WIDTH)] = 8,
        noise: Std = 0.1,
    ) -> None:
        self.train_size, self.val_size, self.features, self.noise = (
            train_size,
            val_size,
            features,
            noise,
        )

    def _rows(
        self, rng: np.random.Generator, n: int, w: np.ndarray, v: np.ndarray
    ) -> TensorDataset:
        x = rng.normal(0.0, 1.0, (n, self.features))
        y = (
            np.tanh(x @ w) @ v
            + 0.1 * (x[:, 0] * x[:, 1 % self.features])
            + rng.normal(0.0, self.noise, n)
        )
        return TensorDataset(
            torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
        )

    def build(self, rng: Streams) -> tuple[Dataset, Dataset]:
        fn = rng("data.function")
        w = fn.normal(0.0, 1.0 / np.sqrt(self.features), (self.features, 4))
        v = fn.normal(0.0, 1.0, 4)
        return self._rows(rng("data.train"), self.train_size, w, v), self._rows(
            rng("data.val"), self.val_size, w, v
        )
