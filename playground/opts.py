"""The opts: the framework's declared keys, validation, defaults and the reference table (reading the tree and
`--set` are playground.opts_tree's).

Every framework key is declared once in `FRAMEWORK_OPTS` with its type, default, rule and allowed values; the
README's opts reference and `--dry-run` read the same table. Components may declare the keys they read in a
module-level `OPTS` dict of the same shape, so their typos and bad values are caught as well, and they read them
plainly. Keys nobody declares are the user's own and pass through untouched (the seed: "directly add them into the
command line opts dictionary").
"""
from __future__ import annotations

import copy
import difflib
import fnmatch
import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from playground.opts_tree import (  # the tree's own functions, re-exported for callers  # noqa: F401
    MAX_DEPTH, apply_set, flatten, get, load_opts, parse_json, parse_value, set_dotted)
from playground.slots import OPTIMIZER_KEY, SLOTS

REQUIRED = "required"  # present and non-empty
NULLABLE = "nullable"  # present, may be null or empty (the seed's "mandatory nullable")
OPTIONAL = "optional"  # may be left out or null: the default applies
INT64_MAX = 2**63 - 1  # torch and numpy take integers as C 64-bit ones


@dataclass(frozen=True)
class Opt:
    """One declared key: accepted JSON types, default when left out or null, rule, the one-line meaning, and what a
    value must be: one of `choices` (when only a few are allowed), within the range (numbers are never negative
    unless `minimum` says otherwise), each list element as `items` declares, each known field of an object as
    `fields` declares, and `check(value, resolved_opts)`, a rule involving other keys, returns no problem ("" or
    []; a problem starting with "." or "[" is about a field or element of the key: ".params.eps: ...")."""

    types: tuple[type, ...]
    default: Any = None
    rule: str = OPTIONAL
    doc: str = ""
    example: str = ""
    choices: tuple[Any, ...] = ()
    minimum: float | None = 0
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    items: Opt | None = None
    fields: dict[str, Opt] | None = None
    check: Callable[[Any, dict], str] | None = None


_INT, _NUM, _BOOL, _STR, _LIST, _DICT = (int,), (int, float), (bool,), (str,), (list,), (dict,)
_DEPRECATED = "accepted and unused: "
METRIC = Opt(_DICT, fields={
    "name": Opt(_STR, None, REQUIRED, "The metric's column in train.csv, test.csv and results.json."),
    "meter_py": Opt(_STR, None, REQUIRED, "Meter class: a module_map.py name or a dotted path."),
    "meter_kargs": Opt(_DICT, {}, doc="Keyword arguments of the meter class."),
    "is_train": Opt(_BOOL, None, doc="Measured on training batches (default: the name starts with train)."),
})
PLOT = Opt(_DICT, fields={"x": Opt(_STR, "", choices=("", "epochs", "iterations")), "x_title": Opt(_STR),
                          "ys": Opt(_LIST, None, REQUIRED, "Metric names.", items=Opt(_STR)),
                          "y_title": Opt(_STR), "title": Opt(_STR)})
HANDLER = Opt(_DICT, fields={"handler_py": Opt(_STR, None, REQUIRED, "Handler class."),
                             "kargs": Opt(_DICT, {}, doc="Keyword arguments of the handler class."),
                             "trigger": Opt(_LIST, doc='[N, "epoch"] or [N, "iteration"] (the handler checks it).')})

