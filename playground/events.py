"""Events of AnyExp.run, in firing order, and the base class of the handlers called at them.

At every event the experiment first calls its own hook method `exp.on_<event>()` (no-op in AnyExp; override it
in a subclass or through additional_override_py), then the handlers that override `on_<event>`: by phase
(ADD_TO_ROW, WRITE, DECIDE, REPORT), and within a phase in list order. A handler's trigger (N, "iteration") or
(N, "epoch") lets its events of that unit through only at every N-th one. A handler that acts only on recorded
rows (`recorded_iterations_only`) hears iteration_end only at the iterations that record a train row.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Any

from playground.errors import UsageError

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


class Phase(IntEnum):
    """When a handler runs at an event, relative to the others."""

    ADD_TO_ROW = 0  # adds values to the row recorded at this event (exp.add_to_row), before anyone reads it
    WRITE = 1       # writes the complete row to disk (Recorder, LogReport), before anything can fail the run
    DECIDE = 2      # reads the row and acts: stop, checkpoint, keep the best (the default)
    REPORT = 3      # shows it (PrintReport, ProgressBar)


@dataclass(frozen=True)
class Trigger:
    """Every `every`-th iteration or epoch (Chainer's `(N, 'epoch')`)."""

    every: int
    unit: str

    @classmethod
    def parse(cls, value: Any, owner: str) -> Trigger | None:
        if value is None or isinstance(value, Trigger):
            return value
        if (isinstance(value, (list, tuple)) and len(value) == 2 and type(value[0]) is int and value[0] >= 1
                and value[1] in ("iteration", "epoch")):
            return cls(value[0], value[1])
        raise UsageError(f"{owner}: trigger = {value!r}; give [N, \"iteration\"] or [N, \"epoch\"] with N >= 1, "
                         'e.g. "trigger": [2, "epoch"]')

    def lets_through(self, event: Event, exp: AnyExp) -> bool:
        """Whether `event` is one of every N-th of this trigger's unit (events of other units always pass)."""
        state = exp.state
        if self.unit == "iteration" and event in (Event.ITERATION_BEGIN, Event.ITERATION_END):
            step = state.global_step + (event is Event.ITERATION_BEGIN)  # the step starting, or the one done
            return step % self.every == 0
        if self.unit == "epoch" and event in (Event.EPOCH_BEGIN, Event.EPOCH_END):
            epoch = state.epoch + (event is Event.EPOCH_BEGIN)  # the epoch starting, or the epochs completed
            return epoch % self.every == 0
        return True


class EventHandler:
    """Base of handlers: override only the events you need. `exp.state` is up to date when each is called; a
    handler may call `exp.request_stop(reason)`, `exp.request_checkpoint()` or `exp.add_to_row(values)`.

    Every handler takes `trigger=(N, "iteration"|"epoch")` besides its own arguments (opts: `"trigger": [N,
    "epoch"]` in its entry), and declares its `phase`.
    """

    phase: Phase = Phase.DECIDE
    trigger: Trigger | None = None
    # True promises that on_iteration_end does nothing where exp.row is None (iterations that record no train
    # row), as with writers of rows; the loop then skips calling it there, a call less at every step.
    recorded_iterations_only: bool = False
    # The columns it adds to rows (exp.add_to_row), as glob patterns, so that opts may plot or monitor them.
    adds_columns: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every subclass's constructor the `trigger` keyword, without each one declaring it."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def with_trigger(self: EventHandler, *args: Any, trigger: Any = None, **kw: Any) -> None:
            init(self, *args, **kw)
            if trigger is not None:
                self.trigger = Trigger.parse(trigger, type(self).__name__)

        cls.__init__ = with_trigger

    def __init__(self, *, trigger: Any = None) -> None:
        if trigger is not None:
            self.trigger = Trigger.parse(trigger, type(self).__name__)

    def on_train_begin(self, exp: AnyExp) -> None:
        """Everything is built and any checkpoint restored; no training step has run yet in this process."""

    def on_epoch_begin(self, exp: AnyExp) -> None:
        """Before the first iteration of epoch `exp.state.epoch` (or the first resumed one)."""

    def on_iteration_begin(self, exp: AnyExp) -> None:
        """Before training iteration `exp.state.iteration` of the epoch fetches its batch."""

    def on_iteration_end(self, exp: AnyExp) -> None:
        """After the optimizer step; `exp.state.global_step` counts it and `exp.blobs` holds its outputs.
        `exp.row` is this iteration's train row when it was a recorded one (else None)."""

    def on_test_begin(self, exp: AnyExp) -> None:
        """Before a test pass, with the network in eval mode."""

    def on_test_end(self, exp: AnyExp) -> None:
        """After a test pass; `exp.row` holds its test metrics, reduced over every process."""

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


def overrides(handler: EventHandler | type, event: Event) -> bool:
    """Whether `handler` (or a handler class) does something at `event` (the base class's methods do nothing)."""
    name = f"on_{event.value}"
    cls = handler if isinstance(handler, type) else type(handler)
    return getattr(cls, name) is not getattr(EventHandler, name)


def calls_by_event(exp_class: type, base: type, handlers: list[EventHandler]) -> dict[Event, list[tuple]]:
    """What the loop calls at each event something hears, looked up once: the experiment class's own hook where
    it replaces `base`'s no-op (paired with None), then the handlers acting on it (by phase, then list order)."""
    ordered = sorted(handlers, key=lambda h: h.phase)  # stable: list order within a phase
    calls = {}
    for event in Event:
        name = f"on_{event.value}"
        hook = getattr(exp_class, name)
        own = [(None, hook)] if hook is not getattr(base, name) else []
        acting = [(handler, getattr(handler, name)) for handler in ordered if overrides(handler, event)]
        if own or acting:
            calls[event] = own + acting
    return calls
