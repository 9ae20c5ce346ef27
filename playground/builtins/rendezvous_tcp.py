"""Rendezvous component: processes meet at `distributed.master_addr:master_port`, served by shard 0's first
process (torch.distributed.TCPStore). torch.distributed has no authentication: use it on trusted networks."""
from __future__ import annotations

from datetime import timedelta

import torch.distributed as dist


def rendezvous(exp, rank: int, world_size: int) -> dist.Store:
    d = exp.opts["distributed"]
    return dist.TCPStore(d["master_addr"], d["master_port"], world_size, is_master=rank == 0,
                         timeout=timedelta(seconds=d["rendezvous_timeout_s"]))
