"""What `playground search` adds per trial, against the same trials run one by one with `playground run`.

    PYTHONPATH=. python benchmarks/search_overhead.py [--trials 20] [--epochs 1]

The MLP search example (examples/search_mlp.json, without its pruner, so every trial runs to its end; `--epochs`
shortens each trial so the overhead is not lost in training time) runs once as `playground search --jobs 1`. Then
each of its trials runs again, alone, as `playground run` with the same opts (base opts plus the trial's sampled
values). For both, the wall time of the command(s) and the trials' own run times (their attempts' start to end in
status.json, i.e. after the process has started and imported torch) give:

    overhead per trial = (wall time - trials' own run times) / trials

The search's cost is its overhead minus that of the plain runs (process start-up, which both pay), plus what the
trials' own runs spend in the search's handler (reporting to the study): in total (search wall - runs wall) /
trials. Goal: at most 0.3 s per trial. The same sums in CPU time (the commands' processes and their children) are
printed too: on a shared machine they vary far less than wall times.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from playground.lab.launcher import point_opts  # noqa: E402
from playground.search import load_study  # noqa: E402
from playground.search.spec import load  # noqa: E402

GOAL_S = 0.3


def run_seconds(folder: str) -> float:
    """The experiment's own run time: its attempts' start to end, from status.json."""
    with open(os.path.join(folder, "status.json"), encoding="utf-8") as f:
        attempts = json.load(f)["attempts"]
    return sum((dt.datetime.fromisoformat(a["ended"]) - dt.datetime.fromisoformat(a["started"])).total_seconds()
               for a in attempts)


def cpu_of_children() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(args: list[str], runs: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the command and its children, its output)."""
    threads = str(len(os.sched_getaffinity(0)))  # what the search's launcher gives each trial (--jobs 1)
    env = {**os.environ, "PYTHONPATH": ROOT, "PLAYGROUND_RUNS": runs, "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads}
    started, cpu = time.perf_counter(), cpu_of_children()
    done = subprocess.run([sys.executable, "-m", "playground", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"playground {' '.join(args[:2])} failed: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - started, cpu_of_children() - cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial (the example has 3)")
    args = parser.parse_args()
    with open(os.path.join(ROOT, "examples", "search_mlp.json"), encoding="utf-8") as f:
        doc = json.load(f)
    doc["base"] = os.path.join(ROOT, "examples", doc["base"])
    doc["opts"]["epoch_iter"].update(num_epochs=args.epochs, num_epochs_per_flow_schedule=args.epochs)
    doc["search"].update(pruner={"type": "none"}, budget={"trials": args.trials})
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "search.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        runs = os.path.join(work, "runs")
        load_at_start = os.getloadavg()[0]
        search_wall, search_cpu, out = timed(["search", "--parameters-json", path, "--jobs", "1"], runs)
        search_id = out.split()[1].rstrip(":")
        trials = load_study(search_id, root=runs).trials
        search_own = sum(run_seconds(os.path.join(runs, t.user_attrs["tag"])) for t in trials)
        spec, alone, runs_wall, runs_cpu, runs_own = load(path), os.path.join(work, "alone"), 0.0, 0.0, 0.0
        for t in trials:
            opts_path = os.path.join(work, f"trial{t.number}.json")
            with open(opts_path, "w", encoding="utf-8") as f:
                json.dump({"opts": point_opts(spec.base, t.user_attrs["sampled"], "search.space.")}, f)
            seconds, cpu, out = timed(["run", "--parameters-json", opts_path], alone)
            runs_wall, runs_cpu = runs_wall + seconds, runs_cpu + cpu
            runs_own += run_seconds(out.split()[2])
    n = len(trials)
    search_over, runs_over = (search_wall - search_own) / n, (runs_wall - runs_own) / n
    extra = (search_wall - runs_wall) / n
    print(f"{n} MLP trials of {args.epochs} epoch(s), --jobs 1; load average {load_at_start:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"playground search: wall {search_wall:.1f} s, trials' own run time {search_own:.1f} s, overhead "
          f"{search_over:.2f} s per trial")
    print(f"playground run x{n}: wall {runs_wall:.1f} s, own run time {runs_own:.1f} s, overhead {runs_over:.2f} s "
          "per run (process start-up)")
    print(f"search / runs wall: {search_wall / runs_wall:.3f}; the search's cost: {extra:.2f} s per trial "
          f"({search_over - runs_over:.2f} s outside the trials, {(search_own - runs_own) / n:.2f} s inside them); "
          f"goal <= {GOAL_S} s: {'met' if extra <= GOAL_S else 'missed'}")
    print(f"CPU time: search {search_cpu:.1f} s, runs {runs_cpu:.1f} s (ratio {search_cpu / runs_cpu:.3f}); the "
          f"search's cost {(search_cpu - runs_cpu) / n:.2f} CPU s per trial")


if __name__ == "__main__":
    main()
