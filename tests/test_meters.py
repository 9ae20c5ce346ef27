"""Meters' arithmetic: batch-size weighting and top-k counting."""
import math

import torch

from playground.meters import ComputeLoss, ComputeTopKAccuracy


def test_loss_is_weighted_by_batch_size():
    meter = ComputeLoss("loss")
    meter.update({"loss": torch.tensor(1.0), "batch_size": 3})
    meter.update({"loss": torch.tensor(3.0), "batch_size": 1})
    assert meter.compute() == (1.0 * 3 + 3.0 * 1) / 4
    meter.reset()
    assert math.isnan(meter.compute())


def test_topk_accuracy_counts_labels_among_the_k_best():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 1, 1, 2])
    top1, top2 = ComputeTopKAccuracy(["s", "y"], topk=1), ComputeTopKAccuracy(["s", "y"], topk=2)
    for meter in (top1, top2):
        meter.update({"s": scores[:2], "y": labels[:2]})
        meter.update({"s": scores[2:], "y": labels[2:]})
    assert top1.compute() == 1 / 4
    assert top2.compute() == 3 / 4
    assert top1.sums.tolist() == [1.0, 4.0]


def test_topk_larger_than_classes_counts_everything():
    meter = ComputeTopKAccuracy(["s", "y"], topk=5)
    meter.update({"s": torch.rand(4, 3), "y": torch.tensor([0, 1, 2, 0])})
    assert meter.compute() == 1.0
