"""Momentum SGD with two weight-decay groups and a per-iteration LR schedule, for `explicit_resnet_param_update`
(module_map.py serves it under the seed's `caffe2_resnet50_default_param_update` too: the same recipe).

The keys it reads are declared once in `OPTS`; the defaults used here are read from that table. The schedule is a multiplier of the (optionally
linearly scaled) base LR, computed from the global training step: the core steps the scheduler once after every
training iteration, and `exp.epoch_iterations` turns the epochs written in the opts into iterations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from playground import opts as opts_lib
from playground.errors import UsageError
from playground.opts import OPTIONAL, REQUIRED, Opt

SCHEDULES = ("step", "cosine", "constant")
SCALINGS = ("none", "linear")
# Layers whose parameters are normalisation scales and shifts (BatchNorm, SyncBatchNorm, InstanceNorm share _NormBase).
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)

_NUM, _INT, _BOOL, _STR, _LIST = (int, float), (int,), (bool,), (str,), (list,)


OPTS: dict[str, Opt] = {
    "model_param.base_learning_rate": Opt(_NUM, None, REQUIRED, "Learning rate at the reference batch size "
                                          "(after warm-up, before decay).", "0.1"),
    "model_param.lr_scaling": Opt(_STR, "none", OPTIONAL, '"linear": LR = base_learning_rate * total batch '
                                  '/ lr_reference_batch (Goyal et al.); "none": LR = base_learning_rate.'),
    "model_param.lr_reference_batch": Opt(_INT, 256, OPTIONAL, "Global batch size at which "
                                          "base_learning_rate applies unscaled (with lr_scaling linear)."),
    "model_param.momentum": Opt(_NUM, 0.9, OPTIONAL, "SGD momentum, in [0, 1)."),
    "model_param.nesterov": Opt(_BOOL, False, OPTIONAL, "Nesterov momentum."),
    "model_param.weight_decay": Opt(_NUM, 1e-4, OPTIONAL, "L2 weight decay of conv and linear "
                                    "weights."),
    "model_param.weight_decay_bn": Opt(_NUM, 0.0, OPTIONAL, "Weight decay of BN scales and shifts "
                                       "and of every bias (Caffe2's 1e-323 means none)."),
    "model_param.warmup_epochs": Opt(_NUM, 0, OPTIONAL, "Epochs of linear LR warm-up from "
                                     "LR / warm-up iterations to LR (0: none)."),
    "model_param.lr_schedule": Opt(_STR, "step", OPTIONAL, 'After warm-up: "step", "cosine" (to 0 at '
                                   'epoch_iter.num_epochs) or "constant".'),
    "model_param.lr_gamma": Opt(_NUM, 0.1, OPTIONAL, "Step schedule: LR multiplier at each step."),
    "model_param.lr_steps": Opt(_LIST, None, OPTIONAL, "Step schedule: epochs at which the LR is multiplied "
                                "by lr_gamma (default: every epoch_iter.num_epochs_per_flow_schedule epochs)."),
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
            progress = (step - self.warmup_iters) / (self.total_iters - self.warmup_iters)
            return warmup * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
        return warmup


def build_sgd(exp: Any, network: nn.Module, declared: dict[str, Opt]) -> torch.optim.SGD:
    """Momentum SGD over `network`: conv/linear weights decay by weight_decay, norm parameters and biases by
    weight_decay_bn."""
    momentum = _number(exp, declared, "model_param.momentum", minimum=0.0)
    if momentum >= 1:
        raise UsageError(f"model_param.momentum must be below 1, e.g. 0.9, got {momentum!r}")
    nesterov = _value(exp, declared, "model_param.nesterov")
    if not isinstance(nesterov, bool):
        raise UsageError(f"model_param.nesterov must be true or false, got {nesterov!r}")
    if nesterov and momentum == 0:
        raise UsageError("model_param.nesterov needs model_param.momentum above 0; set momentum (e.g. 0.9) or "
                         "nesterov false")
    decay, no_decay = split_decay_groups(network)
    groups = [
        {"params": decay, "weight_decay": _number(exp, declared, "model_param.weight_decay", minimum=0.0),
         "name": "decay"},
        {"params": no_decay, "weight_decay": _number(exp, declared, "model_param.weight_decay_bn", minimum=0.0),
         "name": "no_decay"},
    ]
    return torch.optim.SGD(groups, lr=learning_rate(exp, declared), momentum=momentum, nesterov=nesterov)


def build_scheduler(exp: Any, optimizer: torch.optim.Optimizer,
                    declared: dict[str, Opt]) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR applying `lr_schedule(exp, declared)`; its state_dict holds only counters and LRs."""
    schedule = lr_schedule(exp, declared)

    def lr_factor(step: int) -> float:  # a plain function: LambdaLR keeps it out of state_dict
        return schedule.factor(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def split_decay_groups(network: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights that decay, norm parameters and biases that do not), each parameter exactly once."""
    decay, no_decay, seen = [], [], set()
    for module in network.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if isinstance(module, NORM_LAYERS) or name == "bias" else decay).append(param)
    return decay, no_decay


def learning_rate(exp: Any, declared: dict[str, Opt]) -> float:
    """base_learning_rate, times total batch / lr_reference_batch with lr_scaling "linear"."""
    base = _value(exp, declared, "model_param.base_learning_rate")
    if base is None:
        raise UsageError('model_param.base_learning_rate is missing; set the learning rate, e.g. '
                         '"base_learning_rate": 0.1')
    base = _number(exp, declared, "model_param.base_learning_rate", minimum=0.0)
    scaling = _value(exp, declared, "model_param.lr_scaling") or "none"
    if scaling not in SCALINGS:
        raise UsageError(f"model_param.lr_scaling must be one of {', '.join(map(repr, SCALINGS))}, got {scaling!r}")
    if scaling == "none":
        return base
    reference = _value(exp, declared, "model_param.lr_reference_batch")
    if isinstance(reference, bool) or not isinstance(reference, int) or reference < 1:
        raise UsageError(f"model_param.lr_reference_batch must be a positive integer, e.g. 256, got {reference!r}")
    return base * exp.total_batch_size / reference


def lr_schedule(exp: Any, declared: dict[str, Opt]) -> LRSchedule:
    """The schedule the opts describe, in iterations of `exp.epoch_iterations` per epoch."""
    per_epoch = exp.epoch_iterations
    if per_epoch < 1:
        raise UsageError(f"epoch_iter.num_train_sample_per_epoch gives {per_epoch} training iterations per epoch; "
                         f"make it at least the total batch size ({exp.total_batch_size})")
    kind = _value(exp, declared, "model_param.lr_schedule")
    if kind not in SCHEDULES:
        raise UsageError(f"model_param.lr_schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {kind!r}")
    warmup = round(_number(exp, declared, "model_param.warmup_epochs", minimum=0.0) * per_epoch)
    if kind == "constant":
        return LRSchedule(kind, warmup)
    if kind == "cosine":
        total = round(_epochs(exp, "epoch_iter.num_epochs") * per_epoch)
        if total <= warmup:
            raise UsageError(f"model_param.warmup_epochs must be shorter than epoch_iter.num_epochs for the cosine "
                             f"schedule, got {warmup / per_epoch:g} of {total / per_epoch:g} epochs")
        return LRSchedule(kind, warmup, total_iters=total)
    gamma = _number(exp, declared, "model_param.lr_gamma", minimum=0.0)
    steps = _value(exp, declared, "model_param.lr_steps")
    if steps is None:
        every = round(_epochs(exp, "epoch_iter.num_epochs_per_flow_schedule") * per_epoch)
        return LRSchedule(kind, warmup, step_every=max(1, every), gamma=gamma)
    if (not isinstance(steps, list) or not steps
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in steps)
            or any(a >= b for a, b in zip(steps, steps[1:]))):
        raise UsageError(f"model_param.lr_steps must be a non-empty increasing list of positive epochs, e.g. "
                         f"[30, 60, 80], got {steps!r}")
    return LRSchedule(kind, warmup, milestones=tuple(round(s * per_epoch) for s in steps), gamma=gamma)


def _value(exp: Any, declared: dict[str, Opt], key: str) -> Any:
    return opts_lib.get(exp.opts, key, declared[key].default)


def _number(exp: Any, declared: dict[str, Opt], key: str, minimum: float) -> float:
    value = _value(exp, declared, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise UsageError(f"{key} must be a number of at least {minimum:g}, got {value!r}")
    return float(value)


def _epochs(exp: Any, key: str) -> float:
    value = opts_lib.get(exp.opts, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise UsageError(f"{key} must be a positive number of epochs for the model_param.lr_schedule chosen, "
                         f"got {value!r}")
    return float(value)
