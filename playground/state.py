"""Everything the loop changes while it runs: one home, saved in every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ExperimentState:
    """Loop counters. A checkpoint taken now resumes at (epoch, iteration)."""

    epoch: int = 0          # the epoch running, or the next one to run; equals epochs completed between epochs
    iteration: int = 0      # training iterations completed within `epoch`
    global_step: int = 0    # training iterations completed since the experiment began
    test_passes: int = 0    # test passes completed since the experiment began
    stop_reason: str = ""   # set by a handler or a signal: the run stops at the next iteration boundary

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self.stop_reason = ""
