"""MLflowLogger and WandbLogger: a real tiny run's params, metrics, tags and results read back with each tracker's own
tools (MlflowClient on a local SQLite store; W&B offline files through `wandb leet inspect`), and a run SIGKILLed
mid-epoch and resumed continuing the same tracker run with every step once."""
from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_opts
from lab_helpers import run as run_cli
from playground import checkpoint, cli
from playground.handlers import MLflowLogger
from playground.opts import flatten
from playground.testing import tiny_experiment



def csv_series(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric of train.csv and test.csv as (global step, value) pairs, as the Recorder wrote them."""
    series: dict[str, list[tuple[int, float]]] = {}
    for name in ("train.csv", "test.csv"):
        with open(folder / name, newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key not in ("epoch", "iteration", "date") and value:
                        series.setdefault(key, []).append((int(row["iteration"]), float(value)))
    return series


def same_series(tracked: dict, recorded: dict) -> bool:
    """The same metrics at the same steps, with the same values but for the measured times (a resumed run
    measures the steps it repeats again; the tracker keeps the first measurement)."""
    def steps(series: dict) -> dict:
        return {name: [step for step, _ in pairs] for name, pairs in series.items()}

    def untimed(series: dict) -> dict:
        return {name: pairs for name, pairs in series.items() if name not in ("secs_per_train", "samples_per_sec")}

    return steps(tracked) == steps(recorded) and untimed(tracked) == untimed(recorded)


@pytest.fixture
def mlflow_store(tmp_path):
    """A client of the local store the tests log to, with their experiment, its artifacts in tmp_path (MLflow's
    default is ./mlruns)."""
    tracking = pytest.importorskip("mlflow.tracking")
    client = tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    client.create_experiment("tiny", str(tmp_path / "artifacts"))
    return client


def mlflow_opts(tiny_opts: dict, tmp_path: Path, *extra: dict) -> dict:
    tiny_opts["output"]["handlers"] = [{"handler_py": "MLflowLogger", "kargs": {
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment_name": "tiny"}}, *extra]
    return tiny_opts


def the_run(client):
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def mlflow_series(client, run) -> dict[str, list[tuple[int, float]]]:
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics}


def test_mlflow_logger_records_params_metrics_tags_and_results(tiny_opts, tmp_path, mlflow_store):
    assert cli.main(["run", "--parameters-json", write_opts(tmp_path, mlflow_opts(tiny_opts, tmp_path))]) == 0
    folder = Path(tiny_opts["output"]["checkpoint_folder"])
    client, run = the_run(mlflow_store)
    assert run.info.status == "FINISHED"
    opts = json.loads((folder / "opts.json").read_text())
    assert run.data.params["epoch_iter.num_epochs"] == "2"
    assert run.data.params["output.metrics.0.name"] == opts["output"]["metrics"][0]["name"]
    assert len(run.data.params) == len(flatten(opts))
    assert mlflow_series(client, run) == csv_series(folder)
    source, status = (json.loads((folder / name).read_text()) for name in ("source.json", "status.json"))
    assert source["commit"] and run.data.tags["mlflow.source.git.commit"] == source["commit"]
    assert run.data.tags["playground.tag"] == status["tag"] == run.info.run_name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"results.json"} | {p.name for p in folder.glob("plot*.png")} and len(artifacts) == 3
    results = json.loads(Path(client.download_artifacts(run.info.run_id, "results.json", str(tmp_path))).read_text())
    assert results == json.loads((folder / "results.json").read_text())


def test_mlflow_params_past_the_length_and_batch_limits(tmp_path, mlflow_store):
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    many = MAX_PARAMS_TAGS_PER_BATCH * 2 + 10
    notes = {f"k{i:03d}": "x" * (MAX_PARAM_VAL_LENGTH + 100) if i == 0 else i for i in range(many)}
    logger = MLflowLogger(f"sqlite:///{tmp_path}/mlflow.db", "tiny")
    tiny_experiment(tmp_path / "run", [logger], opts={"notes": notes}).run()
    client, run = the_run(mlflow_store)
    assert len(run.data.params) == many
    assert run.data.params["notes.k000"] == "x" * (MAX_PARAM_VAL_LENGTH - 3) + "..."
    assert run.data.params[f"notes.k{many - 1}"] == str(many - 1)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(1, 9))


def test_mlflow_resume_after_sigkill_continues_the_same_run_with_each_step_once(tiny_opts, tmp_path, mlflow_store):
    kill = {"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 14, "marker": str(tmp_path / "killed")}}
    opts_path = write_opts(tmp_path, mlflow_opts(tiny_opts, tmp_path, kill))
    first = run_cli("run", "--parameters-json", opts_path)
    assert first.returncode == -9, first.stderr
    client, run = the_run(mlflow_store)
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == 14  # past epoch 1's 10
    folder = Path(tiny_opts["output"]["checkpoint_folder"])
    saved = checkpoint.load(str(folder / "model_checkpoint_epoch1.pt"))
    assert {"name": "MLflowLogger", "state": {"run_id": run.info.run_id}} in saved["handlers"]

    second = run_cli("run", "--parameters-json", opts_path)
    assert second.returncode == 0, second.stderr
    client, resumed = the_run(mlflow_store)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert same_series(mlflow_series(client, resumed), csv_series(folder))  # every step once
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(1, 21))


@pytest.mark.parametrize("entry, package, problem", [
    ({"handler_py": "MLflowLogger", "kargs": {}}, "mlflow", "MLflowLogger needs the mlflow package"),
    ({"handler_py": "WandbLogger", "kargs": {}}, "wandb", "WandbLogger needs the wandb package"),
    ({"handler_py": "WandbLogger", "kargs": {"mode": "offlien"}}, "", "mode = 'offlien'; give one of online"),
])
def test_a_missing_tracker_package_or_bad_mode_is_a_usage_error_at_dry_run(tiny_opts, tmp_path, monkeypatch, capsys,
                                                                           entry, package, problem):
    if package:
        monkeypatch.setitem(sys.modules, package, None)  # what find_spec reports for a package not installed
    tiny_opts["output"]["handlers"] = [entry]
    assert cli.main(["run", "--dry-run", "--parameters-json", write_opts(tmp_path, tiny_opts)]) == 2
    err = capsys.readouterr().err
    assert problem in err and (not package or f"pip install 'torch-playground[{package}]'" in err)
    assert not os.path.exists(tiny_opts["output"]["checkpoint_folder"])


# ---------------------------------------------------------------------------------------------- W&B, offline


def wandb_records(tmp_path: Path) -> list[tuple[str, dict]]:
    """(run folder, record) for every record of every offline run under WANDB_DIR, attempts in order, read by
    wandb's own inspector."""
    found = []
    for path in sorted(glob.glob(str(tmp_path / "wandb" / "wandb" / "offline-run-*" / "*.wandb"))):
        out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", path], capture_output=True,
                             text=True, check=True).stdout
        found += [(os.path.dirname(path), json.loads(line)) for line in out.splitlines()]
    return found


