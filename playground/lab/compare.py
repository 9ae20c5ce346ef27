"""One metric across experiments: the table and the plot that `playground runs compare` and a sweep's closing
summary print. Its own module so that commands.py and sweep.py both use it without importing each other."""
from __future__ import annotations

from typing import Any

from playground.lab.repository import Experiment, ExperimentRepository, NotFound


def table(frame: Any) -> str:
    """A DataFrame as plain text, numbers to 4 significant digits, missing values blank."""
    if frame.empty:
        return ""
    return frame.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")


def metric_artifact(exp: Experiment, metric: str) -> str:
    """The CSV of `exp` holding column `metric`."""
    for name in ("test.csv", "train.csv"):
        if name in exp and metric in exp[name].columns:
            return name
    raise NotFound(f"{exp.tag} records no metric {metric!r} in test.csv or train.csv")


def compare(repo: ExperimentRepository, experiments: list[Experiment], metric: str, png: str,
            labels: dict[str, str] | None = None) -> tuple[Any, str]:
    """(table: per experiment the final, min and max of `metric`; the PNG path of its curves, one per run)."""
    import pandas as pd

    labels = labels or {e.tag: e.tag for e in experiments}
    artifact = metric_artifact(experiments[0], metric)
    melded = repo.meld_csv({e.tag: labels[e.tag] for e in experiments}, artifact, metric)
    rows = []
    for exp in experiments:
        series = melded[labels[exp.tag]].dropna()
        rows.append({"tag": exp.tag, **({"label": labels[exp.tag]} if labels[exp.tag] != exp.tag else {}),
                     "status": exp.status, "epochs": series.index.max() if len(series) else None,
                     f"final {metric}": series.iloc[-1] if len(series) else None,
                     "min": series.min(), "max": series.max()})
    plot(melded, metric, png)
    return pd.DataFrame(rows), png


def plot(melded: Any, metric: str, png: str) -> None:
    from playground.plots import line_chart

    lines = [(str(column), (values := melded[column].dropna()).index, values.values) for column in melded.columns]
    line_chart(lines, png, xlabel=melded.index.name or "epoch", ylabel=metric,
               title=f"{metric} across {len(melded.columns)} experiment(s)")
