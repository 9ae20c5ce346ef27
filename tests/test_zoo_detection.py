"""Object detection in the model zoo (zoo/detection): box arithmetic, the scenes, the mAP meter, and the SSD example
through `playground run` at a tiny size."""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, playground
from playground import data
from playground.errors import UsageError
from playground.testing import tiny_experiment
from resnetdemo import shapes
from zoo.detection import boxes as box_ops
from zoo.detection.coco_map import DetectionMAP, coco_map
from zoo.detection.detections_png import DrawDetections
from zoo.detection.shape_scenes import ShapeScenes, render_scene
from zoo.detection.ssd import SSD, MultiBoxLoss, anchor_grid


def random_boxes(n: int, generator: torch.Generator, size: float = 64.0) -> torch.Tensor:
    corner = torch.rand(n, 2, generator=generator) * size * 0.8
    extent = 2 + torch.rand(n, 2, generator=generator) * size * 0.3
    return torch.cat([corner, corner + extent], 1)


# ---------------------------------------------------------------------------------------------- box arithmetic


def test_iou_of_known_boxes():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 4, 4]])
    b = torch.tensor([[5.0, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]])
    expected = torch.tensor([[25 / 175, 1.0, 0.0], [0.0, 16 / 100, 0.0]])
    assert torch.allclose(box_ops.box_iou(a, b), expected)


def test_encode_then_decode_gives_the_boxes_back():
    generator = torch.Generator().manual_seed(0)
    anchors = anchor_grid(64, [8, 4, 2])
    boxes = random_boxes(len(anchors), generator)
    offsets = box_ops.encode(boxes, anchors)
    assert torch.allclose(box_ops.decode(offsets, anchors), boxes, atol=1e-4)
    assert torch.allclose(box_ops.encode(box_ops.corners(anchors), anchors), torch.zeros_like(anchors), atol=1e-5)


def test_anchors_cover_the_image_per_map_in_the_heads_order():
    anchors = anchor_grid(64, [8, 4, 2])
    assert anchors.shape == ((64 + 16 + 4) * 4, 4)
    first_cell = anchors[:4]
    assert torch.allclose(first_cell[:, :2], torch.tensor([4.0, 4.0]).expand(4, 2))  # stride 8: centre (4, 4)
    assert anchors[4, 0] == 12.0 and anchors[4, 1] == 4.0  # next cell to the right
    assert SSD(10, 64, width=8).anchors.shape == anchors.shape


def test_matching_gives_every_box_an_anchor_and_overlapping_anchors_its_class():
    anchors = torch.tensor([[10.0, 10, 20, 20], [40, 40, 20, 20], [12, 12, 20, 20], [50, 10, 8, 8]])
    boxes = torch.tensor([[0.0, 0, 20, 20], [46, 6, 54, 14], [35, 35, 37, 37]])  # the last: tiny, IoU < 0.5
    classes, offsets = box_ops.match(boxes, torch.tensor([3, 7, 5]), anchors)
    # anchor 0 is box 0 exactly; anchor 2 overlaps it by 0.68; anchor 3 is box 1; anchor 1 is only box 2's best
    assert classes.tolist() == [4, 6, 4, 8]
    assert torch.allclose(box_ops.decode(offsets, anchors)[[0, 1, 3]], boxes[[0, 2, 1]], atol=1e-4)
    empty, _ = box_ops.match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), anchors)
    assert empty.tolist() == [0, 0, 0, 0]


def test_hard_negatives_are_three_per_positive_and_the_hardest():
    generator = torch.Generator().manual_seed(1)
    loss = torch.rand(2, 50, generator=generator)
    positive = torch.zeros(2, 50, dtype=torch.bool)
    positive[0, [3, 9]] = True
    positive[1, :20] = True  # 60 wanted, only 30 negatives
    negative = box_ops.hard_negatives(loss, positive, 3)
    assert negative.sum(1).tolist() == [6, 30] and not (negative & positive).any()
    hardest = loss[0].masked_fill(positive[0], -1).topk(6).indices
    assert set(negative[0].nonzero().flatten().tolist()) == set(hardest.tolist())


