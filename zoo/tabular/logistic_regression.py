"""Logistic regression as a network: one linear layer giving each sample's log-odds (N,), for
BCEWithLogitsLoss."""
from __future__ import annotations

import torch
from torch import nn


class LogisticRegression(nn.Module):
    """Features (N, num_features) to log-odds (N,)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.linear = nn.Linear(num_features, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features).squeeze(-1)
