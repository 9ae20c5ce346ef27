"""Images per second of the gfs_IN1k input pipeline against a bare loop doing the same work, and a Pillow baseline.

    python benchmarks/input_pipeline.py [--num 2000] [--size 64] [--loadsize PX] [--imsize PX] [--rounds 5]
                                        [--groups-in-flight N]

Builds a shapes LMDB (and the same JPEGs as a class folder) in a temporary folder, then times full passes over the
data: the fair ceiling, a bare loop doing the necessary work by hand (read, decode at the dataset's reduced scale,
random-resized crop, flip, uint8 batches), and a bare read + decode with no crop; our dataset's batches as
training fetches them (playground.data.batches, batch 64), with 0 and 2 workers, with the same augmentation as the
bare loop and with colour jitter and lighting on top, as the loader hands them over (uint8 crops and colour
matrices: what a GPU run copies to the GPU, where the colour pass runs) and with the colour pass done on this CPU
(what a CPU run feeds the network); and a Pillow-based folder dataset with the full augmentation written the usual
way, 0 workers. Prints median rates, CPU time per image, ratios, and what each stage of a batch costs per image.
"""

import argparse
import collections
import dataclasses
import itertools
import math
import os
import random
import shutil
import statistics
import tempfile
import time
import types
from pathlib import Path
from typing import Callable

import cv2
import lmdb
import numpy as np
import torch
from PIL import Image

from playground import data
from playground.opts import with_defaults
from resnetdemo import lmdb_input, make_lmdb, shapes, transforms
from resnetdemo.lmdb_format import RECORD_HEADER, LmdbReader, record_key

BATCH_SIZE = 64
BARE = "bare loop: read, decode, crop, flip"
SAME = "ours, crop + flip"  # the bare loop's work, and the normalisation as colour matrices
FULL = "ours, + colour aug"  # and colour jitter and lighting
HANDOFF_BATCHES = 16  # per timing of the hand-off


def read_and_decode(env: lmdb.Environment, order: list[int], flags: int) -> Callable[[], int]:
    """A bare loop: read every record and decode it as the dataset does (`flags`), nothing else: no crop."""

    def run() -> int:
        with env.begin() as txn:
            for i in order:
                value = txn.get(record_key(i))
                cv2.imdecode(np.frombuffer(value, np.uint8, offset=RECORD_HEADER.size), flags)
        return len(order)
    return run


def bare_loop(env: lmdb.Environment, order: list[int], flags: int, imsize: int) -> Callable[[], int]:
    """The fair ceiling: the necessary work of a training batch written by hand, with no framework. Read each
    record, decode it at the dataset's reduced scale (`flags`), random-resized crop (8-100% of the area, aspect
    3/4-4/3, 10 attempts then the central square), random flip, into a fresh (64, imsize, imsize, 3) uint8 batch
    with its labels. `env`: a copy of the dataset's LMDB (LMDB allows one environment per file per process, and
    the dataset holds one)."""
    rng = random.Random(0)
    low, high = math.log(3 / 4), math.log(4 / 3)

    def run() -> int:
        with env.begin() as txn:
            for start in range(0, len(order), BATCH_SIZE):
                indices = order[start:start + BATCH_SIZE]
                pixels, labels = np.empty((len(indices), imsize, imsize, 3), np.uint8), []
                for out, i in zip(pixels, indices):
                    value = txn.get(record_key(i))
                    labels.append(RECORD_HEADER.unpack_from(value)[1])
                    image = cv2.imdecode(np.frombuffer(value, np.uint8, offset=RECORD_HEADER.size), flags)
                    height, width = image.shape[:2]
                    for _ in range(10):
                        area = height * width * rng.uniform(0.08, 1.0)
                        ratio = math.exp(rng.uniform(low, high))
                        w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
                        if 0 < w <= width and 0 < h <= height:
                            top, left = int(rng.random() * (height - h + 1)), int(rng.random() * (width - w + 1))
                            break
                    else:
                        h = w = min(height, width)
                        top, left = (height - h) // 2, (width - w) // 2
                    # OpenCV's arguments by position, as the dataset passes them: by keyword costs 0.5-2 us more
                    cv2.resize(image[top:top + h, left:left + w], (imsize, imsize), out, 0, 0, cv2.INTER_LINEAR)
                    if rng.random() < 0.5:
                        cv2.flip(out, 1, out)
        return len(order)
    return run


