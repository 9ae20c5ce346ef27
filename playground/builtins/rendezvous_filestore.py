"""Rendezvous component: processes meet through a file in `distributed.rendezvous_path`, a folder every host
can reach (a shared filesystem). torch.distributed.FileStore does the work.

The file outlives a crashed run; playground.launch meets in a fresh generation of it on every attempt, so a
re-run does not read the old run's keys. Give each run its own folder; the file's permissions are its only
protection."""
from __future__ import annotations

import os
from datetime import timedelta

import torch.distributed as dist

from playground.errors import UsageError


def rendezvous(exp, rank: int, world_size: int) -> dist.Store:
    folder = exp.opts["distributed"]["rendezvous_path"]
    if not folder:
        raise UsageError('distributed.rendezvous_path: empty; rendezvous_filestore needs a folder every host can '
                         'reach, e.g. "rendezvous_path": "/shared/rdzv/myrun"')
    os.makedirs(folder, exist_ok=True)
    store = dist.FileStore(os.path.join(folder, "filestore"), world_size)
    store.set_timeout(timedelta(seconds=exp.opts["distributed"]["rendezvous_timeout_s"]))
    return store
