"""`playground make-lmdb`: builds an image LMDB (format in resnetdemo.lmdb_format) from a class folder, a list
file, or the built-in synthetic shapes dataset.

Every image is decoded (which applies its EXIF orientation), optionally resized, and re-encoded, so stored
images are upright, uniformly encoded and known to decode. Unreadable images are skipped and listed. The LMDB is
built in OUT.partial and renamed to OUT only when complete.
"""

import argparse
import contextlib
import functools
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from resnetdemo.vision import cv2
import numpy as np
from tqdm import tqdm

from playground.cli import UsageParser  # a plugin command (pyproject.toml): cli never imports this module
from playground.errors import PlaygroundError, UsageError
from resnetdemo import shapes
from resnetdemo.lmdb_format import ENCODINGS, FORMAT_VERSION, LmdbReader, LmdbWriter, encode_image
from resnetdemo.resize import resize_shorter_side

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm"}
_LMDB_FILES = {"data.mdb", "lock.mdb"}
_LISTED_SKIPS = 20  # unreadable files named in the summary line; each also has its own warning
_MAX_SIZE = 4096  # synthetic image side: larger ones exhaust memory long before they are useful


@dataclass
class EncodedImage:
    """One image ready to store."""

    data: bytes
    label: int
    shorter_side: int


def build_parser() -> argparse.ArgumentParser:
    """The make-lmdb command line."""
    parser = UsageParser(
        prog="playground make-lmdb",
        description="Build an image LMDB for the gfs_IN1k input from an ImageNet-style folder "
                    "(SRC/<class>/<image>), a list file of 'path label' lines, or the built-in shapes dataset.",
        usage="%(prog)s SRC OUT [options]\n       %(prog)s --synthetic shapes OUT --num N [--size PX] [--seed S]")
    parser.add_argument("paths", nargs="+", metavar="SRC OUT", help="source folder or list file, then output folder")
    parser.add_argument("--synthetic", choices=["shapes"], help="generate the built-in dataset instead of reading SRC")
    parser.add_argument("--num", type=int, help="number of synthetic images")
    parser.add_argument("--size", type=int, help="side of the synthetic images in pixels (default 64)")
    parser.add_argument("--seed", type=int, help="seed of the synthetic images (default 0)")
    parser.add_argument("--resize-shorter", type=int, metavar="PX", help="resize each image's shorter side to PX")
    parser.add_argument("--encoding", choices=ENCODINGS, default="jpg", help="stored image encoding (default jpg)")
    parser.add_argument("--quality", type=int, help="JPEG quality 1-100 (default 90)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes decoding and encoding images (default: one per CPU)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it is an existing LMDB")
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    expected = 1 if args.synthetic else 2
    if len(args.paths) != expected:
        parser.error(f"expected {'OUT' if args.synthetic else 'SRC OUT'}, got {len(args.paths)} path(s)")
    if args.synthetic:
        if args.num is None or args.num <= 0:
            parser.error("--synthetic needs --num N, a positive number of images")
        if args.size is not None and not 16 <= args.size <= _MAX_SIZE:
            parser.error(f"--size must be between 16 and {_MAX_SIZE} pixels, got {args.size}")
        if args.seed is not None and args.seed < 0:
            parser.error(f"--seed must be a non-negative integer, got {args.seed}")
        if args.resize_shorter is not None:
            parser.error("--resize-shorter applies to SRC images; use --size for synthetic ones")
    else:
        for name in ("num", "size", "seed"):
            if getattr(args, name) is not None:
                parser.error(f"--{name} applies only with --synthetic")
    if args.resize_shorter is not None and args.resize_shorter <= 0:
        parser.error(f"--resize-shorter must be a positive number of pixels, got {args.resize_shorter}")
    if args.quality is not None and args.encoding != "jpg":
        parser.error("--quality applies only to --encoding jpg")
    if args.quality is not None and not 1 <= args.quality <= 100:
        parser.error(f"--quality must be between 1 and 100, got {args.quality}")
    if args.jobs <= 0:
        parser.error(f"--jobs must be a positive number of processes, got {args.jobs}")
    return args


