"""EarlyStopping: stop when a monitored metric has stopped improving, optionally keeping the best weights."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from playground.errors import UsageError
from playground.events import EventHandler
from playground.handlers.monitor import Monitor

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class EarlyStopping(EventHandler):
    """Checks `monitor` at every epoch's end and stops after `patience` epochs in a row without improvement.

    monitor: a metric name (e.g. "test_accuracy"); default the validation loss, val_loss in Estimator.fit, else
    test_loss. min_delta: an improvement must beat the best by more than this.
    patience: epochs in a row without improvement after which training stops (Keras' meaning: 0 and 1 both
    stop at the first epoch that does not improve). mode: "min", "max" or "auto" (max for
    names with acc/auc/f1/precision/recall/..., else min). baseline: a value the metric must beat; epochs that
    do not beat it count against patience. restore_best: at the end of training put back the weights of the
    best epoch, so model_final.pt holds them; it keeps a CPU copy of those weights, saved in every checkpoint.
    restore_best_weights: Keras' name for restore_best.
    """

    def __init__(self, monitor: str | None = None, min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 baseline: float | None = None, restore_best: bool = False, restore_best_weights: bool | None = None):
        self.monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        if not isinstance(patience, int) or patience < 0:
            raise UsageError(f"EarlyStopping: patience must be a non-negative integer, got {patience!r}")
        if restore_best_weights is not None:
            if restore_best and not restore_best_weights:
                raise UsageError("EarlyStopping: restore_best and restore_best_weights (its Keras name) disagree; "
                                 "give one of them")
            restore_best = restore_best_weights
        self.patience, self.baseline, self.restore_best = patience, baseline, restore_best
        self.best: float | None = None
        self.best_epoch = 0          # epochs completed when the best value was seen
        self.wait = 0                # epochs in a row without improvement
        self.stopped_epoch = 0       # epochs completed when the stop was requested (0: not stopped)
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, exp: AnyExp) -> None:
        self.monitor.warn_if_unknown(exp)

    def on_epoch_end(self, exp: AnyExp) -> None:
        """The epoch's last test pass has run, so exp.latest holds its metrics."""
        value, epoch = self.monitor.value(exp), exp.state.epoch
        self.wait += 1
        if self.monitor.improves(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best:
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in exp.network.state_dict().items()}
            if self.baseline is None or self.monitor.improves(value, self.baseline):
                self.wait = 0
                return
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            reason = (f"EarlyStopping: {self.monitor.name} did not improve ({self.monitor.mode}, min_delta "
                      f"{self.monitor.min_delta:g}) for {self.wait} epoch(s); best {self.best:.6g} after epoch "
                      f"{self.best_epoch}" if self.best is not None else
                      f"EarlyStopping: {self.monitor.name} has no finite value for {self.wait} epoch(s)")
            if self.baseline is not None and not (self.best is not None and
                                                  self.monitor.improves(self.best, self.baseline)):
                reason += f", never beating the baseline {self.baseline:g}"
            log.info("%s; stopping after epoch %d", reason, epoch)
            exp.request_stop(reason)

    def on_train_end(self, exp: AnyExp) -> None:
        """Before the final checkpoint is written: put the best weights back."""
        if self.restore_best and self.best_weights is not None and self.best_epoch != exp.state.epoch:
            exp.network.load_state_dict(self.best_weights)
            log.info("EarlyStopping: restored the weights of epoch %d (%s %.6g) for model_final.pt",
                     self.best_epoch, self.monitor.name, self.best)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.stopped_epoch, self.best_weights = state["stopped_epoch"], state["best_weights"]
