"""LRMonitor: the learning rate of every optimizer param group, recorded as train metrics."""
from __future__ import annotations

from typing import TYPE_CHECKING

from playground.events import EventHandler

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


class LRMonitor(EventHandler):
    """Adds `lr_<group>` to every recorded train row: the rate each param group's step used (like the loop's
    `learning_rate`, which is group 0's), named by the group's "name" entry when it has one, else its index.

    It matters for optimizers with several groups (e.g. no weight decay on biases) and schedules that treat them
    differently. List it before handlers that read the row (PrintReport, LogReport, ProgressBar) for them to see
    it at the same iteration.
    """

    def __init__(self) -> None:
        self._used: dict[str, float] = {}

    def on_iteration_begin(self, exp: AnyExp) -> None:
        """Before the step, so the values are the rates it uses (the scheduler steps right after it)."""
        self._used = {f"lr_{group.get('name', i)}": float(group["lr"])
                      for i, group in enumerate(exp.optimizer.param_groups)}

    def on_iteration_end(self, exp: AnyExp) -> None:
        rows = exp.history["train"]
        if rows and rows[-1]["iteration"] == exp.state.global_step:  # a recorded iteration (record_every_iters)
            rows[-1].update(self._used)
            exp.latest.update(self._used)
