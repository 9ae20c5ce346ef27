"""Model component: classification with cross-entropy. Blobs: loss, logits, softmax, label."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from playground.anyexp import AnyExp
from playground.opts import Opt

OPTS = {
    "model_param.label_smoothing": Opt((int, float), 0.0, doc="Label smoothing of the cross-entropy loss."),
}


class Experiment(AnyExp):
    """Any network mapping inputs to class scores, trained with (optionally smoothed) cross-entropy."""

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
        logits = self.model(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.opts["model_param"]["label_smoothing"])
        return {"loss": loss, "logits": logits, "softmax": logits.detach().float().softmax(-1), "label": labels}
