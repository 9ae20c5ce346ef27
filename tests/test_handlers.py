"""The built-in event handlers: each one's behaviour, from opts, and their state across a kill and resume."""
from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, write_opts
from playground import checkpoint, cli, runner
from playground.errors import PlaygroundError, UsageError
from playground.events import Event, EventHandler
from playground.handlers import EarlyStopping, LogReport, NonFiniteLossError, ProgressBar, TerminateOnNaN
from playground.runner import prepare
from playground.anyexp import AnyExp
from playground.testing import tiny_experiment

# ---------------------------------------------------------------------------------------------- helpers


class ScriptedMetric(EventHandler):
    """Records values[n - 1] as `name` at the n-th epoch end (or test pass): a metric the test controls.
    List it before the handlers that read it."""

    def __init__(self, values: list[float], name: str = "scripted", on: str = "epoch"):
        self.values, self.name, self.on = values, name, on

    def on_epoch_end(self, exp) -> None:
        if self.on == "epoch":
            exp.latest[self.name] = self.values[exp.state.epoch - 1]

    def on_test_end(self, exp) -> None:
        if self.on == "test":
            exp.latest[self.name] = self.values[exp.state.test_passes - 1]


class KillAt(EventHandler):
    """SIGKILLs its own process right after the checkpoint of training step $KILL_AT_STEP is written."""

    def on_checkpoint_saved(self, exp, path: str) -> None:
        if os.environ.get("KILL_AT_STEP") == str(exp.state.global_step):
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonAt(EventHandler):
    """Fills the first weight with NaN before training step `step` (after it with after=True)."""

    def __init__(self, step: int, after: bool = False):
        self.step, self.after = step, after

    def on_iteration_begin(self, exp) -> None:
        if not self.after and exp.state.global_step + 1 == self.step:
            self._poison(exp)

    def on_iteration_end(self, exp) -> None:
        if self.after and exp.state.global_step == self.step:
            self._poison(exp)

    @staticmethod
    def _poison(exp) -> None:
        with torch.no_grad():
            next(exp.network.parameters()).fill_(float("nan"))


def handler(name: str, **kargs) -> dict:
    """An output.handlers entry: a built-in by its module-map name, a helper above by its import path."""
    return {"handler_py": name if name in _BUILTIN else f"test_handlers.{name}", "kargs": kargs}


_BUILTIN = {"BestCheckpoint", "DumpGraph", "EarlyStopping", "LRMonitor", "LogReport", "ModelStatistics", "PrintReport",
            "Profiler", "ProgressBar", "TerminateOnNaN"}


@pytest.fixture
def small(tiny_opts) -> dict:
    """4 iterations per epoch, a test pass at each epoch's end only, no plots: a run takes well under a second."""
    tiny_opts["epoch_iter"].update(num_train_sample_per_epoch=256, num_test_sample=128, num_epochs=3,
                                   num_train_iteration_per_test=0)
    tiny_opts["output"]["plots"] = []
    return tiny_opts


def run(opts: dict, tmp_path, name: str = "opts.json") -> int:
    return cli.main(["run", "--parameters-json", write_opts(tmp_path, opts, name)])


def folder_of(opts: dict) -> str:
    return opts["output"]["checkpoint_folder"]


def weights(path: str) -> dict:
    return checkpoint.load(path)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def results(opts: dict) -> dict:
    with open(os.path.join(folder_of(opts), "results.json")) as f:
        return json.load(f)


def stop_epoch(early: EarlyStopping, values: list[float], monitor: str = "test_loss", exp: AnyExp | None = None):
    """The epoch after which `early` asks to stop on `values` (None: it never does), driven by hand on
    playground.testing's experiment."""
    exp = exp or tiny_experiment(handlers=[early])
    early.on_train_begin(exp)
    for epoch, value in enumerate(values, 1):
        exp.state.epoch = epoch
        exp.record("test", {monitor: value})
        with torch.no_grad():
            exp.network.weight.fill_(epoch)
        exp.fire(Event.EPOCH_END)
        if exp.state.stop_requested:
            return epoch
    return None


# ---------------------------------------------------------------------------------------------- EarlyStopping


