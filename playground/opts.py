"""The opts tree: loading JSON safely, `--set` overrides, the framework's declared keys, and validation.

Every framework key is declared once in `FRAMEWORK_OPTS` with its type, default and rule; the README's opts
reference and `--dry-run` read the same table. Components may declare the keys they read in a module-level
`OPTS` dict of the same shape, so their typos are caught as well. Keys nobody declares are the user's own and
pass through untouched (the seed: "directly add them into the command line opts dictionary").
"""
from __future__ import annotations

import copy
import difflib
import json
import os
from dataclasses import dataclass
from typing import Any

from playground.errors import UsageError
from playground.slots import OPTIMIZER_KEY, SLOTS

REQUIRED = "required"  # present and non-empty
NULLABLE = "nullable"  # present, may be null or empty (the seed's "mandatory nullable")
OPTIONAL = "optional"  # may be left out: the default applies


@dataclass(frozen=True)
class Opt:
    """One declared key: accepted JSON types, default when left out, rule, the one-line meaning, and the values
    allowed when only a few are (empty: any of its types)."""

    types: tuple[type, ...]
    default: Any = None
    rule: str = OPTIONAL
    doc: str = ""
    example: str = ""
    choices: tuple[Any, ...] = ()
    minimum: float | None = None


_INT, _NUM, _BOOL, _STR, _LIST, _DICT = (int,), (int, float), (bool,), (str,), (list,), (dict,)
_DEPRECATED = "accepted and unused: "

