"""Rendezvous component: processes meet at `distributed.master_addr:master_port`, served by rank 0 (shard 0's
first process) with torch.distributed.TCPStore.

Rank 0 listens on master_addr only (not on every interface), when that address is one of its own; give it the
address of a private, trusted network. torch.distributed has no authentication: anyone who reaches the port can
join or disturb the run.
"""
from __future__ import annotations

import errno
import logging
import socket
from datetime import timedelta

import torch.distributed as dist

from playground.errors import UsageError

log = logging.getLogger(__name__)


def rendezvous(exp, rank: int, world_size: int) -> dist.Store:
    d = exp.opts["distributed"]
    timeout = timedelta(seconds=d["rendezvous_timeout_s"])
    if rank != 0:
        return dist.TCPStore(d["master_addr"], d["master_port"], world_size, is_master=False, timeout=timeout)
    # The launcher waits for every process itself and names the missing ones, so the server does not wait here.
    listen_fd = _listen(d["master_addr"], d["master_port"])
    return dist.TCPStore(d["master_addr"], d["master_port"], world_size, is_master=True, timeout=timeout,
                         wait_for_workers=False, master_listen_fd=listen_fd)


def _listen(addr: str, port: int) -> int | None:
    """A socket listening on addr:port only, or None (TCPStore then listens on every interface)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"distributed.master_port: {port} is in use on {addr}; pick a free port, the same on "
                             "every host") from None
        log.warning("cannot listen on %s:%d only (%s); listening on every interface", addr, port, e.strerror or e)
        return None
    listener.listen(128)
    return listener.detach()