@pytest.mark.parametrize("kargs, monitor, values, expected", [
    ({"mode": "min"}, "test_loss", [3, 2, 2.5, 1], 3),                            # patience 0: first non-improvement
    ({"mode": "min", "patience": 2}, "test_loss", [3, 2, 2.5, 1, 1.5, 1.2], 6),   # 1 resets the count
    ({"mode": "max", "patience": 2}, "test_accuracy", [0.1, 0.5, 0.4, 0.45, 0.3], 4),
    ({"mode": "auto", "patience": 1}, "test_accuracy", [0.1, 0.5, 0.4], 3),      # auto: accuracy is maximised
    ({"mode": "auto", "patience": 1}, "test_loss", [0.1, 0.5, 0.4], 2),          # auto: loss is minimised
    ({"mode": "min", "patience": 2, "min_delta": 0.1}, "test_loss", [1.0, 0.95, 0.9, 0.85], 3),
    ({"mode": "min", "patience": 2, "baseline": 0.5}, "test_loss", [0.8, 0.7, 0.6], 2),
    ({"mode": "min", "patience": 2, "baseline": 0.5}, "test_loss", [0.8, 0.4, 0.45, 0.3, 0.35, 0.36], 6),
    ({"mode": "min", "patience": 2}, "test_loss", [float("nan"), 2, float("nan"), 2.5], 4),  # NaN never improves
    ({"mode": "min", "patience": 3}, "test_loss", [3, 2, 1], None),
])
def test_early_stopping_stops_at_the_right_epoch(kargs, monitor, values, expected):
    assert stop_epoch(EarlyStopping(monitor, **kargs), values, monitor) == expected


def test_early_stopping_says_why_and_restores_the_best_weights():
    early = EarlyStopping("test_loss", patience=2, restore_best=True)
    exp = tiny_experiment(handlers=[early])
    assert stop_epoch(early, [3, 1, 2, 2.5], exp=exp) == 4
    reason = exp.state.stop_requested.reason
    assert "test_loss did not improve" in reason and "best 1 after epoch 2" in reason
    assert exp.network.weight.eq(4).all()
    early.on_train_end(exp)
    assert exp.network.weight.eq(2).all() and early.best_epoch == 2 and early.stopped_epoch == 4


def test_early_stopping_takes_keras_restore_best_weights_and_watches_test_loss_by_default_in_opts_runs():
    early = EarlyStopping(patience=2, restore_best_weights=True)
    exp = tiny_experiment(handlers=[early])  # records test_loss, as an opts run does
    assert stop_epoch(early, [3, 1, 2, 2.5], exp=exp) == 4
    assert early.monitor.name == "test_loss" and "test_loss did not improve" in exp.state.stop_requested.reason
    early.on_train_end(exp)
    assert exp.network.weight.eq(2).all() and early.best_epoch == 2
    with pytest.raises(UsageError, match="restore_best and restore_best_weights .* disagree"):
        EarlyStopping(restore_best=True, restore_best_weights=False)


def test_early_stopping_rejects_bad_kargs():
    with pytest.raises(UsageError, match="mode = 'minimum'"):
        EarlyStopping(mode="minimum")
    with pytest.raises(UsageError, match="patience must be a non-negative integer"):
        EarlyStopping(patience=-1)


def test_early_stopping_names_the_metrics_when_the_monitor_is_missing():
    exp = tiny_experiment()
    exp.record("test", {"test_loss": 1.0})
    with pytest.raises(PlaygroundError, match="monitor 'test_los' is not a recorded metric; recorded: test_loss"):
        EarlyStopping("test_los").on_epoch_end(exp)


def test_early_stopping_from_opts_leaves_the_best_weights_in_model_final(small, tmp_path):
    small["epoch_iter"]["num_epochs"] = 6
    small["output"]["handlers"] = [handler("ScriptedMetric", values=[3, 1, 2, 2.5, 0, 0]),
                                   handler("EarlyStopping", monitor="scripted", patience=2, restore_best=True)]
    small["output"]["keep_checkpoints"] = 0  # keep them all, to compare
    assert run(small, tmp_path) == 0
    out = results(small)
    assert out["epochs_completed"] == 4 and out["stop_reason"].startswith("EarlyStopping: scripted did not improve")
    folder = folder_of(small)
    final = weights(os.path.join(folder, "model_final.pt"))
    assert same_weights(final, weights(os.path.join(folder, "model_checkpoint_epoch2.pt")))
    assert not same_weights(final, weights(os.path.join(folder, "model_checkpoint_epoch4.pt")))


