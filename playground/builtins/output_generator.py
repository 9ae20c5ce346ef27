"""Output component: the final results dict written as results.json."""
from __future__ import annotations


def gen_output(exp) -> dict:
    """Every metric's series with its epochs and iterations, final values, throughput and checkpoint paths."""
    metrics: dict[str, dict[str, list]] = {}
    for kind in ("train", "test"):
        for row in exp.history[kind]:
            for name, value in row.items():
                if name not in ("epoch", "iteration"):
                    series = metrics.setdefault(name, {"epochs": [], "iterations": [], "values": []})
                    series["epochs"].append(row["epoch"])
                    series["iterations"].append(row["iteration"])
                    series["values"].append(value)
    throughput = metrics.get("samples_per_sec", {}).get("values") or [0.0]
    return {
        "metrics": metrics,
        "final": {name: series["values"][-1] for name, series in metrics.items()},
        "epochs_completed": exp.state.epoch,
        "global_step": exp.state.global_step,
        "total_batch_size": exp.total_batch_size,
        "epoch_iterations": exp.epoch_iterations,
        "mean_samples_per_sec": sum(throughput) / len(throughput),
        "stop_reason": exp.state.stop.reason if exp.state.stop else "",
        "checkpoints": list(exp.checkpoints),
    }
