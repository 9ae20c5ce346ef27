"""`playground pipeline`: steps run in order from one file (Vega's pipe steps), each step's experiments in the lab.

    {"opts": {...}, "search": {...},
     "pipeline": [{"step": "search"},
                  {"step": "train", "from": "search", "take": {"top_k": 2}, "set": {"epoch_iter.num_epochs": 10}},
                  {"step": "evaluate", "from": "train", "test_set": "noisier", "set": {"input.noise": 4.0}}]}

- `search` runs the file's search (the same study as `playground search` on the file).
- `train` trains the trials a search step chose (`take`: "best", {"top_k": K} or "pareto") from the base opts with
  their sampled values and the step's `set` overrides, each a new experiment.
- `evaluate` tests the final checkpoint (or `checkpoint`) of each experiment of a train step, or of the trials a
  search step chose, on the test set its `set` makes, named `test_set`: a test-only experiment
  (override_test_only) starting from that checkpoint's weights.

Every step may be given a `name` (default: its kind) for the others' `from`. Each experiment's status.json records
`pipeline`: the pipeline id, the step and where it came from (search trial, experiment tag). The whole file is
checked before anything runs. The pipeline is identified by a digest of the file's opts, search and steps and keeps
its bookkeeping in `<runs root>/_pipelines/<id>.json`; re-running the same command skips finished steps and
experiments and resumes the others from their last checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import json
import os
from typing import Any

from playground import checkpoint
from playground import opts as opts_lib
from playground.errors import OptsError, PlaygroundError, Stopped, UsageError
from playground.lab import status
from playground.lab.launcher import Launcher, check_slots, point_opts
from playground.lab.run import create
from playground.lab.tags import local_root, runs_root

TEST_ONLY = "override_test_only"
KEYS = {"search": {"step", "name"},
        "train": {"step", "name", "from", "take", "set"},
        "evaluate": {"step", "name", "from", "take", "set", "test_set", "checkpoint"}}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("pipeline", help="run the steps of a file's \"pipeline\": search, train the "
                                 "chosen trials, evaluate them")
    parser.add_argument("--parameters-json", "--opts", required=True, metavar="JSON_OR_FILE",
                        help='a file (or inline JSON) with "opts", "search" and "pipeline"')
    parser.add_argument("--jobs", type=int, default=1, help="experiments run at once, in separate processes that "
                        "divide this machine's cores between them (default 1)")
    parser.add_argument("--storage", help="the search step's storage URL (default: a journal file in the runs root)")


# ------------------------------------------------------------------ checking the file


def take_problems(where: str, take: Any, objectives: int) -> list[str]:
    """What is wrong with a step's `take` for a search of `objectives` objectives."""
    if take in ("best", "pareto") or (isinstance(take, dict) and set(take) == {"top_k"}):
        k = take.get("top_k") if isinstance(take, dict) else None
        if isinstance(take, dict) and not (type(k) is int and k >= 1):
            return [f"{where}.take.top_k: {json.dumps(k)} is not a positive whole number; e.g. {{\"top_k\": 3}}"]
        if objectives > 1 and take != "pareto":
            return [f"{where}.take: {json.dumps(take)} ranks by one objective, and the search has {objectives}; "
                    'take "pareto" (the non-dominated trials)']
        return []
    return [f'{where}.take: {json.dumps(take)} is not a choice; use "best", {{"top_k": K}} or "pareto"']


