"""The model zoo's logistic regression on generated tabular data, through `playground run`
(examples/logistic_regression.json) and Estimator.fit (examples/fit_logistic_regression.py), measured against the
Bayes-optimal classifier of the generating distribution."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import types

import pytest
import torch

from conftest import ROOT, playground, write_opts
from playground import runner
from playground.opts import load_opts
from zoo.classification.predictions_png import PredictionsPng
from zoo.detection.detections_png import DrawDetections
from zoo.segmentation.overlay_png import SegmentationOverlay
from zoo.seq2seq.attention_png import AttentionHeatmap
from zoo.tabular import tabular_data, tabular_input
from zoo.tabular.bayes_optimal import BayesOptimal
from zoo.text.saliency_png import TokenSaliencyPng


def fit_script(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """examples/<name> run as a user runs it (from another folder, with the project importable)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_opts_route_reaches_the_optimum_and_reports_both(tmp_path):
    folder = tmp_path / "run"
    # The example at full size: 780 steps of a linear model take about 2 s.
    result = playground("run", "--parameters-json", str(ROOT / "examples" / "logistic_regression.json"),
                        "--set", "output.progress_bar=false", "--set", f"output.checkpoint_folder={folder}",
                        timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((folder / "results.json").read_text())
    losses, final = results["metrics"]["train_loss"]["values"], results["final"]
    assert losses[-1] < losses[0]
    assert 0.75 < final["test_bayes_accuracy"] < 0.95  # noisy labels: even the optimum errs
    assert final["test_accuracy"] >= 0.99 * final["test_bayes_accuracy"]
    assert final["test_auroc"] >= 0.99 * final["test_bayes_auroc"]
    assert len(results["metrics"]["test_bayes_accuracy"]["values"]) == 10  # in every test row
    assert (folder / "roc.png").stat().st_size > 10_000


def test_the_estimator_route_reports_the_optimum_as_val_metrics(tmp_path):
    folder = tmp_path / "fit"
    result = fit_script("fit_logistic_regression.py", "--epochs", "2", "--train", "2048", "--test", "1024",
                        "--folder", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Bayes-optimal" in result.stdout
    results = json.loads((folder / "results.json").read_text())
    assert {"val_accuracy", "val_auroc", "val_bayes_accuracy", "val_bayes_auroc"} <= set(results["final"])
    losses = results["metrics"]["train_loss"]["values"]
    assert losses[-1] < losses[0] and (folder / "roc.png").exists()


def test_the_optimum_is_measured_on_the_test_samples_the_meters_read(tmp_path):
    opts = load_opts(str(ROOT / "examples" / "logistic_regression.json"))
    opts["input"].update(num_train_rows=1024, num_test_rows=1000)
    opts["epoch_iter"].update(num_train_sample_per_epoch=1024, num_epochs=1, num_test_iter=2)  # 512 test samples
    opts["output"].update(checkpoint_folder=str(tmp_path / "run"), progress_bar=False, plots=[])
    opts, components = runner.prepare(opts)
    (tmp_path / "run").mkdir()
    final = runner.run(opts, components, str(tmp_path / "run"))["final"]
    _, test = tabular_data.splits(1024, 1000, seed=1)
    logits, labels = test.optimum_logits[:512], test.tensors[1][:512]
    assert final["test_bayes_accuracy"] == ((logits > 0).float() == labels).float().mean().item()


def test_the_data_is_a_function_of_the_seed_and_splits_share_no_sample():
    train, test = tabular_data.splits(500, 200, num_features=8, seed=3)
    again, _ = tabular_data.splits(500, 200, num_features=8, seed=3)
    other, _ = tabular_data.splits(500, 200, num_features=8, seed=4)
    assert torch.equal(train.tensors[0], again.tensors[0]) and torch.equal(train.tensors[1], again.tensors[1])
    assert not torch.equal(train.tensors[0], other.tensors[0])
    assert not torch.equal(train.tensors[0][:200], test.tensors[0])
    features = train.tensors[0]
    assert torch.allclose(features.mean(0), torch.zeros(8), atol=1e-5)  # standardised by the training split
    assert torch.allclose(features.std(0), torch.ones(8), atol=1e-4)
    raw = tabular_data.make(500, 8, seed=3, split="train").tensors[0]
    assert set(raw[:, -2:].unique().tolist()) == {0.0, 1.0}  # the last quarter of the columns is binary
    assert raw[:, :6].std(0).max() / raw[:, :6].std(0).min() > 10  # the others on different scales


def test_the_labels_follow_the_optimum_logits_and_a_converged_fit_matches_it():
    train, test = tabular_data.splits(20000, 20000, seed=1)
    logits, labels = test.optimum_logits, test.tensors[1]
    for low, high in ((-9, -2), (-1, 1), (2, 9)):  # calibrated: the labels' frequency is the sigmoid's
        chosen = (logits > low) & (logits < high)
        assert abs(labels[chosen].mean() - torch.sigmoid(logits[chosen]).mean()) < 0.02
    weights, bias = torch.zeros(24, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")
    x, y = train.tensors

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weights + bias, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = ((test.tensors[0] @ weights + bias > 0).float() == labels).float().mean()
    optimum = ((logits > 0).float() == labels).float().mean()
    assert 0.99 * optimum <= fitted <= optimum + 0.01  # the Bayes-optimal classifier is the ceiling


@pytest.mark.parametrize("handler", [PredictionsPng, TokenSaliencyPng, BayesOptimal, DrawDetections,
                                     SegmentationOverlay, AttentionHeatmap], ids=lambda handler: handler.__name__)
def test_every_zoo_png_handler_refuses_a_filename_in_a_folder_when_built(handler):
    with pytest.raises(ValueError, match="filename must be a file name ending in .png, without a folder"):
        handler(filename="sub/x.png")


def test_a_png_filename_in_a_folder_is_an_opts_error_at_dry_run(tmp_path):
    """Found before training, not as a FileNotFoundError once training is over."""
    opts = load_opts(str(ROOT / "examples" / "logistic_regression.json"))
    opts["output"]["handlers"][0]["kargs"]["filename"] = "sub/roc.png"
    opts["output"]["checkpoint_folder"] = str(tmp_path / "run")
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "filename" in result.stderr and "sub/roc.png" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("handler, kargs", [(PredictionsPng, {"num_images": True}),
                                            (TokenSaliencyPng, {"num_sentences": True})], ids=["images", "sentences"])
def test_a_bool_is_no_count_of_pictures(handler, kargs):
    with pytest.raises(ValueError, match="must be a positive integer, got True"):
        handler(**kargs)


def test_the_train_and_test_splits_of_a_run_are_generated_once(monkeypatch):
    made = []
    make = tabular_data.make
    monkeypatch.setattr(tabular_data, "make", lambda *args: made.append(args[-1]) or make(*args))
    tabular_input.cached_splits.cache_clear()
    exp = types.SimpleNamespace(opts={"input": {"num_train_rows": 64, "num_test_rows": 32, "num_features": 8,
                                                "data_seed": 5}})
    train, test = tabular_input.get_dataset(exp, "train"), tabular_input.get_dataset(exp, "test")
    assert (len(train), len(test)) == (64, 32)
    assert made == ["train", "test"]  # once each, not once per get_dataset call