def main(argv: list[str]) -> int:
    """Runs `playground make-lmdb ARGV`; returns the exit status (UsageError for bad arguments)."""
    args = _parse(argv)
    out = Path(args.paths[-1])
    quality = 90 if args.quality is None else args.quality
    recipe = {"synthetic": args.synthetic, "num": args.num, "size": args.size or 64, "seed": args.seed or 0,
              "encoding": args.encoding, "quality": quality} if args.synthetic else None
    if recipe and not args.overwrite and _built_from(out) == recipe:
        logger.info("%s already holds this synthetic dataset; nothing to do", out)
        return 0  # so that re-running a quick start command goes straight on to training
    _check_can_write(out, args.overwrite)
    if args.synthetic:
        class_names, tasks = list(shapes.CLASS_NAMES), range(args.num)
        prepare = functools.partial(_render_shape, size=args.size or 64, seed=args.seed or 0,
                                    encoding=args.encoding, quality=quality)
    else:
        source = Path(args.paths[0])
        class_names, tasks = _folder_tasks(source) if source.is_dir() else _list_file_tasks(source)
        prepare = functools.partial(_encode_file, resize_shorter=args.resize_shorter,
                                    encoding=args.encoding, quality=quality)

    partial = out.with_name(out.name + ".partial")
    _remove_lmdb_folder(partial)  # left by a build that was interrupted
    try:
        count = _write(partial, class_names, args.encoding, tasks, prepare, args.jobs, recipe)
        _publish(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("wrote %d images in %d classes to %s", count, len(class_names), out)
    return 0


def _write(path: Path, class_names: list[str], encoding: str, tasks: Iterable[Any],
           prepare: Callable[[Any], EncodedImage | str], jobs: int, source: dict | None = None) -> int:
    """Writes every task's image to a new LMDB at `path`; returns the number written."""
    tasks = list(tasks)
    skipped = []
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else contextlib.nullcontext()
    with pool, LmdbWriter(path, class_names, encoding, source) as writer:
        results = pool.imap(prepare, tasks, chunksize=16) if jobs > 1 else map(prepare, tasks)
        progress = tqdm(results, total=len(tasks), unit="img", disable=not sys.stderr.isatty())
        for task, result in zip(tasks, progress):
            if isinstance(result, str):
                logger.warning("skipping %s: %s", task[0], result)
                skipped.append(str(task[0]))
            else:
                writer.add(result.data, result.label, result.shorter_side)
        if writer.count == 0:
            raise UsageError(f"none of the {len(tasks)} source images could be read; nothing was written")
    if skipped:
        more = f" and {len(skipped) - _LISTED_SKIPS} more" if len(skipped) > _LISTED_SKIPS else ""
        logger.warning("skipped %d unreadable image(s) of %d: %s%s", len(skipped), len(tasks),
                       ", ".join(skipped[:_LISTED_SKIPS]), more)
    return writer.count


def _render_shape(index: int, *, size: int, seed: int, encoding: str, quality: int) -> EncodedImage:
    image, label = shapes.render_shape(seed, index, size)
    return EncodedImage(encode_image(image, encoding, quality), label, size)


def _encode_file(task: tuple[Path, int], *, resize_shorter: int | None, encoding: str,
                 quality: int) -> EncodedImage | str:
    """The image file of `task` re-encoded, or why it cannot be read."""
    path, label = task
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or exc})"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return "OpenCV cannot decode it"
    if resize_shorter is not None:
        image = resize_shorter_side(image, resize_shorter)
    return EncodedImage(encode_image(image, encoding, quality), label, min(image.shape[:2]))


def _folder_tasks(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted subfolder names) and (image path, label) of every image under them."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise UsageError(f"{root} has no class subfolders; expected {root}/<class>/<image> "
                         "or a list file of 'path label' lines")
    tasks = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        tasks += [(p, label) for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not tasks:
        raise UsageError(f"{root} has class subfolders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [d.name for d in class_dirs], tasks


def _list_file_tasks(list_file: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names ("0" … max label) and (image path, label) from `path label` lines; paths are relative to
    the list file's folder. Blank lines and lines starting with # are ignored."""
    if not list_file.is_file():
        raise UsageError(f"{list_file} does not exist; SRC must be a class folder or a list file of "
                         "'path label' lines")
    tasks = []
    with open(list_file, "rb") as lines:  # decoded line by line, so an error can name the line
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{list_file}:{number}: not UTF-8 text; SRC must be a class folder or a UTF-8 "
                                 "list file of 'path label' lines (re-save it as UTF-8)") from None
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.rsplit(maxsplit=1)
            if len(fields) != 2 or not fields[1].isdigit():
                raise UsageError(f"{list_file}:{number}: expected 'path label' with a label 0, 1, …; "
                                 f"got {line.strip()!r}")
            tasks.append((list_file.parent / fields[0], int(fields[1])))
    if not tasks:
        raise UsageError(f"{list_file} lists no images; expected lines of 'path label'")
    return [str(label) for label in range(max(label for _, label in tasks) + 1)], tasks


def _is_lmdb_folder(path: Path) -> bool:
    """True for a folder holding nothing but LMDB files (or nothing), which is safe to delete."""
    return path.is_dir() and {p.name for p in path.iterdir()} <= _LMDB_FILES


def _built_from(out: Path) -> dict | None:
    """The `source` recorded in an existing LMDB of the current format at `out`, or None."""
    if not (out / "data.mdb").is_file():
        return None
    try:
        reader = LmdbReader(out)
    except PlaygroundError:
        return None
    return reader.meta.get("source") if reader.format_version == FORMAT_VERSION else None


def _check_can_write(out: Path, overwrite: bool) -> None:
    if not out.exists():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{out.parent}: cannot create it ({e.strerror}); choose another OUT") from None
        return
    if not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it or choose another OUT")
    if not _is_lmdb_folder(out):
        raise UsageError(f"{out} exists and is not an LMDB folder, so --overwrite will not delete it; "
                         "remove it yourself or choose another OUT")


def _remove_lmdb_folder(path: Path) -> None:
    if not path.exists():
        return
    if not _is_lmdb_folder(path):
        raise UsageError(f"{path} exists and is not an unfinished LMDB build; remove it or choose another OUT")
    logger.info("removing %s, left by an interrupted build", path)
    shutil.rmtree(path)


def _publish(partial: Path, out: Path) -> None:
    """Moves the finished LMDB into place; an existing OUT is moved aside first and deleted last."""
    if not out.exists():
        os.rename(partial, out)
        return
    graveyard = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
    os.rename(out, graveyard / out.name)
    os.rename(partial, out)
    shutil.rmtree(graveyard)