FRAMEWORK_OPTS: dict[str, Opt] = {
    # input
    "input.datasets": Opt(_LIST, [], NULLABLE, _DEPRECATED + "Caffe2's list of extra dataset handles."),
    "input.decode_threads": Opt(_INT, 0, OPTIONAL, "DataLoader worker processes (0 = load in the training process)."),
    # model
    "model.optimizer_py": Opt(_STR, "", OPTIONAL, "Optimizer component: the same protocol as `parameter_update_py`; "
                              "used when that one is empty."),
    "model.module_maps": Opt(_LIST, [], OPTIONAL, "Extra modules defining MODULE_MAP, searched before module_map.py."),
    # model_param
    "model_param.seed": Opt(_INT, 0, OPTIONAL, "Seed of every random draw: initialisation, data order, augmentation.",
                            maximum=2**32 - 1),  # numpy's seeds end there
    "model_param.pretrained_model": Opt(_STR, "", NULLABLE, "Checkpoint whose weights start the run (empty: none)."),
    "model_param.reset_epoch": Opt(_BOOL, True, OPTIONAL, "With `pretrained_model`: true starts at epoch 0 with "
                                   "only its weights; false continues its epochs, optimizer and schedule."),
    "model_param.memonger": Opt(_BOOL, None, REQUIRED, "Activation checkpointing where the forward pass supports it "
                                "(Caffe2's memonger shared activation memory)."),
    "model_param.max_concurrent_distributed_ops": Opt(_INT, None, NULLABLE, _DEPRECATED + "torch.distributed "
                                                      "schedules its own collectives."),
    "model_param.combine_spatial_bn": Opt(_BOOL, None, NULLABLE, "SyncBatchNorm across processes when training "
                                          "with more than one."),
    "model_param.cuda_nccl": Opt(_BOOL, True, OPTIONAL, "NCCL backend between GPU processes (false: gloo)."),
    "model_param.engine": Opt(_STR, "", OPTIONAL, '"CUDNN": cuDNN autotuning (cudnn.benchmark); empty: defaults.'),
    "model_param.channels_last": Opt(_BOOL, False, OPTIONAL, "Store images and conv weights channels-last."),
    "model_param.mixed_precision": Opt(_STR, "", OPTIONAL, 'Autocast dtype: "bf16" (CPU or GPU), "fp16" (GPU, with '
                                       'loss scaling) or empty for full precision.', choices=("", "bf16", "fp16")),
    "model_param.compile": Opt(_BOOL, False, OPTIONAL, "Run the network through torch.compile."),
    "model_param.grad_clip_norm": Opt(_NUM, 0, OPTIONAL, "Clip the gradients' total L2 norm to this before each "
                                      "optimizer step (0: off; with fp16 they are unscaled first)."),
    "model_param.grad_clip_value": Opt(_NUM, 0, OPTIONAL, "Clip every gradient element to [-this, this] before each "
                                       "optimizer step (0: off); not together with grad_clip_norm."),
    # epoch_iter
    "epoch_iter.num_train_sample_per_epoch": Opt(_INT, None, REQUIRED, "Training samples per epoch; epoch "
                                                 "iterations = this // total batch size.", minimum=1),
    "epoch_iter.num_test_sample": Opt(_INT, None, REQUIRED, "Test samples used (the first ones of the test set)."),
    "epoch_iter.num_epochs": Opt(_INT, None, REQUIRED, "Epochs to train.", minimum=1),
    "epoch_iter.num_epochs_per_flow_schedule": Opt(_INT, None, REQUIRED, "Epochs per LR step for the step "
                                                   "schedules (Caffe2 ran this many epochs per workflow).",
                                                   minimum=1),
    "epoch_iter.num_train_iteration_per_test": Opt(_INT, None, REQUIRED, "Training iterations between test passes "
                                                   "(a test pass also ends every epoch)."),
    "epoch_iter.batch_per_device": Opt(_INT, None, REQUIRED, "Samples per device (process) per batch; an "
                                       "iteration takes accumulate_grad_batches batches.",
                                       minimum=1),
    "epoch_iter.accumulate_grad_batches": Opt(_INT, 1, OPTIONAL, "Batches whose gradients are summed per optimizer "
                                              "step: total batch size = batch_per_device x processes x this, and "
                                              "iterations count optimizer steps.", minimum=1),
    "epoch_iter.num_test_iter": Opt(_INT, None, REQUIRED, "Batches per test pass (0: the whole test set)."),
    # distributed
    "distributed.num_shards": Opt(_INT, None, REQUIRED, "Hosts taking part.", minimum=1),
    "distributed.num_gpus": Opt(_INT, None, REQUIRED, "GPUs per host, one process each; 0 trains on CPU."),
    "distributed.first_gpu_id": Opt(_INT, None, REQUIRED, "First CUDA device index used on each host."),
    "distributed.num_cpus": Opt(_INT, None, REQUIRED, "CPU processes per host when num_gpus is 0."),
    "distributed.first_cpu_id": Opt(_INT, None, REQUIRED, "First CPU core given to the processes (pinning)."),
    "distributed.rendezvous_path": Opt(_STR, "", OPTIONAL, "Folder every host reaches (rendezvous_filestore)."),
    "distributed.master_addr": Opt(_STR, "127.0.0.1", OPTIONAL, "Address of shard 0 (rendezvous_tcp)."),
    "distributed.master_port": Opt(_INT, 29500, OPTIONAL, "Port of shard 0 (rendezvous_tcp).", minimum=1,
                                   maximum=65535),
    "distributed.rendezvous_timeout_s": Opt(_NUM, 300, OPTIONAL, "Seconds to wait for every process to meet, and "
                                            "for any collective (at most a week).", exclusive_minimum=0,
                                            maximum=7 * 24 * 3600),
    # output
    "output.checkpoint_folder": Opt(_STR, "", OPTIONAL, "Folder of checkpoints, results, plots and log; re-running "
                                    "on it resumes. Empty: a new folder under the runs root."),
    "output.runs_root": Opt(_STR, "", OPTIONAL, "Where runs without a checkpoint_folder go (default: "
                            "$PLAYGROUND_RUNS or ./runs); a folder or a URL such as s3://bucket/prefix."),
    "output.mirror_deadline_s": Opt(_NUM, 120, OPTIONAL, "With a URL runs root: seconds the last upload may take "
                                    "after training; then the run fails naming the files left to `playground runs "
                                    "push TAG`."),
    "output.tensorboard": Opt(_BOOL, False, OPTIONAL, "Also write TensorBoard event files into the run folder "
                              "(needs the tensorboard package)."),
    "output.metrics": Opt(_LIST, [], OPTIONAL, "Metrics: {name, meter_py, meter_kargs, is_train}.", items=METRIC),
    "output.plots": Opt(_LIST, [], OPTIONAL, "Plots: {x, x_title, ys, y_title, title}; x is \"epochs\" or \"\" "
                        "(iterations); ys are recorded metrics or columns a listed handler adds (EMA's ema_*).",
                        items=PLOT),
    "output.handlers": Opt(_LIST, [], OPTIONAL, "Event handlers: {handler_py, kargs}.", items=HANDLER),
    "output.progress_bar": Opt(_BOOL, True, OPTIONAL, "Add a ProgressBar handler unless output.handlers lists one: "
                               "a tqdm bar when stderr is a terminal, periodic log lines otherwise (rank 0)."),
    "output.record_every_iters": Opt(_INT, 10, OPTIONAL, "Training iterations between records of train metrics and "
                                     "throughput.", minimum=1),
    "output.keep_checkpoints": Opt(_INT, 2, OPTIONAL, "Regular checkpoints kept: the newest N (0: all); an older one "
                                   "is deleted once the newest verifies. The final and the best are always kept."),
    "output.checkpoint_every_iters": Opt(_INT, 0, OPTIONAL, "Also checkpoint every N iterations, for exact "
                                         "mid-epoch resume (0: only at epoch ends)."),
}

