"""How the Estimator reads the user's data and network: datasets and batches, the network's outputs (any
structure of tensors), the blobs meters read, and metric specs. Shared by fit, evaluate, predict and the checks
before the first step."""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from playground import data
from playground.errors import EstimatorError
from playground.meters import ComputeTopKAccuracy

def metric_meters(metrics: Sequence[Any], outputs: int) -> list[tuple[str, Any]]:
    """(name, meter) for every metric spec; one list of specs per output when there are several outputs."""
    groups = list(metrics)
    if outputs > 1 or (groups and all(isinstance(g, list) for g in groups)):
        if groups and (len(groups) != outputs or not all(isinstance(g, list) for g in groups)):
            raise EstimatorError(f"Estimator: the network returns {outputs} output(s) but metrics has "
                                 f"{len(groups)} entr{'y' if len(groups) == 1 else 'ies'}; give one list of "
                                 f"metrics per output, e.g. metrics=[{', '.join(['[...]'] * outputs)}]")
    else:
        groups = [groups]
    named: list[tuple[str, Any]] = []
    for i, group in enumerate(groups):
        suffix = str(i) if outputs > 1 else ""
        blobs = [f"output{suffix}", f"label{suffix}"]
        for spec in group:
            name, meter = metric(spec, blobs)
            named.append((name + suffix, meter))
    names = [name for name, _ in named]
    if repeated := sorted({n for n in names if names.count(n) > 1 or re.fullmatch(r"loss\d*", n)}):
        raise EstimatorError(f"Estimator: metric names repeat or clash with the loss: {repeated}; name them with "
                             "(name, meter) pairs")
    return named


def metric(spec: Any, blobs: list[str]) -> tuple[str, Any]:
    if isinstance(spec, str):
        if spec == "accuracy" or re.fullmatch(r"top\d+", spec):
            return spec, ComputeTopKAccuracy(blobs, topk=1 if spec == "accuracy" else int(spec[3:]))
        raise EstimatorError(f"Estimator: unknown metric {spec!r}; use \"accuracy\", \"top5\" (any k), a meter or "
                             "a (name, meter) pair")
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        name, meter = spec
    else:
        meter = spec
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(meter).__name__).lower().removeprefix("compute_")
    if not all(callable(getattr(meter, m, None)) for m in ("reset", "update", "compute")):
        raise EstimatorError(f"Estimator: metric {name!r} ({type(meter).__name__}) is not a meter: it needs reset(), "
                             "update(blobs) and compute()")
    return name, meter


def blobs_of(outputs: tuple, labels: Sequence, losses: list) -> dict:
    """What meters read: the summed loss, the first output and label, each one numbered when several, and each
    named loss a loss callable returned in a dict."""
    totals = [sum(value.values()) if isinstance(value, dict) else value for value in losses]
    blobs = {"loss": totals[0] if len(totals) == 1 else sum(totals), "batch_size": data.batch_size(labels[0]),
             "output": outputs[0], "label": labels[0]}
    if len(outputs) > 1:
        for i, (output, label, value) in enumerate(zip(outputs, labels, totals)):
            blobs.update({f"output{i}": output, f"label{i}": label, f"loss{i}": value})
    for value in losses:
        if isinstance(value, dict):
            blobs.update(value)
    return blobs


def named_losses(losses: list) -> list[str]:
    """The names of the losses returned in dicts; they must not repeat or clash with the blobs of _blobs."""
    names = [name for value in losses if isinstance(value, dict) for name in value]
    if bad := sorted({n for n in names if names.count(n) > 1 or not isinstance(n, str)
                      or re.fullmatch(r"loss\d*|output\d*|label\d*|batch_size", n)}):
        raise EstimatorError(f"Estimator: the named losses {bad} repeat or clash with the blobs loss, output, label "
                             "and batch_size; name them like 'loss_cls'")
    return names


def check_shapes(name: str, output: torch.Tensor, label: torch.Tensor) -> None:
    """The mistakes of a tensor output against a tensor label that the Gluon design lists."""
    out_shape, label_shape = tuple(output.shape), tuple(label.shape)
    if not out_shape or not label_shape or out_shape[0] != label_shape[0]:
        raise EstimatorError(f"Estimator: labels of shape {label_shape} do not match {name} of shape "
                             f"{out_shape}: they must hold the same number of samples (first dimension)")
    if label.is_floating_point() and label_shape != out_shape:
        hint = " (the loss would broadcast them)" if label.numel() == output.numel() else \
            " (class indices must be an integer tensor)" if len(label_shape) == len(out_shape) - 1 else ""
        raise EstimatorError(f"Estimator: float labels of shape {label_shape} do not match {name} of shape "
                             f"{out_shape}{hint}")
    expected = (out_shape[0], *out_shape[2:])
    if not label.is_floating_point() and label_shape not in (expected, out_shape):
        raise EstimatorError(f"Estimator: class-index labels of shape {label_shape} do not fit {name} of shape "
                             f"{out_shape}; expected {expected}")


def describe_shape(value: Any) -> Any:
    """A short description of a structure of tensors, for messages."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {k: describe_shape(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def concat(chunks: Sequence[Any]) -> Any:
    """Batches of one output joined into one: tensors on the batch dimension, lists extended, dicts and tuples
    item by item."""
    first = chunks[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(chunks)
    if isinstance(first, list):
        return [item for chunk in chunks for item in chunk]
    if isinstance(first, dict):
        return {key: concat([chunk[key] for chunk in chunks]) for key in first}
    if isinstance(first, tuple):
        return tuple(concat(parts) for parts in zip(*chunks))
    return list(chunks)


def dataset_of(value: Any, what: str) -> Any:
    if value is None or isinstance(value, (Dataset, DataLoader)):
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(t, torch.Tensor) for t in value):
        if len({len(t) for t in value}) != 1:
            raise EstimatorError(f"Estimator: the tensors of {what} hold different numbers of samples: "
                                 f"{[len(t) for t in value]}")
        return data.TensorData(*value)
    raise EstimatorError(f"Estimator: {what} must be a torch Dataset, a DataLoader or a tuple of tensors, got "
                         f"{type(value).__name__}")


def iterate(dataset: Dataset | DataLoader, batch_size: int) -> Any:
    """Batches in order: a DataLoader's own, or consecutive slices of a Dataset."""
    if isinstance(dataset, DataLoader):
        return iter(dataset)
    return (data.fetch(dataset, list(range(i, min(i + batch_size, len(dataset)))))
            for i in range(0, len(dataset), batch_size))


def inputs_of(batch: Any) -> Any:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def as_outputs(value: Any, losses: int) -> tuple:
    """The network's outputs, one per loss: a tuple is several outputs (a list too, with several losses, as
    before); anything else is one output."""
    if isinstance(value, tuple) or (isinstance(value, list) and losses > 1):
        if not value:
            raise EstimatorError("Estimator: the network returns an empty tuple; return a tensor, a dict, or one "
                                 "output per loss")
        return tuple(value)
    if value is None:
        raise EstimatorError("Estimator: the network returns None; return a tensor, a dict, or a tuple of outputs "
                             "(one per loss)")
    return (value,)
