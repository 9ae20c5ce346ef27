"""From checked opts to a running experiment: resolve components, derive run facts, restore, run.

Everything that can be wrong with the opts is found in `prepare`, before anything is built or written.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch

from playground import checkpoint, distributed, opts as opts_lib, registry
from playground.anyexp import AnyExp
from playground.errors import ComponentError, OptsError, PlaygroundError, UsageError
from playground.handlers import default_handlers

log = logging.getLogger(__name__)

MODULE_ROLES = {  # attribute of Components -> opts key naming it
    "input": "input.input_name_py", "model": "model.model_name_py", "forward_pass": "model.forward_pass_py",
    "parameter_update": "model.parameter_update_py", "rendezvous": "model.rendezvous_py",
    "override": "model.additional_override_py", "output": "output.gen_output_py",
    "checkpoint_path": "output.gen_checkpoint_path_py",
}


@dataclass
class Components:
    """The resolved object behind every `*_py` opt, and the names they were resolved from."""

    input: ModuleType
    model: ModuleType
    forward_pass: ModuleType
    parameter_update: ModuleType
    rendezvous: ModuleType
    override: ModuleType | None
    output: ModuleType
    checkpoint_path: ModuleType
    meters: list[tuple[dict, type]] = field(default_factory=list)
    handlers: list[tuple[dict, type]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """Facts derived from the opts and the launch; never written back into the opts."""

    device: torch.device
    folder: str
    total_batch_size: int
    epoch_iterations: int
    rank: int = 0
    world_size: int = 1


class AlreadyComplete(PlaygroundError):
    """The folder holds a finished run: nothing to do."""

    exit_code = 0


def resolve_components(opts: dict) -> tuple[Components | None, dict[str, Any], list[str]]:
    """Resolve every `*_py` opt. Returns the components (None if any failed), whatever did resolve (its OPTS
    still declare keys), and one line per failure."""
    problems: list[str] = []
    extra_maps = opts_lib.get(opts, "model.module_maps") or []
    if not isinstance(extra_maps, list) or not all(isinstance(m, str) and m for m in extra_maps):
        return None, {}, [f"model.module_maps: expected a list of module names, got {json.dumps(extra_maps)}"]
    try:
        maps = registry.module_maps(extra_maps)
    except ComponentError as e:
        return None, {}, [str(e)]

    def attempt(key: str, name: Any) -> Any:
        if not isinstance(name, str) or not name:
            return None  # validate() reports it
        try:
            return registry.resolve(key, name, maps)
        except ComponentError as e:
            problems.append(str(e))

    keys = dict(MODULE_ROLES)
    if not opts_lib.get(opts, keys["parameter_update"]):
        keys["parameter_update"] = "model.optimizer_py"  # the seed's other name for the same role
    names = {role: opts_lib.get(opts, key) for role, key in keys.items()}
    found = {role: attempt(keys[role], name) for role, name in names.items()}
    model = found["model"]
    if model is not None and not (isinstance(model.Experiment, type) and issubclass(model.Experiment, AnyExp)):
        problems.append(f"model.model_name_py = {names['model']!r}: its Experiment must be a subclass of "
                        "playground.AnyExp")
    entries = {"metrics": "meter_py", "handlers": "handler_py"}
    classes = {kind: [(entry, attempt(f"output.{kind}[{i}].{field}", entry.get(field)))
                      for i, entry in enumerate(opts_lib.get(opts, f"output.{kind}") or []) if isinstance(entry, dict)]
               for kind, field in entries.items()}
    for kind, kargs_key in (("metrics", "meter_kargs"), ("handlers", "kargs")):
        for i, (entry, cls) in enumerate(classes[kind]):
            if cls is not None and isinstance(entry.get(kargs_key), dict):
                try:
                    inspect.signature(cls).bind(**entry[kargs_key])
                except TypeError as e:
                    problems.append(f"output.{kind}[{i}].{kargs_key}: {e} for {cls.__name__}; see its docstring")
                    continue
                try:  # constructors check their kargs' values; a bad one is an opts problem, found now
                    cls(**entry[kargs_key])
                except (ValueError, TypeError, PlaygroundError) as e:
                    problems.append(f"output.{kind}[{i}].{kargs_key}: {e}")
    if problems or any(found[role] is None for role in MODULE_ROLES if role != "override"):
        return None, found, problems
    return Components(**found, meters=classes["metrics"], handlers=default_handlers(opts, classes["handlers"]),
                      names={MODULE_ROLES[r]: n for r, n in names.items() if n}), found, []


def declared_opts(modules: dict[str, Any]) -> dict[str, opts_lib.Opt]:
    """The framework's keys plus those the resolved component modules declare in their OPTS."""
    declared = dict(opts_lib.FRAMEWORK_OPTS)
    for module in modules.values():
        declared.update(getattr(module, "OPTS", {}) if isinstance(module, ModuleType) else {})
    return declared


