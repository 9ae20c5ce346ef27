"""The Python API: Estimator.fit runs the same loop as the opts (same weights), and the Gluon design's checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import ROOT, example_opts, write_opts
from playground import checkpoint, cli
from playground.builtins import mlp_forward, synthetic_input
from playground.estimator import Estimator, EstimatorError
from playground.events import EventHandler
from playground.handlers import BestCheckpoint, EarlyStopping
from playground.meters import ComputeTopKAccuracy

# ---------------------------------------------------------------------------------------------- helpers


def mlp_and_data(opts: dict) -> tuple[torch.nn.Module, object, object]:
    """The example's network, initialised as `playground run` does (seeded right before it is built), and its
    train and test sets."""
    param, inp, epoch_iter = opts["model_param"], opts["input"], opts["epoch_iter"]
    torch.manual_seed(param["seed"])
    net = mlp_forward.build_network(SimpleNamespace(opts=opts))

    def make(num: int, split: str):
        return synthetic_input.make(num, inp["num_features"], inp["num_classes"], inp["noise"], param["seed"], split)

    return net, make(epoch_iter["num_train_sample_per_epoch"], "train"), make(epoch_iter["num_test_sample"], "test")


def tiny(n: int = 16, features: int = 4, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, features, generator=generator), torch.randint(classes, (n,), generator=generator)


class TwoHeads(torch.nn.Module):
    """Two outputs: class scores and a regression value."""

    def __init__(self):
        super().__init__()
        self.body, self.classes, self.value = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3), torch.nn.Linear(8, 1)

    def forward(self, x):
        h = self.body(x).relu()
        return self.classes(h), self.value(h)


def estimator(net: torch.nn.Module | None = None, **kargs) -> Estimator:
    net = net or torch.nn.Linear(4, 3)
    return Estimator(net, device="cpu", progress_bar=False, **kargs)


class FewerLabels(TensorDataset):
    """Batches whose labels hold one sample only."""

    def get_batch(self, indices: list[int]) -> tuple:
        x, y = self.tensors
        return x[indices], y[indices][:1]


# ---------------------------------------------------------------------------------------------- same loop, same weights


def test_fit_gives_the_same_weights_as_the_json_run(tmp_path):
    opts = example_opts()
    opts["epoch_iter"].update(num_train_sample_per_epoch=640, num_test_sample=256, num_epochs=2)
    opts["output"].update(checkpoint_folder=str(tmp_path / "json"), plots=[])
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, opts)]) == 0
    by_json = checkpoint.load(str(tmp_path / "json" / "model_final.pt"))["model"]
    with open(tmp_path / "json" / "results.json") as f:
        json_results = json.load(f)

    param = opts["model_param"]
    net, train, test = mlp_and_data(opts)
    sgd = torch.optim.SGD(net.parameters(), lr=param["base_learning_rate"], momentum=param["momentum"])
    top1 = ("accuracy_top1", ComputeTopKAccuracy(["output", "label"], topk=1))
    out = Estimator(net, loss=torch.nn.CrossEntropyLoss(), metrics=[top1], optimizer=sgd, device="cpu").fit(
        train, test, epochs=2, batch_size=opts["epoch_iter"]["batch_per_device"], seed=param["seed"],
        checkpoint_folder=str(tmp_path / "estimator"))
    assert by_json.keys() == net.state_dict().keys()
    assert all(torch.equal(by_json[k], v) for k, v in net.state_dict().items())
    for name, json_name in (("train_loss",) * 2, ("train_accuracy_top1",) * 2, ("val_loss", "test_loss"),
                            ("val_accuracy_top1", "test_accuracy_top1")):  # Keras' val_ names for val_data's
        assert out["metrics"][name]["values"] == json_results["metrics"][json_name]["values"], name
    assert out["epochs_completed"] == 2 and out["global_step"] == 20
    saved = checkpoint.load(str(tmp_path / "estimator" / "model_final.pt"))  # the same checkpoints and records
    assert saved["complete"] and all(torch.equal(by_json[k], v) for k, v in saved["model"].items())
    assert {"results.json", "status.json", "train.csv", "log.txt"} <= set(os.listdir(tmp_path / "estimator"))


class CrashAt(EventHandler):
    """Raises at training step `step` while armed: a process that died mid-run."""

    def __init__(self, step: int, armed: bool):
        self.step, self.armed = step, armed

    def on_iteration_end(self, exp) -> None:
        if self.armed and exp.state.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_fit_resumes_an_interrupted_run_from_its_folder(tmp_path):
    x, y = tiny(48)

    def fit(folder: str, armed: bool) -> dict:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        est = estimator(net, handlers=[CrashAt(7, armed)], metrics=["accuracy"],
                        optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
        est.fit((x, y), (x, y), epochs=3, batch_size=8, checkpoint_folder=folder,
                opts={"output.checkpoint_every_iters": 2})
        return net.state_dict()

    whole = fit(str(tmp_path / "whole"), armed=False)
    with pytest.raises(cli.PlaygroundError, match="CrashAt.on_iteration_end failed .*simulated crash"):
        fit(str(tmp_path / "resumed"), armed=True)
    assert "model_checkpoint_epoch1_iter2.pt" not in os.listdir(tmp_path / "resumed")  # step 8: never reached
    assert "model_checkpoint_epoch1.pt" in os.listdir(tmp_path / "resumed")
    resumed = fit(str(tmp_path / "resumed"), armed=False)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_fit_with_a_data_loader_evaluate_and_predict(tmp_path):
    x, y = tiny(32)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    est = estimator(net, metrics=["accuracy", "top2"], optimizer=lambda params: torch.optim.Adam(params, lr=0.05))
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    out = est.fit(loader, DataLoader(TensorDataset(x, y), batch_size=8), epochs=3,
                  checkpoint_folder=str(tmp_path / "run"))
    assert out["epoch_iterations"] == 4 and out["global_step"] == 12 and est.folder == str(tmp_path / "run")
    assert set(est.history) >= {"train_loss", "train_accuracy", "train_top2", "val_loss", "val_accuracy"}
    assert not any(name.startswith("test_") for name in est.history)
    scores = est.evaluate((x, y), batch_size=5)
    assert scores["test_loss"] == pytest.approx(out["final"]["val_loss"])
    assert scores["test_accuracy"] == pytest.approx(out["final"]["val_accuracy"])
    predicted = est.predict(x, batch_size=5)
    assert torch.allclose(predicted, net(x)) and predicted.shape == (32, 3) and net.training


def test_handlers_watch_val_loss_by_default_in_fit(tmp_path):
    x, y = tiny(32)
    early, best = EarlyStopping(patience=10, restore_best_weights=True), BestCheckpoint()
    est = estimator(metrics=["accuracy"], handlers=[early, best], optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    out = est.fit((x, y), (x, y), epochs=3, batch_size=8, checkpoint_folder=str(tmp_path / "run"))
    assert {"val_loss", "val_accuracy"} <= set(out["metrics"]) and "test_loss" not in out["metrics"]
    assert early.monitor.name == best.monitor.name == "val_loss" and early.restore_best
    assert early.best == best.best == min(out["metrics"]["val_loss"]["values"])
    assert os.path.exists(tmp_path / "run" / "model_best.pt")


def test_a_network_with_two_outputs_trains_with_two_losses(tmp_path):
    x, y = tiny(24)
    target = x.sum(dim=1, keepdim=True)
    est = estimator(TwoHeads(), loss=[torch.nn.CrossEntropyLoss(), torch.nn.MSELoss()], metrics=[["accuracy"], []])
    out = est.fit((x, y, target), epochs=1, batch_size=8, checkpoint_folder=str(tmp_path / "run"))
    assert {"train_loss", "train_loss0", "train_loss1", "train_accuracy0"} <= set(out["metrics"])
    total = out["metrics"]["train_loss"]["values"]
    parts = zip(out["metrics"]["train_loss0"]["values"], out["metrics"]["train_loss1"]["values"])
    assert total == pytest.approx([a + b for a, b in parts])
    classes, values = est.predict(x)
    assert classes.shape == (24, 3) and values.shape == (24, 1)


def test_playground_exports_estimator_lazily():
    code = ("import sys, playground; assert 'playground.estimator' not in sys.modules; "
            "from playground import Estimator; assert Estimator.__module__ == 'playground.estimator'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


# ---------------------------------------------------------------------------------------------- the Gluon checks


@pytest.mark.parametrize("make, message", [
    (lambda: (estimator(TwoHeads()), tiny()),
     "the network returns 2 output(s) but 1 loss(es) were given; give one loss per output"),
    (lambda: (estimator(TwoHeads(), loss=[torch.nn.CrossEntropyLoss(), torch.nn.MSELoss()], metrics=["accuracy"]),
              (*tiny(), torch.zeros(16, 1))),
     "the network returns 2 output(s) but metrics has 1 entry; give one list of metrics per output"),
    (lambda: (estimator(torch.nn.Linear(4, 1), loss=torch.nn.MSELoss()), (tiny()[0], torch.zeros(16))),
     "float labels of shape (8,) do not match the network's output of shape (8, 1) (the loss would broadcast"),
    (lambda: (estimator(), (tiny()[0], tiny()[1].unsqueeze(1))),
     "class-index labels of shape (8, 1) do not fit the network's output of shape (8, 3); expected (8,)"),
    (lambda: (estimator(), (tiny()[0], tiny()[1].float())),
     "float labels of shape (8,) do not match the network's output of shape (8, 3) (class indices must be an "
     "integer tensor)"),
    (lambda: (estimator(), DataLoader(TensorDataset(*tiny(), torch.ones(16)), batch_size=8)),
     "train_data yields 3 items per batch, but 1 loss(es) need 2: (inputs, label)"),
    (lambda: (estimator(loss=[torch.nn.CrossEntropyLoss()] * 2), DataLoader(TensorDataset(*tiny()), batch_size=8)),
     "train_data yields 2 items per batch, but 2 loss(es) need 3: (inputs, label, label)"),
    (lambda: (estimator(), DataLoader([{"x": torch.zeros(4), "y": 0}] * 8, batch_size=4)),
     "train_data yields a dict per batch"),
    (lambda: (estimator(), FewerLabels(*tiny())),
     "labels of shape (1,) do not match the network's output of shape (8, 3): they must hold the same number"),
    (lambda: (estimator(metrics=[ComputeTopKAccuracy()]), tiny()),
     "metric 'top_k_accuracy' reads the blob 'softmax', which does not exist; blobs: loss, batch_size, output, label"),
    (lambda: (estimator(loss=torch.nn.CrossEntropyLoss(reduction="none")), tiny()),
     "loss 0 returns (8,), not a scalar; reduce it (reduction='mean')"),
    (lambda: (estimator(metrics=["precision"]), tiny()), "unknown metric 'precision'"),
    (lambda: (estimator(metrics=["accuracy", "accuracy"]), tiny()), "metric names repeat or clash with the loss"),
])
def test_mistakes_are_clear_errors_before_the_first_step(make, message, tmp_path):
    est, train = make()
    with pytest.raises(EstimatorError) as error:
        est.fit(train, epochs=1, batch_size=8, checkpoint_folder=str(tmp_path / "run"))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "run")  # found before anything was written or trained


def test_bad_constructor_arguments_are_clear_errors():
    net = torch.nn.Linear(4, 3)
    with pytest.raises(EstimatorError, match="the optimizer holds none of net's parameters"):
        Estimator(net, optimizer=torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
    with pytest.raises(EstimatorError, match="handlers must be EventHandler instances, got str"):
        Estimator(net, handlers=["EarlyStopping"])
    with pytest.raises(EstimatorError, match="net must be a torch.nn.Module"):
        Estimator(lambda x: x)
    with pytest.raises(EstimatorError, match="train_data has 16 samples, fewer than one batch of 32"):
        estimator().fit(tiny(), epochs=1)
    with pytest.raises(EstimatorError, match="epochs must be a positive integer"):
        estimator().fit(tiny(), epochs=0)
    with pytest.raises(EstimatorError, match="must be a torch Dataset, a DataLoader or a tuple of tensors"):
        estimator().fit([[1, 2], [3, 4]], epochs=1)


@pytest.mark.parametrize("extra, message", [
    ({"output.record_every_iters": 0}, "Estimator: output.record_every_iters: must be at least 1"),
    ({"model_param.mixed_precision": "fp32"}, "Estimator: model_param.mixed_precision: must be one of"),
])
def test_fit_checks_its_opts_as_the_command_does(tmp_path, extra, message):
    from playground.errors import OptsError

    with pytest.raises(OptsError, match=message):
        estimator().fit(tiny(), epochs=1, batch_size=8, checkpoint_folder=str(tmp_path / "run"), opts=extra)
    assert not (tmp_path / "run").exists()
