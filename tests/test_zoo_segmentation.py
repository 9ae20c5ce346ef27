"""The segmentation example of the model zoo (zoo/segmentation): shapes images with per-pixel masks, an FCN, mean
IoU and pixel accuracy from an additive confusion matrix, the overlay PNG, through opts and Estimator.fit."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, playground
from playground import checkpoint
from playground.anyexp import AnyExp
from playground.events import Event
from playground.handlers import DumpGraph, ModelStatistics
from playground.parts import Parts, RunInfo
from resnetdemo.vision import cv2
from zoo.segmentation import BENCHMARK, shape_masks
from zoo.segmentation.confusion_meters import MeanIoU, PixelAccuracy
from zoo.segmentation.fcn import FCN
from zoo.segmentation.overlay_png import SegmentationOverlay
from zoo.segmentation.shape_masks_input import ShapeMasks

EXAMPLE = ROOT / "examples" / "segmentation_fcn.json"


# ---------------------------------------------------------------------------------------------- data


def test_masks_label_each_pixel_with_the_shape_drawn_there():
    """Per pixel: a shape's pixels look like its colour, not the background's; background pixels the reverse.
    (Noise and anti-aliased edges make a few exceptions; a mask shifted by one pixel has 6% of them.)"""
    shape_pixels = shape_right = background_pixels = background_right = 0
    for index in range(40):
        image, mask, drawn = shape_masks.render(7, index)
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64) and 1 <= len(drawn) <= 3
        assert set(np.unique(mask)) - {0} == {label for label, _ in drawn}  # every shape drawn is labelled
        pixels = image.astype(float)
        background = pixels[mask == 0].mean(axis=0)
        distance = lambda color: np.abs(pixels - color).mean(axis=2)  # noqa: E731
        to_background = distance(background)
        for label in {label for label, _ in drawn}:  # two shapes of one class: either one's colour
            to_shape = np.min([distance(color) for lab, color in drawn if lab == label], axis=0)
            shape_pixels += (mask == label).sum()
            shape_right += (to_shape < to_background)[mask == label].sum()
        to_any_shape = np.min([distance(color) for _, color in drawn], axis=0)
        background_pixels += (mask == 0).sum()
        background_right += (to_background < to_any_shape)[mask == 0].sum()
    assert shape_right / shape_pixels > 0.98 and background_right / background_pixels > 0.995


def test_images_depend_only_on_seed_and_index_and_the_splits_differ():
    first, again = shape_masks.render(3, 11), shape_masks.render(3, 11)
    assert all(np.array_equal(a, b) for a, b in zip(first[:2], again[:2]))
    assert not np.array_equal(first[0], shape_masks.render(3, 12)[0])
    train, test = ShapeMasks(3, "train", 4), ShapeMasks(3, "test", 4)
    assert not torch.equal(train.images, test.images)
    images, masks = train.get_batch([2, 0])
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 64, 64) and masks.dtype == torch.int64
    assert torch.equal(masks[1], train[0][1]) and int(masks.max()) < shape_masks.NUM_CLASSES


# ---------------------------------------------------------------------------------------------- meters


def one_hot_scores(predicted: list, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), classes).permute(0, 3, 1, 2).float()


def test_mean_iou_and_pixel_accuracy_of_a_hand_computed_example():
    label = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
    # Four score channels: class 3 is in neither the labels nor the predictions, so it is left out of the mean.
    blobs = {"logits": one_hot_scores([[[0, 1, 1], [1, 2, 0]]], 4), "label": label}
    miou, accuracy = MeanIoU(), PixelAccuracy()
    for meter in (miou, accuracy):
        meter.reset()
        meter.update(blobs)
    # IoU: class 0 1/3 (1 common pixel of 3), class 1 2/3, class 2 1/2; 4 of 6 pixels right.
    assert miou.compute() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert accuracy.compute() == pytest.approx(4 / 6)


def test_confusion_sums_of_two_halves_equal_the_whole_batch():
    """What the all-reduce over two ranks does: the matrices of each rank's half add up to the whole's."""
    generator = torch.Generator().manual_seed(0)
    blobs = {"logits": torch.randn(4, 5, 6, 6, generator=generator), "label": torch.randint(5, (4, 6, 6),
                                                                                             generator=generator)}
    whole, halves = MeanIoU(), [MeanIoU(), MeanIoU()]
    whole.update(blobs)
    for meter, part in zip(halves, (slice(0, 2), slice(2, 4))):
        meter.update({name: value[part] for name, value in blobs.items()})
    summed = MeanIoU()
    summed.sums = halves[0].sums + halves[1].sums
    assert torch.equal(summed.sums, whole.sums) and summed.compute() == whole.compute()
    assert whole.sums.sum() == 4 * 6 * 6


def test_a_label_beyond_the_score_channels_is_a_usage_error():
    from playground.errors import UsageError

    meter = MeanIoU()
    meter.update({"logits": one_hot_scores([[[0, 1]]], 2), "label": torch.tensor([[[0, 2]]])})
    with pytest.raises(UsageError, match="outside the 2 score channels"):
        meter.compute()


# ---------------------------------------------------------------------------------------------- network, handlers


class Segmenter(AnyExp):
    def forward(self, inputs, labels):
        logits = self.model(inputs)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits, "label": labels}


def fcn_experiment(folder, handlers) -> AnyExp:
    torch.manual_seed(0)
    network = FCN(shape_masks.NUM_CLASSES, (8, 16, 16))
    parts = Parts(network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
                  train_data=ShapeMasks(0, "train", 8), test_data=ShapeMasks(0, "test", 4), handlers=handlers)
    info = RunInfo(device=torch.device("cpu"), folder=str(folder), num_epochs=1, epoch_iterations=1,
                   batch_per_device=4, total_batch_size=4)
    return Segmenter(parts, info)


def test_fcn_scores_every_pixel_and_model_statistics_and_graphs_work_on_it(tmp_path):
    statistics, graph = ModelStatistics(), DumpGraph(formats=["export", "fx"])
    exp = fcn_experiment(tmp_path, [statistics, graph])
    assert exp.network(torch.zeros(2, 3, 64, 64)).shape == (2, shape_masks.NUM_CLASSES, 64, 64)
    exp.fire(Event.TRAIN_BEGIN)
    stats = json.loads((tmp_path / "model_statistics.json").read_text())
    assert stats["parameters"] == sum(p.numel() for p in exp.network.parameters())
    assert stats["flops_per_sample"] > 0 and stats["input_shape"] == [3, 64, 64]
    assert {"name": "classifier", "output_shape": [shape_masks.NUM_CLASSES, 32, 32]}.items() <= \
        next(layer for layer in stats["layers"] if layer["name"] == "classifier").items()
    assert graph.written == [str(tmp_path / "graph_export.txt"), str(tmp_path / "graph_fx.txt")]
    assert "upsample" in (tmp_path / "graph_export.txt").read_text()


def test_overlay_draws_image_prediction_and_truth_of_the_first_test_images(tmp_path):
    exp = fcn_experiment(tmp_path, [SegmentationOverlay(num_images=3)])
    exp.network.train()
    exp.fire(Event.TEST_END)
    picture = cv2.imread(str(tmp_path / "segmentation_overlay.png"))
    assert picture.shape[1] == 3 * 64 * 3 and picture.shape[0] > 3 * 64 * 3  # 3 rows of 3 panels, titles, legend
    assert exp.network.training  # drawn in eval mode, handed back as it was
    truth = picture[22: 22 + 64 * 3, 2 * 64 * 3:]  # the first row's true-mask panel
    mask = exp.test_dataset.masks[0]
    tinted = np.abs(truth.astype(int) - truth.astype(int).mean(axis=2, keepdims=True)).sum(axis=2) > 30
    labelled = mask.numpy().repeat(3, axis=0).repeat(3, axis=1) > 0
    assert (tinted == labelled).mean() > 0.95  # colour exactly where the true mask labels a shape


@pytest.mark.parametrize("kargs", [{"num_images": 0}, {"filename": "overlay.jpg"}, {"filename": "a/b.png"}])
def test_overlay_refuses_bad_arguments(kargs):
    with pytest.raises(ValueError):
        SegmentationOverlay(**kargs)


# ---------------------------------------------------------------------------------------------- both routes

# Both routes at one tiny size: 96 images, batches of 32 (the fit script's), 2 epochs of 3 iterations.
TINY = {"input.num_train_images": 96, "input.num_test_images": 16, "epoch_iter.num_train_sample_per_epoch": 96,
        "epoch_iter.num_test_sample": 16, "epoch_iter.num_epochs": 2}


def start(command: list[str], runs: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PLAYGROUND_RUNS": runs}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, folder) -> dict:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    assert (folder / "segmentation_overlay.png").stat().st_size > 0
    return json.loads((folder / "results.json").read_text())


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> dict[str, tuple]:
    """The example through `playground run` and through examples/fit_segmentation.py, run side by side once."""
    root = tmp_path_factory.mktemp("routes")
    folders = {"opts": root / "opts", "fit": root / "fit"}
    sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    running = {
        "opts": start([sys.executable, "-m", "playground", "run", "--parameters-json", str(EXAMPLE), *sets,
                       "--set", "output.record_every_iters=1", "--set", f"output.checkpoint_folder={folders['opts']}"],
                      str(root / "runs")),
        "fit": start([sys.executable, str(ROOT / "examples" / "fit_segmentation.py"), "--train-images", "96",
                      "--test-images", "16", "--epochs", "2", "--folder", str(folders["fit"])], str(root / "runs"))}
    return {route: (finish(process, folders[route]), folders[route]) for route, process in running.items()}


def series_at(results: dict, name: str) -> dict[int, float]:
    series = results["metrics"][name]
    return dict(zip(series["iterations"], series["values"]))


def test_opts_route_trains_and_writes_results_the_overlay_and_model_statistics(routes):
    results, folder = routes["opts"]
    train, test = series_at(results, "train_loss"), series_at(results, "test_loss")
    assert train[6] < train[1] and test[6] < test[3]
    assert 0 <= results["final"]["test_miou"] <= 1 and 0 <= results["final"]["test_pixel_accuracy"] <= 1
    assert (folder / "model_statistics.txt").exists()
    assert (folder / "segmentation_overlay.png").stat().st_size > 0


def test_fit_route_trains_the_same_network_on_the_same_batches(routes):
    """examples/fit_segmentation.py is the opts example in Python: the same losses and metrics, to the bit."""
    (fit, _), (opts, _) = routes["fit"], routes["opts"]
    fit_train = series_at(fit, "train_loss")
    assert list(fit_train) == [3, 6] and fit_train[6] < fit_train[3]
    assert fit_train == {i: v for i, v in series_at(opts, "train_loss").items() if i in fit_train}
    assert [fit["final"][f"val_{name}"] for name in ("loss", "miou", "pixel_accuracy")] == \
        [opts["final"][f"test_{name}"] for name in ("loss", "miou", "pixel_accuracy")]


def test_two_processes_measure_exactly_what_one_process_does(tmp_path):
    """Two processes, each measuring half of every test batch: the all-reduced confusion matrix gives the mean IoU
    and pixel accuracy that one process computes over the whole test set with the final weights."""
    folder = tmp_path / "run"
    sets = [arg for key, value in {**TINY, "epoch_iter.batch_per_device": 8, "distributed.num_cpus": 2,
                                   "model_param.fcn_widths": "[8,16,16]", "output.checkpoint_folder": folder}.items()
            for arg in ("--set", f"{key}={value}")]
    done = playground("run", "--parameters-json", str(EXAMPLE), *sets, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((folder / "results.json").read_text())
    network = FCN(shape_masks.NUM_CLASSES, (8, 16, 16))
    network.load_state_dict(checkpoint.load(str(folder / "model_final.pt"))["model"])
    test = ShapeMasks(1, "test", 16)
    images, masks = test.get_batch(list(range(16)))
    with torch.no_grad():
        blobs = {"logits": network.eval()(test.device_transform(images)), "label": masks}
    for name, meter in (("test_miou", MeanIoU()), ("test_pixel_accuracy", PixelAccuracy())):
        meter.update(blobs)
        assert results["final"][name] == pytest.approx(meter.compute(), abs=1e-3)  # a pixel's argmax may tie


def test_benchmark_entry_names_the_example_and_its_metric():
    entry = BENCHMARK["segmentation_fcn"]
    assert (ROOT / entry["opts"]).exists() and entry["metric"] == "test_miou" and entry["target"] >= 0.7
