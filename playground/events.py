"""Events of AnyExp.run, in firing order, and the base class of the handlers called at them.

At every event the experiment first calls its own hook method `exp.on_<event>()` (no-op in AnyExp; override it
in a subclass or through additional_override_py), then each handler's `on_<event>(exp)` in list order.
"""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from playground.errors import PlaygroundError

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


class Event(str, Enum):
    """Points in AnyExp.run where hooks and handlers are called, in firing order."""

    TRAIN_BEGIN = "train_begin"
    EPOCH_BEGIN = "epoch_begin"
    ITERATION_BEGIN = "iteration_begin"
    ITERATION_END = "iteration_end"
    TEST_BEGIN = "test_begin"
    TEST_END = "test_end"
    EPOCH_END = "epoch_end"
    CHECKPOINT_SAVED = "checkpoint_saved"
    TRAIN_END = "train_end"


class HandlerError(PlaygroundError):
    """A handler raised: re-raised naming the handler, the event and where the run was."""


class EventHandler:
    """Base of handlers: override only the events you need. `exp.state` is up to date when each is called; a
    handler may call `exp.request_stop(reason)` or `exp.request_checkpoint()`."""

    def on_train_begin(self, exp: AnyExp) -> None:
        """Everything is built and any checkpoint restored; no training step has run yet in this process."""

    def on_epoch_begin(self, exp: AnyExp) -> None:
        """Before the first iteration of epoch `exp.state.epoch` (or the first resumed one)."""

    def on_iteration_begin(self, exp: AnyExp) -> None:
        """Before training iteration `exp.state.iteration` of the epoch fetches its batch."""

    def on_iteration_end(self, exp: AnyExp) -> None:
        """After the optimizer step; `exp.state.global_step` counts it and `exp.blobs` holds its outputs.
        `exp.latest` holds this iteration's train metrics when it was a recorded one."""

    def on_test_begin(self, exp: AnyExp) -> None:
        """Before a test pass, with the network in eval mode."""

    def on_test_end(self, exp: AnyExp) -> None:
        """After a test pass; `exp.latest` holds its test metrics, reduced over every process."""

    def on_epoch_end(self, exp: AnyExp) -> None:
        """After the last iteration and test pass of an epoch; `exp.state.epoch` already counts it, and the
        epoch's checkpoint is written right after this event."""

    def on_checkpoint_saved(self, exp: AnyExp, path: str) -> None:
        """After `path` was written, verified and published."""

    def on_train_end(self, exp: AnyExp) -> None:
        """After the last epoch (or a requested stop); results are assembled after this event."""

    def state_dict(self) -> dict[str, Any]:
        """Plain data saved in every checkpoint, so a resumed run behaves like an uninterrupted one."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
