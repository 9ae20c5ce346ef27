"""output.tensorboard: event files in the run folder, readable by TensorBoard's own reader, without duplicated
steps after a resume."""
from __future__ import annotations

import signal

import pandas as pd
import pytest

from lab_helpers import run, write_opts
from test_lab import lab_run, main, only_experiment, tiny_opts

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="tensorboard is not installed: pip install -e .[test]")


def scalars(folder, tag: str) -> list[tuple[int, float]]:
    reader = event_accumulator.EventAccumulator(str(folder))
    reader.Reload()
    return [(e.step, e.value) for e in reader.Scalars(tag)]


def test_event_files_hold_every_recorded_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    assert lab_run(tiny_opts(), "output.tensorboard=true") == 0
    folder = only_experiment(tmp_path / "runs")
    assert any(p.name.startswith("events.out.tfevents.") for p in folder.iterdir())
    test = pd.read_csv(folder / "test.csv")
    assert [step for step, _ in scalars(folder, "test_loss")] == test["iteration"].tolist()
    assert [v for _, v in scalars(folder, "test_loss")] == pytest.approx(test["test_loss"].tolist(), rel=1e-6)
    tags = event_accumulator.EventAccumulator(str(folder))
    tags.Reload()
    assert {"train_loss", "train_accuracy_top1", "learning_rate", "test_accuracy_top1"} <= set(tags.Tags()["scalars"])


def test_a_resumed_run_shows_each_step_once(tmp_path, monkeypatch):
    opts = tiny_opts()
    opts["output"].update(tensorboard=True, checkpoint_every_iters=4, handlers=[
        {"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 7, "marker": str(tmp_path / "killed-once")}}])
    root = tmp_path / "runs"
    killed = run("run", "--parameters-json", write_opts(tmp_path / "opts.json", opts), PLAYGROUND_RUNS=str(root))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = only_experiment(root)
    monkeypatch.setenv("PLAYGROUND_RUNS", str(root))
    assert main("run", "--resume", folder.name) == 0
    assert [step for step, _ in scalars(folder, "train_loss")] == list(range(1, 21))
    train = pd.read_csv(folder / "train.csv")
    assert [v for _, v in scalars(folder, "train_loss")] == pytest.approx(train["train_loss"].tolist(), rel=1e-6)
