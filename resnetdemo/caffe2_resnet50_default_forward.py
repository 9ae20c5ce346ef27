"""Forward pass: always ResNet-50 (bottleneck blocks [3, 4, 6, 3]), the network of Caffe2's resnet50 trainer.

It reads the same BN, stem and memonger opts as `explicit_resnet_forward`; only the depth is fixed.
"""
from __future__ import annotations

from typing import Any

from playground.opts import Opt
from resnetdemo import explicit_resnet_forward
from resnetdemo.resnet import ResNet

NUM_LAYER = 50


def _always_resnet50(num_layer: int, opts: dict) -> str:
    return "" if num_layer == NUM_LAYER else (
        f"is {num_layer}, but caffe2_resnet50_default_forward is always ResNet-{NUM_LAYER}; remove num_layer or "
        'set "forward_pass_py": "explicit_resnet_forward"')


OPTS: dict[str, Opt] = {
    "model_param.num_layer": Opt((int,), None, doc=f"Leave it out or {NUM_LAYER}: this network is always "
                                 f"ResNet-{NUM_LAYER}.", check=_always_resnet50),
    **explicit_resnet_forward.BN_OPTS,
}


def build_network(exp: Any) -> ResNet:
    """ResNet-50 configured by the shared BN, stem and memonger opts."""
    return explicit_resnet_forward.build_resnet(exp, NUM_LAYER)
