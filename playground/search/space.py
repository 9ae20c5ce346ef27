"""The search space: a distribution for each dotted opt, maybe with a condition, turned into Optuna suggest calls.

    "model_param.base_learning_rate": {"float": [1e-4, 0.1], "log": true}      suggest_float (also "step")
    "epoch_iter.batch_per_device":    {"int": [16, 64], "step": 16}            suggest_int (also "log")
    "model_param.hidden_sizes":       {"choice": [[64], [128, 64]]}            suggest_categorical
    "model_param.resnet_width":       {"int": [8, 32], "when": {"model.forward_pass_py": "explicit_resnet_forward"}}

A `when` samples the key only where every opt it names (sampled or fixed) has that value; elsewhere the base opts'
value stands. Optuna's parameter is named by the dotted key. Its categorical choices must be None, bool, int, float
or str, so a choice among lists or dicts is suggested as their canonical JSON text, and decoded back.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
from typing import Any

from playground import opts as opts_lib

KINDS = ("float", "int", "choice")
FIELDS = {"float": ("log", "step", "when"), "int": ("log", "step", "when"), "choice": ("when",)}
# where a trial runs, not what: the search places every trial (no space key), and hosts may differ (not in the id)
PLACED_BY_THE_SEARCH = ("output.checkpoint_folder", "output.runs_root")
MAX_GRID = 100_000
_MISSING = object()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def encoded(values: list) -> bool:
    """Whether a choice's values are suggested as JSON text (any of them is not a plain value)."""
    return not all(v is None or isinstance(v, (str, int, float, bool)) for v in values)


def kind_of(entry: dict) -> str:
    return next(k for k in KINDS if k in entry)


def order(space: dict[str, dict]) -> list[str]:
    """The keys, each after the searched keys its `when` reads (problems() has ruled out cycles)."""
    done: list[str] = []

    def visit(key: str, path: tuple) -> None:
        if key in done or key in path:
            return
        for other in (space[key].get("when") or {}):
            if other in space:
                visit(other, (*path, key))
        done.append(key)

    for key in space:
        visit(key, ())
    return done


def active(key: str, space: dict[str, dict], point: dict[str, Any], base: dict) -> bool:
    """Whether `key` is sampled, given the values sampled so far (`point`) and the resolved base opts."""
    return all(canonical(point[k] if k in point else opts_lib.get(base, k)) == canonical(v)
               for k, v in (space[key].get("when") or {}).items())


def suggest(trial: Any, space: dict[str, dict], base: dict) -> dict[str, Any]:
    """Ask `trial` (an optuna Trial) for every active key, in dependency order: {dotted key: value}."""
    point: dict[str, Any] = {}
    for key in order(space):
        if not active(key, space, point, base):
            continue
        entry = space[key]
        kind = kind_of(entry)
        if kind == "float":
            point[key] = trial.suggest_float(key, *entry["float"], log=bool(entry.get("log")), step=entry.get("step"))
        elif kind == "int":
            point[key] = trial.suggest_int(key, *entry["int"], log=bool(entry.get("log")), step=entry.get("step", 1))
        elif encoded(entry["choice"]):
            point[key] = json.loads(trial.suggest_categorical(key, [canonical(v) for v in entry["choice"]]))
        else:
            point[key] = trial.suggest_categorical(key, entry["choice"])
    return point


def as_params(space: dict[str, dict], point: dict[str, Any]) -> dict[str, Any]:
    """`point` as Optuna's parameter values (JSON text for encoded choices): what enqueue_trial takes."""
    return {k: canonical(v) if kind_of(space[k]) == "choice" and encoded(space[k]["choice"]) else v
            for k, v in point.items()}


def values(entry: dict) -> list:
    """Every value of a finite distribution (choice, int, float with a step), low to high."""
    kind = kind_of(entry)
    if kind == "choice":
        return list(entry["choice"])
    lo, hi = entry[kind]
    step = entry.get("step", 1 if kind == "int" else None)
    count = int(math.floor((hi - lo) / step + 1e-9)) + 1
    return [lo + i * step if kind == "int" else round(lo + i * step, 12) for i in range(count)]


def grid_size(space: dict[str, dict]) -> int:
    return math.prod(len(values(entry)) for entry in space.values())


