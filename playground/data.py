"""Which samples make up each batch, fetching them, and handing them to the device.

The order of an epoch is a function of (seed, epoch) alone: a global permutation, cut into global batches of
`total_batch_size`, each rank taking its own slice. So the same samples make up each global batch whatever
the number of processes, and a run resumed at iteration i fetches exactly the batches an uninterrupted run
would, with no sampler state to save.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from playground import batch_buffers

# Batches a DataLoader worker hands over at once: each hand-off costs the training process 100-300 us (torch's
# DataLoader machinery, and waking it when it waited), 2-5 us an image at 64 px. Each worker's first comes alone,
# so the first step waits for no more.
HANDOFF_BATCHES = 2
# Groups each worker has queued (torch's default): one to work on while the training process takes the other, so
# a worker never waits for the training process to ask for more. 2 workers at 64 px, against 1 group
# (benchmarks/input_pipeline.py --groups-in-flight 1): 1.59-1.66 of the bare loop's rate, from 1.31-1.59; with
# the colour pass on this CPU, as a CPU run's training process works, 23.5-26.1k images/s, from 21.6-22.7k.
GROUPS_IN_FLIGHT = 2


def epoch_order(num_items: int, num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """`num_samples` dataset indices for `epoch`: permutations of the dataset, concatenated as needed."""
    generator = torch.Generator().manual_seed(mix_seeds(seed, epoch))
    passes = -(-num_samples // num_items)
    return torch.cat([torch.randperm(num_items, generator=generator) for _ in range(passes)])[:num_samples]


def train_batch_indices(order: torch.Tensor, total_batch: int, rank: int, per_rank: int, start: int,
                        stop: int) -> np.ndarray:
    """This rank's slice of global batches start..stop-1 of an epoch order: a row of int64 indices per batch, a
    view of `order` (no Python int per sample: lists of them cost about 18 µs a step at batch 256, 4% of the MLP
    example's step: benchmarks/loop_overhead.py --batch 256)."""
    batches = order[start * total_batch:stop * total_batch].view(stop - start, total_batch)
    return batches[:, rank * per_rank:(rank + 1) * per_rank].numpy()


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


def batch_tensors(*specs: tuple[tuple[int, ...], torch.dtype]) -> list[torch.Tensor]:
    """Uninitialised tensors of the given (shape, dtype)s for a batch to be written into, carved from one
    allocation. Inside a DataLoader worker it is shared memory, so handing the batch to the training process
    copies nothing and passes one segment, not one per tensor, which `batches` reuses (batch_buffers).
    Elsewhere numpy allocates it: numpy asks the kernel for huge pages, and a fresh batch of 224 px images then
    costs a tenth of torch.empty's page faults, which otherwise take longer than filling it."""
    offsets, size = [], 0
    for shape, dtype in specs:
        offsets.append(size)
        size += -(-math.prod(shape) * dtype.itemsize // 64) * 64  # each tensor 64-byte aligned
    if torch.utils.data.get_worker_info() is None:
        storage = torch.from_numpy(np.empty(size, np.uint8)).untyped_storage()
    else:
        storage = batch_buffers.take(size)
    return [torch.empty(0, dtype=dtype).set_(storage, offset // dtype.itemsize, shape)
            for (shape, dtype), offset in zip(specs, offsets)]


def move(value: Any, device: torch.device) -> Any:
    """`value` with its tensors, also inside tuples, lists and dicts, on `device`."""
    if isinstance(value, torch.Tensor):  # already there: a tenth of the cost of asking .to
        return value if value.device == device else value.to(device, non_blocking=True)
    if isinstance(value, (tuple, list)):
        return type(value)(move(v, device) for v in value)
    if isinstance(value, dict):
        return {k: move(v, device) for k, v in value.items()}
    return value


def batch_size(labels: Any) -> int:
    """The number of samples in a batch's labels: a tensor's first dimension; a list holds one label per sample
    (e.g. each image's boxes); a tuple or dict is a structure of per-sample parts (e.g. padded tokens and their
    lengths), sized by its first part."""
    if isinstance(labels, torch.Tensor):
        return labels.shape[0] if labels.dim() else 1
    if isinstance(labels, list):
        return len(labels)
    if isinstance(labels, tuple) and labels:
        return batch_size(labels[0])
    if isinstance(labels, dict) and labels:
        return batch_size(next(iter(labels.values())))
    raise TypeError(f"cannot tell the batch size of labels of type {type(labels).__name__}; have forward set the "
                    "blob 'batch_size'")


def to_device(inputs: Any, device: torch.device, dataset: Any, there: bool = False) -> Any:
    """A batch's inputs on `device`, through the dataset's `device_transform` when it has one (work best done
    batched where the network runs, such as turning uint8 pixels into normalised floats). there=True: the caller
    knows they are on `device` already (a CPU run), where even asking costs the training step."""
    transform = getattr(getattr(dataset, "dataset", dataset), "device_transform", None)  # a DataLoader's too
    inputs = inputs if there else move(inputs, device)
    return inputs if transform is None else transform(inputs)


class TensorData(Dataset):
    """Tensors indexed together; a batch is one indexing operation per tensor (no per-sample collation)."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def get_batch(self, indices: Sequence[int]) -> tuple:
        index = torch.from_numpy(np.asarray(indices, np.int64))  # a training batch's row: no copy
        return tuple(t.index_select(0, index) for t in self.tensors)  # the same rows as t[index], sooner


def fetch(dataset: Dataset, indices: Sequence[int]) -> Any:
    """One batch: the dataset's own batched read (`get_batch`, given the indices as they come: a numpy int64 row
    for training batches, a list for test batches) when it has one, else its items (`dataset[i]` with a Python
    int) collated by its own `collate(items)` (labels that do not stack: boxes per image, sequences of different
    lengths) or torch's default_collate."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)
    return getattr(dataset, "collate", default_collate)([dataset[int(i)] for i in indices])


class BatchDataset(Dataset):
    """Batch b of `index_lists` as one item, so DataLoader workers fetch and collate whole batches, written into
    `buffers` when given."""

    def __init__(self, dataset: Dataset, index_lists: Sequence[Sequence[int]],
                 buffers: batch_buffers.BatchBuffers | None = None):
        self.dataset, self.index_lists, self.buffers = dataset, index_lists, buffers

    def __len__(self) -> int:
        return len(self.index_lists)

    def __getitem__(self, b: int | range) -> Any:
        """Batch `b`, or a list of the batches in range `b` (handed over together)."""
        if isinstance(b, range):
            return [self[i] for i in b]
        if self.buffers is None or torch.utils.data.get_worker_info() is None:
            return fetch(self.dataset, self.index_lists[b])
        return self.buffers.fill(fetch, self.dataset, self.index_lists[b])


def batches(dataset: Dataset, index_lists: Sequence[Sequence[int]], workers: int, seed: int,
            pin_memory: bool) -> Iterator:
    """Batches for `index_lists`, read in this process (workers=0) or by `workers` DataLoader processes, which hand
    them over HANDOFF_BATCHES at a time after each worker's first."""
    if workers == 0:
        return (fetch(dataset, indices) for indices in index_lists)
    starts = [*range(min(workers, len(index_lists))), *range(workers, len(index_lists), HANDOFF_BATCHES)]
    groups = [range(start, min(end, len(index_lists))) for start, end in zip(starts, [*starts[1:], len(index_lists)])]
    # A private generator: creating the loader must not draw from the global RNG (exact resume).
    # collate_fn: batches come whole from fetch; torch's default would turn tuples into lists.
    loader = DataLoader(BatchDataset(dataset, index_lists, batch_buffers.BatchBuffers(workers)), batch_size=None,
                        sampler=groups, num_workers=workers, prefetch_factor=GROUPS_IN_FLIGHT, collate_fn=_as_is,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
    return _one_by_one(iter(loader))


def _as_is(batch: Any) -> Any:
    return batch


def _one_by_one(groups: Iterator[list]) -> Iterator:
    """The batches of each group in turn, none kept here once handed out (its buffer is reused once dropped)."""
    for group in groups:
        group.reverse()
        while group:
            yield group.pop()


def mix_seeds(*numbers: int) -> int:
    """A 63-bit seed from several integers (stable across processes and Python versions)."""
    value = 0x9E3779B97F4A7C15
    for n in numbers:
        value = (value ^ (n & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF
