"""What a search optimises: recorded metrics, or the measured costs of a trial, read from its experiment folder.

    {"metric": "test_accuracy_top1", "mode": "max", "reduce": "best"}   a metric of results.json: its last value or
                                                                         its best one ("reduce")
    params, flops       ModelStatistics' parameter count and forward FLOPs per sample (the search adds the handler)
    samples_per_sec     the run's mean training throughput (results.json's mean_samples_per_sec)
    train_secs          seconds of training (batch fetch and steps), from the recorded secs_per_train (not startup,
                        test passes or checkpoints)
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from playground import opts as opts_lib

COSTS = ("params", "flops", "samples_per_sec", "train_secs")
STATISTICS = ("params", "flops")  # read from model_statistics.json
FIELDS = ("metric", "mode", "reduce")


@dataclass(frozen=True)
class Objective:
    """One value each trial is scored by; `mode` says which way is better."""

    metric: str
    mode: str
    reduce: str = "last"

    @property
    def direction(self) -> str:
        return "minimize" if self.mode == "min" else "maximize"

    @property
    def is_cost(self) -> bool:
        return self.metric in COSTS

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def parse(raw: Any, base: dict) -> tuple[list[Objective], list[str]]:
    """The `search.objectives` list as Objectives, and every problem with it (naming the entry and the fix)."""
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        return [], ['search.objectives: expected a list such as [{"metric": "test_accuracy_top1", "mode": "max"}]']
    known = sorted({*opts_lib.recorded_metrics(base), *COSTS})
    found, problems = [], []
    for i, entry in enumerate(raw):
        where = f"search.objectives[{i}]"
        if not isinstance(entry, dict):
            problems.append(f'{where}: expected {{"metric": NAME, "mode": "min" or "max"}}, got {json.dumps(entry)}')
            continue
        problems += [f"{where}.{k}: unknown field; an objective has {', '.join(FIELDS)}" for k in entry
                     if k not in FIELDS]
        metric, mode, reduce = entry.get("metric"), entry.get("mode"), entry.get("reduce", "last")
        if metric not in known:
            problems.append(f"{where}.metric: {json.dumps(metric)} is recorded by no meter and is no measured cost; "
                            f"known: {', '.join(known)}")
        if mode not in ("min", "max"):
            problems.append(f'{where}.mode: expected "min" or "max", got {json.dumps(mode)}')
        if reduce not in ("last", "best"):
            problems.append(f'{where}.reduce: expected "last" (the final value) or "best", got {json.dumps(reduce)}')
        found.append(Objective(metric, mode, reduce))
    names = [o.metric for o in found]
    problems += [f"search.objectives: {n!r} is given twice; keep one" for n in sorted({n for n in names
                                                                                       if names.count(n) > 1})]
    return found, problems


def values(folder: str, objectives: list[Objective]) -> list[float]:
    """Each objective's value for the complete experiment in `folder`; a ValueError saying which is missing."""
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    statistics = None
    scores = []
    for objective in objectives:
        if objective.metric in STATISTICS:
            if statistics is None:
                with open(os.path.join(folder, "model_statistics.json"), encoding="utf-8") as f:
                    statistics = json.load(f)
            value = statistics["parameters" if objective.metric == "params" else "flops_per_sample"]
        elif objective.metric == "samples_per_sec":
            value = results.get("mean_samples_per_sec")
        elif objective.metric == "train_secs":
            value = train_secs(results)
        else:
            series = (results.get("metrics") or {}).get(objective.metric, {}).get("values") or []
            value = (series[-1] if objective.reduce == "last" or not series else
                     (min if objective.mode == "min" else max)((v for v in series if math.isfinite(v)),
                                                                default=math.nan))
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"the run recorded no finite {objective.metric} (got {json.dumps(value)})")
        scores.append(float(value))
    return scores


def train_secs(results: dict) -> float | None:
    """Seconds of training: each recorded secs_per_train times the iterations since the record before it."""
    series = (results.get("metrics") or {}).get("secs_per_train")
    if not series:
        return None
    total, previous = 0.0, 0
    for secs, iteration in zip(series["values"], series["iterations"]):
        total += secs * (iteration - previous)
        previous = iteration
    return total
