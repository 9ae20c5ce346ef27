"""Forward-pass component: a multi-layer perceptron over flat features."""
from __future__ import annotations

import torch

from playground.opts import Opt

OPTS = {
    "model_param.hidden_sizes": Opt((list,), [64], doc="Widths of the MLP's hidden layers (ReLU between).",
                                    items=Opt((int,), minimum=1)),
}


def build_network(exp) -> torch.nn.Module:
    sizes = [exp.opts["input"]["num_features"], *exp.opts["model_param"]["hidden_sizes"]]
    layers: list[torch.nn.Module] = []
    for width_in, width_out in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(width_in, width_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], exp.opts["input"]["num_classes"]))