def prepare(raw: dict) -> tuple[dict, Components]:
    """Check the opts and resolve their components, reporting every problem at once (OptsError)."""
    components, found, component_problems = resolve_components(opts_lib.with_defaults(raw))
    declared = declared_opts(found)
    problems = opts_lib.validate(raw, declared) + component_problems
    if problems or components is None:
        raise OptsError(problems)
    opts = opts_lib.with_defaults(raw, declared)
    if problems := combination_problems(opts):
        raise OptsError(problems)
    return opts, components


def combination_problems(opts: dict) -> list[str]:
    """Problems only visible in combination: devices and batch arithmetic."""
    problems, dist_opts = [], opts["distributed"]
    if dist_opts["num_shards"] < 1:
        return ['distributed.num_shards: must be at least 1 (the number of hosts), e.g. "num_shards": 1']
    if dist_opts["num_gpus"] > 0:
        available = torch.cuda.device_count()
        if dist_opts["first_gpu_id"] + dist_opts["num_gpus"] > available:
            problems.append(f"distributed.num_gpus: {dist_opts['num_gpus']} GPU(s) from first_gpu_id "
                            f"{dist_opts['first_gpu_id']} asked for, but CUDA sees {available}; set "
                            '"num_gpus": 0 to train on CPU')
    elif dist_opts["num_cpus"] < 1:
        problems.append('distributed.num_cpus: must be at least 1 when num_gpus is 0, e.g. "num_cpus": 1')
    epoch_iter = opts["epoch_iter"]
    if epoch_iter["batch_per_device"] < 1:
        problems.append('epoch_iter.batch_per_device: must be at least 1, e.g. "batch_per_device": 32')
    elif epoch_iter["num_train_sample_per_epoch"] < total_batch_size(opts):
        problems.append(f"epoch_iter.num_train_sample_per_epoch: {epoch_iter['num_train_sample_per_epoch']} is "
                        f"less than one global batch ({total_batch_size(opts)}); raise it or lower batch_per_device")
    if opts["output"]["record_every_iters"] < 1:
        problems.append('output.record_every_iters: must be at least 1, e.g. "record_every_iters": 10')
    return problems


def num_xpus(opts: dict) -> int:
    """Processes per host: one per GPU, or num_cpus on CPU."""
    return opts["distributed"]["num_gpus"] or opts["distributed"]["num_cpus"]


def total_batch_size(opts: dict) -> int:
    return opts["epoch_iter"]["batch_per_device"] * num_xpus(opts) * opts["distributed"]["num_shards"]


def epoch_iterations(opts: dict) -> int:
    return opts["epoch_iter"]["num_train_sample_per_epoch"] // total_batch_size(opts)


def experiment_class(components: Components) -> type[AnyExp]:
    """The model's Experiment, or a subclass of it whose methods come from the override module."""
    base = components.model.Experiment
    module = components.override
    if module is None:
        return base
    methods = {n: f for n, f in vars(module).items()
               if callable(f) and getattr(f, "__module__", None) == module.__name__ and not n.startswith("_")}
    if unknown := sorted(n for n in methods if not hasattr(base, n)):
        raise ComponentError(f"model.additional_override_py = {components.names['model.additional_override_py']!r}"
                             f" defines {', '.join(unknown)}, which {base.__name__} does not have; rename them "
                             "after existing methods or make them private with a leading underscore")
    return type(f"{base.__name__}_{module.__name__.rsplit('.', 1)[-1]}", (base,), methods)


