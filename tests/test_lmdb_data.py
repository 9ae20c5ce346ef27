"""The image LMDB format, make-lmdb, the shapes dataset and the gfs_IN1k input component."""

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import types
import zlib

import cv2
import lmdb
import numpy as np
import pytest
import torch

from conftest import seed_command_opts
from playground import cli, data
from playground import opts as opts_lib
from playground.errors import DataError, OptsError, UsageError
from playground.runner import prepare
from resnetdemo import lmdb_format, lmdb_input, make_lmdb, shapes, transforms
from resnetdemo.lmdb_format import LmdbReader, LmdbWriter, RecordError, encode_image


def build_shapes(out, num=20, seed=0, *extra) -> LmdbReader:
    assert make_lmdb.main(["--synthetic", "shapes", str(out), "--num", str(num), "--seed", str(seed),
                           "--size", "32", "--jobs", "1", *extra]) == 0
    return LmdbReader(out)


def input_opts(path, **overrides) -> dict:
    opts = {"train_input_path": str(path), "test_input_path": str(path), "num_classes": 10, "loadsize": 32,
            "imsize": 28, "scale_jitter_type": 1, "color_jitter": True, "color_lighting": True}
    return {**opts, **overrides}


def make_exp(path, **overrides) -> types.SimpleNamespace:
    opts = opts_lib.with_defaults({"input": input_opts(path, **overrides)}, lmdb_input.OPTS)
    return types.SimpleNamespace(opts=opts, seed=0)


def flip_byte_of_record(reader: LmdbReader, index: int, offset: int | None = None, mask: int = 0xFF) -> None:
    """Damages record `index` on disk the way a bad sector would: the bits `mask` of one byte, `offset` bytes into
    its stored value (default: the middle of its image). Stale copies of a record can linger in free pages, so
    every copy is damaged."""
    image, _ = reader.read(index)
    header_size = lmdb_format.RECORD_HEADER.size  # the same in every format version
    offset = header_size + len(image) // 2 if offset is None else offset
    data_file = reader.path / "data.mdb"
    content = bytearray(data_file.read_bytes())
    where = content.find(image)
    assert where >= 0
    while where >= 0:
        content[where - header_size + offset] ^= mask
        where = content.find(image, where + 1)
    data_file.write_bytes(bytes(content))


