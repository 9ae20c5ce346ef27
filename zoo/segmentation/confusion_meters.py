"""Meters of per-pixel classification, from a confusion matrix: mean IoU and pixel accuracy.

The confusion matrix is additive, so it is the meter's `sums`: with several processes one all-reduce of it gives
exactly the matrix of the whole test set, from which every rank computes the same value.
"""
from __future__ import annotations

import torch

from playground.errors import UsageError
from playground.meters import Meter, blob


class ConfusionMeter(Meter):
    """Counts (true class, predicted class) pairs over every pixel. blob_name: [scores, labels], scores
    (N, C, H, W) whose argmax over C is the prediction, labels (N, H, W) class indices; C sizes the matrix.
    `sums` is the C x C matrix, flattened (row: true class, column: predicted)."""

    def __init__(self, blob_name: list[str] = ("logits", "label")):
        if isinstance(blob_name, str) or not isinstance(blob_name, (list, tuple)) or len(blob_name) != 2:
            raise ValueError(f"blob_name must name [scores, labels], got {blob_name!r}")
        super().__init__(list(blob_name))

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        scores, labels = blob(blobs, self.blob_name[0]).detach(), blob(blobs, self.blob_name[1])
        classes = scores.shape[1]
        pairs = labels.reshape(-1) * classes + scores.argmax(dim=1).reshape(-1)
        return torch.bincount(pairs, minlength=classes * classes).double()

    def matrix(self) -> torch.Tensor:
        """The confusion matrix so far (C x C, float64, on the CPU)."""
        sums = self.sums.cpu()
        classes = int(round(len(sums) ** 0.5))
        if classes * classes != len(sums):  # bincount grew past C x C
            raise UsageError(f"{type(self).__name__}: labels hold class indices outside the {classes} score channels "
                             f"of {self.blob_name[0]!r}; labels must be in [0, number of classes)")
        return sums.reshape(classes, classes)


class MeanIoU(ConfusionMeter):
    """Mean over classes of intersection over union (|true & predicted| / |true or predicted| pixels). Classes
    that neither the labels nor the predictions hold are left out of the mean (their IoU is undefined)."""

    def compute(self) -> float:
        if self.sums is None:
            return float("nan")
        matrix = self.matrix()
        hits = matrix.diagonal()
        union = matrix.sum(0) + matrix.sum(1) - hits
        present = union > 0
        return (hits[present] / union[present]).mean().item() if present.any() else float("nan")


class PixelAccuracy(ConfusionMeter):
    """Fraction of pixels whose predicted class is the true one."""

    def compute(self) -> float:
        if self.sums is None:
            return float("nan")
        matrix = self.matrix()
        total = matrix.sum()
        return (matrix.diagonal().sum() / total).item() if total else float("nan")
