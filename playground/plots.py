"""Plots declared in `opts.output.plots`, drawn from the recorded history into PNG files."""
from __future__ import annotations

import os
import re
from collections.abc import Sequence


def series(history: dict[str, list[dict]], name: str, x: str) -> tuple[list[float], list[float]]:
    """(xs, ys) of metric `name` from whichever history (train or test) records it."""
    key = "epoch" if x == "epochs" else "iteration"
    rows = [row for kind in ("train", "test") for row in history[kind] if name in row]
    return [row[key] for row in rows], [row[name] for row in rows]


def file_name(index: int, plot: dict) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", plot.get("y_title") or "_".join(plot["ys"])).strip("_").lower()
    return f"plot{index}_{slug[:60]}.png"


def write(history: dict[str, list[dict]], plots: list[dict], folder: str) -> list[str]:
    """One PNG per plot entry in `folder`; returns their paths."""
    paths = []
    for index, plot in enumerate(plots):
        x = plot.get("x") or "iterations"
        path = os.path.join(folder, file_name(index, plot))
        line_chart([(name, *series(history, name, x)) for name in plot["ys"]], path, xlabel=plot.get("x_title") or x,
                   ylabel=plot.get("y_title") or ", ".join(plot["ys"]),
                   title=plot.get("title") or plot.get("y_title") or ", ".join(plot["ys"]))
        paths.append(path)
    return paths


def line_chart(lines: list[tuple[str, Sequence[float], Sequence[float]]], path: str, *, xlabel: str, ylabel: str,
               title: str) -> None:
    """A PNG at `path` (written whole, then renamed into place) of (label, xs, ys) lines."""
    import matplotlib  # imported here: it costs start-up time, and only finished runs and `runs compare` draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, xs, ys in lines:
        axes.plot(xs, ys, marker="." if len(xs) < 50 else None, label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path + ".tmp.png", dpi=100)
    os.replace(path + ".tmp.png", path)
    plt.close(figure)
