"""Forward pass: always ResNet-50 (bottleneck blocks [3, 4, 6, 3]), the network of Caffe2's resnet50 trainer.

It reads the same BN, stem and memonger opts as `explicit_resnet_forward`; only the depth is fixed.
"""
from __future__ import annotations

from typing import Any

from playground import opts as opts_lib
from playground.errors import UsageError
from playground.opts import Opt
from resnetdemo import explicit_resnet_forward
from resnetdemo.resnet import ResNet

NUM_LAYER = 50
OPTS: dict[str, Opt] = dict(explicit_resnet_forward.BN_OPTS)


def build_network(exp: Any) -> ResNet:
    """ResNet-50 configured by the shared BN, stem and memonger opts."""
    asked = opts_lib.get(exp.opts, "model_param.num_layer")
    if asked is not None and asked != NUM_LAYER:
        raise UsageError(f"model_param.num_layer is {asked!r}, but caffe2_resnet50_default_forward is always "
                         f'ResNet-{NUM_LAYER}; remove num_layer or set "forward_pass_py": "explicit_resnet_forward"')
    return explicit_resnet_forward.build_resnet(exp, NUM_LAYER)
