"""Meters of decoded sequences: whole-sequence exact match and token accuracy. Their sums are additive
(matches and counts), so several processes reduce them exactly."""
from __future__ import annotations

import torch

from playground.meters import Meter, blob
from zoo.seq2seq.dates import PAD


def aligned(tokens: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`tokens` [B, L] and `target` [B, T] padded with PAD to the same width."""
    width = max(tokens.shape[1], target.shape[1])
    return (torch.nn.functional.pad(tokens, (0, width - tokens.shape[1]), value=PAD),
            torch.nn.functional.pad(target, (0, width - target.shape[1]), value=PAD))


class SequenceMeter(Meter):
    """blob_name: [decoded tokens (PAD after <eos>), label (target padded with PAD, target lengths)]."""

    def __init__(self, blob_name: list[str] = ("output.tokens", "label")):
        if isinstance(blob_name, str) or not isinstance(blob_name, (list, tuple)) or len(blob_name) != 2:
            raise ValueError(f"blob_name must name [decoded tokens, label], got {blob_name!r}")
        super().__init__(list(blob_name))

    def read(self, blobs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoded tokens, target, target lengths), the first two of one width."""
        tokens, (target, lengths) = blob(blobs, self.blob_name[0]), blob(blobs, self.blob_name[1])
        return *aligned(tokens.detach(), target), lengths


class SequenceExactMatch(SequenceMeter):
    """Fraction of sequences decoded exactly: every token up to <eos>, and nothing after it."""

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        tokens, target, _ = self.read(blobs)
        matches = (tokens == target).all(dim=1).sum(dtype=torch.float64)
        return torch.stack((matches, matches.new_tensor(len(target))))


class TokenAccuracy(SequenceMeter):
    """Fraction of the targets' real tokens (<eos> included) that the decode has at the same position."""

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        tokens, target, lengths = self.read(blobs)
        mask = torch.arange(target.shape[1], device=target.device)[None] < lengths[:, None]
        correct = ((tokens == target) & mask).sum(dtype=torch.float64)
        return torch.stack((correct, mask.sum(dtype=torch.float64)))
