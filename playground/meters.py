"""Meters: accumulate over batches, report one number. Built-ins: ComputeLoss, ComputeTopKAccuracy, TorchMetric.

A meter keeps its running sums in a 1-D float64 tensor `sums` on the batch's device, so measuring costs no
host synchronisation until `compute()`, and distributed runs reduce test metrics exactly by all-reducing
`sums` (sums of counts, never averages of averages). TorchMetric, whose values need every sample, syncs its states.
"""
from __future__ import annotations

import difflib
import functools
import warnings
from typing import Any

import torch

from playground.errors import UsageError


def blob(blobs: dict, name: str) -> Any:
    """The blob `name`; a dotted name reads into dict blobs ("output.detections": blobs["output"]["detections"]),
    for networks whose output is a dict. A missing one raises KeyError(name)."""
    try:
        return blobs[name]  # a dict subclass may derive it on demand (classification's softmax)
    except KeyError:
        if "." not in name:
            raise
    value: Any = blobs
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(name)
        value = value[part]
    return value


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return next((t for t in map(_first_tensor, items) if t is not None), None)


class Meter:
    """Protocol: reset(); update(blobs) per measured batch; compute() -> float. Subclasses define batch_sums."""

    def __init__(self, blob_name: str | list[str] = "loss"):
        names = [blob_name] if isinstance(blob_name, str) else blob_name
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"blob_name must be a blob name or a list of them, got {blob_name!r}")
        self.blob_name = blob_name
        self.sums: torch.Tensor | None = None

    def reset(self) -> None:
        self.sums = None

    def update(self, blobs: dict) -> None:
        """Add this batch's sums (the loop calls it without autograd; built-ins detach what they read)."""
        batch = self.batch_sums(blobs)
        self.sums = batch if self.sums is None else self.sums + batch

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        """The sums this batch adds, as a 1-D float64 tensor; the last entry is conventionally the sample count."""
        raise NotImplementedError

    def compute(self) -> float:
        total, count = self.sums.tolist() if self.sums is not None else (0.0, 0.0)
        return total / count if count else float("nan")


class ComputeLoss(Meter):
    """Mean of the scalar blob `blob_name` (a per-batch mean), weighted by batch size."""

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        loss, n = blob(blobs, self.blob_name).detach().double(), blobs["batch_size"]
        return torch.stack((loss * n, loss.new_tensor(n)))


class ComputeTopKAccuracy(Meter):
    """Fraction of samples whose label is among the `topk` highest scores. blob_name: [scores, labels]."""

    def __init__(self, blob_name: list[str] = ("softmax", "label"), topk: int = 1):
        if isinstance(blob_name, str) or not isinstance(blob_name, (list, tuple)) or len(blob_name) != 2:
            raise ValueError(f"blob_name must name [scores, labels], got {blob_name!r}")
        super().__init__(list(blob_name))
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        self.topk = topk

    def batch_sums(self, blobs: dict) -> torch.Tensor:
        scores, labels = blob(blobs, self.blob_name[0]).detach(), blob(blobs, self.blob_name[1])
        if self.topk == 1:
            hits = scores.argmax(dim=-1) == labels
        else:
            k = min(self.topk, scores.shape[-1])
            hits = (scores.topk(k, dim=-1).indices == labels.unsqueeze(-1)).any(dim=-1)
        correct = hits.sum(dtype=torch.float64)
        return torch.stack((correct, correct.new_tensor(len(labels))))


