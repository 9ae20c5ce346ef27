"""Parameter-update component: SGD with momentum at a constant learning rate."""
from __future__ import annotations

import torch

from playground.opts import REQUIRED, Opt


def nesterov_needs_momentum(nesterov: bool, opts: dict) -> str:
    """torch.optim.SGD refuses Nesterov momentum without momentum."""
    return ("needs model_param.momentum above 0; set momentum (e.g. 0.9) or nesterov false"
            if nesterov and opts["model_param"]["momentum"] == 0 else "")


OPTS = {
    "model_param.base_learning_rate": Opt((int, float), None, REQUIRED, "Learning rate.", "0.1"),
    "model_param.momentum": Opt((int, float), 0.9, doc="SGD momentum.", exclusive_maximum=1),
    "model_param.nesterov": Opt((bool,), False, doc="Nesterov momentum.", check=nesterov_needs_momentum),
    "model_param.weight_decay": Opt((int, float), 0.0, doc="L2 weight decay of every parameter."),
}


def build_optimizer(exp, network: torch.nn.Module) -> torch.optim.Optimizer:
    param = exp.opts["model_param"]
    return torch.optim.SGD(network.parameters(), lr=param["base_learning_rate"], momentum=param["momentum"],
                           nesterov=param["nesterov"], weight_decay=param["weight_decay"])
