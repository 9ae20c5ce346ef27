"""The model zoo's image classification: the AlexNet-style CNN on the shapes dataset, through `playground run`
(examples/alexnet_shapes.json) and Estimator.fit (examples/fit_alexnet_shapes.py), at a tiny size."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from conftest import ROOT, playground
from zoo.classification import shapes_input
from zoo.classification.alexnet import AlexNet

TINY = ["--set", "input.num_train_images=320", "--set", "input.num_test_images=64", "--set",
        "epoch_iter.num_train_sample_per_epoch=320", "--set", "epoch_iter.batch_per_device=32", "--set",
        "epoch_iter.num_epochs=2", "--set", "output.record_every_iters=1", "--set", "output.progress_bar=false",
        "--set", "model_param.alexnet_width=8"]


def fit_script(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """examples/<name> run as a user runs it (from another folder, with the project importable)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def falls(losses: list[float]) -> bool:
    """The mean of the last quarter is below that of the first: noisy per-batch losses fell."""
    quarter = max(len(losses) // 4, 1)
    return sum(losses[-quarter:]) / quarter < sum(losses[:quarter]) / quarter


def test_the_opts_route_trains_and_writes_its_outputs(tmp_path):
    folder = tmp_path / "run"
    result = playground("run", "--parameters-json", str(ROOT / "examples" / "alexnet_shapes.json"), *TINY,
                        "--set", f"output.checkpoint_folder={folder}", timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((folder / "results.json").read_text())
    assert falls(results["metrics"]["train_loss"]["values"])
    assert 0 <= results["final"]["test_accuracy_top1"] <= 1
    assert (folder / "predictions.png").stat().st_size > 10_000  # a grid of 24 images with titles
    stats = json.loads((folder / "model_statistics.json").read_text())
    assert stats["input_shape"] == [3, 32, 32] and stats["flops_per_sample"] > 0 and not stats["uncounted_layers"]


def test_the_estimator_route_trains_the_same_network(tmp_path):
    folder = tmp_path / "fit"
    result = fit_script("fit_alexnet_shapes.py", "--epochs", "2", "--train", "320", "--test", "64", "--folder",
                        str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "val_accuracy" in result.stdout
    results = json.loads((folder / "results.json").read_text())
    assert falls(results["metrics"]["train_loss"]["values"])
    assert (folder / "predictions.png").exists() and (folder / "model_statistics.json").exists()


def test_shapes_images_are_a_function_of_the_seed_and_test_images_are_new():
    first, again, other = shapes_input.make(20, 32, seed=1), shapes_input.make(20, 32, seed=1), \
        shapes_input.make(20, 32, seed=2)
    assert torch.equal(first.tensors[0], again.tensors[0]) and torch.equal(first.tensors[1], again.tensors[1])
    assert not torch.equal(first.tensors[0], other.tensors[0])
    assert first.tensors[0].dtype == torch.uint8 and first.tensors[0].shape == (20, 3, 32, 32)
    assert first.tensors[1].tolist() == [i % 10 for i in range(20)]  # every class in turn
    floats = first.device_transform(first.tensors[0])
    assert floats.dtype == torch.float32 and -2.1 < floats.min() and floats.max() < 2.1


def test_alexnet_takes_any_image_size_from_32_px():
    net = AlexNet(num_classes=10, width=4).eval()
    for size in (32, 48, 64):
        assert net(torch.zeros(2, 3, size, size)).shape == (2, 10)
