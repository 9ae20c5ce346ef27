"""Batch composition: a function of (seed, epoch), the same global batches for any number of processes; handing
batches from worker processes."""
import os

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from playground import batch_buffers, data
from playground.builtins.synthetic_input import make


class Squares(Dataset):
    """Items one by one, collated by the framework."""

    def __len__(self):
        return 50

    def __getitem__(self, i):
        return torch.tensor([float(i * i)]), i


def test_epoch_order_depends_only_on_seed_and_epoch_and_covers_the_data():
    a, b = data.epoch_order(50, 120, seed=3, epoch=2), data.epoch_order(50, 120, seed=3, epoch=2)
    assert torch.equal(a, b) and len(a) == 120
    assert sorted(a[:50].tolist()) == list(range(50))  # each pass over the data is a permutation
    assert not torch.equal(a, data.epoch_order(50, 120, seed=3, epoch=3))
    assert not torch.equal(a, data.epoch_order(50, 120, seed=4, epoch=2))


def test_ranks_split_each_global_batch_into_disjoint_slices():
    order = data.epoch_order(50, 48, seed=0, epoch=0)
    whole = data.train_batch_indices(order, 16, rank=0, per_rank=16, start=0, stop=3).tolist()  # rows
    halves = [data.train_batch_indices(order, 16, rank=r, per_rank=8, start=0, stop=3).tolist() for r in (0, 1)]
    for b in range(3):
        assert halves[0][b] + halves[1][b] == whole[b]
    assert data.train_batch_indices(order, 16, 0, 16, start=2, stop=3).tolist() == whole[2:]  # resume at batch 2


def test_test_batches_cover_the_test_set_once_across_ranks():
    per_rank = [data.test_batch_indices(21, 8, rank=r, per_rank=4, num_batches=0) for r in (0, 1)]
    seen = sorted(i for batches in per_rank for batch in batches for i in batch)
    assert seen == list(range(21))
    assert len(data.test_batch_indices(21, 8, 0, 8, num_batches=2)) == 2


class IntsOnly(Squares):
    """Items only for Python ints, as a dataset keyed by a list or a dict may need them."""

    def __getitem__(self, i):
        assert type(i) is int, f"item index of type {type(i).__name__}"
        return super().__getitem__(i)


def test_training_batches_come_as_index_rows_and_items_still_get_python_ints():
    order = data.epoch_order(50, 48, seed=0, epoch=0)
    rows = data.train_batch_indices(order, 16, rank=0, per_rank=16, start=0, stop=3)
    assert rows.dtype == np.int64 and rows.shape == (3, 16)  # no Python int per sample
    for workers in (0, 2):
        batches = list(data.batches(IntsOnly(), rows, workers=workers, seed=0, pin_memory=False))
        assert [labels.tolist() for _, labels in batches] == rows.tolist()
    features, labels = make(50, 4, 3, 1.0, seed=0, split="train").tensors
    batch = next(data.batches(data.TensorData(features, labels), rows, workers=0, seed=0, pin_memory=False))
    assert torch.equal(batch[0], features[rows[0]]) and torch.equal(batch[1], labels[rows[0]])


def test_worker_processes_give_the_same_batches_as_the_training_process():
    for dataset in (Squares(), make(50, 4, 3, 1.0, seed=0, split="train")):
        indices = [[3, 1, 4], [1, 5, 9], [2, 6]]
        inline = list(data.batches(dataset, indices, workers=0, seed=0, pin_memory=False))
        workers = list(data.batches(dataset, indices, workers=2, seed=0, pin_memory=False))
        for a, b in zip(inline, workers, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b))


