"""TextCNN (Kim, 2014): embeddings, 1-D convolutions of several widths, each feature's maximum over the sentence,
and dropout before the class scores."""
from __future__ import annotations

import torch
from torch import nn


class TextCNN(nn.Module):
    """(token ids (N, L) padded with 0, lengths (N,)) to class scores (N, num_classes). Each convolution of width
    k sees k consecutive words (the widths reach from a negator past an intensifier to its adjective, and from
    "but" into the clause after it); padding positions are left out of the maximum."""

    def __init__(self, vocabulary_size: int, num_classes: int = 2, embedding_dim: int = 64, filters: int = 64,
                 widths: tuple[int, ...] = (3, 5, 7), dropout: float = 0.2):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, embedding_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, filters, k, padding=k // 2) for k in widths)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(filters * len(widths), num_classes)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        tokens, lengths = inputs
        embedded = self.embedding(tokens).transpose(1, 2)  # (N, embedding_dim, L)
        padding = torch.arange(tokens.shape[1], device=tokens.device) >= lengths[:, None].to(tokens.device)
        # After a ReLU every feature is >= 0, so 0 at the padding never beats a real position's maximum.
        features = [torch.relu(conv(embedded)).masked_fill(padding[:, None, :], 0).amax(dim=-1) for conv in self.convs]
        return self.classifier(self.dropout(torch.cat(features, dim=-1)))
