"""The image input's batches are bitwise what the straightforward per-image path gives (the pipeline as first
written: one record at a time, np.select for the jitter order), in this process and in worker processes: making
the loader faster must never change what it feeds the network."""
import hashlib
import itertools
import math

import cv2
import numpy as np
import pytest
import torch

from playground import data
from resnetdemo import lmdb_input, transforms
from test_lmdb_data import build_shapes, make_exp


def reference_box(height: int, width: int, draws: list[float]) -> tuple[int, int, int, int]:
    for attempt in range(0, 40, 4):
        u_area, u_ratio, u_top, u_left = draws[attempt:attempt + 4]
        area = height * width * (0.08 + (1 - 0.08) * u_area)
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u_ratio)
        crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return int(u_top * (height - crop_h + 1)), int(u_left * (width - crop_w + 1)), crop_h, crop_w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def reference_crop(transform, image: np.ndarray, row: list[float]) -> np.ndarray:
    size = transform.imsize
    if isinstance(transform, transforms.TestTransform):
        return transforms.center_crop(transforms.resize_shorter_side(image, transform.loadsize), size).copy()
    if transform.scale_jitter_type == 0:
        crop = transforms.random_crop(transforms.resize_shorter_side(image, transform.loadsize), size, *row[:2])
    else:
        top, left, height, width = reference_box(*image.shape[:2], row)
        crop = cv2.resize(image[top:top + height, left:left + width], (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop[:, ::-1] if transform.mirror and row[40] < 0.5 else crop)


def reference_colour(transform, crops: np.ndarray, draws: np.ndarray) -> np.ndarray:
    n = len(crops)
    normalize = transforms._Normalizer(transforms.IMAGENET_MEAN_RGB, transforms.IMAGENET_STD_RGB)
    p, q, c = np.ones(n), np.zeros(n), np.zeros(n)
    if isinstance(transform, transforms.TestTransform):
        return normalize(p, q, np.zeros((n, 3)))
    if transform.color_jitter:
        mean_gray = np.array([cv2.mean(crop)[:3] for crop in crops]) @ transforms.GRAY_WEIGHTS_RGB[::-1]
        jitter = draws[:, 41:45]
        orders = np.array(list(itertools.permutations(range(3))))[(jitter[:, 3] * 6).astype(int)]
        for position in range(3):
            alpha = 1 + 0.4 * (2 * jitter[:, position] - 1)
            step, pq = orders[:, position], p + q
            c = np.select([step == 0, step == 1], [alpha * c, alpha * c + (1 - alpha) * (pq * mean_gray + c)], c)
            q = np.where(step == 2, alpha * q + (1 - alpha) * pq, alpha * q)
            p = alpha * p
    lighting = 255 * transforms.LIGHTING_STD * transforms.PCA_EIGVEC * transforms.PCA_EIGVAL
    shift = c[:, None] + transforms.standard_normals(draws[:, 45:49]) @ lighting.T if transform.color_lighting \
        else c[:, None]
    return normalize(p, q, shift)


def reference_batch(dataset, indices: list[int], epoch: int):
    draws = transforms.counter_uniforms(data.mix_seeds(dataset.seed, epoch), indices)
    crops, labels = [], []
    for index, row in zip(indices, draws.tolist()):
        encoded, label = dataset.reader.read(index)
        image = cv2.imdecode(np.frombuffer(encoded, np.uint8), dataset.decode_flags)
        crops.append(reference_crop(dataset.transform, image, row))
        labels.append(label)
    crops = np.stack(crops)
    return crops, reference_colour(dataset.transform, crops, draws).astype(np.float32), np.array(labels)


@pytest.mark.parametrize("split, overrides", [
    ("train", {}),  # random-resized crop, mirror, colour jitter, lighting
    ("train", {"scale_jitter_type": 0}),
    ("train", {"color_jitter": False, "color_lighting": False, "mirror": False}),
    ("test", {})])
def test_batches_are_bitwise_the_per_image_path(tmp_path, split, overrides):
    build_shapes(tmp_path / "db", num=40)
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db", **overrides), split)
    index_lists = [[3, 17, 0, 39, 8, 25, 11, 30], [5, 6, 2, 33, 21, 1, 14, 9]]
    for epoch in (0, 4):
        dataset.set_epoch(epoch)
        for ((pixels, colour), labels), indices in zip(data.batches(dataset, index_lists, 0, 0, False), index_lists,
                                                       strict=True):
            expected = reference_batch(dataset, indices, epoch)
            for got, want in zip((pixels, colour, labels), expected):
                np.testing.assert_array_equal(got.numpy(), want)


def test_batches_from_worker_processes_are_bitwise_the_per_image_path(tmp_path):
    build_shapes(tmp_path / "db", num=40)
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db"), "train")
    index_lists = [list(range(b, 40, 5)) for b in range(5)]
    dataset.set_epoch(2)
    for ((pixels, colour), labels), indices in zip(data.batches(dataset, index_lists, 2, 0, False), index_lists,
                                                   strict=True):
        for got, want in zip((pixels, colour, labels), reference_batch(dataset, indices, 2)):
            np.testing.assert_array_equal(got.numpy(), want)


# SHA-256 of the batches below as the loader gave them before the 2026-11 speed-ups (OpenCV 4.x, libjpeg-turbo):
# the pipeline may only get faster, never change a bit of what it feeds the network. A new OpenCV whose decoder
# or resize rounds differently changes them too: then check the per-image tests above and pin the new digests.
PINNED_DIGESTS = [
    ("train", {}, "2c2a04e91e6d73e3603d2569f336715145dafe22f101b9b85d6a1a9331d97582"),
    ("train", {"scale_jitter_type": 0}, "0ea581a07cd2a39a0d4bedf58fbb4a321cb72634bd528853cf3ae1ae3044ba57"),
    ("train", {"color_jitter": False, "color_lighting": False},
     "284f15a10ecdc3b8b0ad3d30ac64c28e6b3ee0005d17b3928a57ff6346bb940a"),
    ("test", {}, "ea3fb27ae5ffb4c0e5c5a8bb63c3f40059078701c203859645d3b6c0bf28c0d0"),
]


def batches_digest(tmp_path, split: str, overrides: dict, workers: int) -> str:
    build_shapes(tmp_path / "db", num=40)
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db", **overrides), split)
    index_lists = [list(range(b, 40, 7)) for b in range(7)] + [[39, 0, 38, 1]]
    digest = hashlib.sha256()
    for epoch in (0, 3):
        dataset.set_epoch(epoch)
        for (pixels, colour), labels in data.batches(dataset, index_lists, workers, 0, False):
            for tensor in (pixels, colour, labels):
                digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("split, overrides, expected", PINNED_DIGESTS)
def test_batches_are_bitwise_the_pinned_ones(tmp_path, split, overrides, expected):
    assert batches_digest(tmp_path, split, overrides, workers=0) == expected
    if split == "train" and not overrides:
        assert batches_digest(tmp_path / "workers", split, overrides, workers=2) == expected
