"""Images per second of the gfs_IN1k input pipeline against a decode-only ceiling and a Pillow baseline.

    python benchmarks/input_pipeline.py [--num 2000] [--size 64] [--loadsize PX] [--imsize PX] [--rounds 5]

Builds a shapes LMDB (and the same JPEGs as a class folder) in a temporary folder, then times, in interleaved
rounds, full passes over the data: a bare loop of LMDB reads + cv2.imdecode (the ceiling); our dataset's batches
as training fetches them, with 0, 1 and 2 workers (training transforms, batch 64, persistent workers, steady
state), both as the loader hands them over (uint8 crops and colour matrices: what a GPU run copies to the GPU,
where the colour pass runs) and with the colour pass done on this CPU (what a CPU run feeds the network); and a
Pillow-based folder dataset with the same transforms written the usual way, 0 workers. Prints medians and ratios,
and what each stage of a batch costs per image, timed alone.
"""

import argparse
import math
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


def ceiling(path: Path, count: int, flags: int) -> Callable[[], int]:
    """A bare loop: read every record and decode it as the dataset does (`flags`), nothing else. `path` must be
    a copy of the dataset's LMDB: LMDB allows one environment per file per process, and the dataset holds one."""
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)

    def run() -> int:
        with env.begin() as txn:
            for i in range(count):
                value = txn.get(record_key(i))
                cv2.imdecode(np.frombuffer(value, np.uint8, offset=RECORD_HEADER.size), flags)
        return count
    return run


