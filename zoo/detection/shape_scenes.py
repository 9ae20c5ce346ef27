"""Detection data: one to `max_shapes` shapes of the shapes dataset's ten classes per image, at random places,
sizes and rotations, each with its box and class. Every image depends only on (seed, split, index), so the
data needs no download and no storage: a dataset draws its images when they are read."""
from __future__ import annotations

import numpy as np
import torch

from resnetdemo import shapes

CLASS_NAMES = shapes.CLASS_NAMES
NUM_CLASSES = shapes.NUM_CLASSES
SCALES = (0.09, 0.28)      # a shape's radius as a fraction of the image size (boxes of ~1/6 to ~1/2 of it)
MAX_OVERLAP = 0.15         # of the smaller of two shapes' bounding squares: shapes barely touch
_PLACEMENT_TRIES = 20
_SPLITS = {"train": 0, "test": 1}


def render_scene(seed: int, index: int, size: int = 64, max_shapes: int = 4, split: str = "train",
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HWC BGR uint8 image, boxes as float32 [n, 4] x0 y0 x1 y1 in pixels, classes as int64 [n]) of image
    `index` of `split`. A shape that finds no place clear of the others after some tries is left out."""
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    background = shapes.gradient_background(size, rng)
    image = np.broadcast_to(background.astype(np.float32), (size, size, 3)).copy()
    squares: list[np.ndarray] = []
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _ in range(_PLACEMENT_TRIES):
            label = int(rng.integers(NUM_CLASSES))
            radius = rng.uniform(*SCALES) * size
            center = rng.uniform(radius, size - radius, size=2)
            square = np.concatenate([center - radius, center + radius])
            if all(_overlap(square, other) <= MAX_OVERLAP for other in squares):
                break
        else:
            continue
        mask, box = shapes.shape_mask_and_box(label, size, radius, center, rng.uniform(0, 2 * np.pi), rng)
        color = shapes.contrasting_color(background.mean(axis=(0, 1)), rng)
        image += mask * (color.astype(np.float32) - image)
        squares.append(square)
        boxes.append(box)
        labels.append(label)
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(4, 16)
    return (np.clip(image, 0, 255).astype(np.uint8), np.array(boxes, np.float32).reshape(-1, 4),
            np.array(labels, np.int64))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes over the smaller one's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


class ShapeScenes(torch.utils.data.Dataset):
    """`num_images` scenes of `split`, drawn when read. Items: (uint8 image [3, S, S], {"boxes": float32 [n, 4],
    "labels": int64 [n]}); batches: (uint8 images [B, 3, S, S], a list of B such dicts), the targets'
    format of COCO-style mAP."""

    class_names = CLASS_NAMES

    def __init__(self, seed: int, split: str, num_images: int, size: int = 64, max_shapes: int = 4):
        self.seed, self.split, self.num_images, self.size, self.max_shapes = seed, split, num_images, size, max_shapes

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"image {index} of a {self.split} set of {self.num_images}")
        image, boxes, labels = render_scene(self.seed, index, self.size, self.max_shapes, self.split)
        return (torch.from_numpy(image).permute(2, 0, 1).contiguous(),
                {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})

    @staticmethod
    def collate(items: list) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Images stacked; targets kept as a list, one dict per image (their box counts differ)."""
        return torch.stack([image for image, _ in items]), [target for _, target in items]

    @staticmethod
    def device_transform(images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels to floats around zero, on the training device."""
        return images.float().sub_(127.5).div_(64.0)
