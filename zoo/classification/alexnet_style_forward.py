"""Forward-pass component: the AlexNet-style CNN (zoo/classification/alexnet.py) sized by the opts."""
from __future__ import annotations

from typing import Any

from playground.opts import Opt
from zoo.classification.alexnet import AlexNet

OPTS = {
    "model_param.alexnet_width": Opt((int,), 24, doc="Channels of the AlexNet-style CNN's first convolution (the "
                                     "others are 2x and 3x it; AlexNet's is 96).", minimum=1),
    "model_param.alexnet_hidden": Opt((int,), 128, doc="Width of its fully connected layers (AlexNet's is 4096).",
                                      minimum=1),
    "model_param.dropout": Opt((int, float), 0.25, doc="Dropout before its fully connected layers.",
                               exclusive_maximum=1),
}


def build_network(exp: Any) -> AlexNet:
    param = exp.opts["model_param"]
    return AlexNet(exp.opts["input"]["num_classes"], param["alexnet_width"], param["alexnet_hidden"],
                   param["dropout"])