FRAMEWORK_OPTS: dict[str, Opt] = {
    # input
    "input.datasets": Opt(_LIST, [], NULLABLE, _DEPRECATED + "Caffe2's list of extra dataset handles."),
    "input.decode_threads": Opt(_INT, 0, OPTIONAL, "DataLoader worker processes (0 = load in the training process)."),
    # model
    "model.optimizer_py": Opt(_STR, "", OPTIONAL, "Optimizer component: the same protocol as `parameter_update_py`; "
                              "used when that one is empty."),
    "model.module_maps": Opt(_LIST, [], OPTIONAL, "Extra modules defining MODULE_MAP, searched before module_map.py."),
    # model_param
    "model_param.seed": Opt(_INT, 0, OPTIONAL, "Seed of every random draw: initialisation, data order, augmentation."),
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
    # epoch_iter
    "epoch_iter.num_train_sample_per_epoch": Opt(_INT, None, REQUIRED, "Training samples per epoch; epoch "
                                                 "iterations = this // total batch size."),
    "epoch_iter.num_test_sample": Opt(_INT, None, REQUIRED, "Test samples used (the first ones of the test set)."),
    "epoch_iter.num_epochs": Opt(_INT, None, REQUIRED, "Epochs to train."),
    "epoch_iter.num_epochs_per_flow_schedule": Opt(_INT, None, REQUIRED, "Epochs per LR step for the step "
                                                   "schedules (Caffe2 ran this many epochs per workflow)."),
    "epoch_iter.num_train_iteration_per_test": Opt(_INT, None, REQUIRED, "Training iterations between test passes "
                                                   "(a test pass also ends every epoch)."),
    "epoch_iter.batch_per_device": Opt(_INT, None, REQUIRED, "Samples per device (process) per iteration."),
    "epoch_iter.num_test_iter": Opt(_INT, None, REQUIRED, "Batches per test pass (0: the whole test set)."),
    # distributed
    "distributed.num_shards": Opt(_INT, None, REQUIRED, "Hosts taking part."),
    "distributed.num_gpus": Opt(_INT, None, REQUIRED, "GPUs per host, one process each; 0 trains on CPU."),
    "distributed.first_gpu_id": Opt(_INT, None, REQUIRED, "First CUDA device index used on each host."),
    "distributed.num_cpus": Opt(_INT, None, REQUIRED, "CPU processes per host when num_gpus is 0."),
    "distributed.first_cpu_id": Opt(_INT, None, REQUIRED, "First CPU core given to the processes (pinning)."),
    "distributed.rendezvous_path": Opt(_STR, "", OPTIONAL, "Folder every host reaches (rendezvous_filestore)."),
    "distributed.master_addr": Opt(_STR, "127.0.0.1", OPTIONAL, "Address of shard 0 (rendezvous_tcp)."),
    "distributed.master_port": Opt(_INT, 29500, OPTIONAL, "Port of shard 0 (rendezvous_tcp)."),
    "distributed.rendezvous_timeout_s": Opt(_NUM, 300, OPTIONAL, "Seconds to wait for every process to meet, and "
                                            "for any collective."),
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
    "output.metrics": Opt(_LIST, [], OPTIONAL, "Metrics: {name, meter_py, meter_kargs, is_train}."),
    "output.plots": Opt(_LIST, [], OPTIONAL, "Plots: {x, x_title, ys, y_title}; x is \"epochs\" or \"\" "
                        "(iterations)."),
    "output.handlers": Opt(_LIST, [], OPTIONAL, "Event handlers: {handler_py, kargs}."),
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

METRIC_KEYS = {"name": _STR, "meter_py": _STR, "meter_kargs": _DICT, "is_train": _BOOL}
PLOT_KEYS = {"x": _STR, "x_title": _STR, "ys": _LIST, "y_title": _STR}
HANDLER_KEYS = {"handler_py": _STR, "kargs": _DICT, "trigger": _LIST}
ALWAYS_RECORDED = ("secs_per_train", "samples_per_sec")
SECTIONS = sorted({key.split(".")[0] for key in FRAMEWORK_OPTS})


# ---------------------------------------------------------------------------------------------- loading


class _NotFinite(float):
    """A NaN or Infinity found while parsing; reported with its dotted key by `validate`."""


class _JsonObject(dict):
    """A JSON object that remembers keys given twice (json keeps the last one silently)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def parse_json(text: str, source: str) -> Any:
    """Parse JSON, keeping duplicate keys and NaN/Infinity visible to `validate` instead of silently accepting."""
    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=lambda c: _NotFinite(c))
    except json.JSONDecodeError as e:
        raise UsageError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def load_opts(arg: str) -> dict:
    """The opts tree from `--parameters-json`: inline JSON or a path to a .json file, `{"opts": {...}}` or bare."""
    text, source = arg, "--parameters-json"
    if not arg.lstrip().startswith("{"):
        if not os.path.isfile(arg):
            raise UsageError(f"--parameters-json {arg!r} is neither inline JSON nor an existing .json file")
        with open(arg, encoding="utf-8") as f:
            text, source = f.read(), arg
    tree = parse_json(text, source)
    if not isinstance(tree, dict):
        raise UsageError(f"{source}: expected a JSON object holding the opts, got {type(tree).__name__}")
    if set(tree) == {"opts"}:
        tree = tree["opts"]
        if not isinstance(tree, dict):
            raise UsageError(f'{source}: "opts" must be a JSON object')
    return tree


def apply_set(opts: dict, assignment: str) -> None:
    """Apply one `--set dotted.key=VALUE`: VALUE is parsed as JSON, else taken as a string."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {assignment!r}: expected dotted.key=VALUE, e.g. --set epoch_iter.num_epochs=3")
    set_dotted(opts, key.strip(), parse_value(raw, f"--set {key}"), f"--set {key}")


def parse_value(raw: str, source: str) -> Any:
    """A value given on the command line: JSON when it parses (numbers, true, lists...), else the text itself.
    NaN, Infinity and keys given twice are kept marked, for validation to report."""
    try:
        return parse_json(raw, source)
    except UsageError:
        return raw


def set_dotted(opts: dict, key: str, value: Any, where: str) -> None:
    """opts[dotted key] = value, creating the objects on the way; `where` names the setting in errors."""
    *parents, leaf = key.split(".")
    node = opts
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"{where}: {'.'.join(parents[:i + 1])} is not an object, so it has no keys")
    node[leaf] = value