def describe(opts: dict, components: Components) -> str:
    """What `--dry-run` prints: the resolved opts and which module serves each role."""
    cls = experiment_class(components)
    lines = ["resolved opts:", json.dumps(opts, indent=2), "", "components:"]
    for role, key in MODULE_ROLES.items():
        if key in components.names:
            module_name = getattr(getattr(components, role), "__name__", "")
            lines.append(f"  {key:34} {components.names[key]:36} -> {module_name}")
    for entry, cls_ in components.meters:
        lines.append(f"  metric {entry['name']:27} {entry['meter_py']:36} -> {cls_.__module__}.{cls_.__name__}")
    for entry, cls_ in components.handlers:
        lines.append(f"  handler {'':26} {entry['handler_py']:36} -> {cls_.__module__}.{cls_.__name__}")
    lines += [f"  experiment class {'':17} {cls.__name__}",
              f"total_batch_size = {total_batch_size(opts)}, epoch_iterations = {epoch_iterations(opts)}"]
    return "\n".join(lines)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def restore(exp: AnyExp) -> None:
    """Resume from the newest intact checkpoint in the run folder, or start from `pretrained_model`."""
    found = checkpoint.newest_intact(exp.folder)
    if found:
        path, saved = found
        if saved.get("complete"):
            raise AlreadyComplete(f"{exp.folder} holds a finished run ({os.path.basename(path)}); nothing to do. "
                                  "Use another output.checkpoint_folder for a new run")
        _load_into(exp, saved, path, "it was written by a run with other opts; resume with the same opts or "
                   "use another output.checkpoint_folder")
        saved_batch = total_batch_size(saved["opts"]) if "opts" in saved else exp.total_batch_size
        if exp.state.iteration and saved_batch != exp.total_batch_size:
            raise UsageError(f"{path} was written mid-epoch (epoch {exp.state.epoch} iteration {exp.state.iteration}) "
                             f"with a global batch of {saved_batch}, and this run's is {exp.total_batch_size} "
                             "(batch_per_device x processes per host x num_shards): the rest of the epoch would not be "
                             "the same samples. Resume with the same global batch, or move the mid-epoch checkpoints "
                             "away to resume from the last epoch's end")
        log.info("resuming from %s at epoch %d iteration %d", path, exp.state.epoch, exp.state.iteration)
        return
    pretrained = exp.opts["model_param"]["pretrained_model"]
    if pretrained:
        if not os.path.isfile(pretrained):
            raise UsageError(f"model_param.pretrained_model: {pretrained} does not exist; give a checkpoint path "
                             "or leave it empty")
        reset = exp.opts["model_param"]["reset_epoch"]
        _load_into(exp, checkpoint.load(pretrained, map_location=exp.device), pretrained,
                   "give model_param.pretrained_model a checkpoint of this network" +
                   ("" if reset else ", or set model_param.reset_epoch to true to take only its weights"),
                   weights_only=reset)
        log.info("starting from pretrained %s (%s)", pretrained, "weights only, epoch 0" if reset else
                 f"continuing at epoch {exp.state.epoch}")


def _load_into(exp: AnyExp, saved: dict, path: str, fix: str, weights_only: bool = False) -> None:
    """exp.load_checkpoint_state, with a checkpoint that does not fit the experiment as a one-line UsageError."""
    try:
        exp.load_checkpoint_state(saved, weights_only=weights_only)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:2]) or type(e).__name__
        raise UsageError(f"{path} does not fit this experiment ({type(e).__name__}: {detail}); {fix}") from None


@contextmanager
def stop_on_signals(exp: AnyExp) -> Iterator[None]:
    """SIGTERM (preemption) asks the run to checkpoint and stop at the next iteration boundary."""
    def handler(signum: int, frame: Any) -> None:
        exp.request_stop(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(opts: dict, components: Components, folder: str, rank: int = 0, world_size: int = 1,
        device: torch.device | None = None) -> dict:
    """Build the experiment in `folder`, restore it if it was interrupted, and run it to the end."""
    if device is None:
        device = torch.device(f"cuda:{opts['distributed']['first_gpu_id']}" if opts["distributed"]["num_gpus"]
                              else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = opts["model_param"]["engine"].upper() == "CUDNN"
    info = RunInfo(device, folder, total_batch_size(opts), epoch_iterations(opts), rank, world_size)
    seed_everything(opts["model_param"]["seed"])
    exp = experiment_class(components)(opts, components, info)
    exp.build()
    distributed.restore(exp, restore)  # rank 0 restores; every other rank takes its state
    with stop_on_signals(exp):
        return exp.run()
