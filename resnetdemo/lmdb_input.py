"""Input component `gfs_IN1k`: image classification batches from a playground image LMDB (see lmdb_format).

Opts: see `OPTS` below (all in the "input" section).

Augmentation of record i in epoch e depends only on (exp.seed, e, i), so results do not depend on the number of
DataLoader workers or the order they run in.
"""

import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

from resnetdemo.vision import cv2
import numpy as np
import torch

from playground import data
from playground.errors import DataError, UsageError
from playground.opts import OPTIONAL, REQUIRED, Opt
from resnetdemo.lmdb_format import LmdbReader, RecordError
from resnetdemo.transforms import (CROP_DRAWS, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, TestTransform, TrainTransform,
                                   apply_colour, counter_uniforms)

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
_WAREHOUSE = "accepted and unused: Caffe2 read it from Facebook's data warehouse; here the LMDB paths say it all."
_STR, _INT, _BOOL, _LIST, _NUM = (str,), (int,), (bool,), (list,), (int, float)


def _crop_fits(imsize: int, opts: dict) -> str:
    loadsize = opts["input"]["loadsize"]
    return f"{imsize} must not exceed input.loadsize ({loadsize})" if imsize > loadsize else ""


def _three_channels(values: list, opts: dict) -> str:
    return "" if len(values) == 3 else f"needs 3 numbers, R, G and B, got {len(values)}"


OPTS: dict[str, Opt] = {
    "input.train_input_path": Opt(_STR, None, REQUIRED, "LMDB folder of the training split (playground make-lmdb).",
                                  '"data/shapes/train"'),
    "input.test_input_path": Opt(_STR, None, REQUIRED, "LMDB folder of the test split.", '"data/shapes/test"'),
    "input.num_classes": Opt(_INT, None, REQUIRED, "Classes the model predicts; at least the dataset's.", "10",
                             minimum=1),
    "input.loadsize": Opt(_INT, None, REQUIRED, "Shorter side images are resized to before cropping.", "256",
                          minimum=1),
    "input.imsize": Opt(_INT, None, REQUIRED, "Side of the square crop fed to the network; at most loadsize.", "224",
                        minimum=1, check=_crop_fits),
    "input.scale_jitter_type": Opt(_INT, 0, OPTIONAL, "0: random imsize crop of the loadsize image; 1: "
                                   "random-resized crop (8-100% of the area, aspect 3/4-4/3).", choices=(0, 1)),
    "input.mirror": Opt(_BOOL, True, OPTIONAL, "Random horizontal flips in training."),
    "input.color_jitter": Opt(_BOOL, False, OPTIONAL, "Brightness, contrast and saturation jitter of 40%, in "
                              "random order."),
    "input.color_lighting": Opt(_BOOL, False, OPTIONAL, "AlexNet-style PCA lighting noise (std 0.1)."),
    "input.mean": Opt(_LIST, list(IMAGENET_MEAN_RGB), OPTIONAL, "Per-channel mean subtracted, RGB, 0-255 scale.",
                      items=Opt(_NUM, minimum=None), check=_three_channels),
    "input.std": Opt(_LIST, list(IMAGENET_STD_RGB), OPTIONAL, "Per-channel std divided by, RGB, 0-255 scale.",
                     items=Opt(_NUM, exclusive_minimum=0), check=_three_channels),
    "input.max_decode_failures": Opt(_NUM, 0.001, OPTIONAL, "Fraction of a split's records that may fail their "
                                     "checksum or decode (each is replaced by the next good one, with a warning) "
                                     "before the run stops with an error.", maximum=1),
    **{f"input.{key}": Opt(types, None, OPTIONAL, _WAREHOUSE) for key, types in (
        ("namespace", _STR), ("table", _STR), ("column_handle", _STR), ("column_label", _STR), ("column_id", _STR),
        ("label_type", _INT), ("train_partition", (dict,)), ("test_partition", (dict,)))},
}
_REDUCED_DECODE_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2))


