"""Input component: the shapes dataset (resnetdemo/shapes.py) rendered in memory from a seed when the run starts
(about 3 s for 10,000 images of 32 px): no files to build first. Test images come from `data_seed` + 1, so they
are never training images."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from playground.data import TensorData
from playground.opts import Opt
from resnetdemo.shapes import render_shape  # OpenCV: the vision extra (a missing one is named at --dry-run)

OPTS = {
    "input.imsize": Opt((int,), 32, doc="Side of the rendered shapes images, in pixels.", minimum=16),
    "input.num_train_images": Opt((int,), 12000, doc="Shapes images rendered for training.", minimum=1),
    "input.num_test_images": Opt((int,), 1000, doc="Shapes images rendered for testing.", minimum=1),
    "input.data_seed": Opt((int,), 1, doc="Seed of the training images; the test images use data_seed + 1.",
                           minimum=0),
    "input.num_classes": Opt((int,), 10, doc="Classes: the shapes dataset has 10.", choices=(10,)),
}
MEAN, STD = 128.0, 64.0  # of uint8 pixels: the network sees roughly zero-mean, unit-range inputs


class ShapesImages(TensorData):
    """uint8 images (N, 3, H, W) and their labels; batches become floats on the device (device_transform)."""

    def device_transform(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - MEAN) / STD


def make(num: int, size: int = 32, seed: int = 1) -> ShapesImages:
    """Images 0..num-1 of the shapes dataset drawn with `seed` (each depends on (seed, index) alone)."""
    images, labels = zip(*(render_shape(seed, i, size) for i in range(num)))
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # BGR, as the LMDB input reads
    return ShapesImages(pixels, torch.tensor(labels))


def get_dataset(exp: Any, split: str) -> ShapesImages:
    inp = exp.opts["input"]
    if split == "train":
        return make(inp["num_train_images"], inp["imsize"], inp["data_seed"])
    return make(inp["num_test_images"], inp["imsize"], inp["data_seed"] + 1)
