"""Sweeps: many experiments from one base opts, each point its own tagged experiment under the runs root.

    playground sweep --parameters-json base.json --grid model_param.base_learning_rate=0.1,0.01 \\
                     --grid model_param.hidden_sizes=[64],[128,64] --jobs 2

A sweep is identified by its base opts and points (`Sweep.id`, a digest), and keeps its bookkeeping in
`<runs root>/_sweeps/<id>.json`: the points and the tag of each. Every point is created up front as a `queued`
experiment (its resolved opts in opts.json, the sweep id and point in status.json) and run in its own process
as `playground run --resume <folder>`; re-running the same command skips complete points and resumes the others
from their last checkpoint. SIGINT or SIGTERM stops the sweep: running points checkpoint and stop.

A sweep is a grid search (playground.search) whose trials are the points' experiments, in order: the same driver
and launcher run them, and its study is in `<runs root>/_searches/<id>/`. `Sweep` takes any list of
{dotted.key: value} dicts; `Sweep.results()` is their table.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
from typing import Any

from playground import checkpoint
from playground import opts as opts_lib
from playground.errors import OptsError, PlaygroundError, UsageError
from playground.lab import status
from playground.lab.launcher import check_slots, point_opts
from playground.lab.launcher import core_groups, describe_point  # noqa: F401 - core_groups: the sweep's API too
from playground.lab.run import create, mirror_deadline_s
from playground.lab.store import Mirror
from playground.lab.tags import is_url, local_root, runs_root

log = logging.getLogger(__name__)


def split_values(raw: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes: "[64,64],[128]" -> ["[64,64]", "[128]"]."""
    parts, depth, quote, current = [], 0, False, ""
    for char in raw:
        if char == '"':
            quote = not quote
        elif not quote and char in "[{":
            depth += 1
        elif not quote and char in "]}":
            depth -= 1
        if char == "," and depth == 0 and not quote:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def parse_grid(items: list[str]) -> list[tuple[str, list]]:
    """`--grid key=v1,v2` arguments as [(key, [v1, v2])], in the order given."""
    grid = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw:
            raise UsageError(f"--grid {item!r}: expected dotted.key=V1,V2, e.g. --grid "
                             "model_param.base_learning_rate=0.1,0.01")
        if key in (k for k, _ in grid):
            raise UsageError(f"--grid {key}: given twice; put all its values in one --grid")
        grid.append((key, [opts_lib.parse_value(v.strip(), f"--grid {key}") for v in split_values(raw)]))
    return grid


