"""Forward pass: a ResNet whose depth is `model_param.num_layer` (18, 34, 50, 101 or 152).

The BN and memory opts are read here once and shared with `caffe2_resnet50_default_forward`. Caffe2 wrote BN
momentum the other way round from PyTorch: its `bn_momentum` 0.9 means running = 0.9 * running + 0.1 * batch,
which is PyTorch's momentum 0.1, so this module passes 1 - bn_momentum to the network.
(channels_last, mixed precision, torch.compile and SyncBatchNorm are applied by the core, not here.)
"""
from __future__ import annotations

from typing import Any

from playground.opts import OPTIONAL, REQUIRED, Opt
from resnetdemo.resnet import STAGE_BLOCKS, ResNet

SMALL_STEM_MAX_IMSIZE = 64  # images up to this size get the 3x3/1 stem without max-pool by default

_NUM, _BOOL = (int, float), (bool,)
BN_OPTS: dict[str, Opt] = {
    "model_param.bn_epsilon": Opt(_NUM, 1e-5, OPTIONAL, "BatchNorm epsilon.", exclusive_minimum=0),
    "model_param.bn_momentum": Opt(_NUM, 0.9, OPTIONAL, "BatchNorm momentum in Caffe2's convention: running = m * "
                                   "running + (1 - m) * batch (PyTorch's momentum is 1 - m).", maximum=1),
    "model_param.custom_bn_init": Opt(_BOOL, False, OPTIONAL, "Start the gamma of each residual block's last BN "
                                      "at bn_init_gamma."),
    "model_param.bn_init_gamma": Opt(_NUM, 0.0, OPTIONAL, "That gamma, with custom_bn_init (Caffe2: 1e-323, i.e. "
                                     "0: each block starts as the identity).", minimum=None),
    "model_param.resnet_width": Opt((int,), 64, OPTIONAL, "Channels of the stem and first stage; stages double it "
                                    "(64 is the paper's ResNet; 16 trains on a CPU in minutes).", minimum=1),
    "model_param.small_stem": Opt(_BOOL, None, OPTIONAL, "3x3 stride-1 stem without max-pool, for 32-64 px images "
                                  f"(default: true when input.imsize <= {SMALL_STEM_MAX_IMSIZE})."),
}
OPTS: dict[str, Opt] = {
    "model_param.num_layer": Opt((int,), None, REQUIRED, "ResNet depth: 18, 34, 50, 101 or 152.", "50",
                                 choices=tuple(STAGE_BLOCKS)),
    **BN_OPTS,
}


def build_network(exp: Any) -> ResNet:
    """The ResNet named by `model_param.num_layer`, configured by the shared BN and memory opts."""
    return build_resnet(exp, exp.opts["model_param"]["num_layer"])


def build_resnet(exp: Any, num_layer: int) -> ResNet:
    """A ResNet of depth `num_layer` for `exp`, its BN, stem and checkpointing set from the opts."""
    param = exp.opts["model_param"]
    gamma = param["bn_init_gamma"] if param["custom_bn_init"] else None
    return ResNet(num_layer, exp.opts["input"]["num_classes"], small_input=_small_stem(exp),
                  bn_epsilon=param["bn_epsilon"], bn_momentum=pytorch_bn_momentum(param["bn_momentum"]),
                  zero_init_residual_gamma=gamma, activation_checkpointing=param["memonger"],
                  width=param["resnet_width"])


def pytorch_bn_momentum(caffe2_momentum: float) -> float:
    """Caffe2's BN momentum (weight of the old running statistic) as PyTorch's (weight of the new batch's)."""
    return round(1.0 - caffe2_momentum, 12)  # 0.9 -> 0.1, not 0.09999999999999998


def _small_stem(exp: Any) -> bool:
    small = exp.opts["model_param"]["small_stem"]
    if small is None:
        imsize = exp.opts["input"].get("imsize")
        return isinstance(imsize, int) and not isinstance(imsize, bool) and imsize <= SMALL_STEM_MAX_IMSIZE
    return small