# ---------------------------------------------------------------------------------------------- BestCheckpoint


@pytest.mark.parametrize("mode, best_epoch", [("min", 4), ("max", 5)])
def test_best_checkpoint_follows_the_best_epoch_and_prunes(small, tmp_path, mode, best_epoch):
    small["epoch_iter"]["num_epochs"] = 5
    small["output"]["handlers"] = [handler("ScriptedMetric", values=[3, 1, 2, 0.5, 4]),
                                   handler("BestCheckpoint", monitor="scripted", mode=mode)]
    small["output"]["keep_checkpoints"] = 2
    assert run(small, tmp_path) == 0
    folder = folder_of(small)
    best = checkpoint.load(os.path.join(folder, "model_best.pt"))  # verifies its own .sha256 too
    assert best["state"]["epoch"] == best_epoch
    assert same_weights(best["model"], weights(os.path.join(folder, f"model_checkpoint_epoch{best_epoch}.pt")))
    regular = sorted(f for f in os.listdir(folder) if f.startswith("model_checkpoint") and f.endswith(".pt"))
    assert regular == ["model_checkpoint_epoch4.pt", "model_checkpoint_epoch5.pt"]
    assert not [f for f in os.listdir(folder) if f.startswith("model_checkpoint_epoch1")]  # .sha256 too
    assert [os.path.basename(p) for p in results(small)["checkpoints"]] == [*regular, "model_final.pt"]


def test_best_checkpoint_on_test_requests_a_checkpoint_mid_epoch(small, tmp_path):
    small["epoch_iter"]["num_train_iteration_per_test"] = 2  # test passes at steps 2, 4, 6, 8, ...
    small["output"]["handlers"] = [handler("ScriptedMetric", on="test", values=[3, 2, 0.5, 1, 4, 5, 6]),
                                   handler("BestCheckpoint", monitor="scripted", on="test")]
    small["output"]["keep_checkpoints"] = 0  # keep them all, to compare
    assert run(small, tmp_path) == 0
    folder = folder_of(small)
    best = checkpoint.load(os.path.join(folder, "model_best.pt"))
    assert best["state"]["global_step"] == 6 and best["state"]["iteration"] == 2  # the 3rd test pass
    assert same_weights(best["model"], weights(os.path.join(folder, "model_checkpoint_epoch1_iter2.pt")))
    assert not os.path.exists(os.path.join(folder, "model_checkpoint_epoch2_iter2.pt"))  # pass 5 did not improve


# ---------------------------------------------------------------------------------------------- TerminateOnNaN


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(small, tmp_path, capsys):
    small["output"]["checkpoint_every_iters"] = 2
    small["output"]["handlers"] = [handler("PoisonAt", step=6), handler("TerminateOnNaN")]
    assert run(small, tmp_path) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("playground: error: TerminateOnNaN: the loss is nan at epoch 1 iteration 2 "
                            "(training step 6)") and "model_checkpoint_epoch1.pt" in error
    folder = folder_of(small)
    files = set(os.listdir(folder))
    assert "model_checkpoint_epoch1.pt" in files and "model_final.pt" not in files
    assert "model_checkpoint_epoch1_iter2.pt" not in files  # step 6's checkpoint would have held NaN weights
    path, saved = checkpoint.newest_intact(folder)
    assert path.endswith("model_checkpoint_epoch1.pt") and all(t.isfinite().all() for t in saved["model"].values())
    with open(os.path.join(folder, "status.json")) as f:
        assert json.load(f)["status"] == "failed"


