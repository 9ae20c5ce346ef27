"""The LMDB image dataset format: one encoded image and its label per record, no pickle anywhere.

An LMDB folder (holding `data.mdb`) with these keys:

- `b"00000000"`, `b"00000001"`, … (`b"%08d" % index`, index 0 … count-1): a 12-byte little-endian header
  `struct "<IiI"` = (CRC-32 uint32 of everything after it, label int32, image byte length uint32), followed by the
  encoded image bytes (JPEG or PNG, as `cv2.imdecode` reads them; colour images). The CRC covers the label, so a
  flipped label bit is caught rather than trained on as another class.
- `b"__meta__"`: UTF-8 JSON `{"format": "playground-images", "format_version": 2, "count": N,
  "class_names": [...], "num_classes": K, "encoding": "jpg" | "png", "min_shorter_side": PX, "source": {...} | null}`.
  Every label is in `[0, num_classes)`; `min_shorter_side` is the smallest shorter side among the stored images;
  `source` is how make-lmdb made the images (the synthetic generator and its flags), or null.

`__meta__` is written last, in the final commit, so an LMDB whose build was interrupted has none and is
refused when opened.

Version 1 differed only in the header: `struct "<iII"` = (label, CRC-32 of the image bytes alone, image length).
It is still read, with a warning, since its labels are unprotected.
"""

import contextlib
import json
import logging
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterator

from resnetdemo.vision import crc32, cv2, lmdb
import numpy as np

from playground.errors import DataError, UsageError

logger = logging.getLogger(__name__)

FORMAT_NAME = "playground-images"
FORMAT_VERSION = 2
META_KEY = b"__meta__"
ENCODINGS = ("jpg", "png")
RECORD_HEADER = struct.Struct("<IiI")  # crc32 of the rest of the record, label, image byte length
_CHECKED_HEADER = struct.Struct("<iI")  # the part of RECORD_HEADER its CRC covers: label, image byte length
_VERSION_1_HEADER = struct.Struct("<iII")  # label, crc32 of the image bytes only, image byte length

_INITIAL_MAP_SIZE = 1 << 30  # virtual address space only: data.mdb grows with what is written
_RECORDS_PER_COMMIT = 1000
_MAX_READERS = 512  # more than any sane number of DataLoader workers times their read transactions
_REQUIRED_META = ("count", "class_names", "num_classes", "encoding", "min_shorter_side")  # what readers index


class RecordError(DataError):
    """One record that fails its checksum or cannot be parsed; the rest of the dataset may still be fine."""


def record_key(index: int) -> bytes:
    """The LMDB key of the record at `index`."""
    return b"%08d" % index


def pack_record(image: bytes, label: int) -> bytes:
    """The stored value for one image: header then the encoded image bytes."""
    checked_header = _CHECKED_HEADER.pack(label, len(image))
    return struct.pack("<I", crc32(image, crc32(checked_header))) + checked_header + image


def unpack_record(value: bytes | memoryview, format_version: int = FORMAT_VERSION) -> tuple[bytes | memoryview, int]:
    """(image bytes, label) from a value stored in format `format_version`, the image a slice of `value`;
    RecordError if it is damaged."""
    if len(value) < RECORD_HEADER.size:
        raise RecordError(f"record is {len(value)} bytes, shorter than its header")
    image = value[RECORD_HEADER.size:]
    if format_version == 1:
        label, crc, length = _VERSION_1_HEADER.unpack_from(value)
        checked, what = image, "image bytes fail"
    else:
        crc, label, length = RECORD_HEADER.unpack_from(value)
        checked, what = memoryview(value)[4:], "label or image bytes fail"
    if crc32(checked) != crc:
        raise RecordError(f"{what} their CRC-32 check (damaged on disk?)")
    if len(image) != length:
        raise RecordError(f"image is {len(image)} bytes, header says {length}")
    return image, label


