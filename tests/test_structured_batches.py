"""Batches that are not one tensor in and one class label out: labels of different lengths collated by the
dataset, several weighted losses recorded each, and meters reading into dict outputs (issue: beyond
classification)."""
from __future__ import annotations

import pytest
import torch

from playground import data
from playground.anyexp import AnyExp
from playground.errors import Stopped
from playground.meters import ComputeLoss, TorchMetric, blob
from playground.parts import Metric, Parts, RunInfo
from playground.state import StopRequest


class Points(torch.utils.data.Dataset):
    """Each sample: 4 features in, a variable-length list of targets out (1-3 values), padded by collate."""

    def __init__(self, n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=generator)
        self.lengths = torch.randint(1, 4, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple:
        return self.x[i], self.x[i, : int(self.lengths[i])].clone() * 2

    @staticmethod
    def collate(items: list) -> tuple:
        inputs = torch.stack([x for x, _ in items])
        targets = [t for _, t in items]
        padded = torch.nn.utils.rnn.pad_sequence(targets, batch_first=True)
        return inputs, (padded, torch.tensor([len(t) for t in targets]))


class TwoLosses(AnyExp):
    def forward(self, inputs, labels):
        padded, lengths = labels
        out = self.model(inputs)[:, : padded.shape[1]]
        mask = torch.arange(padded.shape[1]) < lengths[:, None]
        loss_value = ((out - padded) ** 2)[mask].mean()
        loss_l1 = (out - padded).abs()[mask].mean()
        return {"loss": loss_value + 0.5 * loss_l1, "loss_value": loss_value, "loss_l1": loss_l1,
                "output": {"first": out[:, 0], "all": out}, "target_first": padded[:, 0]}


def experiment(folder, workers: int = 0, epochs: int = 2) -> AnyExp:
    torch.manual_seed(0)
    network = torch.nn.Linear(4, 3)
    metrics = [Metric("train_loss_value", ComputeLoss("loss_value"), True),
               Metric("train_loss_l1", ComputeLoss("loss_l1"), True),
               Metric("test_loss", ComputeLoss("loss"), False),
               Metric("test_mse_first", TorchMetric("MeanSquaredError", blob_name=["output.first", "target_first"]),
                      False)]
    parts = Parts(network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
                  train_data=Points(48, 1), test_data=Points(24, 2), metrics=metrics, handlers=[])
    info = RunInfo(device=torch.device("cpu"), folder=str(folder), num_epochs=epochs, epoch_iterations=6,
                   batch_per_device=8, total_batch_size=8, seed=0, record_every=1, workers=workers)
    folder.mkdir(exist_ok=True)
    return TwoLosses(parts, info)


@pytest.mark.parametrize("workers", [0, 2])
def test_variable_length_labels_train_with_each_loss_recorded(tmp_path, workers):
    exp = experiment(tmp_path / "run", workers)
    exp.run()
    train = exp.history["train"]
    assert {"train_loss_value", "train_loss_l1"} <= set(train[-1])
    assert train[-1]["train_loss_value"] < train[0]["train_loss_value"]
    assert exp.history["test"][-1]["test_mse_first"] < exp.history["test"][0]["test_mse_first"] * 1.5
    assert all(b["batch_size"] == 8 for b in exp.step_blobs)


def test_structured_batches_resume_exactly(tmp_path):
    whole = experiment(tmp_path / "whole")
    whole.run()
    first = experiment(tmp_path / "half")
    first.fire = lambda event, **kw: first.request_stop(StopRequest("signal", "SIGTERM")) \
        if event.value == "epoch_end" else None
    with pytest.raises(Stopped):
        first.run()
    assert first.state.epoch == 1
    saved = torch.load(first.checkpoints[-1], weights_only=True)
    resumed = experiment(tmp_path / "half")
    resumed.load_checkpoint_state(saved)
    resumed.run()
    assert torch.equal(whole.network.weight, resumed.network.weight)


def test_batch_size_of_label_structures():
    assert data.batch_size(torch.zeros(5, 3)) == 5
    assert data.batch_size([torch.zeros(2, 4), torch.zeros(0, 4), torch.zeros(1, 4)]) == 3  # boxes per image
    assert data.batch_size((torch.zeros(7, 9), torch.zeros(7))) == 7                       # padded + lengths
    assert data.batch_size({"tokens": torch.zeros(6, 2)}) == 6
    with pytest.raises(TypeError, match="batch_size"):
        data.batch_size(None)


def test_blobs_are_read_by_dotted_name_into_dicts():
    blobs = {"output": {"boxes": [1], "scores": 2}, "label": 3}
    assert blob(blobs, "output.boxes") == [1] and blob(blobs, "label") == 3
    with pytest.raises(KeyError, match="output.labels"):
        blob(blobs, "output.labels")


def test_labels_move_to_the_device_inside_dicts_and_lists():
    moved = data.move({"boxes": [torch.zeros(1)], "n": (torch.ones(2),)}, torch.device("cpu"))
    assert isinstance(moved["boxes"], list) and isinstance(moved["n"], tuple)
