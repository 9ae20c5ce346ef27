"""Model component: classification with cross-entropy. Blobs: loss, logits, softmax (on demand), label."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from playground.anyexp import AnyExp
from playground.opts import Opt

OPTS = {
    "model_param.label_smoothing": Opt((int, float), 0.0, doc="Label smoothing of the cross-entropy loss.",
                                       maximum=1),
}


class Blobs(dict):
    """Outputs of a batch; 'softmax' is derived from 'logits' only when a meter asks for it."""

    def __missing__(self, key: str) -> torch.Tensor:
        if key != "softmax":
            raise KeyError(key)
        self[key] = self["logits"].detach().float().softmax(-1)
        return self[key]


class Experiment(AnyExp):
    """Any network mapping inputs to class scores, trained with (optionally smoothed) cross-entropy."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_smoothing = self.opts["model_param"]["label_smoothing"]  # read once, not per batch

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
        logits = self.model(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return Blobs(loss=loss, logits=logits, label=labels)
