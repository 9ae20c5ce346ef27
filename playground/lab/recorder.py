"""The Recorder: writes `exp.history` to train.csv and test.csv (and TensorBoard) as rows are recorded.

Every run gets one (its phase writes each row once the handlers that add to it are done). Only rank 0 writes. Each CSV
row is flushed to the operating system as soon as it is written, so a killed process loses no recorded row.
On resume the files are cut back to the rows of the restored checkpoint's history, so every x appears once and
the files equal those of an uninterrupted run except for the `date` column (and the measured throughput).
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from typing import IO, TYPE_CHECKING, Any

from playground import checkpoint
from playground.errors import UsageError
from playground.events import EventHandler, Phase

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

SERIES = {"train": "train.csv", "test": "test.csv"}
X, STEP, DATE = "epoch", "iteration", "date"
EVENTS = "events.out.tfevents."


_second: list = [-1, ""]  # the last second formatted: strftime costs more than the rest of a row


def utc_date() -> str:
    """UTC now to the millisecond, ISO 8601: 2026-11-22T15:30:01.123Z."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


def cell(value: Any) -> str:
    if type(value) is float:
        return repr(value)  # shortest text that reads back to the same float
    return "" if value is None else str(value)


class CsvSeries:
    """One time series as CSV: `epoch`, `iteration`, a column per metric, then `date`; one flushed line per row."""

    def __init__(self, path: str):
        self.path = path
        self.columns: list[str] | None = None
        self.file: IO[str] | None = None
        self.writer: Any = None

    def reconcile(self, rows: list[dict]) -> None:
        """Make the file hold exactly `rows` (the restored history), keeping the dates of rows already written."""
        written: list[dict] = []
        if os.path.exists(self.path):
            if not rows:  # nothing survives: an uninterrupted run would not have the file yet
                os.unlink(self.path)
                return
            with open(self.path, encoding="utf-8", newline="") as f:
                written = list(csv.DictReader(f))
        if rows:
            padded = written + [{}] * len(rows)
            self._rewrite(rows, [old.get(DATE, "") if old.get(STEP) == cell(row[STEP]) else ""
                                 for row, old in zip(rows, padded)])

    def _rewrite(self, rows: list[dict], dates: list[str]) -> None:
        columns = list(self.columns or [])
        for row in rows:
            columns += [k for k in row if k not in columns]
        self.columns = [X, STEP] + [c for c in columns if c not in (X, STEP, DATE)] + [DATE]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(self.columns)
        for row, date in zip(rows, dates):
            writer.writerow([cell(row.get(c)) for c in self.columns[:-1]] + [date])
        self.close()
        checkpoint.atomic_write(self.path, text.getvalue().encode())

    def append(self, row: dict) -> None:
        if self.columns is None or any(k not in self.columns for k in row):
            self._widen(row)
        if self.file is None:
            self.file = open(self.path, "a", encoding="utf-8", newline="")
            self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow([cell(row.get(c)) for c in self.columns[:-1]] + [utc_date()])
        self.file.flush()

    def _widen(self, row: dict) -> None:
        """A first row, or one with a metric the header lacks: (re)write the header, keeping earlier rows."""
        old: list[dict] = []
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8", newline="") as f:
                old = list(csv.DictReader(f))
        self.columns = (self.columns or []) + [k for k in row if k not in (self.columns or [])]
        self._rewrite(old, [r.get(DATE, "") for r in old])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file, self.writer = None, None


class TensorBoardSink:
    """The same rows as TensorBoard scalars (one per metric, step = global iteration) in the run folder."""

    def __init__(self, folder: str, purge_step: int | None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("output.tensorboard is true but the tensorboard package is not installed: "
                             "pip install tensorboard, or set output.tensorboard to false") from None
        # purge_step: TensorBoard discards events at or after it from earlier event files, which drops the
        # rows an interrupted attempt wrote after the checkpoint being resumed from. It reads the files in name
        # order, events.out.tfevents.<unix seconds>.<host>.<pid>..., so the new file must name a later second.
        newest = max((int(name.split(".")[3]) for name in os.listdir(folder) if name.startswith(EVENTS)
                      and name.split(".")[3].isdigit()), default=0)
        while time.time() < newest + 1:
            time.sleep(0.05)
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step, flush_secs=30)

    def add(self, row: dict) -> None:
        for name, value in row.items():
            if name not in (X, STEP) and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(name, value, global_step=row[STEP])

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Recorder(EventHandler):
    """Writes every row of `exp.history` to its CSV (and TensorBoard when `output.tensorboard`), rank 0 only."""

    phase = Phase.WRITE
    recorded_iterations_only = True

    def __init__(self) -> None:
        self.series: dict[str, CsvSeries] = {}
        self.written: dict[str, int] = {}
        self.tensorboard: TensorBoardSink | None = None

    def on_train_begin(self, exp: AnyExp) -> None:
        """Cut the files back to the restored history, then open them for appending."""
        self.close()
        if exp.rank != 0:
            return
        os.makedirs(exp.folder, exist_ok=True)
        self.series = {kind: CsvSeries(os.path.join(exp.folder, name)) for kind, name in SERIES.items()}
        for kind, series in self.series.items():
            series.reconcile(exp.history[kind])
        self.written = {kind: len(exp.history[kind]) for kind in SERIES}
        if exp.info.tensorboard:
            resumed = any(name.startswith(EVENTS) for name in os.listdir(exp.folder))
            self.tensorboard = TensorBoardSink(exp.folder, exp.state.global_step + 1 if resumed else None)

    def catch_up(self, exp: AnyExp) -> None:
        """Write the rows recorded since the last call: O(1) when there are none."""
        for kind, series in self.series.items():
            rows = exp.history[kind]
            while self.written[kind] < len(rows):
                row = rows[self.written[kind]]
                series.append(row)
                if self.tensorboard is not None:
                    self.tensorboard.add(row)
                self.written[kind] += 1

    def on_iteration_end(self, exp: AnyExp) -> None:
        """The train row of a recorded iteration (the others have none: rows a hook records between events wait
        for the next recorded iteration or other event)."""
        if exp.row is not None:
            self.catch_up(exp)

    def on_test_end(self, exp: AnyExp) -> None:
        """The test row of the pass."""
        self.catch_up(exp)
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def on_epoch_end(self, exp: AnyExp) -> None:
        """Rows recorded by hooks between events."""
        self.catch_up(exp)

    def on_checkpoint_saved(self, exp: AnyExp, path: str) -> None:
        """Everything the checkpoint's history holds is on disk too."""
        self.catch_up(exp)

    def on_train_end(self, exp: AnyExp) -> None:
        """The last rows; the files are closed."""
        self.catch_up(exp)
        self.close()

    def close(self) -> None:
        for series in self.series.values():
            series.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
