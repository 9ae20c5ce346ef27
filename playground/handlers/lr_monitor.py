"""LRMonitor: the learning rate of every optimizer param group, recorded as train metrics."""
from __future__ import annotations

from typing import TYPE_CHECKING

from playground.events import EventHandler, Phase

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


class LRMonitor(EventHandler):
    """Adds `lr_<group>` to every recorded train row: the rate each param group's step used (like the loop's
    `learning_rate`, which is group 0's), named by the group's "name" entry when it has one, else its index.

    It matters for optimizers with several groups (e.g. no weight decay on biases) and schedules that treat them
    differently. Its phase adds the values before any handler writes or reads the row.
    """

    phase = Phase.ADD_TO_ROW
    recorded_iterations_only = True  # its values go into train rows
    adds_columns = ("lr_*",)

    def __init__(self) -> None:
        self._used: dict[str, float] = {}

    def on_iteration_begin(self, exp: AnyExp) -> None:
        """Before the step, so the values are the rates it uses (the scheduler steps right after it)."""
        self._used = {f"lr_{group.get('name', i)}": float(group["lr"])
                      for i, group in enumerate(exp.optimizer.param_groups)}

    def on_iteration_end(self, exp: AnyExp) -> None:
        exp.add_to_row(self._used)  # a no-op on iterations that record no row (record_every_iters)
