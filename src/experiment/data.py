"""Shapes on a noisy canvas: a classification dataset made from a seed, no download.

The canvases are drawn once from a numpy Generator the caller passes in (a
named stream of the run). Augmentation in ``__getitem__`` deliberately uses
the three global RNGs (python ``random``, ``numpy.random``, ``torch``), as
real dataset code does; the reproducibility kit's loader seeds them per
sample, so the result depends on (seed, epoch, index) only.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "triangle", "cross")


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
    dx, dy = np.abs(xx - cx), np.abs(yy - cy)
    masks = np.stack(
        [
            dx**2 + dy**2 <= r**2,  # circle
            np.maximum(dx, dy) <= r * 0.85,  # square
            (yy <= cy + r * 0.8) & (dx <= (yy - (cy - r)) * 0.5),  # triangle
            ((dx <= r / 3) & (dy <= r)) | ((dy <= r / 3) & (dx <= r)),  # cross
        ]
    )
    shape = masks[labels, np.arange(n)]
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
