"""MLflowLogger: the run's params, metrics, tags and results in an MLflow tracking store (see tracker.py)."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from playground.handlers.tracker import TrackerLogger, require

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


def param_key(key: str) -> str:
    """An opts path as MLflow accepts it, which allows no brackets: output.metrics[0].name -> output.metrics.0.name."""
    return key.replace("[", ".").replace("]", "")


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class MLflowLogger(TrackerLogger):
    """Logs to MLflow at `tracking_uri` (e.g. sqlite:///mlflow.db, http://host:5000; "" for MLflow's default)
    under `experiment_name`. A resumed experiment continues the same MLflow run. Opts value strings longer than
    MLflow's limit are cut (opts.json in the run folder has them whole)."""

    def __init__(self, tracking_uri: str = "", experiment_name: str = "playground") -> None:
        super().__init__()
        require("mlflow", "MLflowLogger")
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.client: Any = None

    def open_run(self, exp: AnyExp, params: dict[str, Any], tags: dict[str, str]) -> dict[str, int]:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient
        from mlflow.utils import validation

        self.client = MlflowClient(self.tracking_uri or None)
        held: dict[str, int] = {}
        if self.run_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment_name)
            self.run_id = self.client.create_run(experiment_id, run_name=tags.get("playground.tag")).info.run_id
            logged: dict[str, str] = {}
        else:
            run = self.client.get_run(self.run_id)
            logged = run.data.params
            held = {key: max(m.step for m in self.client.get_metric_history(self.run_id, key))
                    for key in run.data.metrics}
            self.client.update_run(self.run_id, status="RUNNING")
        limit = validation.MAX_PARAM_VAL_LENGTH
        texts = {param_key(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in params.items()}
        texts = {k: v if len(v) <= limit else v[:limit - 3] + "..." for k, v in texts.items()}
        new = [Param(k, v) for k, v in texts.items() if k not in logged]
        tags = {**tags, "mlflow.source.git.commit": tags.get("git.commit", "")}
        for batch in chunks(new, validation.MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=batch)
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items() if v])
        return held

    def send_metrics(self, metrics: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric
        from mlflow.utils import validation

        now = int(time.time() * 1000)
        entries = [Metric(name, value, now, step) for name, value, step in metrics]
        for batch in chunks(entries, validation.MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch)

    def send_files(self, folder: str) -> None:
        self.client.log_artifacts(self.run_id, folder)

    def close_run(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")
