"""Parameter-update component: the training recipe by name. Any torch.optim optimizer and any
torch.optim.lr_scheduler schedule, with their keyword arguments, written in the opts (see `OPTS`); norm layers and
biases may be kept out of weight decay; the schedule steps per iteration or per epoch, after an optional linear
warm-up.

The loop steps the scheduler after every training iteration; `RecipeScheduler` turns that into the schedule's own
interval and warm-up, and its state_dict holds its counter, so a resumed run continues exactly.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn

from playground.by_name import Kind, spec_opt
from playground.opts import REQUIRED, Opt
from playground.runner import total_batch_size

INTERVALS = ("iteration", "epoch")
# Layers whose parameters are normalisation scales and shifts (BatchNorm, SyncBatchNorm, InstanceNorm share _NormBase).
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_NEEDS_CODE = "it takes Python functions; write a parameter-update component with build_lr_scheduler instead"
OPTIMIZERS = Kind("optimizer", torch.optim, torch.optim.Optimizer,
                  supplied={"params": "the network's parameters", "lr": "model_param.base_learning_rate"},
                  excluded={"LBFGS": "its step needs a closure re-evaluating the loss, which the loop does not pass"})
SCHEDULERS = Kind("LR scheduler", torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler,
                  supplied={"optimizer": "model_param.optimizer", "last_epoch": "a resumed run restores it"},
                  excluded={"LambdaLR": _NEEDS_CODE, "MultiplicativeLR": _NEEDS_CODE, "SequentialLR": _NEEDS_CODE,
                            "ChainedScheduler": _NEEDS_CODE})
PLATEAU = "ReduceLROnPlateau"  # steps at each epoch's end, after its test pass, on the metric `monitor` names
# Params that "auto" derives: the schedule's length in its own steps (after the warm-up), and the peak LR.
LENGTH_PARAMS = ("total_steps", "T_max", "total_iters")


def _optimizer_problems(spec: dict, opts: dict) -> list[str]:
    probe = [nn.Parameter(torch.zeros(1))]
    return OPTIMIZERS.problems(spec, probe, lr=opts["model_param"]["base_learning_rate"])


def _scheduler_problems(spec: dict, opts: dict) -> list[str]:
    epoch_iterations = opts["epoch_iter"]["num_train_sample_per_epoch"] // total_batch_size(opts)
    if epoch_iterations < 1:
        return []  # runner.combination_problems reports it
    num_epochs, warmup = opts["epoch_iter"]["num_epochs"], spec.get("warmup")
    if plateau_problems := _plateau_problems(spec, opts):
        return plateau_problems
    if warmup and warmup_iterations(warmup, epoch_iterations) >= num_epochs * epoch_iterations:
        return [f".warmup.epochs: must be shorter than epoch_iter.num_epochs ({num_epochs}), got {warmup['epochs']}"]
    auto = auto_params(spec, epoch_iterations, num_epochs, opts["model_param"]["base_learning_rate"])
    if _optimizer_problems(opts["model_param"]["optimizer"], opts):
        return SCHEDULERS.problems(spec, auto=auto, probe=False)  # model_param.optimizer reports the rest
    probe = build_optimizer_from(opts["model_param"], nn.Linear(1, 1))
    return SCHEDULERS.problems(spec, probe, auto=auto)


def _plateau_problems(spec: dict, opts: dict) -> list[str]:
    """ReduceLROnPlateau needs a recorded metric to watch, once per epoch; no other schedule takes `monitor`."""
    from playground.opts import recorded_metrics

    if spec["type"] != PLATEAU:
        return [".monitor: only ReduceLROnPlateau watches a metric; leave it out"] if spec.get("monitor") else []
    recorded = recorded_metrics(opts)
    if not spec.get("monitor"):
        return [f".monitor: missing; ReduceLROnPlateau watches a recorded metric, one of {', '.join(recorded)}"]
    if spec["monitor"] not in recorded:
        return [f".monitor: {spec.get('monitor')!r} is not a recorded metric; name one of {', '.join(recorded)}"]
    if interval(spec) != "epoch":
        return ['.interval: ReduceLROnPlateau steps once per epoch, after its test pass; set "interval": "epoch"']
    return []


def _no_weight_decay_fits(rules: list, opts: dict) -> str:
    if not rules:
        return ""
    try:
        cls = OPTIMIZERS.resolve(opts["model_param"]["optimizer"]["type"])
    except ValueError:
        return ""  # model_param.optimizer reports it
    if "weight_decay" not in inspect.signature(cls).parameters:
        return f"{cls.__name__} takes no weight_decay; leave no_weight_decay out"
    return ""


OPTS: dict[str, Opt] = {
    "model_param.base_learning_rate": Opt((int, float), None, REQUIRED, "Learning rate: the optimizer's lr, the "
                                          "schedule's base (OneCycleLR's max_lr when left out).", "0.001"),
    "model_param.optimizer": spec_opt("Optimizer: a torch.optim class or a dotted path, and its keyword arguments "
                                      "(lr is base_learning_rate).", '{"type": "AdamW", "params": {"weight_decay": '
                                      '0.05}}', rule=REQUIRED, check=_optimizer_problems),
    "model_param.no_weight_decay": Opt((list,), [], doc='Parameters kept out of weight decay: "bias" (every '
                                       'bias), "norm" (normalisation layers) or a text in their name.',
                                       items=Opt((str,)), check=_no_weight_decay_fits),
    "model_param.lr_scheduler": spec_opt(
        'LR schedule: a torch.optim.lr_scheduler class or a dotted path, its keyword arguments ("auto": derived), '
        '`interval` and `warmup` (see "The training recipe"). Null: a constant LR.',
        '{"type": "OneCycleLR", "params": {"total_steps": "auto"}}', check=_scheduler_problems,
        interval=Opt((str,), "iteration", doc="Step the schedule every iteration or every epoch.",
                     choices=INTERVALS),
        monitor=Opt((str,), "", doc="ReduceLROnPlateau only: the recorded metric it watches, e.g. \"test_loss\"."),
        warmup=Opt((dict,), None, doc="Linear warm-up before the schedule.", fields={
            "epochs": Opt((int, float), None, REQUIRED, "Length of the warm-up in epochs.", exclusive_minimum=0),
            "start_factor": Opt((int, float), 0.1, doc="LR multiplier at the first iteration.",
                                exclusive_minimum=0, maximum=1)})),
}


def split_decay_groups(network: nn.Module, no_decay: tuple[str, ...] | list[str] = ("bias", "norm"),
                       ) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters that decay, those that do not), each parameter exactly once. `no_decay` rules: "bias" (a
    parameter named bias), "norm" (a parameter of a normalisation layer), other text (found in its full name)."""
    decay, kept, seen = [], [], set()
    for module_name, module in network.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{name}" if module_name else name
            exempt = any(rule == "bias" and name == "bias" or rule == "norm" and isinstance(module, NORM_LAYERS)
                         or rule not in ("bias", "norm") and rule in full_name for rule in no_decay)
            (kept if exempt else decay).append(param)
    return decay, kept


