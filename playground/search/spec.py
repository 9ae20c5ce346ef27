"""A search as declared beside the opts, `{"opts": {...}, "search": {...}}`, checked whole before anything exists.

    spec = load("search.json")      # every problem at once (OptsError, exit 2), each naming its dotted key
    spec.id                          # a digest of the base opts, space, objectives and algorithm: the study's name

Re-running the same file continues the same study; changing the budget, pruner or storage keeps it.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from playground import opts as opts_lib
from playground.errors import OptsError, UsageError
from playground.search import objectives as objectives_lib, space as space_lib, study as study_lib
from playground.search.objectives import Objective

FIELDS = ("space", "objectives", "algorithm", "pruner", "budget", "storage")
BUDGET = ("trials", "time_s", "max_failures")


@dataclass
class SearchSpec:
    """A checked search: the base opts, the space and objectives, Optuna's algorithm and pruner, the budget."""

    base: dict
    space: dict[str, dict]
    objectives: list[Objective]
    algorithm: dict = field(default_factory=lambda: {"type": "tpe"})
    pruner: dict = field(default_factory=lambda: {"type": "none"})
    trials: int = 0
    time_s: float | None = None
    max_failures: int = 3
    storage: str | None = None
    resolved_base: dict = field(default_factory=dict)
    points: list[dict] | None = None  # a grid's points, in order
    tags: list[str] | None = None     # experiments already created for the points (a sweep's)
    id: str = ""

    @property
    def grid(self) -> bool:
        return self.algorithm.get("type") == "grid"

    def document(self) -> dict:
        """The input document as run: what search.json keeps."""
        search = {"space": self.space, "objectives": [o.as_dict() for o in self.objectives],
                  "algorithm": self.algorithm, "pruner": self.pruner,
                  "budget": {"trials": self.trials, "time_s": self.time_s, "max_failures": self.max_failures}}
        if self.storage:
            search["storage"] = self.storage
        return {"id": self.id, "opts": self.base, "search": search}


