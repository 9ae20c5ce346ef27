"""Forward pass: a ResNet whose depth is `model_param.num_layer` (18, 34, 50, 101 or 152).

The BN and memory opts are read here once and shared with `caffe2_resnet50_default_forward`. Caffe2 wrote BN
momentum the other way round from PyTorch: its `bn_momentum` 0.9 means running = 0.9 * running + 0.1 * batch,
which is PyTorch's momentum 0.1, so this module passes 1 - bn_momentum to the network.
(channels_last, mixed precision, torch.compile and SyncBatchNorm are applied by the core, not here.)
"""
from __future__ import annotations

from typing import Any

from playground import opts as opts_lib
from playground.errors import UsageError
from playground.opts import OPTIONAL, REQUIRED, Opt
from resnetdemo.resnet import STAGE_BLOCKS, ResNet

SMALL_STEM_MAX_IMSIZE = 64  # images up to this size get the 3x3/1 stem without max-pool by default

_NUM, _BOOL = (int, float), (bool,)
BN_OPTS: dict[str, Opt] = {
    "model_param.bn_epsilon": Opt(_NUM, 1e-5, OPTIONAL, "BatchNorm epsilon."),
    "model_param.bn_momentum": Opt(_NUM, 0.9, OPTIONAL, "BatchNorm momentum in Caffe2's convention: running = m * "
                                   "running + (1 - m) * batch (PyTorch's momentum is 1 - m)."),
    "model_param.custom_bn_init": Opt(_BOOL, False, OPTIONAL, "Start the gamma of each residual block's last BN "
                                      "at bn_init_gamma."),
    "model_param.bn_init_gamma": Opt(_NUM, 0.0, OPTIONAL, "That gamma, with custom_bn_init (Caffe2: 1e-323, i.e. "
                                     "0: each block starts as the identity)."),
    "model_param.resnet_width": Opt((int,), 64, OPTIONAL, "Channels of the stem and first stage; stages double it "
                                    "(64 is the paper's ResNet; 16 trains on a CPU in minutes)."),
    "model_param.small_stem": Opt(_BOOL, None, OPTIONAL, "3x3 stride-1 stem without max-pool, for 32-64 px images "
                                  f"(default: true when input.imsize <= {SMALL_STEM_MAX_IMSIZE})."),
}
OPTS: dict[str, Opt] = {
    "model_param.num_layer": Opt((int,), None, REQUIRED, "ResNet depth: 18, 34, 50, 101 or 152.", "50"),
    **BN_OPTS,
}


def build_network(exp: Any) -> ResNet:
    """The ResNet named by `model_param.num_layer`, configured by the shared BN and memory opts."""
    num_layer = opts_lib.get(exp.opts, "model_param.num_layer")
    if num_layer is None:
        raise UsageError('model_param.num_layer is missing; explicit_resnet_forward needs the ResNet depth, '
                         'e.g. "num_layer": 50 (one of 18, 34, 50, 101, 152)')
    return build_resnet(exp, num_layer)


def build_resnet(exp: Any, num_layer: Any) -> ResNet:
    """A ResNet of depth `num_layer` for `exp`, its BN, stem and checkpointing set from the opts."""
    if isinstance(num_layer, bool) or num_layer not in STAGE_BLOCKS:
        raise UsageError(f"model_param.num_layer must be one of {', '.join(map(str, STAGE_BLOCKS))}, "
                         f"got {num_layer!r}")
    num_classes = opts_lib.get(exp.opts, "input.num_classes")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"input.num_classes must be a positive integer (the number of labels), got {num_classes!r}")

    epsilon = _number(exp, "model_param.bn_epsilon")
    if epsilon <= 0:
        raise UsageError(f"model_param.bn_epsilon must be positive, e.g. 1e-5, got {epsilon!r}")
    caffe2_momentum = _number(exp, "model_param.bn_momentum")
    if not 0 <= caffe2_momentum <= 1:
        raise UsageError("model_param.bn_momentum must be between 0 and 1 in Caffe2's convention (0.9 keeps 90% of "
                         f"the running statistics each step), got {caffe2_momentum!r}")
    width = opts_lib.get(exp.opts, "model_param.resnet_width", BN_OPTS["model_param.resnet_width"].default)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise UsageError(f"model_param.resnet_width must be a positive integer, e.g. 64 (the paper's ResNet) or 16, "
                         f"got {width!r}")
    gamma = _number(exp, "model_param.bn_init_gamma") if _flag(exp, "model_param.custom_bn_init") else None
    return ResNet(num_layer, num_classes, small_input=_small_stem(exp), bn_epsilon=epsilon,
                  bn_momentum=pytorch_bn_momentum(caffe2_momentum), zero_init_residual_gamma=gamma,
                  activation_checkpointing=_flag(exp, "model_param.memonger", default=False),
                  width=width)


def pytorch_bn_momentum(caffe2_momentum: float) -> float:
    """Caffe2's BN momentum (weight of the old running statistic) as PyTorch's (weight of the new batch's)."""
    return round(1.0 - caffe2_momentum, 12)  # 0.9 -> 0.1, not 0.09999999999999998


def _small_stem(exp: Any) -> bool:
    small = _flag(exp, "model_param.small_stem")
    if small is None:
        imsize = opts_lib.get(exp.opts, "input.imsize")
        return isinstance(imsize, int) and not isinstance(imsize, bool) and imsize <= SMALL_STEM_MAX_IMSIZE
    return small


def _flag(exp: Any, key: str, default: bool | None = None) -> bool | None:
    value = opts_lib.get(exp.opts, key, BN_OPTS[key].default if key in BN_OPTS else default)
    if value is not None and not isinstance(value, bool):
        raise UsageError(f"{key} must be true or false, got {value!r}")
    return value


def _number(exp: Any, key: str) -> float:
    value = opts_lib.get(exp.opts, key, BN_OPTS[key].default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{key} must be a number, got {value!r}")
    return float(value)