# The `*_py` keys of the module slots, declared from the slot table (playground/slots.py).
FRAMEWORK_OPTS.update({slot.key: Opt(_STR, slot.default or (None if slot.required else ""),
                                     REQUIRED if slot.required else OPTIONAL, slot.doc, slot.example)
                       for slot in SLOTS.values() if "[]" not in slot.key})
FRAMEWORK_OPTS[OPTIMIZER_KEY] = Opt(_STR, "", OPTIONAL, "Optimizer component: the same slot as `parameter_update_py`; "
                                    "used when that one is empty.")

ALWAYS_RECORDED = ("secs_per_train", "samples_per_sec", "learning_rate")  # in every train row
SECTIONS = sorted({key.split(".")[0] for key in FRAMEWORK_OPTS})


# ---------------------------------------------------------------------------------------------- validation


def _type_name(types: tuple[type, ...]) -> str:
    return {_INT: "an integer", _NUM: "a number", _BOOL: "true or false", _STR: "a string",
            _LIST: "a list", _DICT: "an object"}.get(types, " or ".join(t.__name__ for t in types))


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _show(value: Any) -> str:
    """`value` as JSON for a message, cut short: a long or deep value would drown the message."""
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _structure_problems(node: Any, where: str, depth: int = 0) -> list[str]:
    """Keys given twice, non-finite numbers and nesting deeper than MAX_DEPTH, anywhere in the tree."""
    def child(key: Any) -> str:
        return f"{where}[{key}]" if isinstance(node, list) else f"{where}.{key}" if where else key

    if isinstance(node, (dict, list)) and node and depth == MAX_DEPTH:
        return [f"{where}: nested more than {MAX_DEPTH} levels deep; flatten it"]
    problems = [f"{child(key)}: given twice in the file; keep one" for key in getattr(node, "duplicates", ())]
    for key, value in node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ():
        problems += _structure_problems(value, child(key), depth + 1)
    if isinstance(node, float) and not math.isfinite(node):
        problems.append(f"{where}: {float(node)} is not a finite number; give a finite value")
    return problems


