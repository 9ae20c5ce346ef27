"""What the zoo's PNG handlers share: one fixed test batch run through the network, and saving a figure."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import torch

from playground import data

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


class FixedBatch(NamedTuple):
    """A fixed test batch and what the network made of it."""

    raw_inputs: Any  # as the dataset gives them (uint8 pixels, before its device_transform): for drawing
    inputs: Any      # as the network took them: on the device, through the dataset's device_transform
    labels: Any
    outputs: Any     # the network's, in eval mode


def fixed_test_batch(exp: AnyExp, indices: Iterable[int]) -> FixedBatch:
    """The test samples at `indices` (those past the end left out) run through the network in eval mode: the same
    batch at every call and through both routes (opts and Estimator.fit, whose test set is val_data). It draws
    no random numbers from the run's generators, so training goes on as if it had not happened."""
    dataset = getattr(exp.test_dataset, "dataset", exp.test_dataset)  # a DataLoader's dataset
    raw_inputs, labels, *_ = data.fetch(dataset, [i for i in indices if i < len(dataset)])
    inputs = data.to_device(raw_inputs, exp.device, dataset)
    was_training = exp.network.training
    exp.network.eval()
    gpus = [exp.device.index or 0] if exp.device.type == "cuda" else []  # its generator too, on a GPU run
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=gpus):
            outputs = exp.network(inputs)
    finally:
        exp.network.train(was_training)
    return FixedBatch(raw_inputs, inputs, labels, outputs)


def check_png_filename(filename: Any) -> None:
    """A handler's `filename` karg is refused when the handler is built (so at --dry-run), not when it first draws
    after training: it must name a PNG file in the run folder itself."""
    if not isinstance(filename, str) or not filename.endswith(".png") or filename == ".png" or "/" in filename \
            or "\\" in filename:
        raise ValueError(f"filename must be a file name ending in .png, without a folder (the PNG is written into "
                         f"the run folder), got {filename!r}")


def save_figure(figure: Any, path: str) -> None:
    """`figure` as a PNG at `path`, written whole and then renamed into place; the figure is closed."""
    import matplotlib.pyplot as plt

    figure.savefig(path + ".tmp.png", dpi=100)
    os.replace(path + ".tmp.png", path)
    plt.close(figure)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only), imported when a handler first draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
