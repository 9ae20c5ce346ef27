"""Parameter update: the seed's ResNet-50 recipe, i.e. `explicit_resnet_param_update` with the recipe's defaults.

Momentum 0.9 without Nesterov, weight decay 1e-4 (weights) and 0 (BN, biases), no warm-up, and a step schedule
multiplying the LR by 0.1 every `epoch_iter.num_epochs_per_flow_schedule` epochs. Every default can still be
overridden by the same `model_param` keys.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from playground.opts import Opt
from resnetdemo import sgd_schedule

OPTS: dict[str, Opt] = sgd_schedule.declare_opts(momentum=0.9, nesterov=False, weight_decay=1e-4,
                                                 weight_decay_bn=0.0, warmup_epochs=0, lr_schedule="step",
                                                 lr_gamma=0.1, lr_scaling="none")


def build_optimizer(exp: Any, network: nn.Module) -> torch.optim.Optimizer:
    """Momentum SGD with a decaying (conv/linear weights) and a non-decaying (BN, biases) parameter group."""
    return sgd_schedule.build_sgd(exp, network, OPTS)


def build_lr_scheduler(exp: Any, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Step decay by 0.1 every num_epochs_per_flow_schedule epochs; stepped once after every training iteration."""
    return sgd_schedule.build_scheduler(exp, optimizer, OPTS)