def write_raw_lmdb(path, values: list[bytes], meta: dict) -> None:
    """An image LMDB holding exactly `values` and `meta`, as another writer (or an older playground) made it."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for index, value in enumerate(values):
            txn.put(lmdb_format.record_key(index), value)
        txn.put(lmdb_format.META_KEY, json.dumps(meta).encode("utf-8"))
    env.close()


def test_round_trip_keeps_meta_labels_and_bytes(tmp_path):
    images = [encode_image(np.full((8 + i, 12, 3), i * 20, np.uint8), "png") for i in range(5)]
    with LmdbWriter(tmp_path / "db", ["a", "b", "c"], "png") as writer:
        for i, image in enumerate(images):
            writer.add(image, label=i % 3, shorter_side=8 + i)
    reader = LmdbReader(tmp_path / "db")
    assert len(reader) == 5
    assert reader.meta == {"format": "playground-images", "format_version": 2, "count": 5,
                           "class_names": ["a", "b", "c"], "num_classes": 3, "encoding": "png",
                           "min_shorter_side": 8, "source": None}
    assert [reader.read(i) for i in range(5)] == [(image, i % 3) for i, image in enumerate(images)]


def test_writer_grows_the_map_when_it_fills(tmp_path, monkeypatch):
    monkeypatch.setattr(lmdb_format, "_INITIAL_MAP_SIZE", 64 * 1024)
    image = np.random.default_rng(0).integers(0, 256, size=10_000, dtype=np.uint8).tobytes()
    with LmdbWriter(tmp_path / "db", ["a"], "png") as writer:
        for _ in range(40):
            writer.add(image, label=0, shorter_side=1)
    reader = LmdbReader(tmp_path / "db")
    assert len(reader) == 40 and reader.read(39) == (image, 0)


def test_flipped_image_byte_fails_the_checksum(tmp_path):
    reader = build_shapes(tmp_path / "db", num=3)
    flip_byte_of_record(reader, 1)
    reader = LmdbReader(tmp_path / "db")
    with pytest.raises(RecordError, match="record 1: label or image bytes fail their CRC-32 check"):
        reader.read(1)
    assert reader.read(2)[1] == 2


def test_flipped_label_bit_fails_the_checksum(tmp_path):
    reader = build_shapes(tmp_path / "db", num=3)
    value = lmdb_format.pack_record(*reader.read(1))
    label_offset = value[:lmdb_format.RECORD_HEADER.size].index(struct.pack("<i", 1))  # label 1, little-endian
    flip_byte_of_record(reader, 1, label_offset, mask=0x01)  # class 1 becomes class 0
    reader = LmdbReader(tmp_path / "db")
    with pytest.raises(RecordError, match=r"db record 1: label or image bytes fail their CRC-32 check"):
        reader.read(1)
    assert reader.read(2)[1] == 2


def write_version_1_lmdb(path, images: list[bytes], labels: list[int], source: dict | None = None) -> None:
    """The layout of format version 1: header (label, CRC-32 of the image bytes only, image length)."""
    values = [struct.pack("<iII", label, zlib.crc32(image), len(image)) + image
              for image, label in zip(images, labels)]
    write_raw_lmdb(path, values, {"format": "playground-images", "format_version": 1, "count": len(values),
                                  "class_names": ["a", "b", "c"], "num_classes": 3, "encoding": "png",
                                  "min_shorter_side": 8, "source": source})


def test_version_1_dataset_still_reads_with_one_warning(tmp_path, caplog):
    images = [encode_image(np.full((8, 8 + i, 3), i * 30, np.uint8), "png") for i in range(4)]
    write_version_1_lmdb(tmp_path / "old", images, [2, 0, 1, 2])
    with caplog.at_level(logging.WARNING):
        dataset = lmdb_input.get_dataset(make_exp(tmp_path / "old", loadsize=8, imsize=8), "test")
        assert [dataset.reader.read(i) for i in range(4)] == list(zip(images, [2, 0, 1, 2]))
        assert [dataset[i][1] for i in range(4)] == [2, 0, 1, 2]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]  # one, not one per record
    assert "old is an image LMDB of format version 1" in warning
    assert "Rebuild it with playground make-lmdb (--overwrite) for label protection" in warning
    flip_byte_of_record(dataset.reader, 3)  # its images are still checksummed
    with pytest.raises(RecordError, match="old record 3: image bytes fail their CRC-32 check"):
        LmdbReader(tmp_path / "old").read(3)


def test_label_outside_the_classes_is_a_data_error_naming_path_index_and_value(tmp_path, caplog):
    image = encode_image(np.zeros((8, 8, 3), np.uint8), "png")
    values = [lmdb_format.pack_record(image, label) for label in (0, 1, 12, 2)]
    write_raw_lmdb(tmp_path / "odd", values, {**LmdbWriter("x", ["a", "b", "c"], "png").meta(), "count": 4,
                                              "min_shorter_side": 8})
    reader = LmdbReader(tmp_path / "odd")
    with pytest.raises(DataError, match=r"odd record 2: label 12 is outside the dataset's classes \[0, 3\)"):
        reader.read(2)
    assert reader.read(3) == (image, 2)
    lenient = lmdb_input.get_dataset(make_exp(tmp_path / "odd", loadsize=8, imsize=8, max_decode_failures=0.5),
                                     "train")
    with caplog.at_level(logging.WARNING):
        assert lenient[2][1] == 2  # handled like any damaged record: the next one stands in
    assert "odd record 2: label 12 is outside the dataset's classes [0, 3); using the next record" in caplog.text
    strict = lmdb_input.get_dataset(make_exp(tmp_path / "odd", loadsize=8, imsize=8, max_decode_failures=0), "train")
    with pytest.raises(DataError, match=r"odd: 1 of 4 records are damaged.* The latest: .*odd record 2: label 12 is "
                                        r"outside the dataset's classes \[0, 3\)$"):
        strict.get_batch([0, 1, 2, 3])


def corrupt_leaf_page_holding(data_file, key: bytes) -> None:
    """Clears the flags of every LMDB leaf page holding `key`, so LMDB finds neither branch nor leaf there."""
    content = bytearray(data_file.read_bytes())
    page_size, leaf_flag, damaged = 4096, 0x02, 0
    for start in range(2 * page_size, len(content), page_size):  # pages 0 and 1 are LMDB's meta pages
        page = content[start:start + page_size]
        is_page_start = int.from_bytes(page[:8], "little") == start // page_size  # a page begins with its number
        if is_page_start and int.from_bytes(page[10:12], "little") == leaf_flag and key in page:
            content[start + 10:start + 12] = b"\0\0"
            damaged += 1
    assert damaged
    data_file.write_bytes(bytes(content))


def test_corrupted_lmdb_page_is_a_data_error_naming_the_path(tmp_path):
    build_shapes(tmp_path / "db", num=40)
    corrupt_leaf_page_holding(tmp_path / "db" / "data.mdb", lmdb_format.record_key(0))
    reader = LmdbReader(tmp_path / "db")  # __meta__ sits on another leaf page, so opening still works
    assert reader.read(39)[1] == 39 % 10
    with pytest.raises(DataError, match=r"db: LMDB cannot read record 0 \(CorruptedError: .*\); data.mdb is "
                                        "damaged, rebuild it with playground make-lmdb"):
        reader.read(0)


def test_truncated_data_file_is_a_data_error_not_a_crash(tmp_path):
    build_shapes(tmp_path / "db", num=200)
    shutil.copytree(tmp_path / "db", tmp_path / "cut")
    data_file = tmp_path / "cut" / "data.mdb"
    with open(data_file, "r+b") as f:
        f.truncate(data_file.stat().st_size // 2)
    with pytest.raises(DataError, match=r"cut: data.mdb is truncated \(\d+ bytes, header says \d+\); rebuild it"):
        lmdb_input.get_dataset(make_exp(tmp_path / "cut"), "train")


def test_missing_or_unfinished_lmdb_is_a_usage_error_naming_the_path(tmp_path):
    with pytest.raises(UsageError, match="nowhere does not exist; build it with: playground make-lmdb"):
        LmdbReader(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="empty is not an LMDB folder"):
        LmdbReader(tmp_path / "empty")
    with pytest.raises(ZeroDivisionError), LmdbWriter(tmp_path / "crashed", ["a"], "png") as writer:
        writer.add(encode_image(np.zeros((4, 4, 3), np.uint8), "png"), 0, 4)
        1 / 0
    with pytest.raises(UsageError, match="crashed is an LMDB but not a finished playground image dataset"):
        LmdbReader(tmp_path / "crashed")


@pytest.mark.parametrize("meta, message", [
    ([1, 2], "the __meta__ record is a JSON list, not an object"),
    ({"format": "playground-images", "format_version": 1}, "the __meta__ record lacks count, class_names"),
    ({**LmdbWriter("x", ["a"], "png").meta(), "count": "1"}, "the __meta__ count is '1', not an integer"),
])
def test_malformed_meta_is_a_data_error_naming_the_path(tmp_path, meta, message):
    with LmdbWriter(tmp_path / "odd", ["a"], "png") as writer:
        writer.add(encode_image(np.zeros((4, 4, 3), np.uint8), "png"), 0, 4)
        writer.meta = lambda: meta
    with pytest.raises(DataError, match=f"odd: {message}.*; rebuild it with playground make-lmdb"):
        LmdbReader(tmp_path / "odd")


def write_image_folder(root):
    """cat/ and dog/ with two images each, plus one corrupt file in dog/."""
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / name / f"{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")


def test_make_lmdb_from_folder_skips_and_lists_unreadable_images(tmp_path, caplog):
    write_image_folder(tmp_path / "src")
    with caplog.at_level(logging.WARNING):
        assert make_lmdb.main([str(tmp_path / "src"), str(tmp_path / "out"), "--resize-shorter", "10",
                               "--jobs", "2"]) == 0
    reader = LmdbReader(tmp_path / "out")
    assert reader.meta["class_names"] == ["cat", "dog"]
    assert reader.meta["min_shorter_side"] == 10
    assert [reader.read(i)[1] for i in range(len(reader))] == [0, 0, 1, 1]
    assert cv2.imdecode(np.frombuffer(reader.read(0)[0], np.uint8), cv2.IMREAD_COLOR).shape == (10, 15, 3)
    assert "broken.jpg: OpenCV cannot decode it" in caplog.text
    assert "skipped 1 unreadable image(s) of 5" in caplog.text
    assert not (tmp_path / "out.partial").exists()


def test_make_lmdb_from_list_file(tmp_path, caplog):
    write_image_folder(tmp_path / "src")
    (tmp_path / "src" / "list.txt").write_text("# path label\ndog/1.png 2\n\ncat/0.png 0\ngone.png 1\n")
    with caplog.at_level(logging.WARNING):
        assert make_lmdb.main([str(tmp_path / "src" / "list.txt"), str(tmp_path / "out"), "--encoding", "png",
                               "--jobs", "1"]) == 0
    reader = LmdbReader(tmp_path / "out")
    assert reader.meta["class_names"] == ["0", "1", "2"]
    assert [reader.read(i)[1] for i in range(len(reader))] == [2, 0]
    stored = cv2.imdecode(np.frombuffer(reader.read(0)[0], np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(stored, cv2.imread(str(tmp_path / "src" / "dog" / "1.png")))
    assert "gone.png: cannot read the file" in caplog.text


def test_make_lmdb_rejects_a_bad_list_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.png 0\nb.png cat\n")
    with pytest.raises(UsageError, match=r"list.txt:2: expected 'path label'"):
        make_lmdb.main([str(tmp_path / "list.txt"), str(tmp_path / "out")])


def test_make_lmdb_replaces_an_existing_lmdb_only_with_overwrite(tmp_path):
    build_shapes(tmp_path / "db", num=5)
    with pytest.raises(UsageError, match="db already exists; pass --overwrite"):
        build_shapes(tmp_path / "db", num=7)
    assert len(build_shapes(tmp_path / "db", 7, 0, "--overwrite")) == 7
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("precious")
    with pytest.raises(UsageError, match="notes exists and is not an LMDB folder"):
        build_shapes(tmp_path / "notes", 5, 0, "--overwrite")


@pytest.mark.parametrize("argv, message", [
    (["--synthetic", "shapes", "out"], "--synthetic needs --num N"),
    (["src", "out", "--num", "5"], "--num applies only with --synthetic"),
    (["src", "out", "--quality", "0"], "--quality must be between 1 and 100"),
    (["src", "out", "--encoding", "png", "--quality", "80"], "--quality applies only to --encoding jpg"),
    (["src"], "expected SRC OUT, got 1 path"),
    (["src", "out", "--encoding", "gif"], "argument --encoding: invalid choice"),
    (["--synthetic", "shapes", "out", "--num", "5", "--seed", "-1"], "--seed must be a non-negative integer"),
    (["--synthetic", "shapes", "out", "--num", "5", "--size", "100000"], "--size must be between 16 and 4096"),
])
def test_make_lmdb_bad_arguments_are_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        make_lmdb.main(argv)


@pytest.mark.parametrize("flag, value", [("--seed", "-1"), ("--size", "100000")])
def test_make_lmdb_bad_synthetic_flag_exits_2_naming_it(tmp_path, capsys, flag, value):
    assert cli.main(["make-lmdb", "--synthetic", "shapes", str(tmp_path / "out"), "--num", "5", flag, value]) == 2
    err = capsys.readouterr().err
    assert f"{flag} must be" in err and "see playground make-lmdb --help" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_make_lmdb_rejects_a_list_file_that_is_not_utf8(tmp_path):
    (tmp_path / "list.txt").write_bytes("a.png 0\ncaf\u00e9.png 1\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"list.txt:2: not UTF-8 text; .*re-save it as UTF-8"):
        make_lmdb.main([str(tmp_path / "list.txt"), str(tmp_path / "out")])


def test_shapes_are_deterministic_under_a_seed_and_differ_across_seeds(tmp_path):
    first, label = shapes.render_shape(seed=1, index=13, size=32)
    again, _ = shapes.render_shape(seed=1, index=13, size=32)
    other, other_label = shapes.render_shape(seed=2, index=13, size=32)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert label == other_label == 3 and first.shape == (32, 32, 3) and first.dtype == np.uint8
    a, b, c = (build_shapes(tmp_path / name, 10, seed) for name, seed in [("a", 1), ("b", 1), ("c", 2)])
    assert [a.read(i) for i in range(10)] == [b.read(i) for i in range(10)] != [c.read(i) for i in range(10)]
    assert a.meta["class_names"] == list(shapes.CLASS_NAMES)


def test_batches_are_deterministic_and_independent_of_workers(tmp_path):
    build_shapes(tmp_path / "db", num=24)
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db"), "train")
    index_lists = [[0, 5], [11, 23], [7]]

    def load(num_workers: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batches = list(data.batches(dataset, index_lists, num_workers, seed=0, pin_memory=False))
        return tuple(torch.cat(parts) for parts in zip(*[(px, colour, labels) for (px, colour), labels in batches]))

    dataset.set_epoch(3)
    pixels, colour, labels = load(num_workers=0)
    assert pixels.shape == (5, 28, 28, 3) and pixels.dtype == torch.uint8
    assert colour.shape == (5, 3, 4) and colour.dtype == torch.float32
    assert labels.tolist() == [i % 10 for indices in index_lists for i in indices]
    for got, expected in zip(load(num_workers=2), (pixels, colour, labels)):
        assert torch.equal(got, expected)
    dataset.set_epoch(4)
    assert not torch.equal(pixels, load(num_workers=0)[0])
    dataset.set_epoch(3)
    assert torch.equal(pixels, load(num_workers=0)[0])


def test_a_record_is_augmented_the_same_in_any_batch(tmp_path):
    """Its draws are counter_uniforms of (seed, epoch) at its index, whichever batch reads it."""
    reader = build_shapes(tmp_path / "db", num=5)
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db"), "train")
    dataset.set_epoch(2)
    (pixels, colour), _ = dataset.get_batch([4, 3])
    (alone, alone_colour), label = dataset[3]
    assert torch.equal(pixels[1], alone) and torch.equal(colour[1], alone_colour) and label == 3
    image = cv2.imdecode(np.frombuffer(reader.read(3)[0], np.uint8), cv2.IMREAD_COLOR)
    draws = transforms.counter_uniforms(data.mix_seeds(0, 2), [3])
    expected = np.empty((28, 28, 3), np.uint8)
    dataset.transform.crop(image, draws[0].tolist(), expected)
    assert np.array_equal(alone.numpy(), expected)
    np.testing.assert_array_equal(alone_colour.numpy(), dataset.transform.colour(expected[None], draws)[0])


def test_network_input_is_normalised_rgb_float(tmp_path):
    build_shapes(tmp_path / "db", num=4)
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db"), "test")
    (pixels, colour), _ = dataset.get_batch([0, 1])
    inputs = dataset.device_transform((pixels, colour))
    assert inputs.shape == (2, 3, 28, 28) and inputs.dtype == torch.float32
    rgb = pixels.numpy()[..., ::-1].transpose(0, 3, 1, 2).astype(np.float64)
    mean, std = np.array(transforms.IMAGENET_MEAN_RGB), np.array(transforms.IMAGENET_STD_RGB)
    np.testing.assert_allclose(inputs.numpy(), (rgb - mean[:, None, None]) / std[:, None, None], atol=1e-4)


def test_damaged_record_is_replaced_then_too_many_are_a_data_error(tmp_path, caplog):
    reader = build_shapes(tmp_path / "db", num=10)
    flip_byte_of_record(reader, 4)
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db", max_decode_failures=0.1), "test")
    with caplog.at_level(logging.WARNING):
        image, label = dataset[4]
    assert label == 5  # the next record stands in
    assert "record 4: label or image bytes fail their CRC-32 check" in caplog.text
    assert "using the next record in its place" in caplog.text
    strict = lmdb_input.get_dataset(make_exp(tmp_path / "db", max_decode_failures=0), "test")
    with pytest.raises(DataError, match="1 of 10 records are damaged, more than input.max_decode_failures allows"):
        strict[4]


def test_jpegs_much_larger_than_loadsize_are_decoded_at_reduced_size(tmp_path):
    assert lmdb_input.decode_flags({"encoding": "jpg", "min_shorter_side": 512}, 128) == cv2.IMREAD_REDUCED_COLOR_4
    assert lmdb_input.decode_flags({"encoding": "jpg", "min_shorter_side": 255}, 128) == cv2.IMREAD_COLOR
    assert lmdb_input.decode_flags({"encoding": "png", "min_shorter_side": 512}, 64) == cv2.IMREAD_COLOR
    build_shapes(tmp_path / "db", num=2)  # stored at 32 px
    dataset = lmdb_input.get_dataset(make_exp(tmp_path / "db", loadsize=16, imsize=12), "test")
    assert dataset.decode_flags == cv2.IMREAD_REDUCED_COLOR_2
    assert dataset[1][0][0].shape == (12, 12, 3)


def test_num_classes_smaller_than_the_data_is_a_usage_error(tmp_path):
    build_shapes(tmp_path / "db", num=10)
    with pytest.raises(UsageError, match="input.num_classes is 5 but .* has 10 classes; set input.num_classes to 10"):
        lmdb_input.get_dataset(make_exp(tmp_path / "db", num_classes=5), "train")


def input_problems(**overrides) -> list[str]:
    """What validation says of the seed command's input opts with `overrides` (None deletes a key)."""
    opts = seed_command_opts()
    opts["input"].update({"loadsize": 32, "imsize": 28, **overrides})
    opts["input"] = {key: value for key, value in opts["input"].items() if value is not None}
    with pytest.raises(OptsError) as raised:
        prepare(opts)
    return raised.value.problems