def grid_points(grid: list[tuple[str, list]]) -> list[dict[str, Any]]:
    """The cartesian product, the first key varying slowest."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]


class Sweep:
    """Points of one base opts, run as experiments under `root`, resumable by their own bookkeeping."""

    def __init__(self, root: str, base: dict, points: list[dict[str, Any]], grid: list | None = None):
        self.root, self.base, self.points, self.grid = root, base, points, grid
        digest = hashlib.sha256(json.dumps({"base": point_opts(base, {}, "--grid "), "points": points}, sort_keys=True)
                                .encode()).hexdigest()
        self.id = digest[:12]
        self.folder = os.path.join(local_root(root), "_sweeps")
        self.path = os.path.join(self.folder, f"{self.id}.json")
        self.tags: list[str | None] = [None] * len(points)

    def resolve(self) -> list[dict]:
        """Every point's resolved opts; every problem of every point at once (OptsError)."""
        from playground import runner

        resolved, problems = [], []
        for point in self.points:
            try:
                resolved.append(runner.prepare(point_opts(self.base, point, "--grid "))[0])
            except OptsError as e:
                problems += [f"point {describe_point(point)}: {p}" for p in e.problems]
        if problems:
            raise OptsError(problems)
        return resolved

    def plan(self) -> None:
        """Load the bookkeeping, and create a queued experiment for every point that has none yet."""
        if not os.path.exists(self.path) and is_url(self.root):
            self._download(self.path)
        if os.path.exists(self.path):
            saved = status.read_json(self.path)
            self.tags = [p.get("tag") for p in saved["points"]]
        resolved, store_answers = self.resolve(), is_url(self.root)
        for i, (point, opts) in enumerate(zip(self.points, resolved)):
            if self.tags[i] is None or not self.status(i):
                self.tags[i], folder = create(opts, self.root, sweep={"id": self.id, "point": point, "index": i})
                if store_answers:  # queued points are visible in the store, and resumable from elsewhere
                    mirror = Mirror(folder, f"{self.root.rstrip('/')}/{self.tags[i]}",
                                    deadline_s=mirror_deadline_s(opts))
                    if mirror.close():  # one wait for a dead store is enough: each point's run uploads it anyway
                        store_answers = False
                        log.warning("%s did not answer within %g s; queued points stay local until they run",
                                    self.root, mirror.deadline_s)
                self.save()
        self.save()

    def save(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        record = {"id": self.id, "root": self.root, "grid": self.grid, "base": self.base,
                  "points": [{"values": p, "tag": t} for p, t in zip(self.points, self.tags)]}
        checkpoint.atomic_write(self.path, json.dumps(record, indent=1).encode())
        if is_url(self.root):
            self._upload(self.path)

    def _upload(self, path: str) -> None:
        from playground.lab.store import filesystem

        try:
            fs, base = filesystem(self.root)
            fs.put_file(path, f"{base.rstrip('/')}/_sweeps/{os.path.basename(path)}")
        except Exception as e:  # noqa: BLE001 - the local copy is the one that matters for resuming
            log.warning("could not upload %s to %s: %s", path, self.root, e)

    def _download(self, path: str) -> None:
        """The bookkeeping of a sweep begun on another machine, from the store."""
        from playground.lab.store import filesystem

        fs, base = filesystem(self.root)
        remote = f"{base.rstrip('/')}/_sweeps/{os.path.basename(path)}"
        if fs.exists(remote):
            os.makedirs(self.folder, exist_ok=True)
            fs.get_file(remote, path)

    def status(self, i: int) -> dict:
        """status.json of point i: the local copy, else (URL root) the store's; {} when there is none."""
        found = status.read(self.experiment_folder(i))
        if found is None and is_url(self.root):
            from playground.lab.store import Store

            try:
                found = status.read_json(f"{self.root.rstrip('/')}/{self.tags[i]}/{status.FILE}",
                                         Store(self.root).read(self.tags[i], status.FILE))
            except FileNotFoundError:
                found = None
        return found or {}

    def experiment_folder(self, i: int) -> str:
        return os.path.join(local_root(self.root), self.tags[i])

    def run(self, jobs: int = 1) -> dict[str, str]:
        """Run every unfinished point, `jobs` at a time; returns {tag: status}."""
        from playground.search.driver import Driver

        todo = 0
        for i, tag in enumerate(self.tags):
            current = status.effective(self.status(i))
            if current == "complete":
                print(f"[{i + 1}/{len(self.tags)}] {tag} {describe_point(self.points[i])}: complete, skipped")
            elif current == "running":
                print(f"[{i + 1}/{len(self.tags)}] {tag}: still running in another process, skipped")
            else:
                todo += 1
        Driver(self.as_search(), self.root, max(1, min(jobs, todo or 1)), kind="sweep").run()
        return {tag: status.effective(self.status(i)) for i, tag in enumerate(self.tags)}

    def as_search(self) -> Any:
        """The grid search this sweep is: its points in order, each an enqueued trial of its planned experiment,
        scored by the base's first test metric (what the closing table and plot show by default)."""
        from playground.handlers.monitor import Monitor
        from playground.opts import recorded_metrics
        from playground.search.objectives import Objective
        from playground.search.spec import SearchSpec

        metric = default_metric(self.base)
        if metric not in recorded_metrics(self.base):
            metric = "samples_per_sec"  # always recorded
        space: dict[str, dict] = {}
        for point in self.points:
            for key, value in point.items():
                values = space.setdefault(key, {"choice": []})["choice"]
                if json.dumps(value, sort_keys=True) not in (json.dumps(v, sort_keys=True) for v in values):
                    values.append(value)
        return SearchSpec(self.base, space, [Objective(metric, Monitor("sweep", metric).mode)], {"type": "grid"},
                          trials=len(self.points), max_failures=len(self.points) + 1, points=self.points,
                          tags=list(self.tags), id=self.id)

    def results(self) -> Any:
        """A DataFrame, a row per point: tag, status, the point's values and final metrics."""
        from playground.lab.repository import ExperimentRepository

        repo = ExperimentRepository(self.root)
        frame = repo.summary([repo[t] for t in self.tags])
        for key in reversed(list(self.points[0]) if self.points else []):
            frame.insert(2, key.rsplit(".", 1)[-1], [json.dumps(p[key]) for p in self.points])
        return frame.drop(columns=[c for c in ("model", "forward", "sweep", "search", "trial", "start")
                                   if c in frame.columns])


def default_metric(opts: dict) -> str:
    metrics = (opts.get("output") or {}).get("metrics") or []
    tests = [m["name"] for m in metrics if not m.get("is_train", str(m.get("name", "")).startswith("train"))]
    return (tests or [m["name"] for m in metrics] or ["train_loss"])[0]


def command(args: argparse.Namespace) -> int:
    """`playground sweep`: plan, run, then print the comparison table and write the plot."""
    check_slots(args.jobs)
    base = opts_lib.load_opts(args.parameters_json)
    for assignment in args.set:
        opts_lib.apply_set(base, assignment)
    grid = parse_grid(args.grid)
    root = runs_root(base)
    sweep = Sweep(root, base, grid_points(grid), grid)
    if getattr(args, "submit", None):
        from playground import slurm

        return slurm.command_sweep(args, sweep)
    sweep.plan()
    print(f"sweep {sweep.id}: {len(sweep.points)} point(s) under {root} (bookkeeping {sweep.path})", flush=True)
    try:
        outcome = sweep.run(args.jobs)
    finally:
        _conclude(sweep, args.metric or default_metric(base))
    if failed := {t: s for t, s in outcome.items() if s != "complete"}:
        raise PlaygroundError(f"sweep {sweep.id}: {len(failed)} of {len(outcome)} point(s) did not complete "
                              f"({', '.join(f'{t} {s}' for t, s in failed.items())}); `playground runs show TAG` "
                              "says why; re-run the same command to resume them")
    return 0


def _conclude(sweep: Sweep, metric: str) -> None:
    """The comparison table and plot of whatever has run so far."""
    from playground.lab.compare import compare, table
    from playground.lab.repository import ExperimentRepository, NotFound

    print(table(sweep.results()))
    repo = ExperimentRepository(sweep.root)
    ran = [repo[t] for t in sweep.tags if t and any(n.endswith(".csv") for n in repo[t].list_artifacts())]
    if not ran:
        return
    labels = {e.tag: describe_point(sweep.points[sweep.tags.index(e.tag)]) for e in ran}
    try:
        _, png = compare(repo, ran, metric, os.path.join(sweep.folder, f"{sweep.id}_{metric}.png"), labels)
    except NotFound as e:
        log.warning("no plot: %s", e)
        return
    if is_url(sweep.root):
        sweep._upload(png)
    print(f"plot: {png}")
