"""What the lab book's recording costs per training iteration.

    PYTHONPATH=. python benchmarks/lab_recording.py [--iterations 2000] [--repeats 5]

1. Per row: CsvSeries.append (format, write, flush to the OS), and Recorder.catch_up when no row is new (what
   every unrecorded iteration pays).
2. End to end: the tiny MLP example recording every iteration (record_every_iters=1: the worst case; the default
   is 10), run with the Recorder and with a no-op handler in its place, alternately. Reported per iteration: the
   time spent inside the Recorder (timed in the loop: the most stable figure on a shared machine), the
   process's CPU time (median) and the wall time (best) with and without it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from playground import runner  # noqa: E402
from playground.events import EventHandler  # noqa: E402
from playground.lab import recorder  # noqa: E402


def per_row(rows: int) -> tuple[float, float]:
    """(µs per appended row, ns per catch_up with nothing new)."""
    with tempfile.TemporaryDirectory() as folder:
        series = recorder.CsvSeries(os.path.join(folder, "train.csv"))
        row = {"epoch": 0.0, "iteration": 0, "train_loss": 0.6931471805599453, "train_accuracy_top1": 0.5,
               "secs_per_train": 0.000412, "samples_per_sec": 155339.8, "learning_rate": 0.1}
        series.append(row)
        started = time.perf_counter()
        for i in range(rows):
            series.append({**row, "epoch": i / 100, "iteration": i})
        append_us = (time.perf_counter() - started) / rows * 1e6
        series.close()
        rec = recorder.Recorder()
        rec.series = {"train": series, "test": series}
        rec.written = {"train": 5, "test": 5}
        exp = SimpleNamespace(history={"train": [{}] * 5, "test": [{}] * 5})
        started = time.perf_counter()
        for _ in range(rows * 10):
            rec.catch_up(exp)
        idle_ns = (time.perf_counter() - started) / (rows * 10) * 1e9
    return append_us, idle_ns


class TimedRecorder(recorder.Recorder):
    """The Recorder, adding the time its catch_up takes to `spent`."""

    spent = 0.0

    def catch_up(self, exp) -> None:
        started = time.perf_counter()
        super().catch_up(exp)
        TimedRecorder.spent += time.perf_counter() - started


def end_to_end(iterations: int, with_recorder: bool) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, seconds in the Recorder) per training iteration of the tiny MLP, recording
    every iteration."""
    opts = json.load(open(os.path.join(ROOT, "examples", "mlp_synthetic.json")))["opts"]
    opts["epoch_iter"].update(num_train_sample_per_epoch=64 * iterations, num_test_sample=64, num_epochs=1,
                              num_train_iteration_per_test=0)
    opts["output"].update(plots=[], record_every_iters=1, progress_bar=False)
    opts, components = runner.prepare(opts)
    original = runner.lab.Recorder
    runner.lab.Recorder = TimedRecorder if with_recorder else EventHandler
    TimedRecorder.spent = 0.0
    try:
        with tempfile.TemporaryDirectory() as folder:
            cpu, wall = time.process_time(), time.perf_counter()
            runner.run(opts, components, folder)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            return cpu / iterations, wall / iterations, TimedRecorder.spent / iterations
    finally:
        runner.lab.Recorder = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    append_us, idle_ns = per_row(5000)
    print(f"CsvSeries.append: {append_us:.1f} us per row; Recorder.catch_up with no new row: {idle_ns:.0f} ns")
    end_to_end(200, True)  # warm-up: imports, lazy initialisation
    times: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for _ in range(args.repeats):
        for flag in (False, True):
            times[flag].append(end_to_end(args.iterations, flag))
    inside = statistics.median(t[2] for t in times[True])
    print(f"tiny MLP, {args.iterations} iterations, every one recorded: {inside * 1e6:.1f} us per iteration "
          f"inside the Recorder (median of {args.repeats})")
    for what, pick, index in (("CPU, median", statistics.median, 0), ("wall, best", min, 1)):
        without, with_ = (pick(t[index] for t in times[flag]) for flag in (False, True))
        print(f"tiny MLP, {args.iterations} iterations, every one recorded, {what} of {args.repeats}: "
              f"{without * 1e6:.0f} us/iteration without the Recorder, {with_ * 1e6:.0f} us with it "
              f"({(with_ - without) * 1e6:+.0f} us, {(with_ / without - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
