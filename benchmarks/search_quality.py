"""Do the learning samplers pay off on the MLP search? Best test accuracy after 5, 10 and 20 trials by random
search, TPE and grid, over 3 seeds.

    PYTHONPATH=. python benchmarks/search_quality.py [--trials 20] [--seeds 1 2 3] [--epochs 3] [--jobs 1]

Each search is the MLP search example (examples/search_mlp.json) with its algorithm replaced and no pruner (so the
samplers alone are compared, every trial scored by its best test accuracy). The grid needs a finite space: the
learning rate takes 5 log-spaced values and the momentum 3 over the example's ranges, with its 4 hidden sizes (60
points, first key slowest); each seed rotates every value list by the seed, so the grid starts elsewhere. Prints
the mean (min-max) over the seeds of the best accuracy among the first N trials.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from playground.search import load_study  # noqa: E402

GRID = {"model_param.base_learning_rate": [0.0003, 0.001, 0.01, 0.03, 0.3],  # over [0.0003, 0.3], log-spaced
        "model_param.momentum": [0.0, 0.5, 0.9]}


def rotated(values: list, by: int) -> list:
    by %= len(values)
    return values[by:] + values[:by]


def search_doc(example: dict, algorithm: str, seed: int, trials: int, epochs: int) -> dict:
    doc = json.loads(json.dumps(example))
    doc["base"] = os.path.join(ROOT, "examples", doc["base"])
    doc["opts"]["epoch_iter"].update(num_epochs=epochs, num_epochs_per_flow_schedule=epochs)
    search = doc["search"]
    search.update(pruner={"type": "none"}, budget={"trials": trials}, algorithm={"type": algorithm, "seed": seed})
    if algorithm == "tpe":
        search["algorithm"]["n_startup_trials"] = example["search"]["algorithm"].get("n_startup_trials", 10)
    if algorithm == "grid":
        space = search["space"]
        for key, values in GRID.items():
            space[key] = {"choice": rotated(values, seed)}
        hidden = space["model_param.hidden_sizes"]["choice"]
        space["model_param.hidden_sizes"] = {"choice": rotated(hidden, seed)}
    return doc


def best_after(values: list[float | None], counts: list[int]) -> list[float]:
    """The best value among the first n trials, for each n (a trial without a value counts as not found)."""
    return [max([v for v in values[:n] if v is not None], default=float("nan")) for n in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (the example's: 3)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--algorithms", nargs="+", default=["random", "tpe", "grid"])
    args = parser.parse_args()
    counts = sorted({n for n in (5, 10, 20, args.trials) if n <= args.trials})
    with open(os.path.join(ROOT, "examples", "search_mlp.json"), encoding="utf-8") as f:
        example = json.load(f)
    found: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as work:
        for algorithm in args.algorithms:
            for seed in args.seeds:
                path = os.path.join(work, f"{algorithm}{seed}.json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(search_doc(example, algorithm, seed, args.trials, args.epochs), f)
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "playground", "-q", "search", "--parameters-json", path,
                                       "--jobs", str(args.jobs)], capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": ROOT, "PLAYGROUND_RUNS": f"{work}/runs"})
                if done.returncode:
                    sys.exit(f"{algorithm} seed {seed} failed: {done.stderr.strip()[-2000:]}")
                study = load_study(done.stdout.split()[1].rstrip(":"), root=f"{work}/runs")
                values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
                found.setdefault(algorithm, []).append(best_after(values, counts))
                print(f"{algorithm} seed {seed}: {time.perf_counter() - started:.0f} s, best after "
                      + ", ".join(f"{n}: {v:.4f}" for n, v in zip(counts, found[algorithm][-1])), flush=True)
    print(f"\nbest test accuracy (top-1) after N trials, mean (min-max) over seeds {args.seeds}, "
          f"{args.epochs} epoch(s) per trial:")
    print(f"{'':8}" + "".join(f"{f'N = {n}':>24}" for n in counts))
    for algorithm, runs in found.items():
        cells = []
        for column in zip(*runs):
            cells.append(f"{statistics.mean(column):.4f} ({min(column):.4f}-{max(column):.4f})")
        print(f"{algorithm:8}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
