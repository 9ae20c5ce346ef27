"""PrintReport (a table row of chosen values per epoch or per test pass) and LogReport (JSON lines of every
recorded row)."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from playground.errors import UsageError
from playground.events import EventHandler, Phase

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


class PrintReport(EventHandler):
    """Prints a header, then one table row per epoch (`on: "epoch"`) or per test pass (`on: "test"`).

    entries: the columns: "epoch" (fractional), "iteration" (training steps), "elapsed_time" (seconds of
    training, carried across resumes) and any metric names; null: epoch, iteration, every metric recorded so far,
    elapsed_time. Rows go to stdout (through tqdm when a progress bar is showing, so the bar stays intact);
    rank 0 only.
    """

    phase = Phase.REPORT

    def __init__(self, entries: list[str] | None = None, on: str = "epoch", width: int = 12):
        if on not in ("epoch", "test"):
            raise UsageError(f"PrintReport: on = {on!r}; use \"epoch\" or \"test\"")
        self.entries, self.on, self.width = entries, on, width
        self.elapsed = 0.0
        self._started = 0.0
        self._columns: list[str] = []  # entries, or what null stands for, fixed at the first row

    def on_train_begin(self, exp: AnyExp) -> None:
        self._started, self._columns = time.perf_counter(), []

    def on_epoch_end(self, exp: AnyExp) -> None:
        if self.on == "epoch":
            self._row(exp)

    def on_test_end(self, exp: AnyExp) -> None:
        if self.on == "test":
            self._row(exp)

    def _row(self, exp: AnyExp) -> None:
        if exp.rank != 0:
            return
        values = {"epoch": exp.state.epoch + exp.state.iteration / max(exp.epoch_iterations, 1),
                  "iteration": exp.state.global_step, "elapsed_time": self._elapsed(), **exp.latest}
        if not self._columns:  # this run's first row: fix the columns and print the header
            self._columns = self.entries or ["epoch", "iteration", *exp.latest, "elapsed_time"]
            self._print(self._columns)
        self._print([_cell(values.get(e)) for e in self._columns])

    def _print(self, cells: list[str]) -> None:
        widths = [max(self.width, len(e) + 2) for e in self._columns]
        _write("".join(f"{cell:<{w}}" for cell, w in zip(cells, widths)).rstrip())

    def _elapsed(self) -> float:
        return self.elapsed + time.perf_counter() - self._started

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self._elapsed() if self._started else self.elapsed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.elapsed = state["elapsed"]


class LogReport(EventHandler):
    """Appends every recorded row (train and test) to `filename` in the run folder as one JSON object per line:
    {"kind": "train"|"test", "epoch": ..., "iteration": ..., <metrics>}. On resume the file is cut back to what
    the checkpoint had seen, so it never holds a row twice. Rank 0 only."""

    phase = Phase.WRITE
    recorded_iterations_only = True

    def __init__(self, filename: str = "log.jsonl"):
        self.filename = filename
        self.written = {"train": 0, "test": 0}  # rows of exp.history already in the file
        self.size = 0                            # bytes of the file when those rows were written
        self._exp: AnyExp | None = None
        self._file: BinaryIO | None = None

    def on_train_begin(self, exp: AnyExp) -> None:
        if exp.rank != 0:
            return
        self._exp = exp
        path = os.path.join(exp.folder, self.filename)
        if os.path.exists(path) and os.path.getsize(path) > self.size:
            os.truncate(path, self.size)  # rows written after the checkpoint this run resumed from
        self._file = open(path, "ab")
        self._sync()

    # Its phase runs it after the handlers that add to a row, so each row is written complete, at once.
    def on_iteration_end(self, exp: AnyExp) -> None:
        if exp.row is not None:
            self._sync()

    def on_test_end(self, exp: AnyExp) -> None:
        self._sync()

    def on_epoch_end(self, exp: AnyExp) -> None:
        self._sync()

    def on_train_end(self, exp: AnyExp) -> None:
        self._sync()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _sync(self) -> None:
        if self._file is None or self._exp is None:
            return
        for kind in ("train", "test"):
            rows = self._exp.history[kind]
            for row in rows[self.written[kind]:]:
                self._file.write(json.dumps({"kind": kind, **row}, default=float).encode() + b"\n")
            self.written[kind] = len(rows)
        self._file.flush()
        self.size = self._file.tell()

    def state_dict(self) -> dict[str, Any]:
        self._sync()  # the checkpoint must describe the file as it is now
        return {"written": dict(self.written), "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.written, self.size = dict(state["written"]), state["size"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _write(line: str, stream: TextIO | None = None) -> None:
    """Print a line; through tqdm.write when tqdm is loaded (a bar may be showing), so the bar is redrawn."""
    stream = stream or sys.stdout
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        tqdm.tqdm.write(line, file=stream)
    else:
        print(line, file=stream, flush=True)
