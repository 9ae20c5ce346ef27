"""Shapes images with per-pixel class masks: one to `max_shapes` shapes of the shapes dataset's ten classes per
image, on the same noisy gradient backgrounds, each pixel labelled with the class of the shape covering it
(0: background).

Every image depends only on (seed, index), so any record can be regenerated on its own and no download is
needed. Shapes barely overlap (at most MAX_OVERLAP of a shape's area is covered by earlier ones), so every shape
stays recognisable and every labelled pixel can be told from the image.
"""
from __future__ import annotations

import numpy as np

from resnetdemo import shapes

CLASS_NAMES = ("background", *shapes.CLASS_NAMES)
NUM_CLASSES = len(CLASS_NAMES)
MAX_OVERLAP = 0.05  # fraction of a new shape's area that may lie on earlier shapes
_PLACEMENT_TRIES = 8  # placements tried per shape before it is left out


def shape_coverage(label: int, canvas: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] (canvas x canvas float32) of one shape of class `label` (0-9), drawn by the
    shapes dataset's own renderer: its radius is 0.18-0.42 of `canvas`, randomly placed inside it and rotated."""
    return shapes._shape_mask(label, canvas, rng)[:, :, 0]


def render(seed: int, index: int, size: int = 64, max_shapes: int = 3) -> tuple[np.ndarray, np.ndarray, list]:
    """(HWC BGR uint8 image, HW uint8 class mask, [(class, BGR colour) of each shape drawn, in drawing order]) of
    record `index` drawn with `seed`. A pixel belongs to a shape when the shape covers at least half of it."""
    rng = np.random.default_rng([seed, index])
    image = np.broadcast_to(shapes.gradient_background(size, rng), (size, size, 3)).copy()
    background = image.mean(axis=(0, 1))
    mask = np.zeros((size, size), np.uint8)
    covered = np.zeros((size, size), np.float32)
    drawn = []
    for _ in range(rng.integers(1, max_shapes + 1)):
        label = int(rng.integers(shapes.NUM_CLASSES))
        placed = _place(label, size, covered, rng)
        if placed is None:
            continue
        where, coverage = placed
        color = shapes.contrasting_color(background, rng)
        image[where] += (color - image[where]) * coverage[:, :, None]
        mask[where][coverage >= 0.5] = label + 1
        covered[where] = np.maximum(covered[where], coverage)
        drawn.append((label + 1, color))
    image += rng.normal(0, rng.uniform(4, 24), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask, drawn


def _place(label: int, size: int, covered: np.ndarray, rng: np.random.Generator) -> tuple | None:
    """(the image region of its canvas, the coverage there) of a shape of class `label` drawn on a canvas of 5/8
    to all of the image at a random place, overlapping earlier shapes by at most MAX_OVERLAP; None when no try
    fits."""
    for _ in range(_PLACEMENT_TRIES):
        canvas = int(rng.integers(size * 5 // 8, size + 1))
        top, left = rng.integers(0, size - canvas + 1, size=2)
        where = np.s_[top:top + canvas, left:left + canvas]
        coverage = shape_coverage(label, canvas, rng)
        if (coverage * covered[where]).sum() <= MAX_OVERLAP * coverage.sum():
            return where, coverage
    return None