@pytest.mark.parametrize("overrides, problem", [
    ({"train_input_path": ""}, "input.train_input_path: must not be empty (LMDB folder of the training split "
                               "(playground make-lmdb).)"),
    ({"imsize": 40}, "input.imsize: 40 must not exceed input.loadsize (32)"),
    ({"mirror": "yes"}, 'input.mirror: expected true or false, got "yes"'),
    ({"max_decode_failures": 3}, "input.max_decode_failures: must be at most 1, got 3"),
    ({"scale_jitter_type": 2}, "input.scale_jitter_type: must be one of 0, 1, got 2"),
    ({"mean": [1, 2]}, "input.mean: needs 3 numbers, R, G and B, got 2"),
    ({"std": [1, 0, 1]}, "input.std[1]: must be above 0, got 0"),
])
def test_bad_input_opts_are_opts_problems_naming_the_key(overrides, problem):
    assert input_problems(**overrides) == [problem]


def test_missing_input_path_names_the_dotted_key():
    assert [p.split(";")[0] for p in input_problems(test_input_path=None)] == ["input.test_input_path: missing"]


def test_synthetic_build_is_skipped_when_the_same_dataset_is_there(tmp_path):
    out = str(tmp_path / "shapes")
    args = ["--synthetic", "shapes", out, "--num", "12", "--size", "32", "--seed", "3"]
    assert make_lmdb.main(args) == 0
    before = os.path.getmtime(os.path.join(out, "data.mdb"))
    assert make_lmdb.main(args) == 0  # the quick start command can be re-run
    assert os.path.getmtime(os.path.join(out, "data.mdb")) == before
    with pytest.raises(UsageError, match="already exists"):
        make_lmdb.main([*args[:-1], "4"])  # another seed: refused, not silently kept


