"""A bidirectional LSTM sentence classifier: embeddings, a BiLSTM over the packed (unpadded) sequence, and the
last hidden state of each direction to class scores."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence


def pack(embedded: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    """The padded batch packed by its lengths (any order)."""
    return pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)


torch.fx.wrap("pack")  # one opaque call in a torch.fx graph: packing reads the lengths' values, which tracing cannot


class BiLSTM(nn.Module):
    """(token ids (N, L) padded with 0, lengths (N,)) to class scores (N, num_classes). Packing makes the
    backward direction start at each sentence's own last word, not at the padding. torch.fx traces it (packing as
    one call); torch.export cannot, since the packed batch's shape depends on the lengths' values."""

    def __init__(self, vocabulary_size: int, num_classes: int = 2, embedding_dim: int = 64, hidden: int = 64):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, num_classes)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        tokens, lengths = inputs
        last = self.lstm(pack(self.embedding(tokens), lengths))[1][0]  # (h_n, c_n)[0]: (2 directions, N, hidden)
        return self.classifier(torch.cat((last[0], last[1]), dim=-1))
