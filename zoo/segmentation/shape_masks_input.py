"""Input component: shapes images with per-pixel class masks (zoo.segmentation.shape_masks), generated into
memory when the run starts; the train and test splits are drawn from different seeds, so the test set measures
generalisation."""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from playground.data import mix_seeds
from playground.opts import Opt
from zoo.segmentation import shape_masks

log = logging.getLogger(__name__)
SPLITS = ("train", "test")
OPTS = {
    "input.image_size": Opt((int,), 64, doc="Side of the square images, in pixels (fcn_forward needs a multiple of 2 "
                            "to the power of its stages: 16 for four).",
                            minimum=16),
    "input.max_shapes": Opt((int,), 3, doc="Most shapes per image (each image has 1 to this many).", minimum=1),
    "input.num_train_images": Opt((int,), 8000, doc="Images in the training set (an epoch draws "
                                  "epoch_iter.num_train_sample_per_epoch of them).", minimum=1),
    "input.num_test_images": Opt((int,), 1000, doc="Images in the test set.", minimum=1),
}


class ShapeMasks(torch.utils.data.Dataset):
    """`num` images (uint8, N x 3 x H x W, BGR) and their class masks (N x H x W; 0: background, 1-10: the shapes
    dataset's classes), images `0..num-1` of the split's seed. Batches are one indexing operation."""

    def __init__(self, seed: int, split: str, num: int, size: int = 64, max_shapes: int = 3):
        split_seed = mix_seeds(seed, SPLITS.index(split))
        images, masks = np.empty((num, size, size, 3), np.uint8), np.empty((num, size, size), np.uint8)
        for i in range(num):
            images[i], masks[i], _ = shape_masks.render(split_seed, i, size, max_shapes)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.masks = torch.from_numpy(masks)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index].long()

    def get_batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor(indices)
        return self.images[index], self.masks[index].long()  # stored as uint8: a quarter of int64's memory

    @staticmethod
    def device_transform(images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels to floats in [-1, 1], batched on the training device."""
        return images.float().div_(127.5).sub_(1.0)


def get_dataset(exp, split: str) -> ShapeMasks:
    """input.num_train_images for 'train', input.num_test_images for 'test', drawn from model_param.seed."""
    inp = exp.opts["input"]
    started = time.perf_counter()
    dataset = ShapeMasks(exp.seed, split, inp[f"num_{split}_images"], inp["image_size"], inp["max_shapes"])
    log.info("shape_masks_input: generated %d %s images of %d px in %.1f s", len(dataset), split, inp["image_size"],
             time.perf_counter() - started)
    return dataset
