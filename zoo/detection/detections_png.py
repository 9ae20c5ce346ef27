"""DrawDetections: the detector's boxes on a fixed batch of test images, as a PNG in the run folder."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from playground.errors import UsageError
from playground.events import EventHandler
from zoo.fixed_batch import check_png_filename, fixed_test_batch, pyplot, save_figure

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class DrawDetections(EventHandler):
    """At train end (rank 0), draws the network's detections (eval mode) on the first `num_images` test images
    into `filename`: each box in its class's colour with the class name and score, those scoring at least
    `min_score`; the ground truth dashed in white. Class names come from the dataset's `class_names`, else
    `class_names`. The network's output must hold "detections" in eval mode, as the SSD's does."""

    def __init__(self, num_images: int = 8, min_score: float = 0.3, filename: str = "detections.png",
                 class_names: list[str] | None = None):
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
        if not isinstance(min_score, (int, float)) or not 0 <= min_score <= 1:
            raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
        check_png_filename(filename)
        self.num_images, self.min_score, self.filename, self.class_names = num_images, min_score, filename, class_names

    def on_train_end(self, exp: AnyExp) -> None:
        if exp.rank != 0 or exp.test_dataset is None:
            return
        images, _, targets, output = fixed_test_batch(exp, range(self.num_images))
        if not isinstance(output, dict) or "detections" not in output:
            raise UsageError(f"DrawDetections: {type(exp.network).__name__} returns no 'detections' in eval mode; "
                             "it draws a detector's output, such as ssd_forward's SSD")
        detections = output["detections"]
        dataset = getattr(exp.test_dataset, "dataset", exp.test_dataset)  # a DataLoader's (Estimator)
        names = self.class_names or getattr(dataset, "class_names", None)
        path = os.path.join(exp.folder, self.filename)
        draw(images, targets, detections, names, self.min_score, path)
        log.info("DrawDetections: wrote %s", path)


def draw(images: torch.Tensor, targets: list[dict], detections: list[dict], class_names: Any, min_score: float,
         path: str) -> None:
    """A grid of uint8 BGR `images` [B, 3, H, W] with their `detections` and dashed ground truth, written to
    `path` whole (a temporary file renamed into place)."""
    plt = pyplot()
    columns = min(4, len(images))
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, image, target, found in zip(axes.flat, images, targets, detections):
        ax.imshow(image.permute(1, 2, 0).flip(-1).cpu().numpy(), interpolation="nearest")
        for x0, y0, x1, y1 in target["boxes"].tolist():
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="white", linestyle="--",
                                       linewidth=0.8))
        shown = 0
        for (x0, y0, x1, y1), score, label in zip(found["boxes"].tolist(), found["scores"].tolist(),
                                                  found["labels"].tolist()):
            if score < min_score:
                continue
            shown += 1
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=colors(label % 10), linewidth=1.5))
            name = class_names[label] if class_names is not None and label < len(class_names) else str(label)
            ax.text(x0, y0, f"{name} {score:.2f}", color="white", fontsize=7, va="bottom",
                    bbox={"facecolor": colors(label % 10), "alpha": 0.8, "pad": 1, "linewidth": 0})
        ax.set_title(f"{shown} found, {len(target['boxes'])} true", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    figure.tight_layout()
    save_figure(figure, path)
