"""EMA: an exponential moving average of the weights, evaluated beside them and saved as model_ema.pt."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from playground import checkpoint
from playground.errors import UsageError
from playground.events import EventHandler, Phase

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class EMA(EventHandler):
    """Keeps `ema = decay * ema + (1 - decay) * weights` after every optimizer step (timm's ModelEmaV2): over
    every floating-point entry of the network's state_dict, batch-norm statistics included; integer entries are
    copied. It starts from the weights training starts with.

    evaluate: after every test pass, swap the averaged weights in, run the test metrics again, swap the trained
    ones back, and add them to the test row as `ema_<metric>` (e.g. ema_test_loss). filename: at the end of
    training the averaged weights are written there (default model_ema.pt, a weights-only checkpoint: give it as
    model_param.pretrained_model with reset_epoch true). The average is saved in every checkpoint, so a resumed
    run continues it exactly; model_final.pt keeps the trained weights.
    """

    phase = Phase.ADD_TO_ROW  # its ema_ columns are in the test row before the writers see it
    adds_columns = ("ema_*",)

    def __init__(self, decay: float = 0.999, evaluate: bool = True, filename: str = "model_ema.pt"):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise UsageError(f"EMA: decay must be a number in [0, 1), got {decay!r}; e.g. 0.999")
        if not isinstance(evaluate, bool):
            raise UsageError(f"EMA: evaluate must be true or false, got {evaluate!r}")
        if not isinstance(filename, str) or not filename.endswith(".pt") or os.sep in filename:
            raise UsageError(f"EMA: filename must be a file name ending in .pt, got {filename!r}")
        self.decay, self.evaluate, self.filename = float(decay), evaluate, filename
        self.weights: dict[str, torch.Tensor] | None = None  # the average, on the network's device

    def on_train_begin(self, exp: AnyExp) -> None:
        """A restored average continues; otherwise the average starts at the current weights."""
        current = exp.network.state_dict()
        if self.weights is None:
            self.weights = {name: value.detach().clone() for name, value in current.items()}
        else:
            self.weights = {name: value.to(current[name].device) for name, value in self.weights.items()}

    @torch.no_grad()
    def on_iteration_end(self, exp: AnyExp) -> None:
        """After the optimizer step (and before any checkpoint at this boundary)."""
        for name, value in exp.network.state_dict().items():
            average = self.weights[name]
            if average.is_floating_point():
                average.lerp_(value, 1.0 - self.decay)
            else:
                average.copy_(value)

    def on_test_end(self, exp: AnyExp) -> None:
        if self.evaluate:
            values = self.swapped_in(exp, exp.evaluate)
            exp.add_to_row({f"ema_{name}": value for name, value in values.items()})

    @torch.no_grad()
    def swapped_in(self, exp: AnyExp, call: Any) -> Any:
        """`call()` with the averaged weights in the network; the trained ones are put back, bit for bit."""
        current = exp.network.state_dict()
        trained = {name: value.clone() for name, value in current.items()}
        try:
            for name, value in current.items():
                value.copy_(self.weights[name])
            return call()
        finally:
            for name, value in current.items():
                value.copy_(trained[name])

    def on_checkpoint_saved(self, exp: AnyExp, path: str) -> None:
        """After the final checkpoint: write the averaged weights beside it. Dated a second before it, so that
        resuming, which takes the newest checkpoint, never takes this weights-only file."""
        if os.path.basename(path) != checkpoint.FINAL:
            return
        target = os.path.join(os.path.dirname(path), self.filename)
        checkpoint.save(target, {"format_version": checkpoint.FORMAT_VERSION, "model": self.weights,
                                 "ema_decay": self.decay, "global_step": exp.state.global_step})
        final_ns = os.stat(path).st_mtime_ns
        os.utime(target, ns=(final_ns - 10**9, final_ns - 10**9))
        log.info("EMA: averaged weights (decay %g) in %s", self.decay, target)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]
