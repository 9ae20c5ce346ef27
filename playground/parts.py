"""What the loop is given: the run's facts (RunInfo) and the built parts (Parts).

`playground.runner` translates opts into both, through the components the opts name; `Estimator` builds them
directly from the user's objects. AnyExp reads nothing else, so one loop serves both.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from playground.events import EventHandler

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


@dataclass(frozen=True)
class RunInfo:
    """Facts derived once from the opts (or the Estimator's arguments) and the launch; the loop reads these,
    never the opts tree. `opts` is kept for components, which read their own keys from it."""

    device: torch.device
    folder: str
    num_epochs: int
    epoch_iterations: int          # training iterations (optimizer steps) per epoch
    batch_per_device: int          # samples per process per micro-batch
    total_batch_size: int          # samples per optimizer step over every process and micro-batch
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    iterations_per_test: int = 0   # a test pass every this many iterations (0: only at epoch ends)
    num_test_sample: int = 0       # test samples used (the first ones of the test set; 0: all)
    num_test_iter: int = 0         # batches per test pass (0: the whole test sample)
    record_every: int = 10         # iterations between recorded train rows
    checkpoint_every: int = 0      # iterations between mid-epoch checkpoints (0: epoch ends only)
    keep_checkpoints: int = 2      # regular checkpoints kept (0: all); the final and the best are always kept
    workers: int = 0               # DataLoader worker processes
    channels_last: bool = False
    mixed_precision: str = ""      # "", "bf16" or "fp16"
    compile: bool = False
    accumulate_grad_batches: int = 1  # micro-batches per optimizer step, gradients summed (loss scaled by 1/k)
    grad_clip_norm: float = 0.0    # clip the gradients' total L2 norm to this before each step (0: off)
    grad_clip_value: float = 0.0   # clip every gradient element to [-this, this] before each step (0: off)
    sync_batchnorm: bool = False
    tensorboard: bool = False
    plots: tuple[dict, ...] = ()   # output.plots
    pretrained: str = ""           # a checkpoint that starts the run when its folder holds none
    reset_epoch: bool = True       # with `pretrained`: take only its weights, at epoch 0
    opts: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass
class Metric:
    """A named meter; train metrics are measured on recorded training iterations, the others in test passes."""

    name: str
    meter: Any
    is_train: bool


@dataclass
class Parts:
    """Everything the loop runs, built: the network on CPU (the loop moves and wraps it), the optimizer over
    its parameters, the datasets, the metrics, the handlers, and how to name checkpoints and assemble results."""

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_data: Any
    test_data: Any = None
    lr_scheduler: Any = None
    metrics: list[Metric] = field(default_factory=list)
    handlers: list[EventHandler] = field(default_factory=list)
    gen_output: Callable[[AnyExp], dict] | None = None                   # default: builtins.output_generator
    checkpoint_name: Callable[[AnyExp, int, int, bool], str] | None = None  # default: builtins.gen_checkpoint_path