def step_problems(steps: Any, doc: dict) -> list[str]:
    """Every problem of every step, each naming the step's index and key."""
    if not isinstance(steps, list) or not steps:
        return ['pipeline: expected a non-empty list of steps, e.g. [{"step": "search"}, {"step": "train", "from": '
                '"search", "take": "best"}]']
    problems: list[str] = []
    kinds: dict[str, str] = {}  # name -> kind, of the steps before this one
    declared = doc["search"].get("objectives") if isinstance(doc.get("search"), dict) else None
    objectives = len(declared) if isinstance(declared, list) else 1
    for i, step in enumerate(steps):
        where = f"pipeline[{i}]"
        if not isinstance(step, dict):
            problems.append(f"{where}: expected an object such as {{\"step\": \"train\", ...}}, got {json.dumps(step)}")
            continue
        kind = step.get("step")
        if kind not in KEYS:
            problems.append(f"{where}.step: {json.dumps(kind)} is not a step; use search, train or evaluate")
            continue
        for key in sorted(set(step) - KEYS[kind]):
            close = difflib.get_close_matches(key, sorted(KEYS[kind]), n=1)
            problems.append(f"{where}.{key}: not a key of the {kind} step" + (
                f"; did you mean {close[0]!r}?" if close else f" ({', '.join(sorted(KEYS[kind]))})"))
        name = step.get("name", kind)
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name: expected a non-empty text, got {json.dumps(name)}")
        elif name in kinds:
            problems.append(f"{where}.name: {name!r} names an earlier step too; give each step its own name")
        if kind == "search":
            if "search" in kinds.values():
                problems.append(f"{where}.step: a second search step; a file holds one search")
            if not isinstance(doc.get("search"), dict):
                problems.append(f'{where}.step: a search step needs the file\'s "search" object beside "opts"')
        else:
            problems += _from_problems(where, step, kind, kinds, objectives)
        if "set" in step and not isinstance(step["set"], dict):
            problems.append(f'{where}.set: expected an object of dotted opts, e.g. {{"epoch_iter.num_epochs": 10}}')
        if kind == "evaluate":
            if not isinstance(step.get("test_set"), str) or not step.get("test_set"):
                problems.append(f'{where}.test_set: expected the test set\'s name, e.g. "test_set": "holdout" (its '
                                "opts go in set)")
            if "checkpoint" in step and not (isinstance(step["checkpoint"], str) and step["checkpoint"]):
                problems.append(f'{where}.checkpoint: expected a checkpoint file name, e.g. "model_best.pt"')
        if isinstance(name, str) and name:
            kinds.setdefault(name, kind)
    return problems


def _from_problems(where: str, step: dict, kind: str, kinds: dict[str, str], objectives: int) -> list[str]:
    source = step.get("from")
    if not isinstance(source, str) or source not in kinds:
        earlier = ", ".join(repr(n) for n in kinds) or "none"
        return [f"{where}.from: {json.dumps(source)} is not an earlier step (earlier: {earlier})"]
    wanted = ("search",) if kind == "train" else ("search", "train")
    if kinds[source] not in wanted:
        return [f"{where}.from: {source!r} is a {kinds[source]} step; a {kind} step takes from a "
                f"{' or '.join(wanted)} step"]
    if kinds[source] == "search":
        return take_problems(where, step.get("take", "best"), objectives)
    if "take" in step:
        return [f"{where}.take: a step from a train step takes all its experiments; remove take"]
    return []


def load_document(source: str) -> dict:
    """{"opts", "search", "pipeline"} of a file or inline JSON (a top-level "base" merges opts files, as for run)."""
    found: dict = {}
    opts = opts_lib.load_opts(source, beside=found)
    if "pipeline" not in found:
        raise UsageError(f'{source if not source.lstrip().startswith("{") else "--parameters-json"}: no "pipeline" '
                         'beside the "opts"; a pipeline file is {"opts": {...}, "search": {...}, "pipeline": '
                         '[{"step": "search"}, ...]} (see the README\'s "Pipelines")')
    return {"opts": opts, **found}


