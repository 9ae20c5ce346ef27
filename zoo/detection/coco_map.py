"""DetectionMAP: COCO mean average precision of detections, computed by pycocotools' COCOeval.

torchmetrics' MeanAveragePrecision calls the same COCOeval, but it also needs torchvision, which has no build
for a CPU-only torch here; this meter needs only pycocotools (the zoo extra).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from playground.errors import UsageError
from playground.meters import blob

KEYS = {"map": None, "map_50": 0, "map_75": 5}  # which IoU thresholds of .50:.05:.95 (None: all ten)


class DetectionMAP:
    """Mean average precision over classes of the detections in blob_name[0] (per image: a dict of boxes [n, 4]
    as x0 y0 x1 y1, scores [n], labels [n]) against the targets in blob_name[1] (per image: boxes, labels), as
    COCO measures it (101-point interpolated precision, up to 100 detections per image, all object sizes).
    key: "map_50" (at IoU 0.5, VOC's figure), "map_75", or "map" (the mean over IoU 0.5 to 0.95, COCO's).

    Needs every image's detections, so distributed runs gather them all (sync) before compute()."""

    def __init__(self, blob_name: list[str] = ("output.detections", "label"), key: str = "map_50"):
        if isinstance(blob_name, str) or len(blob_name) != 2 or not all(isinstance(n, str) for n in blob_name):
            raise ValueError(f"blob_name must name [detections, targets], got {blob_name!r}")
        if key not in KEYS:
            raise ValueError(f"key must be one of {', '.join(KEYS)}, got {key!r}")
        try:
            import pycocotools.cocoeval  # noqa: F401
        except ImportError:
            raise UsageError("DetectionMAP needs pycocotools: pip install 'torch-playground[zoo]'") from None
        self.blob_name, self.key = list(blob_name), key
        self.images: list[tuple[dict, dict]] = []  # (detections, targets) per image, as numpy arrays

    def reset(self) -> None:
        self.images = []

    @torch.no_grad()
    def update(self, blobs: dict) -> None:
        detections, targets = blob(blobs, self.blob_name[0]), blob(blobs, self.blob_name[1])
        if len(detections) != len(targets):
            raise ValueError(f"DetectionMAP: {len(detections)} images of detections for {len(targets)} of targets")
        self.images += [(_numpy(d), _numpy(t)) for d, t in zip(detections, targets)]

    def sync(self, group: Any = None) -> None:
        """Every rank's images, in rank order, on every rank (a collective)."""
        gathered: list = [None] * torch.distributed.get_world_size(group)
        torch.distributed.all_gather_object(gathered, self.images, group=group)
        self.images = [image for images in gathered for image in images]

    def compute(self) -> float:
        if not self.images:
            return float("nan")
        return coco_map(self.images)[self.key]


def _numpy(value: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: tensor.detach().float().cpu().numpy() if name != "labels" else tensor.cpu().numpy()
            for name, tensor in value.items()}


def coco_map(images: list[tuple[dict, dict]]) -> dict[str, float]:
    """{"map", "map_50", "map_75"} of (detections, targets) per image, by COCOeval: -1 when no image has a box, 0
    when none has a detection."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotations, results, classes = [], [], set()
    for image_id, (detections, targets) in enumerate(images):
        for box, label in zip(targets["boxes"], targets["labels"]):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": [float(box[0]), float(box[1]), float(w), float(h)], "area": float(w * h),
                                "iscrowd": 0})
        for box, score, label in zip(detections["boxes"], detections["scores"], detections["labels"]):
            results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
        classes.update(int(label) for label in targets["labels"])
    if not annotations:
        return dict.fromkeys(KEYS, -1.0)
    if not results:
        return dict.fromkeys(KEYS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print their progress
        truth = COCO()
        truth.dataset = {"images": [{"id": i} for i in range(len(images))], "annotations": annotations,
                         "categories": [{"id": c} for c in sorted(classes)]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # [IoU, recall, class] at all sizes, 100 detections
    values = {}
    for key, iou in KEYS.items():
        chosen = precision if iou is None else precision[iou]
        values[key] = float(chosen[chosen > -1].mean()) if (chosen > -1).any() else -1.0
    return values
