"""Model component: classification with a loss named in the opts (cross-entropy by default). Blobs: loss, logits,
softmax (on demand), label."""
from __future__ import annotations

import torch

from playground.anyexp import AnyExp
from playground.by_name import Kind, spec_opt
from playground.opts import Opt

LOSSES = Kind("loss", torch.nn, torch.nn.modules.loss._Loss, path_base=torch.nn.Module)


def _smoothing_applies(label_smoothing: float, opts: dict) -> str:
    loss = opts["model_param"]["loss"]
    if label_smoothing and (loss["type"] != "CrossEntropyLoss" or "label_smoothing" in (loss.get("params") or {})):
        return ("applies only to a CrossEntropyLoss whose params leave label_smoothing out; set it in "
                "model_param.loss.params instead")
    return ""


OPTS = {
    "model_param.label_smoothing": Opt((int, float), 0.0, doc="Label smoothing of the cross-entropy loss (the "
                                       "same as model_param.loss.params.label_smoothing).", maximum=1,
                                       check=_smoothing_applies),
    "model_param.loss": spec_opt("Loss: a torch.nn loss class or a dotted path to a torch.nn.Module class, and "
                                 "its keyword arguments; called as loss(logits, labels).",
                                 '{"type": "CrossEntropyLoss", "params": {"label_smoothing": 0.1}}',
                                 {"type": "CrossEntropyLoss", "params": {}},
                                 check=lambda spec, opts: LOSSES.problems(spec)),
}


def build_loss(param: dict) -> torch.nn.Module:
    """The loss `param` (the resolved model_param) names; label_smoothing applies to CrossEntropyLoss."""
    spec = param["loss"]
    if spec["type"] == "CrossEntropyLoss" and param["label_smoothing"]:
        spec = {**spec, "params": {**(spec.get("params") or {}), "label_smoothing": param["label_smoothing"]}}
    return LOSSES.build(spec)


class Blobs(dict):
    """Outputs of a batch; 'softmax' is derived from 'logits' only when a meter asks for it, over dim 1: the class
    dim of (N, C) scores and of per-pixel (N, C, H, W) ones alike, as CrossEntropyLoss reads them."""

    def __missing__(self, key: str) -> torch.Tensor:
        if key != "softmax":
            raise KeyError(key)
        self[key] = self["logits"].detach().float().softmax(1)
        return self[key]


class Experiment(AnyExp):
    """Any network mapping inputs to class scores, trained with the loss of `model_param.loss`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.criterion = build_loss(self.opts["model_param"]).to(self.device)  # built once, not per batch

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
        logits = self.model(inputs)
        return Blobs(loss=self.criterion(logits, labels), logits=logits, label=labels)
