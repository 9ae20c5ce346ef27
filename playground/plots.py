"""Plots declared in `opts.output.plots`, drawn from the recorded history into PNG files."""
from __future__ import annotations

import os
import re


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
    if not plots:
        return []
    import matplotlib  # imported here: it costs start-up time, and only finished runs draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for index, plot in enumerate(plots):
        x = plot.get("x") or "iterations"
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name in plot["ys"]:
            xs, ys = series(history, name, x)
            axes.plot(xs, ys, marker="." if len(xs) < 50 else None, label=name)
        axes.set_xlabel(plot.get("x_title") or x)
        axes.set_ylabel(plot.get("y_title") or ", ".join(plot["ys"]))
        axes.set_title(plot.get("title") or plot.get("y_title") or ", ".join(plot["ys"]))
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        path = os.path.join(folder, file_name(index, plot))
        figure.savefig(path + ".tmp.png", dpi=100)
        os.replace(path + ".tmp.png", path)
        plt.close(figure)
        paths.append(path)
    return paths