def through_batches(dataset: torch.utils.data.Dataset, order: list[int], workers: int, passes: int,
                    colour_pass: bool = False) -> Callable[[], int]:
    """Passes over `dataset` in batches of `order`, fetched as training fetches them (playground.data.batches),
    with `device_transform` applied on this CPU when `colour_pass`. One call to `batches` serves `passes` passes,
    so the workers start once; the first pass, run here, warms the caches outside the timing."""
    index_lists = [order[i:i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]
    batches = data.batches(dataset, index_lists * passes, workers, seed=0, pin_memory=False)
    transform = dataset.device_transform if colour_pass else lambda inputs: inputs

    def run() -> int:
        return sum(len(labels) for inputs, labels in itertools.islice(batches, len(index_lists))
                   if transform(inputs) is not None)
    run()
    return run


def pillow_loader(dataset: torch.utils.data.Dataset) -> Callable[[], int]:
    """The usual way: items collated by a DataLoader, in this process."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))

    def run() -> int:
        return sum(len(labels) for _, labels in loader)
    run()
    return run


class PillowFolderDataset(torch.utils.data.Dataset):
    """The usual way without OpenCV: PIL decode and geometry, then one numpy step per colour augmentation."""

    def __init__(self, root: Path, imsize: int, mean: tuple, std: tuple):
        self.files = sorted(root.rglob("*.jpg"))
        self.labels = [shapes.CLASS_NAMES.index(f.parent.name) for f in self.files]
        self.imsize, self.mean, self.std = imsize, np.float32(mean), np.float32(std)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng([0, 0, index])
        image = Image.open(self.files[index]).convert("RGB")
        width, height = image.size
        for _ in range(10):
            area = width * height * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < w <= width and 0 < h <= height:
                left, top = rng.integers(width - w + 1), rng.integers(height - h + 1)
                break
        else:
            w = h = min(width, height)
            left, top = (width - w) // 2, (height - h) // 2
        image = image.resize((self.imsize, self.imsize), Image.BILINEAR, box=(left, top, left + w, top + h))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        rgb = np.asarray(image, np.float32)
        for step in rng.permutation(3):
            alpha = np.float32(1 + rng.uniform(-0.4, 0.4))
            gray = rgb @ np.float32([0.299, 0.587, 0.114])
            if step == 0:
                rgb = rgb * alpha
            elif step == 1:
                rgb = rgb * alpha + (1 - alpha) * gray.mean()
            else:
                rgb = rgb * alpha + (1 - alpha) * gray[:, :, None]
        rgb = rgb + (255 * transforms.PCA_EIGVEC @ (rng.normal(0, 0.1, 3) * transforms.PCA_EIGVAL)).astype(np.float32)
        rgb = (rgb - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), self.labels[index]


class EmptyBatches(torch.utils.data.Dataset):
    """Batches of the dataset's shapes, allocated as get_batch allocates them, each page written but nothing
    computed: what handing a batch from a worker to the training process costs."""

    def __init__(self, imsize: int):
        self.imsize = imsize

    def __len__(self) -> int:
        return BATCH_SIZE

    def get_batch(self, indices: list[int]):
        pixels, colour, labels = data.batch_tensors(((BATCH_SIZE, self.imsize, self.imsize, 3), torch.uint8),
                                                    ((BATCH_SIZE, 3, 4), torch.float32), ((BATCH_SIZE,), torch.int64))
        pixels.numpy().fill(0)  # as decoding into it does
        return (pixels, colour), labels


def breakdown(dataset: lmdb_input.LmdbImageDataset, count: int) -> dict[str, float]:
    """Microseconds per image of each stage of a batch, timed alone over `count` images (at most 512), in CPU time;
    the hand-off per batch in wall time, through `batches` with 1 worker."""
    count = min(count, 512) // BATCH_SIZE * BATCH_SIZE
    imsize = dataset.transform.imsize
    encoded = [np.frombuffer(dataset.reader.read(i)[0], np.uint8) for i in range(count)]
    images = [cv2.imdecode(e, dataset.decode_flags) for e in encoded]
    draws = transforms.counter_uniforms(0, range(count))
    rows = draws[:, :transforms.CROP_DRAWS].tolist()
    crops = np.empty((count, imsize, imsize, 3), np.uint8)
    colour = dataset.transform.colour(crops, draws)
    handoff = data.batches(EmptyBatches(imsize), [[0]] * (6 * HANDOFF_BATCHES), 1, seed=0, pin_memory=False)

    def read() -> None:
        with dataset.reader.reading() as read_one:
            for i in range(count):
                read_one(i)

    stages = {
        "LMDB read": read,
        "decode": lambda: [cv2.imdecode(e, dataset.decode_flags) for e in encoded],
        "random draws": lambda: transforms.counter_uniforms(0, range(count)),
        "crop, resize, mirror": lambda: [dataset.transform.crop(im, r, out) for im, r, out in zip(images, rows, crops)],
        "colour matrices": lambda: dataset.transform.colour(crops, draws),
        "colour pass on this CPU": lambda: transforms.apply_colour(torch.from_numpy(crops), torch.from_numpy(colour)),
        "worker hand-off (per batch)": lambda: collections.deque(itertools.islice(handoff, HANDOFF_BATCHES), 0)}
    costs = {}
    for name, stage in stages.items():
        clock = time.perf_counter if "hand-off" in name else time.process_time
        stage()
        start = clock()
        for _ in range(5):
            stage()
        costs[name] = (clock() - start) / 5 / (HANDOFF_BATCHES if "hand-off" in name else count) * 1e6
    return costs


def write_jpeg_folder(lmdb_path: Path, root: Path) -> None:
    """The LMDB's images, byte for byte, as root/<class>/<index>.jpg."""
    reader = LmdbReader(lmdb_path)
    for name in reader.meta["class_names"]:
        (root / name).mkdir(parents=True)
    for i in range(len(reader)):
        data, label = reader.read(i)
        (root / reader.meta["class_names"][label] / f"{i:08d}.jpg").write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=2000, help="images in the dataset")
    parser.add_argument("--size", type=int, default=64, help="side of the stored images")
    parser.add_argument("--loadsize", type=int, help="input.loadsize (default: --size)")
    parser.add_argument("--imsize", type=int, help="input.imsize (default: 7/8 of loadsize)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--groups-in-flight", type=int, default=data.GROUPS_IN_FLIGHT,
                        help="groups of batches each worker has queued (data.GROUPS_IN_FLIGHT), to compare")
    args = parser.parse_args()
    if args.num < BATCH_SIZE:
        parser.error(f"--num must be at least one batch ({BATCH_SIZE})")
    loadsize = args.loadsize or args.size
    data.GROUPS_IN_FLIGHT = args.groups_in_flight
    imsize = args.imsize or loadsize * 7 // 8
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        lmdb_path, folder = Path(tmp) / "shapes", Path(tmp) / "jpegs"
        make_lmdb.main(["--synthetic", "shapes", str(lmdb_path), "--num", str(args.num), "--size", str(args.size)])
        write_jpeg_folder(lmdb_path, folder)
        shutil.copytree(lmdb_path, Path(tmp) / "copy")
        def dataset(colour_augmentation: bool) -> lmdb_input.LmdbImageDataset:
            exp = types.SimpleNamespace(seed=0, opts=with_defaults({"input": {
                "train_input_path": str(lmdb_path), "num_classes": shapes.NUM_CLASSES, "loadsize": loadsize,
                "imsize": imsize, "scale_jitter_type": 1, "mirror": True, "color_jitter": colour_augmentation,
                "color_lighting": colour_augmentation}}, lmdb_input.OPTS))
            return lmdb_input.get_dataset(exp, "train")

        same, ours = dataset(colour_augmentation=False), dataset(colour_augmentation=True)
        pillow = PillowFolderDataset(folder, imsize, transforms.IMAGENET_MEAN_RGB, transforms.IMAGENET_STD_RGB)
        order = torch.randperm(args.num, generator=torch.Generator().manual_seed(0)).tolist()
        order = order[:len(order) // BATCH_SIZE * BATCH_SIZE]
        copy = lmdb.open(str(Path(tmp) / "copy"), readonly=True, lock=False, readahead=False)
        # Timed in interleaved rounds, so that a busy moment of this shared machine hurts them all alike.
        in_process = {BARE: bare_loop(copy, order, ours.decode_flags, imsize),
                      "read + decode only, no crop": read_and_decode(copy, order, ours.decode_flags),
                      f"{SAME}, 0 workers": through_batches(same, order, 0, args.rounds + 1),
                      f"{FULL}, 0 workers": through_batches(ours, order, 0, args.rounds + 1),
                      f"{FULL} + CPU pass, 0 workers": through_batches(ours, order, 0, args.rounds + 1, True),
                      "Pillow folder, 0 workers": pillow_loader(pillow)}
        # Timed in consecutive passes: between interleaved ones, the workers would fetch the next pass's first
        # batches while the others are timed.
        workers = {f"{SAME}, 2 workers": (same, 2, False), f"{FULL}, 2 workers": (ours, 2, False),
                   f"{FULL} + CPU pass, 2 workers": (ours, 2, True)}
        passes: dict[str, list[Pass]] = {name: [] for name in [*in_process, *workers]}
        for _ in range(args.rounds):
            for name, run in in_process.items():
                passes[name].append(timed(run))
        for name, (dataset, count, colour_pass) in workers.items():
            run = through_batches(dataset, order, count, args.rounds + 2, colour_pass)
            run()  # the workers are busy again, as in a long epoch
            passes[name] += [timed(run) for _ in range(args.rounds)]
            del run
        costs = breakdown(ours, args.num)

    rate = {name: statistics.median(p.images / p.wall_s for p in runs) for name, runs in passes.items()}
    spread = {name: (max(p.images / p.wall_s for p in runs) - min(p.images / p.wall_s for p in runs)) / rate[name]
              for name, runs in passes.items()}
    cpu = {name: sum(p.cpu_s for p in runs) / sum(p.images for p in runs) * 1e6 for name, runs in passes.items()}
    print(f"{args.num} shapes images stored at {args.size} px (JPEG q90), loadsize {loadsize}, imsize {imsize}, "
          f"batch {BATCH_SIZE}, random-resized crop + mirror ('{SAME}'), with color_jitter + color_lighting "
          f"('{FULL}'), {args.rounds} rounds: the median images/s (the spread of the rounds, max - min) and the CPU "
          "time per image of every process")
    for name in passes:
        print(f"  {name:38s} {rate[name]:7.0f} images/s ({spread[name]:4.0%}) {cpu[name]:7.1f} us CPU")
    print("  per image, each stage timed alone (the hand-off per batch of 64, from a worker):")
    for name, value in costs.items():
        print(f"    {name:36s} {value:7.1f} us")
    print("  goals, by wall time, then by CPU time (what the work costs, which a busy machine disturbs less; for 2 "
          "workers, the rate if they had 2 cores to themselves); the goals are for the bare loop's work, crop + "
          "flip, and shown for the colour augmentation on top:")
    ratios = [("crop + flip, 0 workers / bare loop", f"{SAME}, 0 workers", BARE, 1, 0.9),
              ("crop + flip, 2 workers / bare loop", f"{SAME}, 2 workers", BARE, 2, 1.7),
              ("+ colour aug, 0 workers / bare loop", f"{FULL}, 0 workers", BARE, 1, 0.9),
              ("+ colour aug, 2 workers / bare loop", f"{FULL}, 2 workers", BARE, 2, 1.7),
              ("+ CPU colour pass / Pillow, 0 workers", f"{FULL} + CPU pass, 0 workers", "Pillow folder, 0 workers",
               1, 1.2)]
    for label, name, base, cores, goal in ratios:
        by_wall, by_cpu = rate[name] / rate[base], cores * cpu[base] / cpu[name]
        print(f"  {label:38s} {by_wall:5.2f} {by_cpu:5.2f}  (goal >= {goal}: "
              f"{'met' if by_wall >= goal else 'MISSED'}, {'met' if by_cpu >= goal else 'MISSED'})")


@dataclasses.dataclass
class Pass:
    """One timed pass over the data."""

    images: int
    wall_s: float
    cpu_s: float  # this process's and its workers'


def timed(run: Callable[[], int]) -> Pass:
    """One pass of `run`, timed."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    images = run()
    return Pass(images, time.perf_counter() - start, cpu_seconds() - start_cpu)


def cpu_seconds() -> float:
    """CPU time of this process and of its live child processes (DataLoader workers; read from /proc on Linux,
    in clock ticks)."""
    total = time.process_time()
    try:
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    except OSError:
        return total
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it has just ended
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


if __name__ == "__main__":
    main()
