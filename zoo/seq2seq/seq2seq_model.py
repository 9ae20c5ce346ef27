"""Model component: sequence-to-sequence with a token cross-entropy whose padding is masked. Blobs: loss, output
(the network's dict: logits, attention and, in test passes, the greedy decode's tokens), label (target, lengths).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from playground.anyexp import AnyExp


def token_loss(output: dict, label: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the real target tokens (<eos> included); padding counts for nothing. The loss's
    inputs differ from the network's: the teacher-forced logits, the target and its lengths."""
    target, lengths = label
    logits = output["logits"]
    mask = torch.arange(target.shape[1], device=target.device)[None] < lengths[:, None]
    per_token = F.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none")
    return (per_token * mask).sum() / mask.sum()


class Experiment(AnyExp):
    """The network's output dict, scored by token_loss; the meters read "output.tokens" and "label"."""

    def forward(self, inputs: dict, labels: tuple[torch.Tensor, torch.Tensor]) -> dict:
        output = self.model(inputs)
        return {"loss": token_loss(output, labels), "output": output, "label": labels}
