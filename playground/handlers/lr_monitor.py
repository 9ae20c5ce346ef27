"""LRMonitor: the learning rate of every optimizer param group, recorded as train metrics."""
from __future__ import annotations

from typing import TYPE_CHECKING

from playground.events import EventHandler

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


class LRMonitor(EventHandler):
    """Adds `lr_<group>` to every recorded train row: the group's "name" entry when it has one, else its index.

    The loop already records `learning_rate` (group 0); this one matters for optimizers with several groups
    (e.g. no weight decay on biases) and schedules that treat them differently. List it before handlers that
    read the row (PrintReport, LogReport, ProgressBar) for them to see it at the same iteration.
    """

    def on_iteration_end(self, exp: AnyExp) -> None:
        rows = exp.history["train"]
        if not rows or rows[-1]["iteration"] != exp.state.global_step:
            return  # this iteration was not recorded (output.record_every_iters)
        values = {f"lr_{group.get('name', i)}": float(group["lr"])
                  for i, group in enumerate(exp.optimizer.param_groups)}
        rows[-1].update(values)
        exp.latest.update(values)