def grid_points(space: dict[str, dict], base: dict) -> list[dict[str, Any]]:
    """The grid: every combination, the first key varying slowest; keys whose `when` fails are left out, and the
    combinations they alone told apart count once."""
    keys, points, seen = list(space), [], set()
    for combination in itertools.product(*(values(space[k]) for k in keys)):
        chosen = dict(zip(keys, combination))
        point: dict[str, Any] = {}
        for key in order(space):
            if active(key, space, point, base):
                point[key] = chosen[key]
        point = {k: point[k] for k in keys if k in point}
        if (text := canonical(point)) not in seen:
            seen.add(text)
            points.append(point)
    return points


# ---------------------------------------------------------------------------------------------- validation


def problems(space: Any, base: dict, declared: dict[str, opts_lib.Opt], finite: bool = False) -> list[str]:
    """Every problem of the `search.space` section against the resolved base opts and the declared keys; `finite`:
    the algorithm enumerates the values (grid)."""
    if not isinstance(space, dict) or not space:
        return ['search.space: expected an object of dotted opts, e.g. {"model_param.base_learning_rate": '
                '{"float": [0.0001, 0.1], "log": true}}']
    known = sorted(set(opts_lib.flatten(base)) | set(declared))
    found = []
    for key, entry in space.items():
        where = f"search.space.{key}"
        found += _key_problems(key, base, declared, known, where)
        entry_problems = _entry_problems(entry, where, finite)
        found += entry_problems
        if not entry_problems:
            found += _type_problems(key, entry, base, declared, where)
            found += _when_problems(key, entry, space, base, declared, sorted({*known, *space}), where)
    if not found and finite and grid_size(space) > MAX_GRID:
        found.append(f"search.space: the grid has {grid_size(space):,} points, more than {MAX_GRID:,}; search fewer "
                     "values or use another search.algorithm.type")
    return found


def _key_problems(key: str, base: dict, declared: dict, known: list[str], where: str) -> list[str]:
    if key in PLACED_BY_THE_SEARCH:
        return [f"{where}: every trial runs in its own folder under the runs root; remove this key"]
    if key in declared or opts_lib.get(base, key, _MISSING) is not _MISSING:
        return []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    return [f"{where}: not an opt of the base opts" + (f"; did you mean {close[0]}?" if close else
            "; name a key of the opts, e.g. model_param.base_learning_rate")]


def _entry_problems(entry: Any, where: str, finite: bool) -> list[str]:
    """The shape of one distribution: one kind, known fields, ranges."""
    if not isinstance(entry, dict):
        return [f'{where}: expected an object such as {{"float": [0.001, 0.1], "log": true}}, got {json.dumps(entry)}']
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) != 1:
        return [f"{where}: give exactly one of " + ", ".join(f'"{k}"' for k in KINDS)
                + (f", not {' and '.join(kinds)}" if kinds else "")]
    kind, found = kinds[0], []
    for field in entry:
        if field != kind and field not in FIELDS[kind]:
            close = difflib.get_close_matches(field, [*KINDS, *FIELDS[kind]], n=1, cutoff=0.6)
            found.append(f"{where}.{field}: not a field of a {kind} distribution"
                         + (f"; did you mean {close[0]!r}?" if close else f"; it takes {', '.join(FIELDS[kind])}"))
    if kind == "choice":
        choices = entry["choice"]
        if not isinstance(choices, list) or not choices:
            return found + [f"{where}.choice: expected a non-empty list of values, e.g. [[64], [128, 64]]"]
        texts = [canonical(v) for v in choices]
        return found + [f"{where}.choice: {t} is given twice; keep one" for t in sorted({t for t in texts
                                                                                     if texts.count(t) > 1})]
    return found + _range_problems(kind, entry, where, finite)


def _is_number(value: Any, kind: str) -> bool:
    return not isinstance(value, bool) and isinstance(value, int if kind == "int" else (int, float)) and \
        math.isfinite(value)


