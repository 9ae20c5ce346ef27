"""Which samples make up each batch, and fetching them.

The order of an epoch is a function of (seed, epoch) alone: a global permutation, cut into global batches of
`total_batch_size`, each rank taking its own slice. So the same samples make up each global batch whatever
the number of processes, and a run resumed at iteration i fetches exactly the batches an uninterrupted run
would, with no sampler state to save.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate


def epoch_order(num_items: int, num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """`num_samples` dataset indices for `epoch`: permutations of the dataset, concatenated as needed."""
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    passes = -(-num_samples // num_items)
    return torch.cat([torch.randperm(num_items, generator=generator) for _ in range(passes)])[:num_samples]


def train_batch_indices(order: torch.Tensor, total_batch: int, rank: int, per_rank: int, start: int,
                        stop: int) -> list[list[int]]:
    """This rank's slice of global batches start..stop-1 of an epoch order."""
    return [order[b * total_batch + rank * per_rank: b * total_batch + (rank + 1) * per_rank].tolist()
            for b in range(start, stop)]


def test_batch_indices(num_samples: int, total_batch: int, rank: int, per_rank: int,
                       num_batches: int) -> list[list[int]]:
    """This rank's slices of the first `num_batches` global batches of the test set, in order (0: all)."""
    available = -(-num_samples // total_batch)
    num_batches = min(num_batches or available, available)
    batches = []
    for b in range(num_batches):
        lo = min(b * total_batch + rank * per_rank, num_samples)
        batches.append(list(range(lo, min(lo + per_rank, num_samples, (b + 1) * total_batch))))
    return batches


def fetch(dataset: Dataset, indices: list[int]) -> Any:
    """One batch: the dataset's own batched read (`get_batch`) when it has one, else its items collated."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)
    return default_collate([dataset[i] for i in indices])


class _Batches(Dataset):
    """Batch b of `index_lists` as one item, so DataLoader workers fetch and collate whole batches."""

    def __init__(self, dataset: Dataset, index_lists: list[list[int]]):
        self.dataset, self.index_lists = dataset, index_lists

    def __len__(self) -> int:
        return len(self.index_lists)

    def __getitem__(self, b: int) -> Any:
        return fetch(self.dataset, self.index_lists[b])


def batches(dataset: Dataset, index_lists: list[list[int]], workers: int, seed: int, pin_memory: bool) -> Iterator:
    """Batches for `index_lists`, read in this process (workers=0) or by `workers` DataLoader processes."""
    if workers == 0:
        return (fetch(dataset, indices) for indices in index_lists)
    # A private generator: creating the loader must not draw from the global RNG (exact resume).
    loader = DataLoader(_Batches(dataset, index_lists), batch_size=None, num_workers=workers,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
    return iter(loader)


def _mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (stable across processes and Python versions)."""
    value = 0x9E3779B97F4A7C15
    for n in numbers:
        value = (value ^ (n & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF
