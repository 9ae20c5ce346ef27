"""What the zoo's PNG handlers share: one fixed test batch run through the network, and saving a figure."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from playground import data

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


def fixed_test_batch(exp: AnyExp, num: int) -> tuple[Any, Any, Any]:
    """(inputs on the device, labels, the network's outputs in eval mode) of the first `num` test samples: the
    same batch at every call and through both routes (opts and Estimator.fit, whose test set is val_data).
    Reading it draws no random numbers, so training goes on as if it had not happened."""
    dataset = getattr(exp.test_dataset, "dataset", exp.test_dataset)  # a DataLoader's dataset
    inputs, labels, *_ = data.fetch(dataset, list(range(min(num, len(dataset)))))
    inputs = data.to_device(inputs, exp.device, dataset)
    was_training = exp.network.training
    exp.network.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            outputs = exp.network(inputs)
    finally:
        exp.network.train(was_training)
    return inputs, labels, outputs


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
