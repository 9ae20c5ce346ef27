"""From opts to a running experiment: the one place that translates opts into the loop's facts and parts.

    opts, components = prepare(raw)      # every problem found here, before anything is built or written
    run(opts, components, folder)        # RunInfo and Parts from the opts, restore, run
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
from playground.parts import Metric, Parts, RunInfo
from playground.slots import MODULE_SLOTS, OPTIMIZER_KEY, SLOTS
from playground.state import StopRequest

log = logging.getLogger(__name__)


@dataclass
class Components:
    """The resolved object behind every `*_py` opt: a module per slot, the meter and handler classes with their
    opts entries, and the names they were resolved from (opts key -> name)."""

    modules: dict[str, ModuleType]
    meters: list[tuple[dict, type]] = field(default_factory=list)
    handlers: list[tuple[dict, type]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)


def slot_keys(opts: dict) -> dict[str, str]:
    """Opts key naming each module slot (parameter_update falls back to the seed's optimizer_py)."""
    keys = {slot: SLOTS[slot].key for slot in MODULE_SLOTS}
    if not opts_lib.get(opts, keys["parameter_update"]):
        keys["parameter_update"] = OPTIMIZER_KEY
    return keys


def resolve_components(opts: dict) -> tuple[Components | None, dict[str, Any], list[str]]:
    """Resolve every `*_py` opt. Returns the components (None if any failed), whatever did resolve (its OPTS
    still declare keys), and one line per failure."""
    problems: list[str] = []
    extra_maps = opts_lib.get(opts, "model.module_maps") or []
    if not isinstance(extra_maps, list) or not all(isinstance(m, str) and m for m in extra_maps):
        return None, {}, [f"model.module_maps: expected a list of module names, got {json.dumps(extra_maps)}"]
    try:
        names = registry.catalogue(extra_maps)
    except ComponentError as e:
        return None, {}, [str(e)]

    def attempt(key: str, name: Any) -> Any:
        if not isinstance(name, str) or not name:
            return None  # validate() reports it
        try:
            return registry.resolve(key, name, names)
        except ComponentError as e:
            problems.append(str(e))

    keys = slot_keys(opts)
    given = {slot: opts_lib.get(opts, key) for slot, key in keys.items()}
    found = {slot: attempt(keys[slot], name) for slot, name in given.items()}
    model = found["model"]
    if model is not None and not (isinstance(model.Experiment, type) and issubclass(model.Experiment, AnyExp)):
        problems.append(f"{keys['model']} = {given['model']!r}: its Experiment must be a subclass of playground.AnyExp")
    classes = {kind: [(entry, attempt(f"output.{kind}[{i}].{slot}_py", entry.get(f"{slot}_py")))
                      for i, entry in enumerate(opts_lib.get(opts, f"output.{kind}") or []) if isinstance(entry, dict)]
               for kind, slot in (("metrics", "meter"), ("handlers", "handler"))}
    for kind, kargs_key in (("metrics", "meter_kargs"), ("handlers", "kargs")):
        for i, (entry, cls) in enumerate(classes[kind]):
            if cls is not None and isinstance(entry.get(kargs_key, {}), dict):
                problems += _construction_problems(f"output.{kind}[{i}]", kargs_key, cls, entry)
    if all(cls is not None for _, cls in classes["handlers"]):  # (else what they add is unknown)
        problems += opts_lib.plot_problems(opts, [cls for _, cls in classes["handlers"]])
    if problems or any(found[slot] is None for slot in MODULE_SLOTS if SLOTS[slot].required):
        return None, found, problems
    return Components({s: m for s, m in found.items() if m is not None}, classes["metrics"], classes["handlers"],
                      {keys[s]: n for s, n in given.items() if n}), found, []


def _construction_problems(where: str, kargs_key: str, cls: type, entry: dict) -> list[str]:
    """Build the class once with its kargs: constructors check their values, so a bad one is found now."""
    kargs = entry.get(kargs_key) or {}
    try:
        inspect.signature(cls).bind(**kargs)
    except TypeError as e:
        return [f"{where}.{kargs_key}: {e} for {cls.__name__}; see its docstring"]
    try:
        build_entry(cls, entry, kargs_key)
    except (ValueError, TypeError, PlaygroundError) as e:
        return [f"{where}.{kargs_key}: {e}"]
    return []


def build_entry(cls: type, entry: dict, kargs_key: str) -> Any:
    """An instance of a metric's meter or of a handler from its opts entry (a handler's trigger included)."""
    kargs = dict(entry.get(kargs_key) or {})
    if entry.get("trigger") is not None:
        kargs["trigger"] = entry["trigger"]
    return cls(**kargs)


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
    components.handlers = default_handlers(opts["output"]["progress_bar"], components.handlers)
    return opts, components


def combination_problems(opts: dict) -> list[str]:
    """Problems only visible in combination: devices and batch arithmetic."""
    problems, dist_opts = [], opts["distributed"]
    if dist_opts["num_gpus"] > 0:
        available = torch.cuda.device_count()
        if dist_opts["first_gpu_id"] + dist_opts["num_gpus"] > available:
            problems.append(f"distributed.num_gpus: {dist_opts['num_gpus']} GPU(s) from first_gpu_id "
                            f"{dist_opts['first_gpu_id']} asked for, but CUDA sees {available}; set "
                            '"num_gpus": 0 to train on CPU')
    elif dist_opts["num_cpus"] < 1:
        problems.append('distributed.num_cpus: must be at least 1 when num_gpus is 0, e.g. "num_cpus": 1')
    epoch_iter = opts["epoch_iter"]
    if epoch_iter["num_train_sample_per_epoch"] < total_batch_size(opts):
        problems.append(f"epoch_iter.num_train_sample_per_epoch: {epoch_iter['num_train_sample_per_epoch']} is "
                        f"less than one global batch ({total_batch_size(opts)}); raise it or lower batch_per_device"
                        + (" or accumulate_grad_batches" if epoch_iter["accumulate_grad_batches"] > 1 else ""))
    if opts["model_param"]["grad_clip_norm"] and opts["model_param"]["grad_clip_value"]:
        problems.append("model_param.grad_clip_value: given together with grad_clip_norm; clip by one of them and "
                        "set the other to 0")
    return problems


def num_xpus(opts: dict) -> int:
    """Processes per host: one per GPU, or num_cpus on CPU."""
    return opts["distributed"]["num_gpus"] or opts["distributed"]["num_cpus"]


def total_batch_size(opts: dict) -> int:
    """Samples per optimizer step: batch_per_device x processes x accumulate_grad_batches."""
    epoch_iter = opts["epoch_iter"]
    return (epoch_iter["batch_per_device"] * num_xpus(opts) * opts["distributed"]["num_shards"]
            * epoch_iter["accumulate_grad_batches"])


def run_info(opts: dict, folder: str, rank: int = 0, world_size: int = 1,
             device: torch.device | None = None) -> RunInfo:
    """The loop's facts, read from the opts once."""
    dist_opts, epoch_iter, out, param = opts["distributed"], opts["epoch_iter"], opts["output"], opts["model_param"]
    if device is None:
        device = torch.device(f"cuda:{dist_opts['first_gpu_id']}" if dist_opts["num_gpus"] else "cpu")
    batch = total_batch_size(opts)
    return RunInfo(
        device=device, folder=folder, num_epochs=epoch_iter["num_epochs"],
        epoch_iterations=epoch_iter["num_train_sample_per_epoch"] // batch,
        batch_per_device=epoch_iter["batch_per_device"], total_batch_size=batch, seed=param["seed"], rank=rank,
        world_size=world_size, iterations_per_test=epoch_iter["num_train_iteration_per_test"],
        num_test_sample=epoch_iter["num_test_sample"], num_test_iter=epoch_iter["num_test_iter"],
        record_every=out["record_every_iters"], checkpoint_every=out["checkpoint_every_iters"],
        keep_checkpoints=out["keep_checkpoints"], workers=opts["input"]["decode_threads"],
        channels_last=param["channels_last"], mixed_precision=param["mixed_precision"], compile=param["compile"],
        accumulate_grad_batches=epoch_iter["accumulate_grad_batches"], grad_clip_norm=param["grad_clip_norm"],
        grad_clip_value=param["grad_clip_value"],
        sync_batchnorm=bool(param["combine_spatial_bn"]), tensorboard=out["tensorboard"],
        plots=tuple(out["plots"]), pretrained=param["pretrained_model"] or "", reset_epoch=param["reset_epoch"],
        opts=opts)


def batch_arithmetic(info: RunInfo) -> str:
    """Where the global batch comes from, e.g. "32 per device x 4 process(es) x 2 accumulated batch(es) per
    optimizer step"."""
    k = info.accumulate_grad_batches
    processes = info.total_batch_size // (info.batch_per_device * k)
    return (f"{info.batch_per_device} per device x {processes} process(es) x {k} accumulated batch(es) per "
            "optimizer step")


def build_parts(components: Components, info: RunInfo) -> Parts:
    """The parts the opts name, built: network, optimizer and schedule, datasets, meters, handlers."""
    modules = components.modules
    network = modules["forward_pass"].build_network(info)
    update = modules["parameter_update"]
    optimizer = update.build_optimizer(info, network)
    build_scheduler = getattr(update, "build_lr_scheduler", None)
    return Parts(
        network=network, optimizer=optimizer,
        lr_scheduler=build_scheduler(info, optimizer) if build_scheduler else None,
        train_data=modules["input"].get_dataset(info, "train"), test_data=modules["input"].get_dataset(info, "test"),
        metrics=[Metric(entry["name"], build_entry(cls, entry, "meter_kargs"), entry["is_train"])
                 for entry, cls in components.meters],
        handlers=[build_entry(cls, entry, "kargs") for entry, cls in components.handlers],
        gen_output=modules["output"].gen_output, checkpoint_name=modules["checkpoint_path"].checkpoint_name)


def experiment_class(components: Components) -> type[AnyExp]:
    """The model's Experiment, or a subclass of it whose methods come from the override module."""
    base = components.modules["model"].Experiment
    module = components.modules.get("override")
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
    """What `--dry-run` prints: the resolved opts, which module serves each slot, and the handlers by event."""
    from playground.events import Event, overrides

    cls = experiment_class(components)
    lines = ["resolved opts:", json.dumps(opts, indent=2), "", "components:"]
    for slot, key in slot_keys(opts).items():
        if key in components.names:
            lines.append(f"  {key:34} {components.names[key]:36} -> {components.modules[slot].__name__}")
    for entry, cls_ in components.meters:
        lines.append(f"  metric {entry['name']:27} {entry['meter_py']:36} -> {cls_.__module__}.{cls_.__name__}")
    handlers = sorted(components.handlers, key=lambda pair: pair[1].phase)
    for entry, cls_ in handlers:
        trigger = f" every {entry['trigger'][0]} {entry['trigger'][1]}(s)" if entry.get("trigger") else ""
        events = [e.value for e in Event if overrides(cls_, e)]
        lines.append(f"  handler {cls_.phase.name:26} {entry['handler_py']:36} -> {cls_.__module__}."
                     f"{cls_.__name__}{trigger} at {', '.join(events)}")
    info = run_info(opts, "")
    lines += [f"  experiment class {'':17} {cls.__name__}",
              f"total_batch_size = {info.total_batch_size}, epoch_iterations = {info.epoch_iterations} "
              f"({batch_arithmetic(info)})"]
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
        _load_into(exp, saved, path, "it was written by a run with other opts; resume with the same opts or "
                   "use another output.checkpoint_folder")
        saved_batch = saved.get("total_batch_size", exp.total_batch_size)
        if exp.state.iteration and saved_batch != exp.total_batch_size:
            raise UsageError(f"{path} was written mid-epoch (epoch {exp.state.epoch} iteration {exp.state.iteration}) "
                             f"with a global batch of {saved_batch}, and this run's is {exp.total_batch_size} "
                             "(batch_per_device x processes per host x num_shards): the rest of the epoch would not be "
                             "the same samples. Resume with the same global batch, or move the mid-epoch checkpoints "
                             "away to resume from the last epoch's end")
        log.info("resuming from %s at epoch %d iteration %d", path, exp.state.epoch, exp.state.iteration)
        return
    pretrained = exp.info.pretrained
    if pretrained:
        if not os.path.isfile(pretrained):
            raise UsageError(f"model_param.pretrained_model: {pretrained} does not exist; give a checkpoint path "
                             "or leave it empty")
        reset = exp.info.reset_epoch
        _load_into(exp, checkpoint.load(pretrained, map_location=exp.device), pretrained,
                   "give model_param.pretrained_model a checkpoint of this network" +
                   ("" if reset else ", or set model_param.reset_epoch to true to take only its weights"),
                   weights_only=reset)
        exp.state.complete = False  # a finished run's final checkpoint starts this one
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
    """SIGTERM (preemption) and a first Ctrl-C ask the run to checkpoint and stop at the next iteration boundary
    (exit 143); a second Ctrl-C aborts at once."""
    def handler(signum: int, frame: Any) -> None:
        request = exp.state.stop_requested
        if signum == signal.SIGINT and request is not None and request.signal == signal.SIGINT:
            raise KeyboardInterrupt
        exp.request_stop(StopRequest.from_signal(signum))
        if signum == signal.SIGINT:
            log.warning("Ctrl-C: stopping after a checkpoint at the next iteration; Ctrl-C again to abort now")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def run(opts: dict, components: Components, folder: str, rank: int = 0, world_size: int = 1,
        device: torch.device | None = None) -> dict:
    """Build the experiment in `folder`, restore it if it was interrupted, and run it to the end."""
    info = run_info(opts, folder, rank, world_size, device)
    if info.device.type == "cuda":
        torch.cuda.set_device(info.device)
        torch.backends.cudnn.benchmark = opts["model_param"]["engine"].upper() == "CUDNN"
    seed_everything(info.seed)
    exp = experiment_class(components)(build_parts(components, info), info)
    if rank == 0:
        log.info("total batch size %d (%s); %d optimizer steps per epoch", info.total_batch_size,
                 batch_arithmetic(info), info.epoch_iterations)
    distributed.restore(exp, restore)  # rank 0 restores; every other rank takes its state
    with stop_on_signals(exp):
        return exp.run()