def build_optimizer_from(param: dict, network: nn.Module) -> torch.optim.Optimizer:
    """The optimizer `param` (the resolved model_param) describes, over `network`."""
    params: Any = network.parameters()
    if param["no_weight_decay"]:
        decay, kept = split_decay_groups(network, param["no_weight_decay"])
        params = [{"params": decay, "name": "decay"}, {"params": kept, "weight_decay": 0.0, "name": "no_decay"}]
    return OPTIMIZERS.build(param["optimizer"], params, lr=param["base_learning_rate"])


def build_optimizer(exp: Any, network: nn.Module) -> torch.optim.Optimizer:
    return build_optimizer_from(exp.opts["model_param"], network)


def build_lr_scheduler(exp: Any, optimizer: torch.optim.Optimizer) -> RecipeScheduler | None:
    spec = exp.opts["model_param"]["lr_scheduler"]
    if spec is None:
        return None
    auto = auto_params(spec, exp.epoch_iterations, exp.num_epochs, exp.opts["model_param"]["base_learning_rate"])
    return RecipeScheduler(SCHEDULERS.build(spec, optimizer, auto=auto), interval(spec), exp.epoch_iterations,
                           warmup_iterations(spec.get("warmup"), exp.epoch_iterations),
                           (spec.get("warmup") or {}).get("start_factor", 0.1),
                           spec.get("monitor") if spec["type"] == PLATEAU else None)


def interval(spec: dict) -> str:
    return spec.get("interval") or OPTS["model_param.lr_scheduler"].fields["interval"].default


def warmup_iterations(warmup: dict | None, epoch_iterations: int) -> int:
    return math.ceil(warmup["epochs"] * epoch_iterations) if warmup else 0


def auto_params(spec: dict, epoch_iterations: int, num_epochs: int, lr: float) -> dict[str, Any]:
    """What "auto" means for this run: the schedule's length in its own steps, after the warm-up (the loop runs
    num_epochs * epoch_iterations iterations), and max_lr = base_learning_rate."""
    after_warmup = num_epochs * epoch_iterations - warmup_iterations(spec.get("warmup"), epoch_iterations)
    length = after_warmup if interval(spec) == "iteration" else after_warmup // epoch_iterations
    return {**{name: max(1, length) for name in LENGTH_PARAMS}, "max_lr": lr}


class RecipeScheduler:
    """Steps `schedule` every iteration or every `epoch_iterations`, after `warmup` iterations of linear warm-up
    from `start_factor` times the schedule's first LR; the schedule counts its steps from the warm-up's end.
    Stepped by the loop after every training iteration."""

    def __init__(self, schedule: torch.optim.lr_scheduler.LRScheduler, interval: str, epoch_iterations: int,
                 warmup: int = 0, start_factor: float = 0.1, monitor: str | None = None):
        self.schedule, self.every = schedule, epoch_iterations if interval == "epoch" else 1
        self.monitor = monitor  # ReduceLROnPlateau's metric: stepped by epoch_end, not by step
        self.warmup, self.start_factor, self.iterations = warmup, start_factor, 0
        self._warm()

    def step(self) -> None:
        self.iterations += 1
        after_warmup = self.iterations - self.warmup
        if after_warmup < 0:
            self._warm()
        elif after_warmup == 0:
            self._set(self.schedule.get_last_lr())  # the schedule takes over at its first LR
        elif after_warmup % self.every == 0 and self.monitor is None:
            self.schedule.step()

    def epoch_end(self, exp: Any) -> None:
        """ReduceLROnPlateau's step, on the metric it watches, once the epoch's test pass has recorded it."""
        if self.monitor is not None and self.iterations > self.warmup:
            self.schedule.step(exp.latest[self.monitor])

    def _warm(self) -> None:
        if self.iterations < self.warmup:
            factor = self.start_factor + (1 - self.start_factor) * self.iterations / self.warmup
            self._set([lr * factor for lr in self.schedule.get_last_lr()])

    def _set(self, lrs: list[float]) -> None:
        for group, lr in zip(self.schedule.optimizer.param_groups, lrs):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.schedule.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"iterations": self.iterations, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.iterations = state["iterations"]
        self.schedule.load_state_dict(state["schedule"])  # the optimizer's state_dict restores the LRs themselves
