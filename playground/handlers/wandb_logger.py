"""WandbLogger: the run's params, metrics, tags and results in Weights & Biases (see tracker.py)."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from playground.errors import UsageError
from playground.handlers.tracker import TrackerLogger, require

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

MODES = ("online", "offline", "disabled")


def offline_steps(files: list[str]) -> dict[str, int]:
    """The last step of each metric in earlier offline attempts' .wandb files, read by wandb's own inspector."""
    held: dict[str, int] = {}
    for path in files:
        out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", path], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            record = json.loads(line)
            if record.get("type") == "history":
                step = int(record["history"].get("step", {}).get("num", 0))
                for key in record["history"].get("item", {}):
                    held[key] = max(held.get(key, -1), step)
    return held


class WandbLogger(TrackerLogger):
    """Logs to W&B project `project` in `mode` online, offline (upload later with `wandb sync`) or disabled. A
    resumed experiment continues the same W&B run id. W&B's own settings (WANDB_DIR, WANDB_ENTITY, ...) apply."""

    def __init__(self, project: str = "playground", mode: str = "online") -> None:
        super().__init__()
        if mode not in MODES:
            raise UsageError(f"WandbLogger: mode = {mode!r}; give one of {', '.join(MODES)}")
        require("wandb", "WandbLogger")
        self.project, self.mode = project, mode
        self.run: Any = None

    def open_run(self, exp: AnyExp, params: dict[str, Any], tags: dict[str, str]) -> dict[str, int]:
        import wandb

        resumed = self.run_id is not None
        config = {**params, **{f"source.{k}": v for k, v in tags.items()}}
        self.run = wandb.init(project=self.project, id=self.run_id, resume="allow", mode=self.mode,
                              name=tags.get("playground.tag"), config=config,
                              tags=[tags["playground.tag"]] if "playground.tag" in tags else None)
        self.run_id = self.run.id
        if not resumed or self.mode == "disabled":
            return {}
        if self.mode == "online":  # the server drops steps below the resumed run's
            return {"*": self.run.step - 1}
        here = os.path.realpath(os.path.dirname(self.run.dir))
        earlier = glob.glob(os.path.join(os.path.dirname(here), f"offline-run-*-{self.run_id}", "*.wandb"))
        return offline_steps(sorted(p for p in earlier if os.path.realpath(os.path.dirname(p)) != here))

    def send_metrics(self, metrics: list[tuple[str, float, int]]) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for name, value, step in metrics:
            by_step.setdefault(step, {})[name] = value
        for step in sorted(by_step):
            self.run.log(by_step[step], step=step)

    def send_files(self, folder: str) -> None:
        """Into the run's files folder, which W&B uploads (offline: at `wandb sync`)."""
        for name in os.listdir(folder):
            shutil.copy(os.path.join(folder, name), os.path.join(self.run.dir, name))

    def close_run(self) -> None:
        self.run.finish()
