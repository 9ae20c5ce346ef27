"""A small real experiment that component and handler authors can drive in a unit test (Chainer's mock
trainer): a linear classifier on a few random batches, no opts, no lab book, runs in milliseconds.

    exp = tiny_experiment(tmp_path, handlers=[MyHandler()])
    exp.run()                                   # the whole loop: every event, checkpoints in tmp_path
    # or drive it by hand:
    exp.state.epoch = 3
    exp.record("test", {"test_loss": 0.5})      # the row handlers read (exp.row, exp.latest)
    exp.fire(Event.EPOCH_END)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from playground import data
from playground.anyexp import AnyExp
from playground.events import EventHandler
from playground.meters import ComputeLoss, ComputeTopKAccuracy
from playground.parts import Metric, Parts, RunInfo


class TinyExperiment(AnyExp):
    """Cross-entropy on the network's logits; blobs: loss, logits, label."""

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
        logits = self.model(inputs)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits, "label": labels}


def tiny_experiment(folder: str | os.PathLike = "", handlers: Sequence[EventHandler] = (), *, epochs: int = 2,
                    iterations: int = 4, batch_size: int = 8, features: int = 4, classes: int = 3, seed: int = 0,
                    iterations_per_test: int = 0, **settings: Any) -> AnyExp:
    """A built experiment over `handlers` (plus nothing else): `iterations` per epoch of `batch_size` random
    samples, a test pass at each epoch's end, every iteration recorded; `settings` override RunInfo fields."""
    torch.manual_seed(seed)
    samples = iterations * batch_size
    inputs, labels = torch.randn(2 * samples, features), torch.randint(classes, (2 * samples,))
    network = torch.nn.Linear(features, classes)
    metrics = [Metric(f"{kind}_loss", ComputeLoss("loss"), kind == "train") for kind in ("train", "test")]
    metrics.append(Metric("test_accuracy", ComputeTopKAccuracy(["logits", "label"]), False))
    parts = Parts(network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
                  train_data=data.TensorData(inputs[:samples], labels[:samples]),
                  test_data=data.TensorData(inputs[samples:], labels[samples:]), metrics=metrics,
                  handlers=list(handlers))
    info = RunInfo(**{"device": torch.device("cpu"), "folder": os.fspath(folder), "num_epochs": epochs,
                      "epoch_iterations": iterations, "batch_per_device": batch_size, "total_batch_size": batch_size,
                      "seed": seed, "record_every": 1, "iterations_per_test": iterations_per_test, **settings})
    if info.folder:
        os.makedirs(info.folder, exist_ok=True)
    return TinyExperiment(parts, info)