def greedy_nms_reference(boxes: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor, threshold: float) -> list:
    """Textbook NMS, one candidate at a time (candidates already in descending score order)."""
    kept: list[int] = []
    for i in range(len(boxes)):
        if valid[i] and all(classes[j] != classes[i] or box_ops.box_iou(boxes[j:j + 1], boxes[i:i + 1]).item()
                            <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_batched_nms_equals_greedy_nms_per_class(threshold):
    generator = torch.Generator().manual_seed(2)
    boxes = torch.stack([random_boxes(60, generator, size=24) for _ in range(3)])  # crowded: many overlaps
    classes = torch.randint(3, (3, 60), generator=generator)
    valid = torch.rand(3, 60, generator=generator) > 0.1
    keep = box_ops.batched_nms(boxes, classes, valid, threshold)
    for b in range(3):
        expected = greedy_nms_reference(boxes[b], classes[b], valid[b], threshold)
        assert keep[b].nonzero().flatten().tolist() == expected
        assert 0 < len(expected) < valid[b].sum()  # the case suppresses some, not all


# ---------------------------------------------------------------------------------------------- data


def test_scenes_are_deterministic_with_boxes_around_their_shapes():
    image, boxes, labels = render_scene(seed=3, index=5, size=64)
    again = render_scene(seed=3, index=5, size=64)
    assert np.array_equal(image, again[0]) and np.array_equal(boxes, again[1])
    assert not np.array_equal(image, render_scene(seed=3, index=5, size=64, split="test")[0])
    counts = [len(render_scene(0, i, 64, max_shapes=4)[2]) for i in range(40)]
    assert min(counts) >= 1 and max(counts) == 4
    assert (boxes >= 0).all() and (boxes <= 64).all() and (boxes[:, 2:] > boxes[:, :2] + 4).all()
    rng = np.random.default_rng(0)
    for label in range(shapes.NUM_CLASSES):
        mask, box = shapes.shape_mask_and_box(label, 64, 7.0 + label, np.array([30.0, 26.0]), label * 0.7, rng)
        ys, xs = np.nonzero(mask[:, :, 0] > 0.5)  # the pixels it covers; pixel i spans [i, i + 1]
        shown = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert np.abs(shown - box).max() <= 0.75, (shapes.CLASS_NAMES[label], shown, box)


def test_render_shape_is_unchanged_by_the_refactor_for_scenes():
    digest = hashlib.sha256()
    for index in range(30):
        image, label = shapes.render_shape(seed=1, index=index, size=48)
        digest.update(image.tobytes() + bytes([label]))
    assert digest.hexdigest() == "a32da21f93381fa138f260e18c18eff9b63000f599f2f66af56499f1a40feb6b"


def test_collate_keeps_each_images_boxes():
    dataset = ShapeScenes(seed=0, split="train", num_images=16, size=32)
    items = [dataset[i] for i in range(6)]
    images, targets = data.fetch(dataset, list(range(6)))
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.uint8
    assert [len(t["boxes"]) for t in targets] == [len(t["boxes"]) for _, t in items]
    assert len({len(t["boxes"]) for t in targets}) > 1  # the counts differ
    assert data.batch_size(targets) == 6
    assert torch.equal(targets[2]["labels"], items[2][1]["labels"])
    with pytest.raises(IndexError):
        dataset[16]


# ---------------------------------------------------------------------------------------------- mAP


def average_precision_reference(detections: list, truths: list, threshold: float) -> float:
    """AP of one class as COCO defines it, written out: detections in score order each take the unmatched true
    box they overlap most (IoU >= threshold), then precision made monotone, read at 101 recall points."""
    ranked = sorted(((score, i, box) for i, d in enumerate(detections) for box, score in zip(*d)),
                    key=lambda item: -item[0])
    taken = [set() for _ in truths]
    hits = []
    for _, i, box in ranked:
        ious = box_ops.box_iou(torch.tensor([box]), truths[i]).flatten() if len(truths[i]) else torch.zeros(0)
        best = max((j for j in range(len(ious)) if j not in taken[i] and ious[j] >= threshold),
                   key=lambda j: ious[j], default=None)
        hits.append(best is not None)
        if best is not None:
            taken[i].add(best)
    true_positives = np.cumsum(hits)
    recall = true_positives / sum(len(t) for t in truths)
    precision = true_positives / np.arange(1, len(hits) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    points = [precision[np.searchsorted(recall, r, side="left")] if (recall >= r).any() else 0.0
              for r in np.linspace(0, 1, 101)]
    return float(np.mean(points))


def map_case() -> list[tuple[dict, dict]]:
    """(detections, targets) of 12 images of one class: near misses of every true box, and false alarms."""
    generator = torch.Generator().manual_seed(4)
    images = []
    for _ in range(12):
        truth = random_boxes(int(torch.randint(1, 4, (1,), generator=generator)), generator)
        moved = truth + torch.randn(len(truth), 4, generator=generator)
        moved = torch.cat([torch.minimum(moved[:, :2], moved[:, 2:]), torch.maximum(moved[:, :2], moved[:, 2:])], 1)
        found = torch.cat([moved, random_boxes(2, generator)])
        scores = torch.rand(len(found), generator=generator) + (torch.arange(len(found)) < len(truth)) * 0.3
        images.append(({"boxes": found, "scores": scores, "labels": torch.zeros(len(found), dtype=torch.long)},
                       {"boxes": truth, "labels": torch.zeros(len(truth), dtype=torch.long)}))
    return images


def test_map_equals_the_written_out_coco_average_precision():
    images = map_case()
    detections = [(d["boxes"].tolist(), d["scores"].tolist()) for d, _ in images]
    truths = [t["boxes"] for _, t in images]
    values = coco_map([({k: v.numpy() for k, v in d.items()}, {k: v.numpy() for k, v in t.items()})
                       for d, t in images])
    assert values["map_50"] == pytest.approx(average_precision_reference(detections, truths, 0.5), abs=1e-6)
    assert values["map_75"] == pytest.approx(average_precision_reference(detections, truths, 0.75), abs=1e-6)
    thresholds = np.linspace(0.5, 0.95, 10)
    expected = np.mean([average_precision_reference(detections, truths, t) for t in thresholds])
    assert values["map"] == pytest.approx(expected, abs=1e-6)
    assert 0.1 < values["map_75"] < values["map_50"] < 0.9  # a case with hits and misses at either IoU


def test_map_meter_reads_blobs_over_batches_and_averages_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    truth = [{"boxes": boxes, "labels": torch.tensor([1, 2])}]
    right = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 2])}]
    wrong = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 3])}]
    meter = DetectionMAP(["output.detections", "label"], key="map_50")
    assert math.isnan(meter.compute())
    meter.update({"output": {"detections": right}, "label": truth})
    assert meter.compute() == pytest.approx(1.0)
    meter.update({"output": {"detections": wrong}, "label": truth})  # class 2 now found once in two images
    assert meter.compute() == pytest.approx((1.0 + 0.5) / 2, abs=0.01)
    meter.reset()
    meter.update({"output": {"detections": [{k: v[:0] for k, v in right[0].items()}]}, "label": truth})
    assert meter.compute() == 0.0