class TorchMetric:
    """Any torchmetrics metric, by class name: `type` (e.g. "MulticlassF1Score", "MulticlassAUROC"), built with
    `params`, updated with the blobs named by blob_name (as positional arguments, e.g. [preds, target]; any
    structure the metric takes, such as MeanAveragePrecision's lists of box dicts).

    Its value needs every sample (F1, AUROC and mAP do not average over batches or ranks), so distributed runs
    call sync(): every rank's states are gathered exactly, through torchmetrics' own sync, and every rank
    computes the same global value. torchmetrics is imported here, only when a metric uses it.
    """

    def __init__(self, type: str, params: dict | None = None, blob_name: str | list[str] = ("softmax", "label")):
        import torchmetrics  # a second or two: only runs that use it pay

        names = [blob_name] if isinstance(blob_name, str) else blob_name
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"blob_name must be a blob name or a list of them, got {blob_name!r}")
        if params is not None and not isinstance(params, dict):
            raise ValueError(f"params must be an object of {type}'s arguments, got {params!r}")
        known = _torchmetrics_classes(torchmetrics)
        if type not in known:
            close = difflib.get_close_matches(str(type), known, n=5, cutoff=0.5)
            hint = f"closest: {', '.join(close)}" if close else "e.g. MulticlassF1Score, MulticlassAUROC"
            raise ValueError(f"type {type!r} is not a torchmetrics metric ({hint})")
        try:
            self.metric = known[type](**(params or {}), sync_on_compute=False)  # syncing is ours: see sync()
        except Exception as e:  # noqa: BLE001 - whatever the constructor says of its arguments, they are at fault
            raise ValueError(f"params do not build {type}: {e}") from None
        self.type, self.blob_name, self.names = type, blob_name, list(names)
        self.updates = 0  # batches measured, over every rank after sync(); none: compute() is nan

    def reset(self) -> None:
        self.metric.reset()
        self.updates = 0

    def update(self, blobs: dict) -> None:
        args = [_detached(blob(blobs, name)) for name in self.names]
        tensor = _first_tensor(args)
        if tensor is not None and self.metric.device != tensor.device:
            self.metric.to(tensor.device)  # its states live where the batches are
        self.metric.update(*args)
        self.updates += 1

    def sync(self, group: Any = None) -> None:
        """Make the states the union of every rank's in `group` (a collective; CPU tensors travel, so any
        group works). A rank that measured nothing contributes nothing."""
        counts = [0] * torch.distributed.get_world_size(group)
        torch.distributed.all_gather_object(counts, self.updates, group=group)
        self.updates = sum(counts)
        if self.metric._is_synced:  # synced for an earlier compute_all without a reset in between
            self.metric.unsync()
        self.metric.sync(dist_sync_fn=functools.partial(_gather_all, group=group), distributed_available=lambda: True)

    def compute(self) -> float:
        if not self.updates:
            return float("nan")
        with warnings.catch_warnings():  # a rank that measured nothing holds the others' states after sync()
            warnings.filterwarnings("ignore", message=".*compute.*before.*update", category=UserWarning)
            value = self.metric.compute()
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UsageError(f"output.metrics: TorchMetric {self.type} gives {shape}, not one number; set its "
                             "meter_kargs.params so that it reduces to one (e.g. \"average\": \"macro\")")
        return value.item()


def _gather_all(tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
    """Every rank's `tensor` (torchmetrics' dist_sync_fn). Unlike its default, any shapes and dtypes: a rank that
    measured nothing holds an empty placeholder, left out."""
    gathered = [None] * torch.distributed.get_world_size(group)
    torch.distributed.all_gather_object(gathered, tensor.cpu(), group=group)
    return [t.to(tensor.device) for t in gathered if t.numel()] or [tensor]


def _torchmetrics_classes(torchmetrics: Any) -> dict[str, type]:
    """The metric classes by name: torchmetrics' own and its task packages' (MulticlassF1Score lives in one)."""
    packages = [torchmetrics] + [getattr(torchmetrics, name) for name in ("classification", "regression",
                                 "retrieval", "aggregation", "clustering", "nominal", "segmentation", "image",
                                 "text", "audio", "detection", "multimodal") if hasattr(torchmetrics, name)]
    return {name: cls for package in packages for name in getattr(package, "__all__", ())
            if isinstance(cls := getattr(package, name, None), type) and issubclass(cls, torchmetrics.Metric)}
