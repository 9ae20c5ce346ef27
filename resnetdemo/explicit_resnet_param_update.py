"""Parameter update: momentum SGD whose every knob is a `model_param` opt (see `OPTS`). Also served as the seed's
`caffe2_resnet50_default_param_update`, whose ResNet-50 recipe its defaults are.

Defaults: momentum 0.9 without Nesterov, weight decay 1e-4 on conv/linear weights and none on BN parameters and
biases, no warm-up, LR multiplied by 0.1 every `epoch_iter.num_epochs_per_flow_schedule` epochs.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from playground.opts import Opt
from resnetdemo import sgd_schedule

OPTS: dict[str, Opt] = sgd_schedule.OPTS


def build_optimizer(exp: Any, network: nn.Module) -> torch.optim.Optimizer:
    """Momentum SGD with a decaying (conv/linear weights) and a non-decaying (BN, biases) parameter group."""
    return sgd_schedule.build_sgd(exp, network)


def build_lr_scheduler(exp: Any, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Warm-up then the step, cosine or constant schedule; to be stepped once after every training iteration."""
    return sgd_schedule.build_scheduler(exp, optimizer)