def _map_rank(rank: int, store_path: str, queue) -> None:
    """One of two ranks: measures its share of map_case's images (rank 1 fewer), syncs, computes."""
    torch.distributed.init_process_group("gloo", store=torch.distributed.FileStore(store_path, 2), rank=rank,
                                         world_size=2)
    images = map_case()[:9] if rank == 0 else map_case()[9:]
    meter = DetectionMAP(["detections", "targets"], key="map")
    meter.update({"detections": [d for d, _ in images], "targets": [t for _, t in images]})
    meter.sync(None)
    queue.put((rank, meter.compute()))
    torch.distributed.destroy_process_group()


def test_map_over_two_ranks_equals_one_process(tmp_path):
    """mAP needs every image: each rank's detections are gathered before computing, never averaged."""
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(_map_rank, args=(str(tmp_path / "store"), queue), nprocs=2, join=False,
                                 start_method="spawn")
    while not context.join(timeout=60):
        pass
    values = dict(queue.get() for _ in range(2))
    expected = coco_map([({k: v.numpy() for k, v in d.items()}, {k: v.numpy() for k, v in t.items()})
                         for d, t in map_case()])["map"]
    assert values[0] == pytest.approx(expected, abs=1e-9) and values[1] == pytest.approx(expected, abs=1e-9)
    halves = [coco_map([({k: v.numpy() for k, v in d.items()}, {k: v.numpy() for k, v in t.items()})
                        for d, t in part])["map"] for part in (map_case()[:9], map_case()[9:])]
    assert abs(sum(halves) / 2 - expected) > 1e-3


