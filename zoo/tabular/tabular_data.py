"""Generated tabular data for logistic regression, whose best possible classifier is known.

Each sample has correlated continuous features on different scales and offsets, and binary features; its label
is drawn from a logistic model of those features: y ~ Bernoulli(sigmoid(w . x + b)), with half the weights zero.
So a linear model can match the Bayes-optimal classifier (the true log-odds, kept with every sample as
`optimum_logits`), and the labels' noise keeps its accuracy well below 1. Everything is a function of the seed.
"""
from __future__ import annotations

import torch

from playground.data import TensorData, mix_seeds

LOGIT_STD = 3.0  # spread of the true log-odds: the Bayes-optimal accuracy is then about 0.85


class TabularData(TensorData):
    """(features, label) pairs: float32 features (N, F), float labels 0/1 (N,) for BCE; `optimum_logits` holds
    each sample's true log-odds, the Bayes-optimal classifier's scores."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, optimum_logits: torch.Tensor):
        super().__init__(features, labels)
        self.optimum_logits = optimum_logits


def _distribution(num_features: int, seed: int) -> dict[str, torch.Tensor]:
    """The generating distribution's parameters: mixing, scales, offsets, which features are binary, w and b."""
    g = torch.Generator().manual_seed(mix_seeds(seed, 0))
    mixing = torch.eye(num_features) + 0.4 * torch.randn(num_features, num_features, generator=g)
    scales = 10 ** torch.empty(num_features).uniform_(-1, 2, generator=g)  # 0.1 .. 100, as raw columns are
    offsets = torch.randn(num_features, generator=g) * scales * 3
    binary = torch.arange(num_features) >= num_features - num_features // 4  # the last quarter are 0/1
    weights = torch.randn(num_features, generator=g) * (torch.rand(num_features, generator=g) < 0.5)
    params = {"mixing": mixing, "scales": scales, "offsets": offsets, "binary": binary, "weights": weights,
              "bias": torch.tensor(0.0)}
    sample, _ = _draw(params, 50_000, torch.Generator().manual_seed(mix_seeds(seed, 1)))
    logits = _log_odds(params, sample)
    params["weights"] = weights * LOGIT_STD / logits.std()
    params["bias"] = -_log_odds(params, sample).mean() + 0.5  # somewhat more positives than negatives
    return params


def _draw(params: dict, num: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    raw = torch.randn(num, len(params["scales"]), generator=g) @ params["mixing"]
    features = torch.where(params["binary"], (raw > 0).float(), raw * params["scales"] + params["offsets"])
    return features, raw


def _log_odds(params: dict, features: torch.Tensor) -> torch.Tensor:
    """The true log-odds: linear in the features (continuous ones taken back to their natural scale)."""
    natural = torch.where(params["binary"], features, (features - params["offsets"]) / params["scales"])
    return natural @ params["weights"] + params["bias"]


def make(num: int, num_features: int, seed: int, split: str) -> TabularData:
    """`num` raw samples of split "train" or "test" of the distribution of `seed` (splits never share a sample)."""
    params = _distribution(num_features, seed)
    g = torch.Generator().manual_seed(mix_seeds(seed, 2, split == "test"))
    features, _ = _draw(params, num, g)
    logits = _log_odds(params, features)
    labels = torch.bernoulli(torch.sigmoid(logits), generator=g)
    return TabularData(features, labels, logits)


def splits(num_train: int, num_test: int, num_features: int = 24, seed: int = 1) -> tuple[TabularData, TabularData]:
    """(train, test), each column standardised by the training split's mean and standard deviation, as a tabular
    pipeline does (linear models train badly on raw columns of scales 0.1 to 100)."""
    train, test = make(num_train, num_features, seed, "train"), make(num_test, num_features, seed, "test")
    mean, std = train.tensors[0].mean(0), train.tensors[0].std(0).clamp_min(1e-6)
    return tuple(TabularData((d.tensors[0] - mean) / std, d.tensors[1], d.optimum_logits) for d in (train, test))