class Carved(Dataset):
    """Batches written into data.batch_tensors, inputs finished by device_transform."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.get_batch([i])

    def get_batch(self, indices):
        values, labels = data.batch_tensors(((len(indices), 3), torch.uint8), ((len(indices),), torch.int64))
        values[...] = torch.tensor(indices)[:, None]
        labels[...] = torch.tensor(indices)
        return values, labels

    @staticmethod
    def device_transform(values):
        return values.float() / 2


def test_a_batch_is_one_allocation_in_shared_memory_only_in_workers():
    values, labels = Carved().get_batch([1, 2])
    assert values.untyped_storage().data_ptr() == labels.untyped_storage().data_ptr()
    assert (labels.data_ptr() - values.data_ptr()) % 64 == 0 and not values.is_shared()
    loader = torch.utils.data.DataLoader(data.BatchDataset(Carved(), [[3, 4]]), batch_size=None, num_workers=1)
    (values, labels), = list(loader)
    assert values.is_shared() and values.tolist() == [[3] * 3, [4] * 3] and labels.tolist() == [3, 4]


def test_inputs_go_through_the_dataset_device_transform_also_behind_a_dataloader():
    dataset = Carved()
    values, _ = dataset.get_batch([5])
    assert data.to_device(values, torch.device("cpu"), dataset).tolist() == [[2.5] * 3]
    loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    assert data.to_device(values, torch.device("cpu"), loader).tolist() == [[2.5] * 3]
    assert data.to_device((values, [values]), torch.device("cpu"), Squares())[1][0] is values  # moved as is


class Numbered(Dataset):
    """Batches of 2000 int64s, each filled with its first index, written into data.batch_tensors."""

    def __len__(self):
        return 1000

    def get_batch(self, indices):
        values, labels = data.batch_tensors(((len(indices), 2000), torch.int64), ((len(indices),), torch.int64))
        values[...] = indices[0]
        labels[...] = torch.tensor(indices)
        return values, labels


def shared_memory_file(tensor: torch.Tensor) -> str:
    """The device:inode of the shared-memory file that `tensor`'s memory maps (from /proc/self/maps)."""
    address = tensor.untyped_storage().data_ptr()
    for line in open("/proc/self/maps"):
        span, _, _, device, inode = line.split()[:5]
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= address < high:
            return f"{device}:{inode}"
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/self/maps")
def test_workers_reuse_batch_buffers_but_never_one_still_held():
    """A worker writes each batch into shared memory it reuses once the training process has dropped every tensor
    of the batch held there; a batch held, or a view of it, keeps its memory until it is dropped."""
    index_lists = [[b, b + 1] for b in range(0, 120, 2)]  # 60 batches, 30 per worker
    batches = data.batches(Numbered(), index_lists, workers=2, seed=0, pin_memory=False)
    held, _ = next(batches)
    view = next(batches)[0][1]  # a row of batch 1: the rest of that batch is dropped
    hoard = [next(batches) for _ in range(2 * batch_buffers.SEGMENTS_PER_WORKER + 2)]  # more than all buffers
    assert all((values == index_lists[b][0]).all() for b, (values, _) in enumerate(hoard, start=2))
    start = 2 + len(hoard)
    del hoard
    # the batches already in flight were written while every buffer was held: into fresh memory, once each
    in_flight = 2 * data.GROUPS_IN_FLIGHT * data.HANDOFF_BATCHES
    files = set()
    for b, (values, labels) in enumerate(batches, start=start):
        assert (values == index_lists[b][0]).all() and labels.tolist() == index_lists[b]
        if b >= start + in_flight:
            files.add(shared_memory_file(values))
    assert (held == 0).all() and (view == 2).all()
    assert len(files) <= 2 * batch_buffers.SEGMENTS_PER_WORKER < len(index_lists) - start - in_flight  # reused


class ByWorker(Dataset):
    """Batches naming the worker process that fetched them."""

    def __len__(self):
        return 100

    def get_batch(self, indices):
        return torch.tensor(indices), torch.utils.data.get_worker_info().id


def test_workers_hand_over_batches_in_groups_after_each_first_one():
    """A hand-off costs the training process as much as fetching several small batches: each worker's first batch
    comes alone (the first step waits for no more), the rest HANDOFF_BATCHES at a time, in order."""
    index_lists = [[b] for b in range(11)]
    fetched = list(data.batches(ByWorker(), index_lists, workers=2, seed=0, pin_memory=False))
    assert [values.tolist() for values, _ in fetched] == index_lists
    assert data.HANDOFF_BATCHES == 2 and [worker for _, worker in fetched] == [0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]


def test_a_batch_held_from_a_handed_over_group_is_never_overwritten():
    """Batches come from the workers in groups: one held while the rest of its group and the next groups are
    fetched and dropped keeps its memory, and the others' memory is reused meanwhile."""
    index_lists = [[b, b + 1] for b in range(0, 100, 2)]
    batches = data.batches(Numbered(), index_lists, workers=2, seed=0, pin_memory=False)
    fetched = [next(batches) for _ in range(5)]
    held = {b: fetched[b] for b in (3, 4)}  # the second batch of a group, and the first of the next
    del fetched
    segments = set()
    for b, (values, labels) in enumerate(batches, start=5):
        assert (values == index_lists[b][0]).all() and labels.tolist() == index_lists[b]
        segments.add(values.untyped_storage().data_ptr())
    for b, (values, labels) in held.items():
        assert (values == index_lists[b][0]).all() and labels.tolist() == index_lists[b]
    assert len(segments) < len(index_lists) - 5  # reused, not one per batch
