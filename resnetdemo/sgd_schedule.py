"""Momentum SGD with two weight-decay groups and a per-iteration LR schedule, for `explicit_resnet_param_update`
(module_map.py serves it under the seed's `caffe2_resnet50_default_param_update` too: the same recipe).

The keys it reads, their ranges and choices are declared once in `OPTS` and checked before the run; the
functions here read them plainly from the resolved opts. The schedule is a multiplier of the (optionally
linearly scaled) base LR, computed from the global training step: the core steps the scheduler once after every
training iteration, and `exp.epoch_iterations` turns the epochs written in the opts into iterations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from playground.builtins.sgd_param_update import nesterov_needs_momentum
from playground.builtins.torch_recipe import split_decay_groups
from playground.opts import OPTIONAL, REQUIRED, Opt

SCHEDULES = ("step", "cosine", "constant")
SCALINGS = ("none", "linear")

_NUM, _INT, _BOOL, _STR, _LIST = (int, float), (int,), (bool,), (str,), (list,)


def _warmup_fits(warmup_epochs: float, opts: dict) -> str:
    """The cosine schedule decays after the warm-up, so the warm-up must end before the last epoch."""
    num_epochs = opts["epoch_iter"]["num_epochs"]
    if opts["model_param"]["lr_schedule"] == "cosine" and warmup_epochs >= num_epochs:
        return (f"must be shorter than epoch_iter.num_epochs for the cosine schedule, got {warmup_epochs:g} of "
                f"{num_epochs} epochs")
    return ""


def _increasing(steps: list, opts: dict) -> str:
    if not steps or any(a >= b for a, b in zip(steps, steps[1:])):
        return f"must be a non-empty increasing list of epochs, e.g. [30, 60, 80], got {steps}"
    return ""


OPTS: dict[str, Opt] = {
    "model_param.base_learning_rate": Opt(_NUM, None, REQUIRED, "Learning rate at the reference batch size "
                                          "(after warm-up, before decay).", "0.1"),
    "model_param.lr_scaling": Opt(_STR, "none", OPTIONAL, '"linear": LR = base_learning_rate * total batch '
                                  '/ lr_reference_batch (Goyal et al.); "none": LR = base_learning_rate.',
                                  choices=SCALINGS),
    "model_param.lr_reference_batch": Opt(_INT, 256, OPTIONAL, "Global batch size at which "
                                          "base_learning_rate applies unscaled (with lr_scaling linear).", minimum=1),
    "model_param.momentum": Opt(_NUM, 0.9, OPTIONAL, "SGD momentum, in [0, 1).", exclusive_maximum=1),
    "model_param.nesterov": Opt(_BOOL, False, OPTIONAL, "Nesterov momentum.", check=nesterov_needs_momentum),
    "model_param.weight_decay": Opt(_NUM, 1e-4, OPTIONAL, "L2 weight decay of conv and linear "
                                    "weights."),
    "model_param.weight_decay_bn": Opt(_NUM, 0.0, OPTIONAL, "Weight decay of BN scales and shifts "
                                       "and of every bias (Caffe2's 1e-323 means none)."),
    "model_param.warmup_epochs": Opt(_NUM, 0, OPTIONAL, "Epochs of linear LR warm-up from "
                                     "LR / warm-up iterations to LR (0: none).", check=_warmup_fits),
    "model_param.lr_schedule": Opt(_STR, "step", OPTIONAL, 'After warm-up: "step", "cosine" (to 0 at '
                                   'epoch_iter.num_epochs) or "constant".', choices=SCHEDULES),
    "model_param.lr_gamma": Opt(_NUM, 0.1, OPTIONAL, "Step schedule: LR multiplier at each step."),
    "model_param.lr_steps": Opt(_LIST, None, OPTIONAL, "Step schedule: epochs at which the LR is multiplied "
                                "by lr_gamma (default: every epoch_iter.num_epochs_per_flow_schedule epochs).",
                                items=Opt(_NUM, exclusive_minimum=0), check=_increasing),
}


@dataclass(frozen=True)
class LRSchedule:
    """The LR multiplier as a function of the global training step (0 = the first iteration)."""

    kind: str                       # one of SCHEDULES
    warmup_iters: int = 0           # linear warm-up length
    milestones: tuple[int, ...] = ()  # step: iterations from which one more factor gamma applies
    step_every: int = 0             # step: when milestones is empty, apply gamma every this many iterations
    gamma: float = 0.1
    total_iters: int = 0            # cosine: the iteration at which the LR reaches 0

    def factor(self, step: int) -> float:
        """Multiplier of the base LR for the iteration with 0-based index `step`."""
        warmup = min(1.0, (step + 1) / self.warmup_iters) if self.warmup_iters else 1.0
        if self.kind == "step":
            steps_taken = (sum(step >= m for m in self.milestones) if self.milestones
                           else step // self.step_every)
            return warmup * self.gamma ** steps_taken
        if self.kind == "cosine":
            # max(1, ...): a warm-up rounded up to the last iteration leaves no decay, not a division by zero
            progress = (step - self.warmup_iters) / max(1, self.total_iters - self.warmup_iters)
            return warmup * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
        return warmup


def build_sgd(exp: Any, network: nn.Module) -> torch.optim.SGD:
    """Momentum SGD over `network`: conv/linear weights decay by weight_decay, norm parameters and biases by
    weight_decay_bn."""
    param = exp.opts["model_param"]
    decay, no_decay = split_decay_groups(network)
    groups = [{"params": decay, "weight_decay": param["weight_decay"], "name": "decay"},
              {"params": no_decay, "weight_decay": param["weight_decay_bn"], "name": "no_decay"}]
    return torch.optim.SGD(groups, lr=learning_rate(exp), momentum=param["momentum"], nesterov=param["nesterov"])


def build_scheduler(exp: Any, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR applying `lr_schedule(exp)`; its state_dict holds only counters and LRs."""
    schedule = lr_schedule(exp)

    def lr_factor(step: int) -> float:  # a plain function: LambdaLR keeps it out of state_dict
        return schedule.factor(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def learning_rate(exp: Any) -> float:
    """base_learning_rate, times total batch / lr_reference_batch with lr_scaling "linear"."""
    param = exp.opts["model_param"]
    if param["lr_scaling"] == "none":
        return param["base_learning_rate"]
    return param["base_learning_rate"] * exp.total_batch_size / param["lr_reference_batch"]


def lr_schedule(exp: Any) -> LRSchedule:
    """The schedule the opts describe, in iterations of `exp.epoch_iterations` per epoch."""
    param, epoch_iter, per_epoch = exp.opts["model_param"], exp.opts["epoch_iter"], exp.epoch_iterations
    kind, warmup = param["lr_schedule"], round(param["warmup_epochs"] * per_epoch)
    if kind == "constant":
        return LRSchedule(kind, warmup)
    if kind == "cosine":
        return LRSchedule(kind, warmup, total_iters=epoch_iter["num_epochs"] * per_epoch)
    if param["lr_steps"] is None:
        every = epoch_iter["num_epochs_per_flow_schedule"] * per_epoch
        return LRSchedule(kind, warmup, step_every=every, gamma=param["lr_gamma"])
    return LRSchedule(kind, warmup, milestones=tuple(round(s * per_epoch) for s in param["lr_steps"]),
                      gamma=param["lr_gamma"])
