"""Shared-memory buffers that DataLoader workers write batches into, each reused once the training process is done
with the batch it held.

A fresh shared-memory segment per batch makes the worker create and fault in one, and the training process map,
fault in and unmap it: 1.25 ms per batch of 64 images at 64 px, 9.7 ms at 256 px. Here each worker keeps up to
SEGMENTS_PER_WORKER segments. The first batch written into a segment hands it over as torch does (its file
descriptor); later ones only name it, and the training process views its own mapping again.

A segment is written again only after every tensor of the batch it held is gone from the training process: a
batch still read by the training step, kept by a meter or by the user's code is never overwritten. The training
process learns that from reference counting (the batch's tensors share one storage, whose release clears a
shared flag the worker reads). A worker whose segments are all in use writes its batch into a fresh one, as
before: nothing ever waits for a buffer.
"""
from __future__ import annotations

import itertools
import multiprocessing
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

SEGMENTS_PER_WORKER = 8  # 4 batches per worker in flight (data.GROUPS_IN_FLIGHT groups of 2); the rest
# cover batches the training process still holds

_serial = itertools.count()
_open: weakref.WeakValueDictionary[int, BatchBuffers] = weakref.WeakValueDictionary()  # in the training process
_filling: BatchBuffers | None = None  # in a worker, while a batch is fetched into its buffers


class _View(NamedTuple):
    """Where a tensor of a batch lies in a segment: what is sent instead of the tensor."""
    slot: int
    dtype: torch.dtype
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class BatchBuffers:
    """The segments of `workers` DataLoader workers. Made in the training process before the workers start, and
    inherited by them (or pickled along with the dataset, where they are spawned)."""

    def __init__(self, workers: int):
        self.key = next(_serial)
        # 1 from a worker's take to the release of the batch: only a worker sets it, only the training process
        # clears it. No lock (a worker killed holding one would hang the training process): the release comes
        # after the last read of the batch, through torch's atomic reference count of its storage.
        self._in_use = multiprocessing.RawArray("b", workers * SEGMENTS_PER_WORKER)
        self._segments: dict[int, torch.UntypedStorage] = {}  # a worker's own; the training process's mappings
        self._arrays: dict[int, np.ndarray] = {}  # the training process's mappings as bytes
        self._unsent: set[int] = set()  # in a worker: segments the training process has not received yet
        self._taken: list[int] = []  # in a worker: segments of the batch being fetched
        _open[self.key] = self

    def __getstate__(self) -> dict:
        return {"key": self.key, "_in_use": self._in_use}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _segments={}, _arrays={}, _unsent=set(), _taken=[])

    def fill(self, fetch: Callable[..., Any], *args: Any) -> Handover:
        """`fetch(*args)` in a worker, its `data.batch_tensors` in this worker's segments, as what to send."""
        global _filling
        _filling, self._taken = self, []
        try:
            batch = fetch(*args)
        except BaseException:
            self._give_back(self._taken)
            raise
        finally:
            _filling = None
        taken = {self._segments[slot].data_ptr(): slot for slot in self._taken}
        sent = {slot: self._segments[slot] if slot in self._unsent else None for slot in self._taken}
        self._unsent -= sent.keys()
        return Handover(self.key, sent, _skeleton(batch, taken))

    def take(self, size: int) -> torch.UntypedStorage:
        """A free segment of this worker of at least `size` bytes, marked in use; a fresh one-off when none is."""
        first = torch.utils.data.get_worker_info().id * SEGMENTS_PER_WORKER
        free = [slot for slot in range(first, first + SEGMENTS_PER_WORKER) if not self._in_use[slot]]
        fitting = [slot for slot in free if slot in self._segments and self._segments[slot].nbytes() >= size]
        slot = (fitting or free or [None])[0]
        if slot is None:
            return torch.UntypedStorage._new_shared(size)
        self._in_use[slot] = 1
        if slot not in fitting:
            self._segments[slot] = torch.UntypedStorage._new_shared(size)
            self._unsent.add(slot)
        self._taken.append(slot)
        return self._segments[slot]

    def receive(self, sent: dict[int, torch.UntypedStorage | None], skeleton: Any) -> Any:
        """In the training process: the batch that a worker's `fill` returned, viewing the segments it names."""
        for slot, segment in sent.items():
            if segment is not None:
                self._segments[slot] = segment
                self._arrays[slot] = torch.empty(0, dtype=torch.uint8).set_(segment).numpy()
        return _rebuild(skeleton, {slot: self._lend(slot) for slot in sent})

    def _lend(self, slot: int) -> torch.UntypedStorage:
        """A storage over segment `slot` whose release, once no tensor uses it any longer, frees the segment."""
        owner = self._arrays[slot][:]  # a new array object: torch holds it until the storage is released
        weakref.finalize(owner, self._give_back, [slot]).atexit = False
        return torch.from_numpy(owner).untyped_storage()

    def _give_back(self, slots: list[int]) -> None:
        for slot in slots:
            self._in_use[slot] = 0


class Handover(NamedTuple):
    """A batch on its way from a worker: segments named, not sent, except those sent for the first time."""
    key: int
    sent: dict[int, torch.UntypedStorage | None]
    skeleton: Any

    def __reduce__(self) -> tuple:
        return _receive, tuple(self)


def take(size: int) -> torch.UntypedStorage:
    """Shared memory of `size` bytes for a batch written in a DataLoader worker: a reused segment when the batch is
    fetched through `BatchBuffers.fill`, else a fresh one."""
    if _filling is None:
        return torch.UntypedStorage._new_shared(size)
    return _filling.take(size)


def _receive(key: int, sent: dict[int, torch.UntypedStorage | None], skeleton: Any) -> Any:
    return _open[key].receive(sent, skeleton)


def _skeleton(value: Any, taken: dict[int, int]) -> Any:
    """`value` with each tensor that lies in a taken segment replaced by its _View."""
    if isinstance(value, torch.Tensor):
        slot = taken.get(value.untyped_storage().data_ptr())
        return value if slot is None else _View(slot, value.dtype, value.storage_offset(), tuple(value.shape),
                                                value.stride())
    if isinstance(value, (tuple, list)):
        return _like(value, [_skeleton(v, taken) for v in value])
    if isinstance(value, dict):
        return {k: _skeleton(v, taken) for k, v in value.items()}
    return value


def _rebuild(value: Any, storages: dict[int, torch.UntypedStorage]) -> Any:
    if isinstance(value, _View):
        return torch.empty(0, dtype=value.dtype).set_(storages[value.slot], value.offset, value.shape, value.stride)
    if isinstance(value, (tuple, list)):
        return _like(value, [_rebuild(v, storages) for v in value])
    if isinstance(value, dict):
        return {k: _rebuild(v, storages) for k, v in value.items()}
    return value


def _like(sequence: tuple | list, items: list) -> tuple | list:
    """`items` in a sequence of the type of `sequence` (a named tuple's too)."""
    return type(sequence)(*items) if hasattr(sequence, "_fields") else type(sequence)(items)
