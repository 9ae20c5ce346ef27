"""The worker processes a launcher starts on one host: starting them with their ranks, passing signals on, and
stopping them all when one fails.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from playground.errors import Stopped

if TYPE_CHECKING:
    from playground.launch import Place

log = logging.getLogger(__name__)

WORKER_ENV = "PLAYGROUND_WORKER"  # set in the workers started here (vs torchrun's): the starter's pid
STOPPED_EXIT = Stopped.exit_code  # a rank stopped by SIGTERM after a checkpoint
KILL_GRACE_S = 10.0  # after a worker failed: how long the others get to exit on their own before SIGKILL



def usable_cores() -> list[int]:
    """The cores this process may run on, in order."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def label_logs(label: str) -> None:
    """Prefix every log record of this process with `label`, whatever handler (terminal, log file) shows it."""
    make_record = logging.getLogRecordFactory()

    def labelled(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.msg = f"[{label}] {record.msg}"
        return record

    logging.setLogRecordFactory(labelled)


def supervise(opts: dict, place: Place, argv: list[str]) -> int:
    """Start this host's workers (the same command, with the launcher's environment) and watch them.

    A worker that fails makes the others stop: they get SIGTERM, then SIGKILL after KILL_GRACE_S. SIGTERM to
    this process goes to every worker, which then stop together after a checkpoint (exit 143).
    """
    import playground

    per_host, timeout = place.local_world_size, opts["distributed"]["rendezvous_timeout_s"]
    threads = max(1, len(usable_cores()) // per_host)
    root = os.path.dirname(os.path.dirname(os.path.abspath(playground.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in sys.path if p], env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    store = None
    if opts["distributed"]["num_shards"] == 1:
        # One host: the workers meet here, on loopback only (torch.distributed has no authentication).
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(per_host * 2)
        port = listener.getsockname()[1]
        store = dist.TCPStore("127.0.0.1", port, None, is_master=True, wait_for_workers=False,
                              timeout=timedelta(seconds=timeout), master_listen_fd=listener.detach())
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        loopback = next((name for _, name in socket.if_nameindex() if name in ("lo", "lo0")), None)
        if loopback and "GLOO_SOCKET_IFNAME" not in env:
            env["GLOO_SOCKET_IFNAME"] = loopback
    label_logs("launcher")
    log.info("starting %d worker processes for ranks %d to %d of %d (%d thread(s) each)", per_host, place.rank,
             place.rank + per_host - 1, place.world_size, threads)
    children = []
    for local_rank in range(per_host):
        rank = place.rank + local_rank
        child_env = {**env, "RANK": str(rank), "WORLD_SIZE": str(place.world_size), "LOCAL_RANK": str(local_rank),
                     "LOCAL_WORLD_SIZE": str(per_host), "GROUP_RANK": str(place.shard_id), WORKER_ENV: str(os.getpid())}
        children.append(subprocess.Popen([sys.executable, "-m", "playground", *argv], env=child_env))
    try:
        return watch(children, place.rank)
    finally:
        del store  # served until every worker is done


def watch(children: list[subprocess.Popen], first_rank: int = 0, grace_s: float = KILL_GRACE_S) -> int:
    """Wait for every worker; when one fails, stop the others. Returns the exit code of the run: the first
    failure's, else 143 if any worker was stopped by SIGTERM, else 0."""
    codes: dict[int, int] = {}
    failure: tuple[int, int] | None = None
    kill_at: float | None = None

    def forward(signum: int, frame: Any) -> None:
        log.info("received %s: passing it to the workers", signal.Signals(signum).name)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while len(codes) < len(children):
            for i, child in enumerate(children):
                if i in codes or child.poll() is None:
                    continue
                codes[i] = code = _shell_code(child.returncode)
                if code not in (0, STOPPED_EXIT) and failure is None:
                    failure = (i, code)
                    running = [c for c in children if c.poll() is None]
                    log.error("rank %d exited with code %d%s; stopping the other %d worker(s)", first_rank + i, code,
                              _signal_words(child.returncode), len(running))
                    for other in running:
                        other.terminate()
                    kill_at = time.monotonic() + grace_s
            if kill_at is not None and time.monotonic() > kill_at:
                for i, child in enumerate(children):
                    if child.poll() is None:
                        log.error("rank %d did not exit within %.0f s: killing it", first_rank + i, grace_s)
                        child.kill()
                kill_at = None
            time.sleep(0.05)
    except KeyboardInterrupt:
        for child in children:  # the terminal sent SIGINT to the workers too; give them a moment
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failure is not None:
        return failure[1]
    return STOPPED_EXIT if STOPPED_EXIT in codes.values() else max(codes.values(), default=0)


def _shell_code(returncode: int) -> int:
    """Popen's -N for 'killed by signal N' as a shell would report it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_words(returncode: int) -> str:
    if returncode >= 0:
        return ""
    try:
        return f" (killed by {signal.Signals(-returncode).name})"
    except ValueError:
        return f" (killed by signal {-returncode})"


def follow_parent(parent_pid: int) -> None:
    """In a worker we started: receive SIGTERM (checkpoint and stop) when the starting process dies, so no
    worker trains on unwatched (Linux; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        return
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