class LmdbImageDataset(torch.utils.data.Dataset):
    """Batches of uint8 crops and their colour matrices from an image LMDB, decoded and augmented on the fly;
    `device_transform` turns them into the network's float input where the network runs.
    `seed` must be in [0, 2**32)."""

    def __init__(self, reader: LmdbReader, transform: TrainTransform | TestTransform,
                 *, seed: int, max_decode_failures: float, decode_flags: int):
        self.reader, self.transform, self.seed = reader, transform, seed
        self.decode_flags = decode_flags
        self.max_damaged_records = math.floor(max_decode_failures * len(reader))
        # Shared memory, inherited by forked workers: set_epoch reaches persistent workers too, and damaged
        # records are counted once across all workers and epochs.
        self._epoch = multiprocessing.RawValue("q", 0)
        self._damaged = multiprocessing.RawArray("b", len(reader))
        self._damaged_count = multiprocessing.Value("q", 0)
        self._configured_pid: int | None = None

    def __len__(self) -> int:
        return len(self.reader)

    def set_epoch(self, epoch: int) -> None:
        """Selects the augmentation of epoch `epoch`; called by the framework before each epoch."""
        self._epoch.value = epoch

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        (pixels, colour), labels = self.get_batch([index])
        return (pixels[0], colour[0]), int(labels[0])

    def get_batch(self, indices: Sequence[int]) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """((N, imsize, imsize, 3) uint8 BGR crops, (N, 3, 4) float32 colour matrices), (N,) int64 labels."""
        if self._configured_pid != os.getpid():
            self._configure_process()
        size = self.transform.imsize
        pixels, colour, labels = data.batch_tensors(((len(indices), size, size, 3), torch.uint8),
                                                    ((len(indices), 3, 4), torch.float32),
                                                    ((len(indices),), torch.int64))
        # Every call into torch together, before the loop: after decoding a batch, torch's code and data are out of
        # the caches and one call costs 10-25 us instead of 1-3 (as much as the loop's Python for 5-10 images).
        crops, colour_out, labels_out = pixels.numpy(), colour.numpy(), labels.numpy()
        draws = counter_uniforms(data.mix_seeds(self.seed, self._epoch.value), indices, self.transform.num_draws)
        decode, crop, found = self._decode, self.transform.crop, []
        # Each image is cropped as soon as it is decoded, while it is still in the cache. The loop runs once per
        # image: at 64 px each call or item assignment it saves is a fraction of a percent.
        with self.reader.reading() as read:
            for index, row, out in zip(indices, draws[:, :CROP_DRAWS].tolist(), crops):
                try:
                    image, label = decode(read, index)
                except RecordError:
                    image, label = self._substitute(read, index)
                crop(image, row, out)
                found.append(label)
        labels_out[:] = found
        colour_out[...] = self.transform.colour(crops, draws)
        return (pixels, colour), labels

    @staticmethod
    def device_transform(inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The network's (N, 3, imsize, imsize) float32 input from a batch already on its device."""
        return apply_colour(*inputs)

    def _configure_process(self) -> None:
        if torch.utils.data.get_worker_info() is not None:
            cv2.setNumThreads(0)  # OpenCV's own threads would fight the other DataLoader workers for cores
        self._configured_pid = os.getpid()

    def _substitute(self, read: Callable[[int], tuple[memoryview, int]], index: int) -> tuple[np.ndarray, int]:
        """In place of damaged record `index`, the next record that decodes, decoded; each damaged one recorded once."""
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            try:
                return self._decode(read, candidate)
            except RecordError as exc:
                self._record_damage(candidate, exc)
        raise DataError(f"{self.reader.path}: no record can be decoded; rebuild it with playground make-lmdb")

    def _decode(self, read: Callable[[int], tuple[bytes | memoryview, int]], index: int) -> tuple[np.ndarray, int]:
        encoded, label = read(index)
        try:
            image = cv2.imdecode(np.frombuffer(encoded, np.uint8), self.decode_flags)
        except cv2.error as exc:
            raise RecordError(f"{self.reader.path} record {index}: OpenCV cannot decode it ({exc})") from exc
        if image is None:
            raise RecordError(f"{self.reader.path} record {index}: OpenCV cannot decode it")
        return image, label

    def _record_damage(self, index: int, exc: RecordError) -> None:
        with self._damaged_count.get_lock():
            if self._damaged[index]:
                return
            self._damaged[index] = 1
            self._damaged_count.value += 1
            count = self._damaged_count.value
        logger.warning("%s; using the next record in its place", exc)
        if count > self.max_damaged_records:
            raise DataError(f"{self.reader.path}: {count} of {len(self)} records are damaged, more than "
                            f"input.max_decode_failures allows ({self.max_damaged_records}); "
                            f"rebuild it with playground make-lmdb. The latest: {exc}")


def get_dataset(exp: Any, split: str) -> LmdbImageDataset:
    """The `split` ("train" or "test") dataset of `exp`, checked against its data before any worker starts."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    opts = exp.opts["input"]
    path, num_classes, loadsize = opts[f"{split}_input_path"], opts["num_classes"], opts["loadsize"]
    sizes = {"loadsize": loadsize, "imsize": opts["imsize"], "mean": opts["mean"], "std": opts["std"]}
    if split == "train":
        transform = TrainTransform(**sizes, scale_jitter_type=opts["scale_jitter_type"], mirror=opts["mirror"],
                                   color_jitter=opts["color_jitter"], color_lighting=opts["color_lighting"])
    else:
        transform = TestTransform(**sizes)

    reader = LmdbReader(path)
    if len(reader) == 0:
        raise UsageError(f"{path} holds no images; rebuild it with playground make-lmdb")
    if reader.num_classes > num_classes:
        raise UsageError(f"input.num_classes is {num_classes} but {path} has {reader.num_classes} classes; "
                         f"set input.num_classes to {reader.num_classes}")
    return LmdbImageDataset(reader, transform, seed=exp.seed, max_decode_failures=opts["max_decode_failures"],
                            decode_flags=decode_flags(reader.meta, loadsize))


def decode_flags(meta: dict[str, Any], loadsize: int) -> int:
    """cv2.imdecode flags: JPEGs whose shorter side is at least 2, 4 or 8 times `loadsize` are decoded at
    1/2, 1/4 or 1/8 scale, which costs a fraction of a full decode."""
    if meta["encoding"] == "jpg":
        for factor, flag in _REDUCED_DECODE_FLAGS:
            if meta["min_shorter_side"] // factor >= loadsize:
                return flag
    return cv2.IMREAD_COLOR