def check(doc: dict, storage: str | None = None) -> Any:
    """Every problem of the file at once (OptsError: each names the step's index and key), before anything
    runs; returns the search spec."""
    from playground.search import spec as spec_lib

    problems = [f"{key}: not a section of a pipeline file; it has opts, search and pipeline"
                for key in doc if key not in ("opts", "search", "pipeline")]
    spec = None
    if "search" in doc:
        spec, search_problems = spec_lib.check(doc["opts"], doc["search"], storage)
        problems += search_problems
    point = (spec.points[0] if spec.points else spec_lib.sample(spec, 1)[0]) if spec is not None else {}
    steps = step_problems(doc["pipeline"], doc) + opts_problems(doc, point)
    problems += sorted(steps, key=lambda p: int(p[len("pipeline["):p.index("]")]) if p.startswith("pipeline[") else -1)
    if problems:
        raise OptsError(problems)
    return spec


def opts_problems(doc: dict, point: dict[str, Any]) -> list[str]:
    """What each train or evaluate step's `set` breaks in the opts of a point of the space, checked as `run`
    checks them (what the point or an earlier step already breaks is reported there)."""
    from playground import runner

    def problems_of(opts: dict) -> list[str]:
        try:
            runner.prepare(opts)
        except OptsError as e:
            return e.problems
        except UsageError as e:  # a `set` key through a value that is not an object
            return [str(e)]
        return []

    steps = doc["pipeline"] if isinstance(doc["pipeline"], list) else []
    found, opts_after = [], {}  # step name -> the opts its experiments train with
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("step") not in KEYS or not isinstance(step.get("set", {}), dict):
            continue
        if step["step"] == "search":
            opts_after[step.get("name", "search")] = step_opts(doc["opts"], point, {"step": "search"})
            continue
        before = opts_after.get(str(step.get("from")), step_opts(doc["opts"], point, {"step": "search"}))
        try:
            opts = step_opts(before, {}, step)
        except UsageError as e:
            found.append(f"pipeline[{i}].set: {e}")
            continue
        if step["step"] == "evaluate":
            if override := opts_lib.get(opts, "model.additional_override_py"):
                found.append(f"pipeline[{i}]: the opts' model.additional_override_py is {override!r}, and an "
                             f"evaluate step tests through {TEST_ONLY!r}, which replaces it; clear it")
            before, opts = test_opts(before, ""), test_opts(opts, "")
        known = problems_of(before)
        found += [f"pipeline[{i}].set: {p}" for p in problems_of(opts) if p not in known]
        if step["step"] == "train":
            opts_after[step.get("name", "train")] = opts
    return found


# ------------------------------------------------------------------ opts of the experiments


def step_opts(base: dict, values: dict[str, Any], step: dict) -> dict:
    """`base` with `values` (a trial's sampled ones) and the step's `set` overrides, in a new folder."""
    return point_opts(base, {**values, **(step.get("set") or {})}, f"{step.get('name', step['step'])}.set ")


def test_opts(opts: dict, weights: str) -> dict:
    """`opts` made a test-only run of the weights in checkpoint `weights`."""
    opts = copy.deepcopy(opts)
    opts_lib.set_dotted(opts, "model.additional_override_py", TEST_ONLY, "evaluate")
    opts_lib.set_dotted(opts, "model_param.pretrained_model", weights, "evaluate")
    opts_lib.set_dotted(opts, "model_param.reset_epoch", True, "evaluate")
    return opts


# ------------------------------------------------------------------ running


