"""The example's shapes: each canvas is drawn with its own class's mask only, which must give the
bits of the plain definition (all four masks drawn for every canvas, then one picked by label)."""

from __future__ import annotations

import numpy as np
import pytest

from experiment.data import draw_shapes


def _plain(rng: np.random.Generator, n: int, size: int, num_classes: int, noise: float):
    labels = rng.integers(0, num_classes, n)
    r = rng.uniform(size * 0.15, size * 0.3, (n, 1, 1))
    cx = rng.uniform(size * 0.3, size * 0.7, (n, 1, 1))
    cy = rng.uniform(size * 0.3, size * 0.7, (n, 1, 1))
    level = rng.uniform(0.6, 1.0, (n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = np.abs(xx - cx), np.abs(yy - cy)
    masks = np.stack(
        [
            dx**2 + dy**2 <= r**2,
            np.maximum(dx, dy) <= r * 0.85,
            (yy <= cy + r * 0.8) & (dx <= (yy - (cy - r)) * 0.5),
            ((dx <= r / 3) & (dy <= r)) | ((dy <= r / 3) & (dx <= r)),
        ]
    )
    images = masks[labels, np.arange(n)] * level + rng.normal(0.0, noise, (n, size, size))
    return images[:, None].astype(np.float32), labels.astype(np.int64)


@pytest.mark.parametrize(
    ("seed", "n", "size", "num_classes"),
    [(0, 512, 32, 4), (1, 97, 17, 3), (2, 40, 8, 1), (3, 64, 33, 2), (4, 3, 32, 4)],
)
def test_shapes_are_the_plain_definition_s_bits(seed, n, size, num_classes) -> None:
    got = draw_shapes(np.random.default_rng(seed), n, size, num_classes, 0.1)
    want = _plain(np.random.default_rng(seed), n, size, num_classes, 0.1)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()
    assert len(set(got[1].tolist())) == min(num_classes, n) or n < 10