def encode_image(image: np.ndarray, encoding: str, jpeg_quality: int = 90) -> bytes:
    """`image` (HWC BGR uint8) encoded as `encoding` ("jpg" or "png")."""
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if encoding == "jpg" else []
    ok, buffer = cv2.imencode("." + encoding, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {encoding}")
    return buffer.tobytes()


class LmdbWriter:
    """Writes an image LMDB in index order; use as a context manager. Meta is written only on a clean exit."""

    def __init__(self, path: str | os.PathLike, class_names: list[str], encoding: str, source: dict | None = None):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.path = Path(path)
        self.class_names = list(class_names)
        self.encoding = encoding
        self.source = source  # how the images were made, e.g. the synthetic generator and its flags
        self.count = 0
        self.min_shorter_side: int | None = None
        self._pending: list[tuple[bytes, bytes]] = []
        self._env: lmdb.Environment | None = None

    def __enter__(self) -> "LmdbWriter":
        if (self.path / "data.mdb").exists():
            raise FileExistsError(f"{self.path} already holds an LMDB; write a new dataset into a new folder")
        # lock=False: this writer is the only user of a folder that no one reads until it is finished.
        self._env = lmdb.open(str(self.path), map_size=_INITIAL_MAP_SIZE, subdir=True, readahead=False, lock=False)
        return self

    def add(self, image: bytes, label: int, shorter_side: int) -> None:
        """Appends one encoded image of class `label` whose shorter side is `shorter_side` pixels."""
        if not 0 <= label < len(self.class_names):
            raise ValueError(f"label {label} is outside [0, {len(self.class_names)})")
        self._pending.append((record_key(self.count), pack_record(image, label)))
        self.count += 1
        self.min_shorter_side = min(shorter_side, self.min_shorter_side or shorter_side)
        if len(self._pending) >= _RECORDS_PER_COMMIT:
            self._commit()

    def meta(self) -> dict[str, Any]:
        """The `__meta__` record describing what has been added so far."""
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "count": self.count,
                "class_names": self.class_names, "num_classes": len(self.class_names),
                "encoding": self.encoding, "min_shorter_side": self.min_shorter_side, "source": self.source}

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self._pending.append((META_KEY, json.dumps(self.meta()).encode("utf-8")))
                self._commit()  # sync=True (the default): committed means on disk
        finally:
            self._env.close()

    def _commit(self) -> None:
        """Writes the pending records in one transaction, doubling the map size until they fit."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                new_size = self._env.info()["map_size"] * 2
                logger.debug("%s: growing the LMDB map to %d bytes", self.path, new_size)
                self._env.set_mapsize(new_size)
        self._pending.clear()


class LmdbReader:
    """Reads an image LMDB. Checked and described at construction; safe to use in forked DataLoader workers,
    where each process opens its own environment on its first read."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise UsageError(f"{self.path} does not exist; build it with: playground make-lmdb SRC {self.path}")
        try:
            data_file = (self.path / "data.mdb").stat()
        except OSError:
            raise UsageError(f"{self.path} is not an LMDB folder (no data.mdb); build one with: "
                             f"playground make-lmdb SRC {self.path}") from None
        self._file_id = (data_file.st_dev, data_file.st_ino)
        env = _environment(self.path, self._file_id)
        _check_not_truncated(self.path, env)
        self.meta = _read_meta(self.path, env)
        if self.format_version < FORMAT_VERSION:
            logger.warning("%s is an image LMDB of format version %d, whose checksums do not cover the labels: a "
                           "damaged label would train as another class. Rebuild it with playground make-lmdb "
                           "(--overwrite) for label protection", self.path, self.format_version)

    def __len__(self) -> int:
        return self.meta["count"]

    @property
    def num_classes(self) -> int:
        return self.meta["num_classes"]

    @property
    def format_version(self) -> int:
        return self.meta["format_version"]

    def read(self, index: int) -> tuple[bytes, int]:
        """(encoded image bytes, label) of record `index`, checksum and label range verified; RecordError if the
        record is damaged, DataError if LMDB itself cannot read the file."""
        with self.reading() as read:
            image, label = read(index)
            return bytes(image), label

    @contextlib.contextmanager
    def reading(self) -> Iterator[Callable[[int], tuple[memoryview, int]]]:
        """`read` for many records (a batch) in one transaction, without copying them: the image bytes it returns
        are views of the database file, valid until the block ends."""
        try:
            txn = _environment(self.path, self._file_id).begin(buffers=True)
        except lmdb.Error as exc:
            raise _unreadable(self.path, "a transaction", exc) from exc
        count, version, num_classes, get = len(self), self.format_version, self.num_classes, txn.get

        def read(index: int) -> tuple[memoryview, int]:
            if not 0 <= index < count:
                raise IndexError(f"record {index} is outside [0, {count}) in {self.path}")
            try:
                value = get(record_key(index))
            except lmdb.Error as exc:
                raise _unreadable(self.path, f"record {index}", exc) from exc
            try:
                if value is None:
                    raise RecordError("it is missing")
                image, label = unpack_record(value, version)
                if not 0 <= label < num_classes:  # caught here, not as an IndexError in the loss later
                    raise RecordError(f"label {label} is outside the dataset's classes [0, {num_classes})")
                return image, label
            except RecordError as exc:
                raise RecordError(f"{self.path} record {index}: {exc}") from None

        try:
            yield read
        finally:
            txn.abort()