@pytest.mark.parametrize("kargs, message", [({"key": "map_90"}, "key must be one of map, map_50, map_75"),
                                            ({"blob_name": "output"}, "blob_name must name")])
def test_map_meter_names_a_bad_argument(kargs, message):
    with pytest.raises(ValueError, match=message):
        DetectionMAP(**kargs)


# ---------------------------------------------------------------------------------------------- the network


def test_ssd_trains_on_losses_and_decodes_in_eval_mode():
    torch.manual_seed(0)
    dataset = ShapeScenes(seed=0, split="train", num_images=8, size=32)
    images, targets = data.fetch(dataset, list(range(8)))
    inputs = dataset.device_transform(images)
    network = SSD(10, 32, width=8, nms_candidates=30)
    criterion = MultiBoxLoss(network.anchors, cls_weight=1.0, box_weight=2.0)
    output = network(inputs)
    assert set(output) == {"class_logits", "box_offsets"}
    losses = criterion(output, targets)
    assert set(losses) == {"loss_cls", "loss_box"} and all(v.dim() == 0 and v > 0 for v in losses.values())
    unweighted = MultiBoxLoss(network.anchors)(output, targets)["loss_box"].item()
    assert losses["loss_box"].item() == pytest.approx(2 * unweighted)
    network.eval()
    with torch.no_grad():
        detections = network(inputs)["detections"]
    assert len(detections) == 8
    for found in detections:
        assert set(found) == {"boxes", "scores", "labels"} and len(found["boxes"]) <= 30
        assert (found["scores"][:-1] >= found["scores"][1:]).all() and (found["scores"] > 0.05).all()
    with pytest.raises(ValueError, match="built for 32x32 images"):
        network(torch.zeros(1, 3, 64, 64))


