"""Input component: learnable synthetic classification data from a fixed seed, held in memory.

Features are drawn around per-class centres (shared by train and test); the noise makes the classes overlap,
so accuracy is well above chance but not perfect.
"""
from __future__ import annotations

import torch

from playground.data import TensorData
from playground.opts import Opt

OPTS = {
    "input.num_features": Opt((int,), 32, doc="Features per sample.", minimum=1),
    "input.num_classes": Opt((int,), 10, doc="Classes.", minimum=1),
    "input.noise": Opt((int, float), 2.0, doc="Standard deviation of samples around their class centre."),
}


def make(num: int, num_features: int, num_classes: int, noise: float, seed: int, split: str) -> TensorData:
    centres = torch.randn(num_classes, num_features, generator=torch.Generator().manual_seed(seed)) * 2.0
    generator = torch.Generator().manual_seed(seed * 2 + 1 + (split == "test"))
    labels = torch.randint(num_classes, (num,), generator=generator)
    features = centres[labels] + noise * torch.randn(num, num_features, generator=generator)
    return TensorData(features, labels)


def get_dataset(exp, split: str) -> TensorData:
    """num_train_sample_per_epoch samples for 'train', num_test_sample for 'test'."""
    inp, epoch_iter = exp.opts["input"], exp.opts["epoch_iter"]
    num = epoch_iter["num_train_sample_per_epoch"] if split == "train" else epoch_iter["num_test_sample"]
    return make(num, inp["num_features"], inp["num_classes"], inp["noise"], exp.seed, split)