class Pipeline:
    """The steps of one file under runs root `root`, with their bookkeeping in `<root>/_pipelines/<id>.json`."""

    def __init__(self, doc: dict, root: str):
        self.doc, self.root = doc, root
        self.steps = [{**step, "name": step.get("name", step["step"])} for step in doc["pipeline"]]
        canonical = json.dumps({k: doc.get(k) for k in ("opts", "search", "pipeline")}, sort_keys=True)
        self.id = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        self.path = os.path.join(local_root(root), "_pipelines", f"{self.id}.json")
        saved = status.read_json(self.path) if os.path.exists(self.path) else None
        self.record = saved or {"id": self.id, "steps": [{"name": s["name"], "step": s["step"], "status": "pending"}
                                                         for s in self.steps]}

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        checkpoint.atomic_write(self.path, json.dumps(self.record, indent=1).encode())

    def run(self, jobs: int = 1, storage: str | None = None) -> None:
        """Each step in order: finished ones are skipped, the unfinished one resumes."""
        print(f"pipeline {self.id}: {len(self.steps)} step(s) under {self.root} (bookkeeping {self.path})",
              flush=True)
        for i, step in enumerate(self.steps):
            record = self.record["steps"][i]
            if record["status"] == "complete":
                print(f"step {i} {step['name']} ({step['step']}): complete, skipped", flush=True)
                continue
            print(f"step {i} {step['name']} ({step['step']})", flush=True)
            if step["step"] == "search":
                from playground.search import run_search

                record["search"] = run_search({"opts": self.doc["opts"], "search": self.doc["search"]}, jobs=jobs,
                                              storage=storage)  # the very search `playground search` runs
                from playground.search.report import print_summary

                print_summary(record["search"], self.root)
            else:
                if "experiments" not in record:
                    record["experiments"] = self.plan(i)
                    self.save()
                self.run_experiments(i, record["experiments"], jobs)
            record["status"] = "complete"
            self.save()
        print(self.summary(), flush=True)

    def plan(self, i: int) -> list[dict]:
        """Create step i's experiments, queued, each recording where it came from: [{tag, from, sampled}]."""
        from playground import runner

        step = self.steps[i]
        source = next(j for j, s in enumerate(self.steps) if s["name"] == step["from"])
        upstream = self.steps[source] if self.steps[source]["step"] == "train" else {"step": "search"}
        planned = []
        for origin in self.origins(source, step.get("take", "best")):
            opts = step_opts(step_opts(self.doc["opts"], origin["sampled"], upstream), {}, step)
            if step["step"] == "evaluate":
                opts = test_opts(opts, self.weights(origin["tag"], step))
            fields = {"id": self.id, "step": i, "name": step["name"],
                      "from": {"step": step["from"], **{k: v for k, v in origin.items() if k != "sampled"}}}
            if step["step"] == "evaluate":
                fields["test_set"] = step["test_set"]
            tag, _ = create(runner.prepare(opts)[0], self.root, pipeline=fields)
            planned.append({"tag": tag, "from": fields["from"], "sampled": origin["sampled"]})
        return planned

    def origins(self, source: int, take: Any) -> list[dict]:
        """What step `source` hands on: the trials its search chose by `take`, or its experiments."""
        record = self.record["steps"][source]
        if self.steps[source]["step"] == "train":
            return [{"search": e["from"]["search"], "trial": e["from"]["trial"], "tag": e["tag"],
                     "sampled": e["sampled"]} for e in record["experiments"]]
        from playground.search import load_study

        trials = choose(load_study(record["search"], root=self.root), take)
        if not trials:
            raise PlaygroundError(f"search {record['search']} has no complete trial to take; `playground search "
                                  f"report {record['search']}` shows its trials")
        return [{"search": record["search"], "trial": t.number, "tag": t.user_attrs.get("tag"),
                 "sampled": t.user_attrs.get("sampled") or {}} for t in trials]

    def weights(self, tag: str, step: dict) -> str:
        """The checkpoint of experiment `tag` that an evaluate step tests: `checkpoint`, else its final one."""
        folder = os.path.join(local_root(self.root), tag)
        name = step.get("checkpoint")
        if name is None and os.path.exists(os.path.join(folder, "results.json")):
            name = os.path.basename((status.read_json(os.path.join(folder, "results.json")).get("checkpoints")
                                     or [""])[-1])
        path = os.path.abspath(os.path.join(folder, name or ""))
        if not name or not os.path.isfile(path):
            raise PlaygroundError(f"{step['name']}: experiment {tag} has no checkpoint {name or '(final)'} in "
                                  f"{folder}; name one it has with the step's \"checkpoint\"")
        return path

    def run_experiments(self, i: int, experiments: list[dict], jobs: int) -> None:
        """Run step i's unfinished experiments, `jobs` at a time, through the lab's Launcher."""
        launcher, todo, failed = Launcher(jobs, self.root), [], []
        for n, experiment in enumerate(experiments):
            origin = experiment["from"]
            label = f"[{n + 1}/{len(experiments)}] {experiment['tag']} from " + (
                f"trial {origin['trial']}" if self.steps[i]["step"] == "train" else origin["tag"])
            folder = os.path.join(local_root(self.root), experiment["tag"])
            info = status.read(folder) or {}
            if status.effective(info) == status.FINISHED:
                print(f"{label}: complete, skipped", flush=True)
            elif status.effective(info) == "running":
                launcher.watch(n, folder, int(info.get("pid") or 0), label)
            else:
                todo.append((n, folder, label))
        labels = {n: (folder, label) for n, folder, label in todo}

        def start_next() -> bool:
            if not todo:
                return False
            launcher.start(*todo.pop(0))
            return True

        def ended(n: int, seconds: float) -> None:
            folder, label = labels.get(n, (os.path.join(local_root(self.root), experiments[n]["tag"]), ""))
            info = status.read(folder) or {}
            current = status.effective(info)
            print(f"{label or experiments[n]['tag']}: {current} after {seconds:.1f} s"
                  + (f": {info['error']}" if info.get("error") else ""), flush=True)
            if current != status.FINISHED:
                failed.append(f"{experiments[n]['tag']} {current}")

        launcher.run_until_done(start_next, ended)
        if launcher.signals:
            raise Stopped(f"pipeline {self.id} stopped; re-run the same command to resume it")
        if failed:
            raise PlaygroundError(f"pipeline {self.id} step {i} {self.steps[i]['name']}: {', '.join(failed)}; "
                                  "`playground runs show TAG` says why; re-run the same command to resume")

    def summary(self) -> str:
        """A table per train or evaluate step: each experiment, where it came from and its final metrics."""
        from playground.lab.compare import table
        from playground.lab.repository import ExperimentRepository

        repo, lines = ExperimentRepository(self.root), []
        for i, step in enumerate(self.steps):
            record = self.record["steps"][i]
            if step["step"] == "search":
                lines.append(f"step {i} {step['name']}: search {record.get('search')} (`playground search report "
                             f"{record.get('search')}`)")
                continue
            experiments = record.get("experiments") or []
            frame = repo.summary([repo[e["tag"]] for e in experiments])
            frame.insert(1, "trial", [e["from"].get("trial") for e in experiments])
            if step["step"] == "evaluate":
                frame.insert(2, "from", [e["from"]["tag"] for e in experiments])
            frame = frame.drop(columns=[c for c in ("model", "forward", "start", "sweep", "learning_rate",
                                                    "secs_per_train", "samples_per_sec") if c in frame.columns])
            lines += [f"step {i} {step['name']} ({step['step']}"
                      + (f" on {step['test_set']}" if step["step"] == "evaluate" else "") + "):", table(frame)]
        return "\n".join(lines)


def choose(study: Any, take: Any) -> list[Any]:
    """The complete trials `take` names: the best, the top K by the objective, or the non-dominated ones."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if take == "pareto" and len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    k = take["top_k"] if isinstance(take, dict) else 1
    maximise = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: (-t.value if maximise else t.value, t.number))[:k]


def command(args: argparse.Namespace) -> int:
    """`playground pipeline`: check the whole file, then run its steps."""
    check_slots(args.jobs)
    doc = load_document(args.parameters_json)
    spec = check(doc, args.storage)
    Pipeline(doc, runs_root(spec.base if spec else doc["opts"])).run(args.jobs, args.storage)
    return 0