# This process's read-only environments, keyed by data.mdb's (device, inode): LMDB allows one environment per
# file per process, shared here by every reader of the file, and a rebuilt LMDB (a new file) gets its own.
_environments: dict[tuple[int, int], lmdb.Environment] = {}


def _close_inherited_environments() -> None:
    """An LMDB environment must not be used across a fork: a child closes its copies and opens its own."""
    for env in _environments.values():
        env.close()
    _environments.clear()


os.register_at_fork(after_in_child=_close_inherited_environments)


def _environment(path: Path, file_id: tuple[int, int]) -> lmdb.Environment:
    env = _environments.get(file_id)
    if env is None:
        try:
            env = lmdb.open(str(path), subdir=True, readonly=True, lock=False, readahead=False,
                            max_readers=_MAX_READERS)
        except lmdb.Error as exc:
            raise DataError(f"{path}: cannot open data.mdb ({exc}); rebuild it with playground make-lmdb") from exc
        _environments[file_id] = env
    return env


def _unreadable(path: Path, what: str, exc: lmdb.Error) -> DataError:
    """LMDB's own error reading `what` (CorruptedError, PageNotFoundError, …) as a DataError naming the dataset."""
    return DataError(f"{path}: LMDB cannot read {what} ({type(exc).__name__}: {exc}); data.mdb is damaged, "
                     "rebuild it with playground make-lmdb")


def _check_not_truncated(path: Path, env: lmdb.Environment) -> None:
    """A truncated data.mdb kills the reading process with SIGBUS instead of raising; catch it up front."""
    actual = (path / "data.mdb").stat().st_size
    expected = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if actual < expected:
        raise DataError(f"{path}: data.mdb is truncated ({actual} bytes, header says {expected}); "
                        "rebuild it with playground make-lmdb")


def _read_meta(path: Path, env: lmdb.Environment) -> dict[str, Any]:
    try:
        with env.begin() as txn:
            raw = txn.get(META_KEY)
            entries = txn.stat()["entries"]
    except lmdb.Error as exc:
        raise _unreadable(path, "the __meta__ record", exc) from exc
    if raw is None:
        raise UsageError(f"{path} is an LMDB but not a finished playground image dataset (no __meta__ record); "
                         "build it with playground make-lmdb")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: the __meta__ record is not valid JSON ({exc}); rebuild it with "
                        "playground make-lmdb") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: the __meta__ record is a JSON {type(meta).__name__}, not an object; rebuild it "
                        "with playground make-lmdb")
    version = meta.get("format_version")
    if meta.get("format") != FORMAT_NAME or type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise UsageError(f"{path} holds format {meta.get('format')!r} version {version!r}; this playground reads "
                         f"{FORMAT_NAME!r} versions 1 to {FORMAT_VERSION}. Rebuild it with playground make-lmdb")
    missing = [key for key in _REQUIRED_META if key not in meta]
    if missing:
        raise DataError(f"{path}: the __meta__ record lacks {', '.join(missing)}; rebuild it with playground make-lmdb")
    if isinstance(meta["count"], bool) or not isinstance(meta["count"], int):
        raise DataError(f"{path}: the __meta__ count is {meta['count']!r}, not an integer; rebuild it with "
                        "playground make-lmdb")
    if entries != meta["count"] + 1:
        raise DataError(f"{path}: __meta__ says {meta['count']} images but the LMDB holds {entries - 1}; "
                        "rebuild it with playground make-lmdb")
    return meta