def get(opts: dict, dotted: str, default: Any = None) -> Any:
    """The value at a dotted key, or `default` when any part is missing."""
    node: Any = opts
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values, to compare two opts trees key by key (runs diff, a resumed attempt, the hosts
    of one run): {"a": {"b": [{"c": 1}], "d": [1, 2]}} -> {"a.b[0].c": 1, "a.d": [1, 2]}. Lists of plain values
    and empty containers are leaves."""
    if isinstance(tree, dict) and tree:
        return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and any(isinstance(item, (dict, list)) for item in tree):
        return {k: v for i, value in enumerate(tree) for k, v in flatten(value, f"{prefix.rstrip('.')}[{i}].").items()}
    return {prefix.rstrip("."): tree}


# ---------------------------------------------------------------------------------------------- validation


def _type_name(types: tuple[type, ...]) -> str:
    return {_INT: "an integer", _NUM: "a number", _BOOL: "true or false", _STR: "a string",
            _LIST: "a list", _DICT: "an object"}.get(types, " or ".join(t.__name__ for t in types))


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _structure_problems(node: Any, path: str) -> list[str]:
    """Keys given twice and non-finite numbers, anywhere in the tree."""
    problems = []
    if isinstance(node, _JsonObject):
        problems += [f"{path}{key}: given twice in the JSON; keep one" for key in node.duplicates]
    if isinstance(node, dict):
        for key, value in node.items():
            problems += _structure_problems(value, f"{path}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems += _structure_problems(value, f"{path.rstrip('.')}[{i}].")
    elif isinstance(node, _NotFinite):
        problems.append(f"{path.rstrip('.')}: {float(node)} is not a finite number; give a finite value")
    return problems


def _entry_problems(items: Any, key: str, fields: dict[str, tuple[type, ...]], required: tuple[str, ...]) -> list[str]:
    """Problems in a list of objects such as output.metrics."""
    problems = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object like {{{', '.join(repr(f) for f in fields)}}}")
            continue
        problems += [f"{where}.{f}: missing; every entry needs it" for f in required if not item.get(f)]
        for f, types in fields.items():
            if f in item and item[f] is not None and not _has_type(item[f], types):
                problems.append(f"{where}.{f}: expected {_type_name(types)}, got {json.dumps(item[f])}")
        problems += [f"{where}.{k}: unknown key; did you mean {close[0]!r}?" for k in item
                     if (close := difflib.get_close_matches(k, fields, n=1, cutoff=0.8)) and k not in fields]
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


def validate(opts: dict, declared: dict[str, Opt] = FRAMEWORK_OPTS) -> list[str]:
    """Every problem in `opts` against `declared`, one line each, naming the dotted key and the fix."""
    problems = _structure_problems(opts, "")
    for section in SECTIONS:
        if section in opts and not isinstance(opts[section], dict):
            problems.append(f"{section}: expected an object of opts, got {json.dumps(opts[section])}")
    for key, opt in declared.items():
        value = get(opts, key, _MISSING)
        if value is _MISSING:
            if opt.rule != OPTIONAL:
                example = f' Example: "{key.split(".")[-1]}": {opt.example}' if opt.example else ""
                problems.append(f"{key}: missing; it is mandatory ({opt.doc}){example}")
            continue
        if value is None or value == "":
            if opt.rule == REQUIRED:
                problems.append(f"{key}: must not be empty ({opt.doc})")
            continue
        if not _has_type(value, opt.types):
            problems.append(f"{key}: expected {_type_name(opt.types)}, got {json.dumps(value, default=str)}")
        elif opt.minimum is not None and value < opt.minimum:
            problems.append(f"{key}: must be at least {opt.minimum}, got {value}")
        elif opt.types in (_INT, _NUM) and value < 0:
            problems.append(f"{key}: must not be negative, got {value}")
        elif opt.choices and value not in opt.choices:
            problems.append(f"{key}: must be one of {', '.join(json.dumps(c) for c in opt.choices)}, got "
                            f"{json.dumps(value)}")
    if not get(opts, "model.parameter_update_py") and not get(opts, "model.optimizer_py"):
        problems.append("model.parameter_update_py: missing; set it or model.optimizer_py, e.g. "
                        '"parameter_update_py": "sgd_param_update"')
    metrics = get(opts, "output.metrics", [])
    if isinstance(metrics, list):
        problems += _entry_problems(metrics, "output.metrics", METRIC_KEYS, ("name", "meter_py"))
        names = [m.get("name") for m in metrics if isinstance(m, dict)]
        problems += [f"output.metrics: the name {n!r} is used twice; metric names must be unique"
                     for n in sorted({n for n in names if names.count(n) > 1})]
        plots = get(opts, "output.plots", [])
        if isinstance(plots, list):
            problems += _entry_problems(plots, "output.plots", PLOT_KEYS, ("ys",))
            known = set(names) | set(ALWAYS_RECORDED) | {"learning_rate"}
            for i, plot in enumerate(p for p in plots if isinstance(p, dict)):
                problems += [f"output.plots[{i}].ys: {y!r} is not a metric; known: {', '.join(sorted(known))}"
                             for y in plot.get("ys") or [] if y not in known]
                if plot.get("x") not in (None, "", "epochs", "iterations"):
                    problems.append(f'output.plots[{i}].x: {plot["x"]!r} is not an axis; use "epochs" or '
                                    '"iterations" ("" means iterations)')
    handlers = get(opts, "output.handlers", [])
    if isinstance(handlers, list):
        problems += _entry_problems(handlers, "output.handlers", HANDLER_KEYS, ("handler_py",))
    return problems + _near_miss_problems(opts, declared)


_MISSING = object()


def value_problems(values: dict[str, Any]) -> list[str]:
    """Problems of framework opts given by dotted key alone (the Estimator's settings), as `validate` finds them."""
    declared = {key: FRAMEWORK_OPTS[key] for key in values}
    tree: dict = {}
    for key, value in values.items():
        set_dotted(tree, key, value, key)
    return [p for p in validate(tree, declared) if p.split(":")[0] in declared]


def with_defaults(opts: dict, declared: dict[str, Opt] = FRAMEWORK_OPTS) -> dict:
    """A deep copy of `opts` with every declared default filled in: the resolved opts saved with the run.
    Tolerates malformed trees (validate reports them), leaving the malformed parts as they are."""
    resolved = json.loads(json.dumps(opts))  # plain dicts and floats, no parse-time wrappers
    for key, opt in declared.items():
        if opt.rule != OPTIONAL or get(resolved, key, _MISSING) is not _MISSING:
            continue
        *parents, leaf = key.split(".")
        node = resolved
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[leaf] = copy.deepcopy(opt.default)
    for kind, fields in (("metrics", {"meter_kargs": {}}), ("handlers", {"kargs": {}})):
        for entry in get(resolved, f"output.{kind}") or []:
            if isinstance(entry, dict):
                for field, default in fields.items():
                    entry.setdefault(field, copy.deepcopy(default))
                if kind == "metrics":
                    entry.setdefault("is_train", str(entry.get("name", "")).startswith("train"))
    return resolved


def reference_table(declared: dict[str, Opt]) -> str:
    """The opts reference as a markdown table (the README's, kept current by a test)."""
    rule = {REQUIRED: "**mandatory**", NULLABLE: "**mandatory**, nullable", OPTIONAL: ""}
    lines = ["| key | type | default | | meaning |", "|---|---|---|---|---|"]
    for key in sorted(declared, key=lambda k: (SECTIONS.index(k.split(".")[0]) if k.split(".")[0] in SECTIONS
                                               else len(SECTIONS), k)):
        opt = declared[key]
        default = "" if opt.rule != OPTIONAL else f"`{json.dumps(opt.default)}`"
        lines.append(f"| `{key}` | {_type_name(opt.types)} | {default} | {rule[opt.rule]} | "
                     f"{opt.doc.replace('|', '/')} |")
    return "\n".join(lines)