def _range_problems(value: float, opt: Opt, where: str) -> list[str]:
    for bound, out_of_range, word in ((opt.minimum, operator.lt, "at least"), (opt.exclusive_minimum, operator.le,
                                      "above"), (opt.maximum, operator.gt, "at most"),
                                      (opt.exclusive_maximum, operator.ge, "below")):
        if bound is not None and out_of_range(value, bound):
            return [f"{where}: must be {word} {_show(bound)}, got {_show(value)}"]
    if isinstance(value, int) and abs(value) > INT64_MAX:
        return [f"{where}: must be within ±{INT64_MAX} (64 bits), got {value}"]
    return []


def _value_problems(value: Any, opt: Opt, where: str) -> list[str]:
    """Problems of one value against its declaration, down to every list element and object field."""
    if value is None or (value == "" and opt.rule == NULLABLE):
        return [f"{where}: must not be null ({opt.doc})"] if opt.rule == REQUIRED else []
    if isinstance(value, float) and not math.isfinite(value):
        return []  # _structure_problems reports it
    if not _has_type(value, opt.types):
        return [f"{where}: expected {_type_name(opt.types)}, got {_show(value)}"]
    if isinstance(value, (str, list, dict)) and not value and opt.rule == REQUIRED:
        return [f"{where}: must not be empty ({opt.doc})"]
    if value == "" and opt.default and isinstance(opt.default, str):  # an empty string is no name, no address
        return [f"{where}: must not be empty; leave it out or null for {_show(opt.default)}"]
    if opt.choices and value not in opt.choices:
        return [f"{where}: must be one of {', '.join(json.dumps(c) for c in opt.choices)}, got {_show(value)}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _range_problems(value, opt, where)
    problems = []
    if isinstance(value, list) and opt.items:
        for i, item in enumerate(value):
            problems += (_value_problems(item, opt.items, f"{where}[{i}]") if item is not None else
                         [f"{where}[{i}]: expected {_type_name(opt.items.types)}, got null"])
    if isinstance(value, dict) and opt.fields is not None:
        for name, field in opt.fields.items():
            if name in value:
                problems += _value_problems(value[name], field, f"{where}.{name}")
            elif field.rule != OPTIONAL:
                problems.append(f"{where}.{name}: missing; every entry needs it ({field.doc})")
        problems += [f"{where}.{k}: unknown key; did you mean {close[0]!r}?" for k in value if k not in opt.fields
                     and (close := difflib.get_close_matches(k, opt.fields, n=1, cutoff=0.8))]
    return problems


def _near_miss_problems(opts: dict, declared: dict[str, Opt]) -> list[str]:
    """Undeclared keys close to a declared one are typos (`base_learing_rate`); other undeclared keys are the user's."""
    problems = []
    for section, body in opts.items():
        if section not in SECTIONS:
            if close := difflib.get_close_matches(section, SECTIONS, n=1, cutoff=0.8):
                problems.append(f"{section}: unknown section; did you mean {close[0]!r}?")
            continue
        if not isinstance(body, dict):
            continue
        known = [k.split(".", 1)[1] for k in declared if k.startswith(section + ".")]
        for key in body:
            if key not in known and (close := difflib.get_close_matches(key, known, n=1, cutoff=0.85)):
                problems.append(f"{section}.{key}: not a known opt; did you mean {section}.{close[0]}?")
    return problems


def metric_names(opts: dict) -> list[str]:
    """The names of output.metrics (those well formed), in order."""
    metrics = get(opts, "output.metrics")
    return [m["name"] for m in metrics if isinstance(m, dict) and isinstance(m.get("name"), str)] \
        if isinstance(metrics, list) else []


def recorded_metrics(opts: dict) -> list[str]:
    """What every run of `opts` records: its metrics, then ALWAYS_RECORDED (handlers may add columns)."""
    return [*metric_names(opts), *ALWAYS_RECORDED]


def added_by(handlers: list, column: str) -> bool:
    """Whether one of `handlers` (instances or classes) adds `column` to rows: its adds_columns patterns."""
    return any(fnmatch.fnmatchcase(column, pattern) for h in handlers for pattern in getattr(h, "adds_columns", ()))


def _output_problems(opts: dict) -> list[str]:
    """Metric names are unique, and none is a column every run records anyway."""
    names = metric_names(opts)
    return ([f"output.metrics: the name {n!r} is used twice; metric names must be unique"
             for n in sorted({n for n in names if names.count(n) > 1})]
            + [f"output.metrics: the name {n!r} is a column every run records; give the metric another name"
               for n in sorted(set(names) & set(ALWAYS_RECORDED))])


def plot_problems(opts: dict, handlers: list[type]) -> list[str]:
    """Plots draw recorded columns: the metrics, ALWAYS_RECORDED, or what the listed `handlers` (classes) add
    to rows (their `adds_columns` patterns, e.g. EMA's ema_*)."""
    known = recorded_metrics(opts)
    patterns = [pattern for handler in handlers for pattern in getattr(handler, "adds_columns", ())]
    plots, problems = get(opts, "output.plots"), []
    for i, plot in enumerate(plots if isinstance(plots, list) else []):
        ys = plot.get("ys") if isinstance(plot, dict) else None
        problems += [f"output.plots[{i}].ys: {y!r} is not a metric; known: {', '.join(sorted(set(known)))}"
                     + (f", and what the handlers add ({', '.join(patterns)})" if patterns else "")
                     for y in (ys if isinstance(ys, list) else []) if isinstance(y, str) and y not in known
                     and not added_by(handlers, y)]
    return problems


def validate(opts: dict, declared: dict[str, Opt] = FRAMEWORK_OPTS) -> list[str]:
    """Every problem in `opts` against `declared`, one line each, naming the dotted key and the fix. The rules
    across keys (`Opt.check`) run once every key is well formed."""
    problems = _structure_problems(opts, "")
    for section in SECTIONS:
        if section in opts and not isinstance(opts[section], dict):
            problems.append(f"{section}: expected an object of opts, got {_show(opts[section])}")
    for key, opt in declared.items():
        value = get(opts, key, _MISSING)
        if value is not _MISSING:
            problems += _value_problems(value, opt, key)
        elif opt.rule != OPTIONAL:
            example = f' Example: "{key.split(".")[-1]}": {opt.example}' if opt.example else ""
            problems.append(f"{key}: missing; it is mandatory ({opt.doc}){example}")
    if not get(opts, "model.parameter_update_py") and not get(opts, "model.optimizer_py"):
        problems.append("model.parameter_update_py: missing; set it or model.optimizer_py, e.g. "
                        '"parameter_update_py": "sgd_param_update"')
    problems += _output_problems(opts) + _near_miss_problems(opts, declared)
    if not problems:
        resolved = with_defaults(opts, declared)
        problems = [f"{key}{problem}" if problem.startswith((".", "[")) else f"{key}: {problem}"
                    for key, opt in declared.items() if opt.check and (value := get(resolved, key)) is not None
                    for problem in _as_list(opt.check(value, resolved))]
    return problems


_MISSING = object()


def _as_list(problems: str | list[str]) -> list[str]:
    return [problems] if isinstance(problems, str) and problems else list(problems or [])


def value_problems(values: dict[str, Any]) -> list[str]:
    """Problems of framework opts given by dotted key alone (the Estimator's settings), as `validate` finds them."""
    declared = {key: FRAMEWORK_OPTS[key] for key in values}
    tree: dict = {}
    for key, value in values.items():
        set_dotted(tree, key, value, key)
    return [p for p in validate(tree, declared) if p.split(":")[0].split("[")[0] in declared]


def _plain(node: Any, depth: int = 0) -> Any:
    """A copy of a parsed tree as plain dicts, lists and floats; what lies deeper than MAX_DEPTH becomes null
    (validate reports it)."""
    if isinstance(node, (dict, list, tuple)) and depth > MAX_DEPTH:
        return None
    if isinstance(node, dict):
        return {key: _plain(value, depth + 1) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(value, depth + 1) for value in node]
    return float(node) if isinstance(node, float) else node


def with_defaults(opts: dict, declared: dict[str, Opt] = FRAMEWORK_OPTS) -> dict:
    """A deep copy of `opts` with every declared default filled in where a key is left out or null: the resolved
    opts saved with the run. Tolerates malformed trees (validate reports them): an optional key of the wrong type
    gets its default too, so what reads the opts before validation ends (resolving components) never meets one."""
    resolved = _plain(opts)
    for key, opt in declared.items():
        if opt.rule == OPTIONAL and not _has_type(get(resolved, key), opt.types):
            *parents, leaf = key.split(".")
            node = resolved
            for part in parents:
                node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node[leaf] = copy.deepcopy(opt.default)
        fields = opt.items.fields if opt.items and opt.items.fields else {}
        entries = get(resolved, key)
        for entry in entries if fields and isinstance(entries, list) else []:
            for name, field in fields.items() if isinstance(entry, dict) else ():
                if entry.get(name) is None and field.default is not None:
                    entry[name] = copy.deepcopy(field.default)
    metrics = get(resolved, "output.metrics")
    for entry in metrics if isinstance(metrics, list) else []:
        if isinstance(entry, dict) and entry.get("is_train") is None:
            entry["is_train"] = isinstance(entry.get("name"), str) and entry["name"].startswith("train")
    return resolved


_PLURAL = {_INT: "integers", _NUM: "numbers", _BOOL: "booleans", _STR: "strings", _LIST: "lists", _DICT: "objects"}


def _range_text(opt: Opt) -> str:
    """The range of a numeric key as the reference shows it: " ≥ 1", " in (0, 604800]"."""
    if opt.types not in (_INT, _NUM):
        return ""
    low = ("(", opt.exclusive_minimum) if opt.exclusive_minimum is not None else ("[", opt.minimum)
    high = (")", opt.exclusive_maximum) if opt.exclusive_maximum is not None else ("]", opt.maximum)
    if low[1] is not None and high[1] is not None:
        return f" in {low[0]}{_show(low[1])}, {_show(high[1])}{high[0]}"
    if low[1] is not None:
        return f" {'>' if low[0] == '(' else '≥'} {_show(low[1])}"
    return f" {'<' if high[0] == ')' else '≤'} {_show(high[1])}" if high[1] is not None else ""


def describe_type(opt: Opt) -> str:
    """What a value of `opt` may be, in words: its type, list elements, choices and range."""
    if opt.choices:
        return "one of " + ", ".join(f"`{json.dumps(c)}`" for c in opt.choices)
    text = _type_name(opt.types)
    if opt.items:
        text += f" of {_PLURAL.get(opt.items.types, _type_name(opt.items.types))}{_range_text(opt.items)}"
    return text + _range_text(opt)


def reference_table(declared: dict[str, Opt]) -> str:
    """The opts reference as a markdown table (the README's, kept current by a test)."""
    rule = {REQUIRED: "**mandatory**", NULLABLE: "**mandatory**, nullable", OPTIONAL: ""}
    lines = ["| key | type | default | | meaning |", "|---|---|---|---|---|"]
    for key in sorted(declared, key=lambda k: (SECTIONS.index(k.split(".")[0]) if k.split(".")[0] in SECTIONS
                                               else len(SECTIONS), k)):
        opt = declared[key]
        default = "" if opt.rule != OPTIONAL else f"`{json.dumps(opt.default)}`"
        lines.append(f"| `{key}` | {describe_type(opt)} | {default} | {rule[opt.rule]} | "
                     f"{opt.doc.replace('|', '/')} |")
    return "\n".join(lines)
