"""Profiler: a torch.profiler trace of chosen training iterations, for a browser trace viewer."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from playground.errors import UsageError
from playground.events import EventHandler

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class Profiler(EventHandler):
    """Profiles `num_iterations` training iterations starting after `skip_first` training steps (the first ones
    warm up caches and allocators), then writes profile_steps{a}-{b}.json into the run folder: a Chrome trace
    that ui.perfetto.dev or chrome://tracing open. Each iteration shows as "iteration N". The window also holds
    whatever runs between those iterations (data loading, a test pass, a checkpoint) and CUDA kernels when the
    device is a GPU. record_shapes, profile_memory, with_stack: as for torch.profiler.profile (they add cost).
    Each process writes its own trace (rank suffix when distributed).
    """

    def __init__(self, skip_first: int = 5, num_iterations: int = 3, record_shapes: bool = False,
                 profile_memory: bool = False, with_stack: bool = False):
        if skip_first < 0 or num_iterations < 1:
            raise UsageError(f"Profiler: skip_first must be >= 0 and num_iterations >= 1, got {skip_first} and "
                             f"{num_iterations}")
        self.skip_first, self.num_iterations = skip_first, num_iterations
        self.options = {"record_shapes": record_shapes, "profile_memory": profile_memory, "with_stack": with_stack}
        self.done = False
        self.trace = ""
        self._profile: Any = None
        self._label: Any = None
        self._first = 0

    def on_iteration_begin(self, exp: AnyExp) -> None:
        step = exp.state.global_step
        if self._profile is None and not self.done and self.skip_first <= step < self.skip_first + self.num_iterations:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if exp.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._profile = torch.profiler.profile(activities=activities, **self.options)
            self._profile.start()
            self._first = step
        if self._profile is not None:
            self._label = torch.profiler.record_function(f"iteration {step}")
            self._label.__enter__()

    def on_iteration_end(self, exp: AnyExp) -> None:
        if self._label is not None:
            self._label.__exit__(None, None, None)
            self._label = None
        if self._profile is not None and exp.state.global_step >= self.skip_first + self.num_iterations:
            self._finish(exp)

    def on_train_end(self, exp: AnyExp) -> None:
        if self._profile is not None:  # training ended inside the window
            self._finish(exp)

    def _finish(self, exp: AnyExp) -> None:
        self._profile.stop()
        suffix = f"_rank{exp.rank}" if exp.world_size > 1 else ""
        self.trace = os.path.join(exp.folder, f"profile_steps{self._first}-{exp.state.global_step - 1}{suffix}.json")
        self._profile.export_chrome_trace(self.trace)
        self._profile, self.done = None, True
        log.info("Profiler: trace of training steps %d-%d in %s (open in ui.perfetto.dev)", self._first,
                 exp.state.global_step - 1, self.trace)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "trace": self.trace}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done, self.trace = state["done"], state["trace"]
