"""PredictionsPng: a grid of the first test images with their predicted labels, drawn into the run folder."""
from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

from playground.events import EventHandler
from zoo.fixed_batch import check_png_filename, fixed_test_batch, pyplot, save_figure

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class PredictionsPng(EventHandler):
    """At train end (rank 0), predictions.png: the first `num_images` test images, each titled with its predicted
    class, green when right and red (with the true class) when wrong. class_names: one per class (default: the
    shapes dataset's)."""

    def __init__(self, num_images: int = 24, class_names: list[str] | None = None, filename: str = "predictions.png"):
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
        check_png_filename(filename)
        self.num_images, self.filename = num_images, filename
        if class_names is None:
            from resnetdemo.shapes import CLASS_NAMES as class_names
        self.class_names = list(class_names)

    def on_train_end(self, exp: AnyExp) -> None:
        if exp.rank != 0 or exp.test_dataset is None:
            return
        _, images, labels, logits = fixed_test_batch(exp, range(self.num_images))
        predicted = logits.argmax(-1).cpu()
        pixels = images.cpu().float()
        low, high = pixels.amin(dim=(1, 2, 3), keepdim=True), pixels.amax(dim=(1, 2, 3), keepdim=True)
        pixels = ((pixels - low) / (high - low).clamp_min(1e-6)).flip(1).permute(0, 2, 3, 1)  # BGR -> RGB, HWC
        plt = pyplot()
        columns = min(8, len(pixels))
        rows = math.ceil(len(pixels) / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.45 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image, guess, truth in zip(axes.flat, pixels, predicted.tolist(), labels.tolist()):
            ax.imshow(image.numpy())
            right = guess == truth
            title = self.class_names[guess] if right else f"{self.class_names[guess]}\n({self.class_names[truth]})"
            ax.set_title(title, fontsize=7, color="green" if right else "red")
        correct = int((predicted == labels).sum())
        figure.suptitle(f"test predictions at epoch {exp.state.epoch}: {correct}/{len(labels)} right", fontsize=9)
        figure.tight_layout()
        path = os.path.join(exp.folder, self.filename)
        save_figure(figure, path)
        log.info("PredictionsPng: wrote %s", path)
