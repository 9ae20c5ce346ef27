"""Data parallelism through torch.distributed: wrapping the network and reducing what ranks must agree on.

With one process every function here is a no-op, so the single-process loop pays nothing for it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from playground.anyexp import AnyExp
    from playground.meters import Meter


def wrap(network: torch.nn.Module, exp: AnyExp) -> torch.nn.Module:
    """The module the training step calls: `network` itself, or DistributedDataParallel around it."""
    if exp.world_size == 1:
        return network
    device_ids = [exp.device.index] if exp.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)


def any_rank(flag: bool, exp: AnyExp) -> bool:
    """True on every rank when `flag` is true on any: a stop decided together, at the same iteration."""
    if exp.world_size == 1:
        return flag
    shared = torch.tensor([float(flag)], device=exp.device)
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    return bool(shared.item())


def compute(meter: Meter, exp: AnyExp) -> float:
    """A meter's value over every rank: its sums all-reduced when it keeps them (exact), else averaged."""
    if exp.world_size == 1:
        return meter.compute()
    if hasattr(meter, "sums"):
        # A rank that measured nothing (an empty slice of the last test batch) contributes zeros.
        length = torch.tensor([0 if meter.sums is None else len(meter.sums)], device=exp.device)
        dist.all_reduce(length, op=dist.ReduceOp.MAX)
        if meter.sums is None:
            meter.sums = torch.zeros(int(length.item()), dtype=torch.float64, device=exp.device)
        dist.all_reduce(meter.sums)
        return meter.compute()
    value = torch.tensor([meter.compute()], dtype=torch.float64, device=exp.device)
    dist.all_reduce(value)
    return value.item() / exp.world_size