def search_id(base: dict, space: dict, objectives: list[Objective], algorithm: dict) -> str:
    what = copy.deepcopy(base)
    for key in space_lib.PLACED_BY_THE_SEARCH:  # left out of the id: hosts may differ there
        section, _, leaf = key.partition(".")
        if isinstance(what.get(section), dict):
            what[section].pop(leaf, None)
    text = json.dumps({"opts": what, "space": space, "objectives": [o.as_dict() for o in objectives],
                       "algorithm": algorithm}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read(source: str | dict) -> tuple[dict, Any]:
    """(opts, search section) of a search document: a dict, inline JSON, or a .json/.yaml/.yml file; a top-level
    "base" merges opts files under the opts, as for `playground run`."""
    found: dict = {}
    opts = opts_lib.load_opts(json.dumps(source) if isinstance(source, dict) else source, beside=found)
    if "search" not in found:
        shown = "the document" if isinstance(source, dict) else "--parameters-json" if source.lstrip().startswith(
            "{") else source
        raise UsageError(f'{shown}: no "search" beside the "opts"; a search is {{"opts": {{...}}, "search": '
                         '{"space": ..., "objectives": ...}} (see the README\'s "Search over opts")')
    return opts, found["search"]


def load(source: str | dict, storage: str | None = None) -> SearchSpec:
    """The checked search of `source`; `storage` (the command line's) replaces search.storage."""
    base, search = read(source)
    spec, problems = check(base, search, storage)
    if problems:
        raise OptsError(problems)
    return spec


def check(base: dict, search: Any, storage: str | None = None) -> tuple[SearchSpec | None, list[str]]:
    """The spec, and every problem of the search section and of the opts its points give."""
    from playground import runner

    if not isinstance(search, dict):
        return None, ['search: expected an object with "space" and "objectives" (see the README\'s "Search over '
                      'opts")']
    problems = [f"search.{k}: unknown field" + (f"; did you mean {close[0]!r}?" if (close := difflib.get_close_matches(
                k, FIELDS, n=1, cutoff=0.6)) else f"; a search has {', '.join(FIELDS)}")
                for k in search if k not in FIELDS]
    problems += [f"search.{k}: missing; it is mandatory" for k in ("space", "objectives") if k not in search]
    _, found, component_problems = runner.resolve_components(opts_lib.with_defaults(base))
    declared = runner.declared_opts(found)
    resolved = opts_lib.with_defaults(base, declared)
    algorithm = search.get("algorithm", {"type": "tpe"})
    grid = isinstance(algorithm, dict) and algorithm.get("type") == "grid"
    objectives, objective_problems = objectives_lib.parse(search.get("objectives"), resolved)
    problems += space_lib.problems(search.get("space"), resolved, declared, finite=grid) + objective_problems
    problems += study_lib.algorithm_problems(algorithm, len(objectives))
    pruner = search.get("pruner", {"type": "none"})
    problems += study_lib.pruner_problems(pruner, objectives)
    budget, budget_problems = _budget(search.get("budget", {}), grid)
    problems += budget_problems + study_lib.storage_problems(storage or search.get("storage"))
    if problems:
        return None, problems + _base_problems(base, search.get("space"))
    spec = SearchSpec(base, search["space"], objectives, {"type": "tpe", **algorithm}, {"type": "none", **pruner},
                      storage=storage or search.get("storage"), resolved_base=resolved, **budget)
    if grid:
        spec.points = space_lib.grid_points(spec.space, resolved)
        if spec.trials > len(spec.points):
            return None, [f"search.budget.trials: the grid has {len(spec.points)} point(s), so at most "
                          f"{len(spec.points)} trials; lower it or leave it out"]
        spec.trials = spec.trials or len(spec.points)
        spec.points = spec.points[:spec.trials]
    spec.id = search_id(base, spec.space, objectives, spec.algorithm)
    return spec, point_problems(spec, spec.points or sample(spec, 3)) or component_problems


def _base_problems(base: dict, space: Any) -> list[str]:
    """The base opts' own problems, but those of keys the space sets (checked with each point once the search
    section is right)."""
    from playground import runner

    searched = set(space) if isinstance(space, dict) else set()
    try:
        runner.prepare(copy.deepcopy(base))
    except OptsError as e:
        return [p for p in e.problems if p.split(":")[0].split("[")[0] not in searched]
    return []


def _budget(budget: Any, grid: bool) -> tuple[dict, list[str]]:
    if not isinstance(budget, dict):
        return {}, ['search.budget: expected an object such as {"trials": 20}']
    problems = [f"search.budget.{k}: unknown field; a budget has {', '.join(BUDGET)}" for k in budget
                if k not in BUDGET]
    trials, time_s, failures = budget.get("trials"), budget.get("time_s"), budget.get("max_failures", 3)
    if trials is None and not grid:
        problems.append('search.budget.trials: missing; give the number of finished trials to run, e.g. "trials": 20')
    elif trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        problems.append(f"search.budget.trials: expected a positive integer, got {json.dumps(trials)}")
    if time_s is not None and (isinstance(time_s, bool) or not isinstance(time_s, (int, float))
                               or not math.isfinite(time_s) or time_s <= 0):
        problems.append(f"search.budget.time_s: expected a positive number of seconds, got {json.dumps(time_s)}")
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
        problems.append(f"search.budget.max_failures: expected a positive integer, got {json.dumps(failures)}")
    return {"trials": trials or 0, "time_s": time_s, "max_failures": failures}, problems


def sample(spec: SearchSpec, count: int) -> list[dict[str, Any]]:
    """`count` points drawn at random from the space (seeded): what --dry-run shows and every search checks."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.algorithm.get("seed") or 0))
    return [space_lib.suggest(study.ask(), spec.space, spec.resolved_base) for _ in range(count)]


def point_problems(spec: SearchSpec, points: list[dict[str, Any]]) -> list[str]:
    """The problems of the opts each point gives, through the ordinary checks; one shared by every point is told
    once."""
    from playground import runner
    from playground.lab.launcher import describe_point, point_opts

    per_point = []
    for point in points:
        try:
            runner.prepare(point_opts(spec.base, point, "search.space."))
            per_point.append([])
        except OptsError as e:
            per_point.append(e.problems)
    shared = [p for p in per_point[0] if all(p in others for others in per_point)] if per_point else []
    return shared + [f"point {describe_point(point)}: {p}" for point, found in zip(points, per_point)
                     for p in found if p not in shared]