def test_synthetic_dataset_of_version_1_is_not_taken_for_a_finished_build(tmp_path):
    """Else re-running make-lmdb, as the version 1 warning says to, would do nothing."""
    recipe = {"synthetic": "shapes", "num": 4, "size": 32, "seed": 0, "encoding": "jpg", "quality": 90}
    out = tmp_path / "shapes"
    write_version_1_lmdb(out, [encode_image(np.zeros((32, 32, 3), np.uint8), "jpg")] * 4, [0, 1, 2, 0],
                         source=recipe)
    args = ["--synthetic", "shapes", str(out), "--num", "4", "--size", "32"]
    with pytest.raises(UsageError, match="already exists; pass --overwrite"):
        make_lmdb.main(args)
    assert build_shapes(out, 4, 0, "--overwrite").format_version == lmdb_format.FORMAT_VERSION


def test_workers_get_the_dataset_whatever_the_default_start_method(tmp_path):
    """Python 3.14 makes forkserver the default start method: the dataset and its shared counters must reach
    workers that are not forked from the training process."""
    build_shapes(tmp_path / "db", num=8)
    script = f"""
import multiprocessing, types
multiprocessing.set_start_method("forkserver")
from playground import data
from playground.opts import with_defaults
from resnetdemo import lmdb_input
exp = types.SimpleNamespace(seed=0, opts=with_defaults({{"input": {input_opts(tmp_path / "db")!r}}}, lmdb_input.OPTS))
dataset = lmdb_input.get_dataset(exp, "train")
batches = list(data.batches(dataset, [[0, 1], [2]], 2, seed=0, pin_memory=False))
print([labels.tolist() for _, labels in batches])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[[0, 1], [2]]"
