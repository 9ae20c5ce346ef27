"""Estimator beyond one tensor in and one class label out: dict outputs, labels collated by the dataset, a loss
returning named parts, metrics reading into dict outputs, decoding in eval mode, and predict on structures."""
from __future__ import annotations

import pytest
import torch

from playground.errors import EstimatorError
from playground.estimator import Estimator
from playground.meters import TorchMetric, blob


class Counts(torch.utils.data.Dataset):
    """Inputs of 4 features; labels: a variable-length list of the indices of the positive features."""

    def __init__(self, n: int, seed: int):
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple:
        return self.x[i], torch.nonzero(self.x[i] > 0).flatten()

    @staticmethod
    def collate(items: list) -> tuple:
        return torch.stack([x for x, _ in items]), [t for _, t in items]


class Net(torch.nn.Module):
    """Per-feature scores and a count; in eval mode also the decoded set of positive features."""

    def __init__(self):
        super().__init__()
        self.scores, self.count = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)

    def forward(self, x):
        out = {"scores": self.scores(x), "count": self.count(x).squeeze(1)}
        if not self.training:
            out["decoded"] = [torch.nonzero(row > 0).flatten() for row in out["scores"]]
        return out


def set_loss(out, labels):
    target = torch.zeros_like(out["scores"])
    for row, positives in enumerate(labels):
        target[row, positives] = 1
    counts = torch.tensor([float(len(t)) for t in labels])
    return {"loss_set": torch.nn.functional.binary_cross_entropy_with_logits(out["scores"], target),
            "loss_count": 0.1 * torch.nn.functional.mse_loss(out["count"], counts)}


class ExactSets:
    """Fraction of samples whose decoded set equals the label's (a meter with additive sums)."""

    def reset(self):
        self.sums = torch.zeros(2, dtype=torch.float64)

    def update(self, blobs):
        hits = sum(torch.equal(d, t) for d, t in zip(blob(blobs, "output.decoded"), blobs["label"]))
        self.sums += torch.tensor([hits, len(blobs["label"])], dtype=torch.float64)

    def compute(self):
        return (self.sums[0] / self.sums[1]).item()


def test_named_losses_dict_outputs_and_decoded_metrics(tmp_path):
    torch.manual_seed(0)
    count_error = TorchMetric("MeanMetric", blob_name="output.count")  # the mean predicted count
    est = Estimator(Net(), loss=set_loss, metrics=[("count_error", count_error)],
                    val_metrics=[("exact_sets", ExactSets())], device="cpu", progress_bar=False,
                    optimizer=lambda params: torch.optim.Adam(params, lr=0.05))
    results = est.fit(Counts(256, 1), Counts(128, 2), epochs=8, batch_size=32, checkpoint_folder=str(tmp_path / "r"))
    metrics = results["metrics"]
    for name in ("train_loss", "train_loss_set", "train_loss_count", "train_count_error", "val_loss_set",
                 "val_exact_sets"):
        assert name in metrics, sorted(metrics)
    assert "train_exact_sets" not in metrics
    assert metrics["train_loss_set"]["values"][-1] < metrics["train_loss_set"]["values"][0]
    assert metrics["val_exact_sets"]["values"][-1] > 0.8
    predictions = est.predict(Counts(70, 3), batch_size=32)
    assert predictions["scores"].shape == (70, 4) and len(predictions["decoded"]) == 70


def test_a_named_loss_that_is_not_a_scalar_is_refused_before_training(tmp_path):
    est = Estimator(Net(), loss=lambda out, labels: {"loss_set": out["scores"]}, device="cpu", progress_bar=False)
    with pytest.raises(EstimatorError, match="loss 0's 'loss_set' returns \\(32, 4\\), not a scalar"):
        est.fit(Counts(64, 1), epochs=1, batch_size=32, checkpoint_folder=str(tmp_path / "r"))
    clash = Estimator(Net(), loss=lambda out, labels: {"output": out["count"].mean()}, device="cpu",
                      progress_bar=False)
    with pytest.raises(EstimatorError, match="clash with the blobs"):
        clash.fit(Counts(64, 1), epochs=1, batch_size=32, checkpoint_folder=str(tmp_path / "s"))