def through_loader(dataset: torch.utils.data.Dataset, num_workers: int, colour_pass: bool = False,
                   ) -> Callable[[], int]:
    """Passes over `dataset` in shuffled batches, fetched the way training fetches them (playground.data), with
    `device_transform` applied on the CPU when `colour_pass`."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    index_lists = [order[i:i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]
    loader = torch.utils.data.DataLoader(data.BatchDataset(dataset, index_lists), batch_size=None,
                                         num_workers=num_workers, persistent_workers=num_workers > 0)
    transform = dataset.device_transform if colour_pass else lambda inputs: inputs

    def run() -> int:
        return sum(len(labels) for inputs, labels in loader if transform(inputs) is not None)
    run()  # start the workers and warm the caches outside the timing
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
    """Batches of the dataset's shapes, allocated as get_batch allocates them but not filled: what handing a
    batch from a worker to the training process costs."""

    def __init__(self, imsize: int, count: int):
        self.imsize, self.count = imsize, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, b: int):
        pixels, colour, labels = data.batch_tensors(((BATCH_SIZE, self.imsize, self.imsize, 3), torch.uint8),
                                                    ((BATCH_SIZE, 3, 4), torch.float32), ((BATCH_SIZE,), torch.int64))
        pixels.numpy().fill(0)  # touch every page, as decoding into it does
        return (pixels, colour), labels


def breakdown(dataset: lmdb_input.LmdbImageDataset, count: int) -> dict[str, float]:
    """Microseconds per image of each stage of a batch, timed alone over `count` images (at most 512)."""
    count = min(count, 512) // BATCH_SIZE * BATCH_SIZE
    imsize = dataset.transform.imsize
    encoded = [np.frombuffer(dataset.reader.read(i)[0], np.uint8) for i in range(count)]
    images = [cv2.imdecode(e, dataset.decode_flags) for e in encoded]
    draws = transforms.counter_uniforms(0, range(count))
    rows = draws.tolist()
    crops = np.empty((count, imsize, imsize, 3), np.uint8)
    colour = dataset.transform.colour(crops, draws)
    handoff = torch.utils.data.DataLoader(EmptyBatches(imsize, count // BATCH_SIZE), batch_size=None,
                                          num_workers=1, persistent_workers=True)
    stages = {
        "LMDB read": lambda: [dataset.reader.read(i) for i in range(count)],
        "decode": lambda: [cv2.imdecode(e, dataset.decode_flags) for e in encoded],
        "random draws": lambda: transforms.counter_uniforms(0, range(count)),
        "crop, resize, mirror": lambda: [dataset.transform.crop(im, r, out) for im, r, out in zip(images, rows, crops)],
        "colour matrices": lambda: dataset.transform.colour(crops, draws),
        "colour pass on this CPU": lambda: transforms.apply_colour(torch.from_numpy(crops), torch.from_numpy(colour)),
        "worker hand-off (per batch)": lambda: list(handoff)}
    costs = {}
    for name, stage in stages.items():
        stage()
        start = time.perf_counter()
        for _ in range(5):
            stage()
        costs[name] = (time.perf_counter() - start) / 5 / count * 1e6
    costs["worker hand-off (per batch)"] *= BATCH_SIZE
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
    args = parser.parse_args()
    if args.num < BATCH_SIZE:
        parser.error(f"--num must be at least one batch ({BATCH_SIZE})")
    loadsize = args.loadsize or args.size
    imsize = args.imsize or loadsize * 7 // 8
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        lmdb_path, folder = Path(tmp) / "shapes", Path(tmp) / "jpegs"
        make_lmdb.main(["--synthetic", "shapes", str(lmdb_path), "--num", str(args.num), "--size", str(args.size)])
        write_jpeg_folder(lmdb_path, folder)
        shutil.copytree(lmdb_path, Path(tmp) / "ceiling")
        exp = types.SimpleNamespace(seed=0, opts=with_defaults({"input": {
            "train_input_path": str(lmdb_path), "num_classes": shapes.NUM_CLASSES, "loadsize": loadsize,
            "imsize": imsize, "scale_jitter_type": 1, "mirror": True, "color_jitter": True, "color_lighting": True}},
            lmdb_input.OPTS))
        ours = lmdb_input.get_dataset(exp, "train")
        pillow = PillowFolderDataset(folder, imsize, transforms.IMAGENET_MEAN_RGB, transforms.IMAGENET_STD_RGB)
        runs = {"ceiling: LMDB read + cv2.imdecode": ceiling(Path(tmp) / "ceiling", args.num, ours.decode_flags),
                "ours, 0 workers": through_loader(ours, 0),
                "ours, 1 worker": through_loader(ours, 1),
                "ours, 2 workers": through_loader(ours, 2),
                "ours + CPU colour pass, 0 workers": through_loader(ours, 0, colour_pass=True),
                "ours + CPU colour pass, 2 workers": through_loader(ours, 2, colour_pass=True),
                "Pillow folder, 0 workers": pillow_loader(pillow)}
        costs = breakdown(ours, args.num)
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                images = run()
                rates[name].append(images / (time.perf_counter() - start))

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{args.num} shapes images stored at {args.size} px (JPEG q90), loadsize {loadsize}, imsize {imsize}, "
          f"batch {BATCH_SIZE}, scale_jitter_type 1 + mirror + color_jitter + color_lighting, "
          f"median of {args.rounds} rounds")
    for name, value in median.items():
        print(f"  {name:38s} {value:7.0f} images/s")
    print("  per image, each stage timed alone (the hand-off per batch of 64, in a worker):")
    for name, value in costs.items():
        print(f"    {name:36s} {value:7.1f} us")
    ceiling_rate = median["ceiling: LMDB read + cv2.imdecode"]
    for label, value, goal in [
            ("ours 0 workers / ceiling", median["ours, 0 workers"] / ceiling_rate, 0.95),
            ("ours 2 workers / ceiling", median["ours, 2 workers"] / ceiling_rate, 1.5),
            ("ours + CPU colour 0 workers / ceiling", median["ours + CPU colour pass, 0 workers"] / ceiling_rate, 0.95),
            ("ours + CPU colour 2 workers / ceiling", median["ours + CPU colour pass, 2 workers"] / ceiling_rate, 1.5),
            ("ours + CPU colour / Pillow, 0 workers",
             median["ours + CPU colour pass, 0 workers"] / median["Pillow folder, 0 workers"], 1.2)]:
        print(f"  {label:38s} {value:7.2f}  (goal >= {goal}: {'met' if value >= goal else 'MISSED'})")


if __name__ == "__main__":
    main()
