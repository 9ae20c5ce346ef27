"""Everything the loop changes while it runs: one home. `state_dict` is what a checkpoint keeps of it; the
rest (requests, clocks, the latest values) is rebuilt or restarted when a run resumes."""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class StopRequest:
    """Why the run should stop at the next iteration boundary. A signal outranks a handler's request: a run
    stopped by a signal ends interrupted (exit 143, resumable), one stopped by a handler ends complete."""

    kind: Literal["handler", "signal"]
    reason: str
    signal: int | None = None

    @classmethod
    def from_signal(cls, signum: int, where: str = "") -> StopRequest:
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        return cls("signal", f"{name}{where}", signum)


@dataclass
class ThroughputClock:
    """Wall seconds of training since the last recorded row (its secs_per_train): batch fetch, steps and
    handlers count, test passes and checkpoints do not (the loop pauses it around them). Read only when a row
    is recorded, so a step costs it nothing."""

    secs: float = 0.0            # of the stretches before the current one
    since: float | None = None   # when the current stretch began; None while paused
    step: int = 0                # the global step at the last take (or restart)

    def restart(self, step: int) -> None:
        self.secs, self.since, self.step = 0.0, time.perf_counter(), step

    def pause(self) -> None:
        if self.since is not None:
            self.secs += time.perf_counter() - self.since
            self.since = None

    def resume(self) -> None:
        self.since = time.perf_counter()

    def take(self, step: int) -> float:
        """Seconds per iteration from the last take to global step `step`, and restart."""
        self.pause()
        secs = self.secs / max(step - self.step, 1)
        self.restart(step)
        return secs


@dataclass
class VoteClock:
    """When the next distributed stop vote is due: counted in calls, identical on every rank."""

    every: int = 1               # calls between votes, agreed at each vote
    calls: int = 0               # calls since the last vote
    since: float | None = None   # when the last vote ended (None: no vote yet, so no pace measured)


SAVED = ("epoch", "iteration", "global_step", "test_passes", "history", "checkpoints")


@dataclass
class ExperimentState:
    """The loop's state. A checkpoint taken now resumes at (epoch, iteration) with this history."""

    epoch: int = 0          # the epoch running, or the next one to run; equals epochs completed between epochs
    iteration: int = 0      # training iterations completed within `epoch`
    global_step: int = 0    # training iterations completed since the experiment began
    test_passes: int = 0    # test passes completed since the experiment began
    history: dict[str, list[dict]] = field(default_factory=lambda: {"train": [], "test": []})  # recorded rows
    checkpoints: list[str] = field(default_factory=list)  # paths written by this run, oldest first
    latest: dict[str, float] = field(default_factory=dict)  # the newest value of every recorded metric
    stop_requested: StopRequest | None = None  # by a handler or a signal, in this process
    stop: StopRequest | None = None             # agreed by every process: the loop stops at this boundary
    checkpoint_requested: bool = False          # by a handler: write one at the next iteration boundary
    complete: bool = False                      # restored from the final checkpoint: nothing left to train
    throughput: ThroughputClock = field(default_factory=ThroughputClock)
    votes: VoteClock = field(default_factory=VoteClock)
    reduction_lengths: dict[tuple, list[int]] = field(default_factory=dict)  # meters' sums lengths, agreed once

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in SAVED}

    def load_state_dict(self, saved: dict) -> None:
        for name in SAVED:
            setattr(self, name, saved[name])
        self.latest = {k: v for rows in self.history.values() for row in rows for k, v in row.items()
                       if k not in ("epoch", "iteration")}
        self.stop_requested = self.stop = None
        self.checkpoint_requested = False
        self.complete = bool(saved.get("complete"))