def test_draw_detections_names_a_network_that_does_not_detect(tmp_path):
    exp = tiny_experiment(tmp_path, handlers=[DrawDetections(num_images=2)])
    with pytest.raises(UsageError, match="Linear returns no 'detections' in eval mode"):
        exp.run()
    for bad in ({"num_images": 0}, {"min_score": 2}, {"filename": "detections.jpg"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DrawDetections(**bad)


# ---------------------------------------------------------------------------------------------- the example


# Both routes at the same tiny size: 32 px scenes, width 8, 256 training scenes in batches of 16, 2 epochs.
TINY = {"size": 32, "width": 8, "train": 256, "test": 32, "batch": 16, "epochs": 2, "lr": 0.01}


@pytest.fixture(scope="module")
def opts_run(tmp_path_factory) -> tuple:
    """The SSD example through `playground run`, with ModelStatistics and DumpGraph added (and a short NMS, so
    that the export stays quick; it changes no loss)."""
    folder = tmp_path_factory.mktemp("opts") / "run"
    handlers = [{"handler_py": "DrawDetections", "kargs": {"num_images": 4, "min_score": 0.1}},
                {"handler_py": "ModelStatistics"}, {"handler_py": "DumpGraph", "kargs": {"formats": ["export", "fx"]}}]
    settings = {"input.image_size": TINY["size"], "input.num_train_images": TINY["train"],
                "model_param.width": TINY["width"], "model_param.base_learning_rate": TINY["lr"],
                "model_param.nms_candidates": 20, "epoch_iter.num_train_sample_per_epoch": TINY["train"],
                "epoch_iter.batch_per_device": TINY["batch"], "epoch_iter.num_epochs": TINY["epochs"],
                "epoch_iter.num_test_sample": TINY["test"], "output.record_every_iters": 1,
                "output.handlers": json.dumps(handlers), "output.checkpoint_folder": folder,
                "output.progress_bar": "false"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLAYGROUND_RUNS", str(folder.parent / "runs"))
        result = playground("run", "--parameters-json", str(ROOT / "examples" / "detection_ssd.json"),
                            *[arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")])
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, json.loads((folder / "results.json").read_text())


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory) -> tuple:
    """examples/fit_detection.py, as a user runs it."""
    folder = tmp_path_factory.mktemp("fit") / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PLAYGROUND_RUNS": str(folder.parent)}
    flags = {"--train": TINY["train"], "--test": TINY["test"], "--size": TINY["size"], "--width": TINY["width"],
             "--batch-size": TINY["batch"], "--epochs": TINY["epochs"], "--lr": TINY["lr"], "--folder": folder}
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "fit_detection.py"),
                             *[str(x) for item in flags.items() for x in item]], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_map50" in result.stdout
    return folder, json.loads((folder / "results.json").read_text())


def test_detection_example_trains_through_playground_run(opts_run):
    """The opts route: losses fall, each loss is recorded, mAP lands in results.json, the detections are drawn,
    ModelStatistics counts the SSD and DumpGraph exports it (fx cannot trace its decoding: it says so)."""
    folder, results = opts_run
    metrics = results["metrics"]
    for name in ("train_loss", "train_loss_cls", "train_loss_box"):
        values = metrics[name]["values"]
        assert len(values) == 32 and np.mean(values[-4:]) < np.mean(values[:4]), (name, values)
    losses = [metrics[f"train_loss_{part}"]["values"][-1] for part in ("cls", "box")]
    assert metrics["train_loss"]["values"][-1] == pytest.approx(sum(losses), rel=1e-5)
    final = results["final"]
    assert 0 <= final["test_map"] <= final["test_map50"] <= 1
    assert (folder / "detections.png").stat().st_size > 10_000
    assert json.loads((folder / "model_statistics.json").read_text())["flops_per_sample"] > 0
    assert "torch.ops.aten.conv2d" in (folder / "graph_export.txt").read_text()
    assert "DumpGraph: no fx graph: TraceError" in (folder / "log.txt").read_text()


def test_detection_example_trains_through_estimator_fit(fit_run):
    """The Estimator route: each loss part recorded, the loss falling, the mAP of the decoded detections
    measured on the held-out scenes, the detections drawn."""
    folder, results = fit_run
    metrics = results["metrics"]
    for name in ("train_loss", "train_loss_cls"):
        assert metrics[name]["values"][-1] < metrics[name]["values"][0] * 0.9, (name, metrics[name]["values"])
    assert metrics["val_loss"]["values"][-1] < metrics["val_loss"]["values"][0]
    assert {"train_loss_box", "val_loss_box", "val_map50", "val_map"} <= set(metrics)
    assert 0 <= results["final"]["val_map"] <= results["final"]["val_map50"] <= 1
    assert (folder / "detections.png").stat().st_size > 10_000


def test_both_routes_train_the_same_network_on_the_same_data(opts_run, fit_run):
    """Same seed, scenes, order, network and schedule: the same losses, to the bit, at every common record."""
    opts_metrics, fit_metrics = opts_run[1]["metrics"], fit_run[1]["metrics"]
    assert fit_metrics["val_loss"]["values"] == opts_metrics["test_loss"]["values"]
    for name in ("train_loss", "train_loss_cls", "train_loss_box"):
        by_iteration = dict(zip(opts_metrics[name]["iterations"], opts_metrics[name]["values"]))
        fit = dict(zip(fit_metrics[name]["iterations"], fit_metrics[name]["values"]))
        assert len(fit) >= 4 and fit == {i: by_iteration[i] for i in fit}, name
