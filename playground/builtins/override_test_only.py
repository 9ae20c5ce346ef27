"""Override component: test only. One test pass of the weights the run starts from (`model_param.pretrained_model`
with `reset_epoch` true takes only a checkpoint's weights), recorded in test.csv and results.json; nothing is
trained and no checkpoint is written. `playground pipeline`'s evaluate steps test checkpoints this way."""
from __future__ import annotations

from playground.events import Event


def run(self) -> dict:
    """One test pass between the usual train_begin and train_end events (so handlers record it), then results."""
    self.fire(Event.TRAIN_BEGIN)
    self.run_test()
    self.fire(Event.TRAIN_END)
    return self.write_results()
