"""A monitored metric: which direction is better, and whether a new value improves on the best so far.

Shared by EarlyStopping and BestCheckpoint, so both read `mode`, `min_delta` and missing metrics the same way.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from playground.errors import UsageError
from playground.errors import HandlerError

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)

# Metric names that are better when larger, for mode "auto" (everything else is better when smaller).
_HIGHER_IS_BETTER = ("acc", "auc", "f1", "precision", "recall", "iou", "map", "score", "samples_per_sec")


class Monitor:
    """`name` in exp.latest, better when smaller (mode "min"), larger ("max"), or guessed from the name ("auto").

    No name means the validation loss: val_loss where the run records it (Estimator.fit with val_data, Keras'
    name), else test_loss (the opts' name), decided when training begins.
    """

    def __init__(self, owner: str, name: str | None = None, mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise UsageError(f"{owner}: mode = {mode!r}; use \"auto\", \"min\" or \"max\"")
        if name is not None and (not isinstance(name, str) or not name):
            raise UsageError(f"{owner}: monitor must name a metric, e.g. \"monitor\": \"test_loss\"")
        self.owner, self.min_delta, self._mode = owner, abs(float(min_delta)), mode
        self.name, self.mode = "", mode
        if name is not None:
            self._watch(name)

    def _watch(self, name: str) -> None:
        self.name = name
        if self._mode == "auto":
            self.mode = "max" if any(word in name.lower() for word in _HIGHER_IS_BETTER) else "min"

    def _default(self, exp: AnyExp) -> None:
        if not self.name:
            self._watch("val_loss" if "val_loss" in set(getattr(exp, "meters", {})) | set(exp.latest) else "test_loss")

    def improves(self, value: float, best: float | None) -> bool:
        """True when `value` beats `best` by more than min_delta (anything finite beats None; NaN never does)."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta

    def value(self, exp: AnyExp) -> float:
        """The latest value of the monitored metric; a clear error when nothing records it."""
        self._default(exp)
        if self.name not in exp.latest:
            known = ", ".join(sorted(exp.latest)) or "none yet"
            raise HandlerError(f"{self.owner}: monitor {self.name!r} is not a recorded metric; recorded: {known}. "
                               "Name one of output.metrics, or a value a handler records")
        return float(exp.latest[self.name])

    def warn_if_unknown(self, exp: AnyExp) -> None:
        """At train begin: a name no metric or built-in record provides is most likely a typo."""
        from playground.opts import ALWAYS_RECORDED, added_by

        self._default(exp)
        known = set(getattr(exp, "meters", {})) | set(ALWAYS_RECORDED) | set(exp.latest)
        if self.name not in known and not added_by(getattr(exp, "handlers", []), self.name):
            log.warning("%s: monitor %r is not among the metrics (%s); unless a handler records it, the run will "
                        "fail at the first check", self.owner, self.name, ", ".join(sorted(known)))