def wandb_series(records: list[tuple[str, dict]]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for _, record in records:
        if record["type"] == "history":
            step = int(record["history"]["step"].get("num", 0))
            for key, value in record["history"]["item"].items():
                if not key.startswith("_"):
                    series.setdefault(key, []).append((step, value))
    return series


@pytest.fixture
def wandb_opts(tiny_opts, tmp_path, monkeypatch) -> dict:
    pytest.importorskip("wandb")
    home = tmp_path / "wandb"
    home.mkdir()
    for name, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(home), "WANDB_SILENT": "true",
                        "WANDB_CONFIG_DIR": str(home), "WANDB_CACHE_DIR": str(home)}.items():
        monkeypatch.setenv(name, value)
    tiny_opts["output"]["handlers"] = [{"handler_py": "WandbLogger", "kargs": {"project": "tiny", "mode": "offline"}}]
    return tiny_opts


def test_wandb_logger_offline_records_config_metrics_tags_and_results(wandb_opts, tmp_path):
    result = run_cli("run", "--parameters-json", write_opts(tmp_path, wandb_opts))
    assert result.returncode == 0, result.stderr
    folder = Path(wandb_opts["output"]["checkpoint_folder"])
    records = wandb_records(tmp_path)
    runs = [record["run"] for _, record in records if record["type"] == "run"]
    status, source = (json.loads((folder / name).read_text()) for name in ("status.json", "source.json"))
    assert len(runs) == 1 and runs[0]["tags"] == [status["tag"]] and runs[0]["display_name"] == status["tag"]
    config = runs[0]["config"]["update"]
    assert config["epoch_iter.num_epochs"] == 2 and config["source.git.commit"] == source["commit"]
    assert wandb_series(records) == csv_series(folder)
    run_folder = records[0][0]
    assert json.loads(Path(run_folder, "files", "results.json").read_text()) == json.loads(
        (folder / "results.json").read_text())
    assert {p.name for p in folder.glob("plot*.png")} <= set(os.listdir(Path(run_folder, "files")))


def test_wandb_resume_after_sigkill_continues_the_same_run_with_each_step_once(wandb_opts, tmp_path):
    """W&B writes its offline file in blocks, and a killed process loses the last one: 100 iterations an epoch,
    killed at step 190, so that the first attempt's file holds steps past the checkpoint of step 100."""
    wandb_opts["epoch_iter"].update(num_train_sample_per_epoch=6400, num_train_iteration_per_test=0)
    wandb_opts["output"]["handlers"].append(
        {"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 190, "marker": str(tmp_path / "killed")}})
    opts_path = write_opts(tmp_path, wandb_opts)
    assert run_cli("run", "--parameters-json", opts_path).returncode == -9
    assert 100 < max(step for step, _ in wandb_series(wandb_records(tmp_path))["train_loss"]) <= 190
    second = run_cli("run", "--parameters-json", opts_path)
    assert second.returncode == 0, second.stderr
    records = wandb_records(tmp_path)
    assert len({folder for folder, _ in records}) == 2  # one offline folder per attempt, `wandb sync` joins them
    assert len({record["run"]["run_id"] for _, record in records if record["type"] == "run"}) == 1
    assert same_series(wandb_series(records), csv_series(Path(wandb_opts["output"]["checkpoint_folder"])))
