"""SegmentationOverlay: the predicted and true masks of a fixed test batch drawn over its images, as a PNG in the
run folder, for looking rather than reading."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from playground import checkpoint
from playground.events import EventHandler
from resnetdemo.vision import cv2
from zoo.fixed_batch import check_png_filename, fixed_test_batch
from zoo.segmentation.shape_masks import CLASS_NAMES

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)
# BGR colours of classes 1-10 (class 0, the background, is left uncoloured): far apart from each other.
PALETTE = np.array([(75, 25, 230), (75, 180, 60), (25, 225, 255), (200, 130, 0), (48, 130, 245), (180, 30, 145),
                    (240, 240, 70), (230, 50, 240), (60, 245, 210), (212, 190, 250)], np.uint8)
_SCALE = 3       # pixels drawn per image pixel
_HEADER = 22     # pixels of the column titles


class SegmentationOverlay(EventHandler):
    """After every test pass (rank 0), draws the first `num_images` test images in rows: the image, the
    predicted mask over it, the true mask over it (the image in grey, tinted with one colour per class; a legend
    below), into `filename` in the run folder. The file is rewritten each time, so it shows the newest weights'
    predictions: the final ones once the run ends.

    The test set's items are (image, mask): images uint8 (3, H, W) BGR, or floats drawn rescaled to [0, 255]; the
    network returns class scores (N, C, H, W). class_names: one per class, the background first.
    """

    def __init__(self, num_images: int = 8, filename: str = "segmentation_overlay.png",
                 class_names: list[str] = CLASS_NAMES):
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
        check_png_filename(filename)
        if len(class_names) > len(PALETTE) + 1:
            raise ValueError(f"class_names: at most {len(PALETTE) + 1} classes can be told apart by colour, got "
                             f"{len(class_names)}")
        self.num_images, self.filename, self.class_names = num_images, filename, list(class_names)
        self.drawn = 0  # pictures written by this process

    def on_test_end(self, exp: AnyExp) -> None:
        if exp.rank != 0 or exp.test_dataset is None:
            return
        path = os.path.join(exp.folder, self.filename)
        checkpoint.atomic_write(path, cv2.imencode(".png", self.draw(exp))[1].tobytes())
        if not self.drawn:
            log.info("SegmentationOverlay: %s shows the first %d test images after each test pass", path,
                     min(self.num_images, len(exp.test_dataset)))
        self.drawn += 1

    def draw(self, exp: AnyExp) -> np.ndarray:
        """The picture (HWC BGR uint8) for the experiment's current weights."""
        images, _, masks, scores = fixed_test_batch(exp, range(self.num_images))
        predicted = scores.argmax(dim=1).cpu().numpy()
        pictures = displayable(images)
        rows = [np.concatenate([picture, overlay(picture, p), overlay(picture, m)], axis=1)
                for picture, p, m in zip(pictures, predicted, masks.cpu().numpy())]
        grid = np.concatenate(rows, axis=0).repeat(_SCALE, axis=0).repeat(_SCALE, axis=1)
        return np.concatenate([titles(grid.shape[1], ("image", "predicted", "true")), grid,
                               legend(grid.shape[1], self.class_names)], axis=0)


def displayable(images: torch.Tensor) -> np.ndarray:
    """Images (N, 3, H, W) as N x H x W x 3 uint8: as they are when uint8, else each rescaled to [0, 255]."""
    images = images.detach().cpu()
    if images.dtype != torch.uint8:
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        images = ((images - low) / (high - low).clamp_min(1e-12) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())


def overlay(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`picture` in grey, each non-background pixel tinted 75% with its class colour (so colours are the classes'
    alone, never the image's)."""
    grey = picture.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2)
    labelled = mask > 0
    colours = PALETTE[(mask[labelled] - 1) % len(PALETTE)].astype(np.float32)
    grey[labelled] = 0.25 * grey[labelled] + 0.75 * colours
    return grey.astype(np.uint8)


def titles(width: int, names: tuple[str, ...]) -> np.ndarray:
    strip = np.full((_HEADER, width, 3), 255, np.uint8)
    for i, name in enumerate(names):
        cv2.putText(strip, name, (i * width // len(names) + 6, _HEADER - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def legend(width: int, class_names: list[str]) -> np.ndarray:
    """Swatches of the classes' colours with their names, as many per line as fit."""
    cell, per_line = 96, max(width // 96, 1)
    shapes = class_names[1:]
    lines = -(-len(shapes) // per_line)
    strip = np.full((lines * _HEADER + 4, width, 3), 255, np.uint8)
    for i, name in enumerate(shapes):
        x, y = (i % per_line) * cell + 6, (i // per_line) * _HEADER + 4
        strip[y:y + 14, x:x + 14] = PALETTE[i % len(PALETTE)]
        cv2.putText(strip, name, (x + 18, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return strip