def test_nan_weights_after_a_finite_loss_never_reach_a_checkpoint(small, tmp_path):
    small["output"]["checkpoint_every_iters"] = 2
    small["output"]["handlers"] = [handler("PoisonAt", step=2, after=True), handler("TerminateOnNaN")]
    opts, components = prepare(small)
    os.makedirs(folder_of(opts))
    with pytest.raises(NonFiniteLossError, match="the weights are not finite at epoch 0 iteration 2"):
        runner.run(opts, components, folder_of(opts))
    assert not [f for f in os.listdir(folder_of(small)) if f.endswith(".pt")]
    assert NonFiniteLossError.exit_code == 1 and isinstance(TerminateOnNaN(), EventHandler)


# ---------------------------------------------------------------------------------------------- ProgressBar


def _env() -> dict:
    """For a subprocess computing what this process computes: CPU float sums depend on the number of threads."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "OMP_NUM_THREADS": str(torch.get_num_threads())}


def test_progress_bar_is_drawn_on_a_terminal(small, tmp_path):
    small["epoch_iter"]["num_epochs"] = 2
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "playground", "run", "--parameters-json",
                                write_opts(tmp_path, small)], cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL,
                               stdout=secondary, stderr=secondary)
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    assert process.wait(timeout=120) == 0, screen.decode(errors="replace")[-2000:]
    text = screen.decode(errors="replace")
    assert "epoch 1/2" in text and "epoch 2/2" in text and "4/4 [" in text and ("it/s" in text or "s/it" in text)
    assert "train_loss=" in text and "samples_per_sec=" in text
    assert "epoch 1/2 iteration" not in text  # no plain progress lines while the bar is drawn


def test_progress_bar_is_absent_off_a_terminal_with_plain_lines_instead(small, tmp_path, capsys, caplog):
    small["output"]["handlers"] = [handler("ProgressBar", log_every_s=0)]
    assert run(small, tmp_path) == 0
    assert "%|" not in capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.name == "playground.handlers.progress"]
    assert "epoch 1/3 iteration 1/4 (25%) train_loss=" in lines[0] and "epoch ETA" in lines[0]
    assert len(lines) == 12  # every iteration, as log_every_s is 0
    caplog.clear()
    small["output"].update(record_every_iters=3, checkpoint_folder=str(tmp_path / "every3"))
    assert run(small, tmp_path, "every3.json") == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "playground.handlers.progress"]
    recorded = [(1, 3), (1, 4), (2, 2), (2, 4), (3, 1), (3, 4)]  # global steps 3, 6, 9 and each epoch's last
    assert [line.split(" (")[0] for line in lines] == [f"epoch {e}/3 iteration {i}/4" for e, i in recorded]


def test_progress_bar_draws_through_tqdm_auto_so_a_notebook_gets_a_widget(small, tmp_path, monkeypatch):
    import tqdm.auto

    drawn = []

    class Recording(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            drawn.append(kwargs.get("desc"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)  # what tqdm.auto picks in a Jupyter kernel
    small["output"]["handlers"] = [handler("ProgressBar", bar=True)]
    assert run(small, tmp_path) == 0
    assert drawn == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_progress_bar_is_on_by_default_unless_listed_or_switched_off(small):
    def bars(opts: dict) -> list:
        return [entry["kargs"] for entry, cls in prepare(opts)[1].handlers if issubclass(cls, ProgressBar)]

    assert bars(small) == [{}]
    small["output"]["handlers"] = [handler("ProgressBar", log_every_s=5)]
    assert bars(small) == [{"log_every_s": 5}]
    small["output"]["handlers"], small["output"]["progress_bar"] = [], False
    assert bars(small) == []


# ---------------------------------------------------------------------------------------------- reports, statistics


def test_print_report_prints_a_row_per_epoch_and_log_report_every_row(small, tmp_path, capsys):
    small["output"]["handlers"] = [handler("LRMonitor"), handler("PrintReport", entries=["epoch", "test_loss", "lr_0"]),
                                   handler("LogReport")]
    assert run(small, tmp_path) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line[:1].isdigit() or
             line.startswith("epoch ")]
    assert table[0] == ["epoch", "test_loss", "lr_0"] and [row[0] for row in table[1:]] == ["1", "2", "3"]
    out = results(small)
    assert [float(row[1]) for row in table[1:]] == pytest.approx(out["metrics"]["test_loss"]["values"], rel=1e-5)
    with open(os.path.join(folder_of(small), "log.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["iteration"] for r in rows if r["kind"] == "train"] == out["metrics"]["train_loss"]["iterations"]
    assert [r["test_loss"] for r in rows if r["kind"] == "test"] == out["metrics"]["test_loss"]["values"]
    rate = small["model_param"]["base_learning_rate"]
    assert all(r["lr_0"] == r["learning_rate"] == rate for r in rows if r["kind"] == "train")


def test_model_statistics_graph_dump_and_profiler_write_into_the_run_folder(small, tmp_path, caplog):
    small["epoch_iter"]["num_epochs"] = 1
    small["output"]["handlers"] = [handler("ModelStatistics"), handler("DumpGraph"),
                                   handler("Profiler", skip_first=1, num_iterations=2)]
    assert run(small, tmp_path) == 0
    folder = folder_of(small)
    with open(os.path.join(folder, "model_statistics.json")) as f:
        stats = json.load(f)
    assert stats["parameters"] == 32 * 64 + 64 + 64 * 10 + 10 == stats["trainable_parameters"]
    assert stats["flops_per_sample"] == 2 * (32 * 64 + 64 * 10)  # a multiply-add is 2 FLOPs
    assert [(layer["name"], layer["output_shape"], layer["flops_per_sample"]) for layer in stats["layers"]] == [
        ("0", [64], 2 * 32 * 64), ("1", [64], 0), ("2", [10], 2 * 64 * 10)]
    assert "Linear" in open(os.path.join(folder, "model_statistics.txt")).read()
    assert "aten.linear" in open(os.path.join(folder, "graph_export.txt")).read()
    assert "call_module" in open(os.path.join(folder, "graph_fx.txt")).read()
    assert not os.path.exists(os.path.join(folder, "graph.onnx"))  # onnx is not installed here
    assert any("onnx is not installed" in r.getMessage() for r in caplog.records)
    with open(os.path.join(folder, "profile_steps1-2.json")) as f:
        trace = json.load(f)
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {"iteration 1", "iteration 2"} <= names and "iteration 3" not in names


def test_dump_graph_warns_about_an_untraceable_network_and_training_goes_on(caplog, tmp_path):
    from playground import Estimator
    from playground.handlers import DumpGraph

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.linear(x) if x.sum() > 0 else -self.linear(x)  # data-dependent: no symbolic trace

    net = Branchy()
    data = (torch.randn(16, 4), torch.randint(3, (16,)))
    Estimator(net, handlers=[DumpGraph(formats=["fx"])], progress_bar=False, device="cpu").fit(
        data, epochs=1, batch_size=8, checkpoint_folder=str(tmp_path / "run"))
    assert any("DumpGraph: no fx graph: TraceError" in r.getMessage() for r in caplog.records)


def test_lr_monitor_records_every_param_group(tmp_path):
    from playground import Estimator
    from playground.handlers import LRMonitor

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD([{"params": net[0].parameters(), "lr": 0.1, "name": "body"},
                                 {"params": net[2].parameters(), "lr": 0.01, "name": "head"}])
    estimator = Estimator(net, handlers=[LRMonitor()], optimizer=optimizer, device="cpu", progress_bar=False,
                          lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    out = estimator.fit((torch.randn(24, 4), torch.randint(3, (24,))), epochs=1, batch_size=8,
                        checkpoint_folder=str(tmp_path / "run"), opts={"output.record_every_iters": 1})
    assert out["metrics"]["lr_body"]["values"] == pytest.approx([0.1, 0.05, 0.025])  # the rate each step used
    assert out["metrics"]["lr_head"]["values"] == pytest.approx([0.01, 0.005, 0.0025])
    assert out["metrics"]["lr_body"]["values"] == out["metrics"]["learning_rate"]["values"]


# ---------------------------------------------------------------------------------------------- kill and resume


def test_handler_state_survives_a_kill_and_resume(small, tmp_path, monkeypatch):
    """EarlyStopping must stop after epoch 5 (best after epoch 2, min_delta 0.2, patience 3). Killed during epoch
    4 and resumed without its state it would stop after epoch 7: best, wait and the best weights must survive."""
    monkeypatch.delenv("KILL_AT_STEP", raising=False)
    small["epoch_iter"]["num_epochs"] = 8
    small["output"]["checkpoint_every_iters"] = 2
    small["output"]["handlers"] = [
        handler("ScriptedMetric", values=[5, 4, 4.5, 3.9, 4.2, 4.3, 4.4, 1.0]),
        handler("EarlyStopping", monitor="scripted", min_delta=0.2, patience=3, restore_best=True),
        handler("BestCheckpoint", monitor="scripted"), handler("LogReport"),
        handler("KillAt")]
    small["output"]["checkpoint_folder"] = str(tmp_path / "uninterrupted")
    assert run(small, tmp_path, "a.json") == 0

    small["output"]["checkpoint_folder"] = str(tmp_path / "resumed")
    killed = subprocess.run([sys.executable, "-m", "playground", "run", "--parameters-json",
                             write_opts(tmp_path, small, "b.json")], cwd=ROOT, env={**_env(), "KILL_AT_STEP": "14"},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = set(os.listdir(folder_of(small)))
    assert "model_checkpoint_epoch3_iter2.pt" in left and "model_final.pt" not in left
    assert run(small, tmp_path, "b.json") == 0

    a, b = (os.path.join(tmp_path, name) for name in ("uninterrupted", "resumed"))
    ra, rb = (json.load(open(os.path.join(f, "results.json"))) for f in (a, b))
    assert ra["epochs_completed"] == rb["epochs_completed"] == 5
    assert ra["stop_reason"] == rb["stop_reason"] and "best 4 after epoch 2" in ra["stop_reason"]
    assert same_weights(weights(os.path.join(a, "model_final.pt")), weights(os.path.join(b, "model_final.pt")))
    assert same_weights(weights(os.path.join(a, "model_best.pt")), weights(os.path.join(b, "model_best.pt")))
    assert checkpoint.load(os.path.join(b, "model_best.pt"))["state"]["epoch"] == 4
    assert sorted(f for f in os.listdir(a) if f.endswith(".pt")) == sorted(f for f in os.listdir(b)
                                                                         if f.endswith(".pt"))
    timing = ("secs_per_train", "samples_per_sec")
    logs = [[{k: v for k, v in json.loads(line).items() if k not in timing}
             for line in open(os.path.join(f, "log.jsonl"))] for f in (a, b)]
    assert logs[0] == logs[1] and len(logs[0]) == 5 * 4 + 5  # every row once: 4 train rows and 1 test row per epoch


def test_handlers_reused_by_a_second_fit_start_afresh(tmp_path):
    """A new run (not a resumed one) resets a handler instance's state, as a second Estimator.fit needs."""
    from playground import Estimator

    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(3, (32,))
    early, log = EarlyStopping("train_loss", mode="max", patience=1), LogReport()  # max: stops after epoch 2
    estimator = Estimator(torch.nn.Linear(4, 3), handlers=[early, log], device="cpu", progress_bar=False)
    for run_ in ("first", "second"):
        out = estimator.fit((x, y), epochs=5, batch_size=8, checkpoint_folder=str(tmp_path / run_),
                            opts={"output.record_every_iters": 1})
        assert out["epochs_completed"] == early.stopped_epoch == 2  # each run stops by its own count
        with open(tmp_path / run_ / "log.jsonl") as f:
            assert len(f.readlines()) == 4 * out["epochs_completed"]  # every train row, no test set


def test_a_monitor_of_a_column_a_listed_handler_adds_is_not_taken_for_a_typo(tmp_path, caplog):
    from playground.handlers import EMA

    for handlers, warned in (([EMA()], False), ([], True)):
        stopping = EarlyStopping(monitor="ema_test_loss")
        exp = tiny_experiment(tmp_path, [*handlers, stopping])
        caplog.clear()
        stopping.on_train_begin(exp)
        assert ("monitor 'ema_test_loss' is not among the metrics" in caplog.text) is warned
