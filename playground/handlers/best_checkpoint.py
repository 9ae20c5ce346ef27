"""BestCheckpoint: model_best.pt follows the best value of a metric."""
from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING, Any

from playground import checkpoint
from playground.errors import UsageError
from playground.events import EventHandler
from playground.handlers.monitor import Monitor

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class BestCheckpoint(EventHandler):
    """Makes `filename` (default model_best.pt) the checkpoint with the best `monitor` value so far.

    monitor, mode, min_delta: as for EarlyStopping. on: "epoch" checks at every epoch's end (the epoch's
    checkpoint becomes the best one); "test" checks after every test pass and, on improvement, asks the loop for
    a checkpoint at that iteration. model_best.pt is a full checkpoint (a hard link to, or copy of, the one it
    was made from), so it can be given as model_param.pretrained_model, and it outlives the pruning of old
    checkpoints (output.keep_checkpoints).
    """

    def __init__(self, monitor: str | None = None, mode: str = "auto", min_delta: float = 0.0, on: str = "epoch",
                 filename: str = "model_best.pt"):
        self.monitor = Monitor("BestCheckpoint", monitor, mode, min_delta)
        if on not in ("epoch", "test"):
            raise UsageError(f"BestCheckpoint: on = {on!r}; use \"epoch\" or \"test\"")
        if not isinstance(filename, str) or not filename.endswith(".pt") or os.sep in filename:
            raise UsageError(f"BestCheckpoint: filename must be a file name ending in .pt, got {filename!r}")
        self.on, self.filename = on, filename
        self.best: float | None = None
        self.best_step = -1          # global_step of the best value
        self._pending = False        # improved: the next checkpoint becomes the best one

    def on_train_begin(self, exp: AnyExp) -> None:
        self.monitor.warn_if_unknown(exp)
        if self._pending and exp.checkpoints and _in_folder(exp, exp.checkpoints[-1]):
            # Resumed from the checkpoint that improved, killed before it was published: publish it now.
            self.on_checkpoint_saved(exp, exp.checkpoints[-1])
        self._pending = False

    def on_test_end(self, exp: AnyExp) -> None:
        if self.on == "test":
            self._check(exp)
            if self._pending:
                exp.request_checkpoint()

    def on_epoch_end(self, exp: AnyExp) -> None:
        """The epoch's checkpoint is written right after this event."""
        if self.on == "epoch":
            self._check(exp)

    def _check(self, exp: AnyExp) -> None:
        value = self.monitor.value(exp)
        if self.monitor.improves(value, self.best):
            self.best, self.best_step, self._pending = value, exp.state.global_step, True

    def on_checkpoint_saved(self, exp: AnyExp, path: str) -> None:
        if self._pending and os.path.basename(path) != checkpoint.FINAL:
            self._publish(path, os.path.join(os.path.dirname(path), self.filename))
            self._pending = False
            log.info("BestCheckpoint: %s = %s (%s %.6g at step %d)", self.filename, os.path.basename(path),
                     self.monitor.name, self.best, self.best_step)

    @staticmethod
    def _publish(source: str, target: str) -> None:
        """`target` becomes the same bytes as `source` (a hard link: free, and keeps its mtime so resume, which
        takes the newest checkpoint, never prefers it), then gets its own digest file."""
        tmp = f"{target}.tmp{os.getpid()}"
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
        digest = checkpoint.recorded_digest(source)
        checkpoint.atomic_write(target + ".sha256", f"{digest}  {os.path.basename(target)}\n".encode())

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "pending": self._pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self._pending = state["pending"]


def _in_folder(exp: AnyExp, path: str) -> bool:
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(exp.folder) and os.path.exists(path)
