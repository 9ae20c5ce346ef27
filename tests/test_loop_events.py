"""The loop's events: their exact sequence (over two epochs, a test pass and a resume), handler phases, the row
handlers add to, and triggers. Driven through playground.testing, the experiment component authors use."""
from __future__ import annotations

import csv
import os

import pytest

from conftest import example_opts, write_opts
from playground import cli
from playground.events import Event, EventHandler, Phase, Trigger
from playground.handlers import LogReport, LRMonitor
from playground.lab.recorder import Recorder
from playground.state import StopRequest
from playground.testing import tiny_experiment

CALLS: list[str] = []


class Spy(EventHandler):
    """Appends `<label>.<event>@<global_step>` at every event."""

    def __init__(self, label: str = "spy", phase: Phase = Phase.DECIDE):
        self.label, self.phase = label, phase

    def _log(self, exp, event: str) -> None:
        CALLS.append(f"{self.label}.{event}@{exp.state.global_step}")

    def on_train_begin(self, exp): self._log(exp, "train_begin")
    def on_epoch_begin(self, exp): self._log(exp, "epoch_begin")
    def on_iteration_begin(self, exp): self._log(exp, "iteration_begin")
    def on_iteration_end(self, exp): self._log(exp, "iteration_end")
    def on_test_begin(self, exp): self._log(exp, "test_begin")
    def on_test_end(self, exp): self._log(exp, "test_end")
    def on_epoch_end(self, exp): self._log(exp, "epoch_end")
    def on_checkpoint_saved(self, exp, path): self._log(exp, f"checkpoint_saved:{os.path.basename(path)}")
    def on_train_end(self, exp): self._log(exp, "train_end")


class StopAt(EventHandler):
    def __init__(self, step: int):
        self.step = step

    def on_iteration_end(self, exp):
        if exp.state.global_step == self.step:
            exp.request_stop(StopRequest.from_signal(15))


def iteration(step: int, test: bool = False) -> list[str]:
    calls = [f"spy.iteration_begin@{step - 1}", f"spy.iteration_end@{step}"]
    return calls + [f"spy.test_begin@{step}", f"spy.test_end@{step}"] * test


def test_events_fire_in_the_documented_order_over_two_epochs_a_test_pass_and_a_resume(tmp_path):
    CALLS.clear()
    exp = tiny_experiment(tmp_path, [Spy(), StopAt(3)], epochs=2, iterations=2, iterations_per_test=0)
    with pytest.raises(Exception, match="stopped by SIGTERM at epoch 1 iteration 1"):
        exp.run()
    first = ["spy.train_begin@0", "spy.epoch_begin@0", *iteration(1), *iteration(2, test=True),
             "spy.epoch_end@2", "spy.checkpoint_saved:model_checkpoint_epoch1.pt@2", "spy.epoch_begin@2",
             *iteration(3), "spy.checkpoint_saved:model_checkpoint_epoch1_iter1.pt@3", "spy.train_end@3"]
    assert CALLS == first
    CALLS.clear()
    from playground import runner

    resumed = tiny_experiment(tmp_path, [Spy(), StopAt(99)], epochs=2, iterations=2)
    runner.restore(resumed)
    resumed.run()
    assert CALLS == ["spy.train_begin@3", "spy.epoch_begin@3", *iteration(4, test=True), "spy.epoch_end@4",
                     "spy.checkpoint_saved:model_checkpoint_epoch2.pt@4", "spy.train_end@4",
                     "spy.checkpoint_saved:model_final.pt@4"]


def test_handlers_run_by_phase_then_in_list_order(tmp_path):
    CALLS.clear()
    handlers = [Spy("report", Phase.REPORT), Spy("decide"), Spy("write", Phase.WRITE), Spy("add", Phase.ADD_TO_ROW),
                Spy("decide2")]
    tiny_experiment(tmp_path, handlers, epochs=1, iterations=1).fire(Event.EPOCH_END)
    assert [c.split(".")[0] for c in CALLS] == ["add", "write", "decide", "decide2", "report"]


def test_a_handler_adds_to_the_row_before_writers_see_it(tmp_path):
    """LRMonitor listed after the writers still reaches an uninterrupted run's train.csv and log.jsonl."""
    exp = tiny_experiment(tmp_path, [Recorder(), LogReport(), LRMonitor()], epochs=1, iterations=3)
    exp.run()
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(float(row["lr_0"]) == 0.1 for row in rows)
    assert all('"lr_0": 0.1' in line for line in (tmp_path / "log.jsonl").read_text().splitlines()
               if '"train"' in line)


@pytest.mark.parametrize("trigger, event, seen", [
    ((2, "epoch"), "epoch_end", [2, 4]), ((3, "iteration"), "iteration_end", [3, 6]),
    ((2, "epoch"), "iteration_end", [1, 2, 3, 4, 5, 6, 7, 8]),  # an epoch trigger lets iterations through
])
def test_a_trigger_lets_through_every_nth_event_of_its_unit(tmp_path, trigger, event, seen):
    class Count(EventHandler):
        def __init__(self):
            self.seen = []

        def on_iteration_end(self, exp):
            self.seen.append(("iteration_end", exp.state.global_step))

        def on_epoch_end(self, exp):
            self.seen.append(("epoch_end", exp.state.epoch))

    counter = Count(trigger=trigger)
    assert counter.trigger == Trigger(*trigger)
    tiny_experiment(tmp_path, [counter], epochs=4, iterations=2).run()
    assert [n for e, n in counter.seen if e == event] == seen


def test_a_trigger_from_opts_and_a_bad_one(tmp_path, capsys):
    opts = example_opts()
    opts["epoch_iter"].update(num_train_sample_per_epoch=128, num_test_sample=64, num_epochs=4)
    opts["output"].update(checkpoint_folder=str(tmp_path / "run"), plots=[], handlers=[
        {"handler_py": "LogReport", "kargs": {"filename": "every2.jsonl"}, "trigger": [2, "epoch"]}])
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, opts), "--dry-run"]) == 0
    assert "LogReport every 2 epoch(s)" in capsys.readouterr().out
    opts["output"]["handlers"][0]["trigger"] = [0, "epochs"]
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, opts), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "output.handlers[0]" in error and "trigger = [0, 'epochs']" in error
    assert not (tmp_path / "run").exists()


def test_handlers_of_rows_only_hear_iteration_end_at_recorded_iterations_and_others_at_every_one(tmp_path):
    """record_every 3 over two epochs of 4: rows at steps 3, 4 (an epoch's last), 6 and 8."""
    class Count(EventHandler):
        def __init__(self, rows_only: bool):
            self.recorded_iterations_only, self.seen = rows_only, []

        def on_iteration_end(self, exp):
            self.seen.append((exp.state.global_step, exp.row is not None))

    rows_only, every = Count(True), Count(False)
    recorder = Recorder()
    tiny_experiment(tmp_path, [rows_only, every, recorder], epochs=2, iterations=4, record_every=3).run()
    assert rows_only.seen == [(3, True), (4, True), (6, True), (8, True)]
    assert every.seen == [(step, step in (3, 4, 6, 8)) for step in range(1, 9)]
    assert recorder.recorded_iterations_only and LogReport().recorded_iterations_only
    with open(tmp_path / "train.csv") as f:
        assert [row["iteration"] for row in csv.DictReader(f)] == ["3", "4", "6", "8"]
