"""The bag-of-words baseline: the mean of a sentence's word embeddings, then a hidden layer (fastText with a
non-linearity). It sees which words occur but not their order, so it cannot tell which adjective a "not"
belongs to, nor which clause follows "but"."""
from __future__ import annotations

import torch
from torch import nn


class BagOfWords(nn.Module):
    """(token ids (N, L) padded with 0, lengths (N,)) to class scores (N, num_classes)."""

    def __init__(self, vocabulary_size: int, num_classes: int = 2, embedding_dim: int = 64, hidden: int = 128):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, embedding_dim, padding_idx=0)  # padding embeds to zeros
        self.classifier = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        tokens, lengths = inputs
        mean = self.embedding(tokens).sum(dim=1) / lengths[:, None].to(tokens.device).clamp_min(1)
        return self.classifier(mean)
