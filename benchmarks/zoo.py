"""Trains every model-zoo example at full size and prints its metric against its target, with the wall time.

Each task subpackage of `zoo/` declares `BENCHMARK = {name: {"opts": "examples/<name>.json", "metric":
"test_accuracy", "target": 0.95, "minutes": 10}}` in its `__init__.py`; optional keys: "goal" ("max": the
metric must reach the target, the default; "min": stay at or under it, e.g. a baseline that must score lower),
"relative_to" (a metric of the same run the target is a fraction of, e.g. the Bayes-optimal accuracy), "report"
(more metrics to print). Each example runs through the real `playground run` command, in a temporary runs root
(`--keep DIR` keeps the runs there instead). A task passes when its metric meets the target within its minutes.

    python benchmarks/zoo.py [--task NAME]... [--list] [--keep DIR] [--threads N] [--set KEY=VALUE]...

--threads sets OMP_NUM_THREADS for the runs (default: torch's choice, one per core). On a machine shared with
other busy processes, torch's threads spin waiting for each other: one thread can then be several times faster.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import zoo  # noqa: E402

REQUIRED = ("opts", "metric", "target", "minutes")


def tasks() -> dict[str, dict]:
    """Every BENCHMARK entry of the zoo's subpackages, by name (a name declared twice is an error)."""
    found: dict[str, dict] = {}
    for package in sorted(m.name for m in pkgutil.iter_modules(zoo.__path__) if m.ispkg):
        module = importlib.import_module(f"zoo.{package}")
        for name, entry in getattr(module, "BENCHMARK", {}).items():
            if name in found:
                raise SystemExit(f"zoo.py: benchmark {name!r} is declared twice: by zoo.{package} and "
                                 f"{found[name]['package']}")
            if missing := [key for key in REQUIRED if key not in entry]:
                raise SystemExit(f"zoo.py: zoo.{package}.BENCHMARK[{name!r}] lacks {', '.join(missing)}")
            found[name] = {**entry, "package": f"zoo.{package}"}
    return found


def run(name: str, entry: dict, root: str, sets: list[str], threads: int) -> dict:
    """Train `entry`'s example in `root`/`name` with `playground run`; its results and the wall time."""
    folder = os.path.join(root, name)
    command = [sys.executable, "-m", "playground", "run", "--parameters-json", os.path.join(ROOT, entry["opts"]),
               "--set", f"output.checkpoint_folder={folder}", "--set", "output.progress_bar=false"]
    for setting in sets:
        command += ["--set", setting]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "PLAYGROUND_RUNS": root}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    started, cpu_before = time.perf_counter(), _children_cpu_s()
    with open(os.path.join(root, f"{name}.log"), "w") as log:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall, cpu = time.perf_counter() - started, _children_cpu_s() - cpu_before
    path = os.path.join(folder, "results.json")
    final = json.load(open(path))["final"] if code == 0 and os.path.exists(path) else {}
    return {"code": code, "wall_s": wall, "cpu_s": cpu, "final": final, "log": log.name}


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes: on a shared machine, with one thread, close
    to the wall time the run would take alone on one core."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verdict(entry: dict, result: dict) -> tuple[float | None, float | None, str]:
    """(value, target, "pass" or why it failed) of one run."""
    if result["code"] != 0:
        return None, None, f"FAIL (exit {result['code']}; see {result['log']})"
    final = result["final"]
    value, target = final.get(entry["metric"]), float(entry["target"])
    if entry.get("relative_to"):
        reference = final.get(entry["relative_to"])
        target = None if reference is None else target * reference
    if value is None or target is None:
        return value, target, f"FAIL (results.json lacks {entry['metric'] if value is None else entry['relative_to']})"
    met = value <= target if entry.get("goal") == "min" else value >= target
    if not met:
        return value, target, "FAIL (metric)"
    if result["wall_s"] > entry["minutes"] * 60:
        return value, target, "FAIL (time)"
    return value, target, "pass"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", default=[], help="a benchmark name (repeatable; default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--keep", default="", help="keep the runs in this folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the runs (default: unset)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to playground run")
    args = parser.parse_args(argv)
    known = tasks()
    if unknown := [t for t in args.task if t not in known]:
        parser.error(f"unknown --task {', '.join(unknown)}; known: {', '.join(known)}")
    chosen = args.task or list(known)
    if args.list:
        for name in chosen:
            entry = known[name]
            goal = "<=" if entry.get("goal") == "min" else ">="
            relative = f" x {entry['relative_to']}" if entry.get("relative_to") else ""
            print(f"{name:22} {entry['opts']:36} {entry['metric']} {goal} {entry['target']}{relative} "
                  f"in {entry['minutes']} min")
        return 0
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, threads {args.threads or 'default'}, load average {load}", flush=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as scratch:
        root = os.path.abspath(args.keep) if args.keep else scratch
        os.makedirs(root, exist_ok=True)
        print(f"{'task':22} {'metric':22} {'value':>8} {'target':>10} {'wall':>8} {'cpu':>8} {'budget':>7}  result",
              flush=True)
        for name in chosen:
            entry = known[name]
            result = run(name, entry, root, args.set, args.threads)
            value, target, outcome = verdict(entry, result)
            failed += outcome != "pass"
            goal = "<=" if entry.get("goal") == "min" else ">="
            shown = lambda x: f"{x:8.4f}" if isinstance(x, float) else f"{'-':>8}"  # noqa: E731
            print(f"{name:22} {entry['metric']:22} {shown(value)} {goal}{shown(target)} "
                  f"{result['wall_s']:7.1f}s {result['cpu_s']:7.1f}s {entry['minutes']:3} min  {outcome}", flush=True)
            for extra in ([entry["relative_to"]] if entry.get("relative_to") else []) + entry.get("report", []):
                print(f"{'':22} {extra:22} {shown(result['final'].get(extra))}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