def _range_problems(kind: str, entry: dict, where: str, finite: bool) -> list[str]:
    bounds, log, step = entry[kind], entry.get("log", False), entry.get("step")
    what = "integers" if kind == "int" else "numbers"
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b, kind) for b in bounds)):
        return [f"{where}.{kind}: expected [low, high], two finite {what}, got {json.dumps(bounds)}"]
    lo, hi = bounds
    found = []
    if lo > hi:
        found.append(f"{where}.{kind}: low {lo} is above high {hi}; give [low, high]")
    if not isinstance(log, bool):
        found.append(f"{where}.log: expected true or false, got {json.dumps(log)}")
    elif log and lo <= (0 if kind == "float" else 0.5):
        found.append(f"{where}.{kind}: a log range must start above 0" + (" (at 1 for integers)" if kind == "int"
                                                                            else "") + f", got {lo}")
    if step is not None:
        if not _is_number(step, kind) or step <= 0:
            found.append(f"{where}.step: expected a positive {'integer' if kind == 'int' else 'number'}, got "
                         f"{json.dumps(step)}")
        elif log is True and (kind == "float" or step != 1):
            found.append(f'{where}: "log" and "step" exclude each other (Optuna); drop one')
        elif not found and abs((hi - lo) / step - round((hi - lo) / step)) > 1e-9:
            found.append(f"{where}.step: high - low ({hi - lo:g}) is not a multiple of the step {step:g}; adjust "
                         "the range")
    if finite and kind == "float" and step is None and not found:
        found.append(f'{where}: the grid needs a finite set of values; give a "step", or use "choice"')
    return found


def _type_problems(key: str, entry: dict, base: dict, declared: dict, where: str) -> list[str]:
    """The distribution's values against the opt's declaration, through the opts' own checks."""
    kind = kind_of(entry)
    opt = declared.get(key)
    if opt is None:  # the user's own key: only what the base's value says
        current = opts_lib.get(base, key)
        if kind != "choice" and (isinstance(current, (bool, str, list, dict))):
            return [f"{where}: a {kind} range gives numbers, and this opt is {json.dumps(current)[:40]} in the base "
                    'opts; use {"choice": [...]}']
        return []
    if kind == "float" and not any(t is float for t in opt.types):
        return [f"{where}: {key} takes {opts_lib.describe_type(opt)}, not any number; use "
                f'{{"int": {json.dumps(entry["float"])}}} or "choice"']
    found = []
    for i, value in enumerate(entry["choice"] if kind == "choice" else entry[kind]):
        tree = copy.deepcopy(base)
        opts_lib.set_dotted(tree, key, value, where)
        found += [f"{where}.{kind}[{i}]{p[len(key):]}" for p in opts_lib.validate(tree, declared)
                  if p.startswith(key) and p[len(key):len(key) + 1] in (":", ".", "[")]
    return found


def _when_problems(key: str, entry: dict, space: dict, base: dict, declared: dict, known: list[str],
                   where: str) -> list[str]:
    when = entry.get("when")
    if when is None:
        return []
    if not isinstance(when, dict) or not when:
        return [f'{where}.when: expected an object of opts and values, e.g. {{"model.forward_pass_py": '
                '"explicit_resnet_forward"}']
    found = []
    for other, value in when.items():
        if other == key or (other in space and key in _needs(other, space)):
            found.append(f"{where}.when: {other} depends on {key} in turn; break the circle")
        elif other not in space and other not in declared and opts_lib.get(base, other, _MISSING) is _MISSING:
            close = difflib.get_close_matches(other, known, n=1, cutoff=0.8)
            found.append(f"{where}.when: {other} is not an opt of the base opts nor searched"
                         + (f"; did you mean {close[0]}?" if close else ""))
        elif other not in space and canonical(opts_lib.get(base, other)) != canonical(value):
            found.append(f"{where}.when: {other} is {json.dumps(opts_lib.get(base, other))} in the opts and not "
                         f"searched, so {key} would never be sampled; fix the value or drop the condition")
    return found


def _needs(key: str, space: dict) -> set[str]:
    """The searched keys `key`'s condition reads, directly or through theirs."""
    found, todo = set(), [key]
    while todo:
        entry = space[todo.pop()]
        when = entry.get("when") if isinstance(entry, dict) else None
        for other in when if isinstance(when, dict) else ():
            if other in space and other not in found:
                found.add(other)
                todo.append(other)
    return found
