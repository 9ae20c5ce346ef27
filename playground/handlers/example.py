"""One example input batch for handlers that run the network outside the loop (statistics, graph dumps)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from playground import data

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


def example_inputs(exp: AnyExp, input_shape: list[int] | None = None) -> Any:
    """One example input on the experiment's device: zeros of (1, *input_shape) when given, else the first
    sample of the training set (a DataLoader's dataset for the Estimator), read without touching any RNG."""
    if input_shape is not None:
        return torch.zeros((1, *input_shape), device=exp.device)
    dataset = getattr(exp.train_dataset, "dataset", exp.train_dataset)
    with torch.random.fork_rng(devices=[]):  # reading a sample must not change what training draws
        inputs, _ = exp.to_device(data.fetch(dataset, [0]), dataset)
    return inputs
