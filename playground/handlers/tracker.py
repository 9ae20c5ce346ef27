"""What the experiment-tracker handlers (MLflowLogger, WandbLogger) share: when and what they send.

A tracker handler, on rank 0 only, opens a run at train_begin (or reopens the one whose id its checkpointed state
holds), sends the flattened opts as params and the experiment tag and git commit as tags, then every recorded row's
metrics at its global step as rows are recorded (phase WRITE, like the Recorder), and at the final checkpoint the
results and plots. A resumed run skips the steps the tracker already holds, so no step is sent twice.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import tempfile
from typing import TYPE_CHECKING, Any

from playground import plots
from playground.errors import UsageError
from playground.events import EventHandler, Phase
from playground.lab.recorder import STEP, X
from playground.opts import flatten

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


def require(package: str, handler: str) -> None:
    """A UsageError naming the extra to install when `package` is missing (checked without importing it, so
    that --dry-run stays fast)."""
    if importlib.util.find_spec(package) is None:
        raise UsageError(f"{handler} needs the {package} package, which is not installed: "
                         f"pip install 'torch-playground[{package}]' (or pip install {package})")


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


class TrackerLogger(EventHandler):
    """Base of the tracker handlers; a subclass implements `open_run` (which also sends the params and tags),
    `send_metrics`, `send_files` and `close_run`."""

    phase = Phase.WRITE
    recorded_iterations_only = True

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.open = self.ending = False
        self.held: dict[str, int] = {}  # the last step the tracker holds, per metric (a resumed run skips them)
        self.sent: dict[str, int] = {}  # rows of exp.history already sent, per series

    # -- what a subclass implements

    def open_run(self, exp: AnyExp, params: dict[str, Any], tags: dict[str, str]) -> dict[str, int]:
        """Open (self.run_id None) or reopen the run; set self.run_id. `params` are the flattened opts. Return
        the last step the run holds per metric ("*": any metric)."""
        raise NotImplementedError

    def send_metrics(self, metrics: list[tuple[str, float, int]]) -> None:
        """(name, value, step) triples."""
        raise NotImplementedError

    def send_files(self, folder: str) -> None:
        """Every file in `folder` as an artifact of the run."""
        raise NotImplementedError

    def close_run(self) -> None:
        """The run ended finished."""
        raise NotImplementedError

    # -- the events

    def on_train_begin(self, exp: AnyExp) -> None:
        if exp.rank != 0:
            return
        source = read_json(os.path.join(exp.folder, "source.json"))
        status = read_json(os.path.join(exp.folder, "status.json"))
        tags = {"playground.tag": status.get("tag"), "playground.folder": os.path.realpath(exp.folder),
                "git.commit": source.get("commit"), "git.branch": source.get("branch"),
                "git.dirty": source.get("dirty")}
        self.held = self.open_run(exp, flatten(exp.opts), {k: str(v) for k, v in tags.items() if v is not None})
        self.open, self.ending = True, False
        self.sent = {kind: 0 for kind in exp.history}

    def catch_up(self, exp: AnyExp) -> None:
        """Send the metrics of the rows recorded since the last call, less the steps the tracker already holds."""
        if not self.open:
            return
        metrics = []
        for kind, rows in exp.history.items():
            for row in rows[self.sent.get(kind, 0):]:
                step = row[STEP]  # the global step
                metrics += [(name, float(value), step) for name, value in row.items()
                            if name not in (X, STEP) and isinstance(value, (int, float)) and math.isfinite(value)
                            and step > self.held.get(name, self.held.get("*", -1))]
            self.sent[kind] = len(rows)
        if metrics:
            self.send_metrics(metrics)

    def on_iteration_end(self, exp: AnyExp) -> None:
        if exp.row is not None:
            self.catch_up(exp)

    def on_test_end(self, exp: AnyExp) -> None:
        self.catch_up(exp)

    def on_epoch_end(self, exp: AnyExp) -> None:
        self.catch_up(exp)

    def on_train_end(self, exp: AnyExp) -> None:
        """The last rows; the next checkpoint is the final one."""
        self.catch_up(exp)
        self.ending = True

    def on_checkpoint_saved(self, exp: AnyExp, path: str) -> None:
        """At the final checkpoint (written after train_end), the results and plots; the run ends finished."""
        self.catch_up(exp)
        if not (self.open and self.ending):
            return
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "results.json"), "w", encoding="utf-8") as f:
                json.dump(exp.gen_output(exp), f, indent=1, default=str)
            plots.write(exp.history, list(exp.info.plots), folder)
            self.send_files(folder)
        self.close_run()
        self.open = self.ending = False

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")
