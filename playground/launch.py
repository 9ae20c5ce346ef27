"""Starting and joining the processes of a run: who is which rank, where they meet, and who writes.

    playground run ...                  one process; or, with num_cpus/num_gpus > 1, this process starts one
                                        worker per device (the same command, run again) and watches them
    playground run ... --shard-id I     the same on host I of num_shards; the rendezvous component joins them
    torchrun --nproc-per-node N -m playground run ...
                                        torchrun started the workers: each joins through env://, never spawns

Ranks: rank = shard_id * processes per host + local rank, world size = processes per host * num_shards, where
processes per host is num_gpus (one per GPU, from first_gpu_id) or else num_cpus. The global batch is
batch_per_device * world size, so changing the number of processes changes it unless batch_per_device changes.

Meeting: a single host meets at a TCPStore the starting process serves on 127.0.0.1; several hosts meet through
the `model.rendezvous_py` component; torchrun's workers through its environment. Every process then announces
itself and its opts, waits for all the others (at most distributed.rendezvous_timeout_s, then fails naming who
is missing) and compares opts (any difference is reported before training). The process group is created with
that timeout too, so every collective fails, rather than hangs, when another rank died or hangs.

Only rank 0 opens the run folder (opts.json, the log file, checkpoints, results, plots); the others learn its
path from the meeting point. torch.distributed has no authentication: run it on trusted networks only.
"""
from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist

from playground import distributed, runner, workers
from playground.errors import LostPeer, OptsMismatch, PlaygroundError, RankError, RendezvousError, UsageError

log = logging.getLogger(__name__)

# Opts that may differ between hosts: device numbering and local paths. Everything else must match.
HOST_LOCAL_OPTS = ("distributed.first_gpu_id", "distributed.first_cpu_id", "distributed.rendezvous_path",
                   "input.decode_threads", "output.checkpoint_folder", "output.runs_root")


@dataclass(frozen=True)
class Place:
    """Where this process stands. `how`: single (one process in all), spawn (start the local workers and
    watch them), launcher (a worker of ours on one host), component (meet through rendezvous_py), env (torchrun
    or another env:// launcher started it)."""

    how: str = "single"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    shard_id: int = 0

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.world_size} (shard {self.shard_id}, local rank {self.local_rank})"


# ---------------------------------------------------------------------------------------------- placement


def locate(opts: dict, shard_id: int | None, env: dict[str, str] | None = None) -> Place:
    """This process's place, from the launcher's environment (torchrun, or ours) or the opts and --shard-id;
    raise UsageError when they disagree."""
    env = os.environ if env is None else env
    d = opts["distributed"]
    per_host, shards = runner.num_xpus(opts), d["num_shards"]
    world = per_host * shards
    layout = (f"num_shards {shards} x {per_host} process(es) per host "
              f"({'num_gpus' if d['num_gpus'] else 'num_cpus'} {per_host})")
    if world > 1 and not d["num_gpus"] and opts["model_param"].get("combine_spatial_bn"):
        raise UsageError("model_param.combine_spatial_bn: SyncBatchNorm runs on GPUs only (PyTorch has no CPU "
                         "version); set it to false for CPU processes")
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_size = int(env.get("LOCAL_WORLD_SIZE", per_host))
        if size != world or local_size != per_host:
            fix = "num_gpus" if d["num_gpus"] else "num_cpus"
            raise UsageError(f"the launcher started {size} process(es), {local_size} per host, but the opts ask for "
                             f"{world}: {layout}. Make them agree, e.g. --set distributed.{fix}={local_size} "
                             f"--set distributed.num_shards={max(size // max(local_size, 1), 1)}")
        shard = int(env.get("GROUP_RANK", rank // per_host))
        if shard_id is not None and shard_id != shard and not env.get(workers.WORKER_ENV):
            raise UsageError(f"--shard-id {shard_id} disagrees with the launcher's node rank {shard}; leave "
                             "--shard-id out under torchrun")
        if size == 1:
            return Place()
        how = ("launcher" if shards == 1 else "component") if env.get(workers.WORKER_ENV) else "env"
        return Place(how, rank, size, int(env.get("LOCAL_RANK", rank % per_host)), local_size, shard)
    if shards > 1 and shard_id is None:
        raise UsageError(f"distributed.num_shards is {shards}: run the same command on every host with its own "
                         f"--shard-id (0 to {shards - 1}), or launch with torchrun --nnodes {shards}")
    shard = shard_id or 0
    if not 0 <= shard < shards:
        raise UsageError(f"--shard-id {shard} is out of range: distributed.num_shards is {shards}, so shard ids go "
                         f"from 0 to {shards - 1}")
    if world == 1:
        return Place()
    if per_host > 1:
        return Place("spawn", shard * per_host, world, 0, per_host, shard)
    return Place("component", shard, world, 0, 1, shard)


def device_of(opts: dict, place: Place) -> torch.device:
    """One GPU per process from first_gpu_id, or the CPU."""
    d = opts["distributed"]
    return torch.device("cuda", d["first_gpu_id"] + place.local_rank) if d["num_gpus"] else torch.device("cpu")


def backend_of(opts: dict) -> str:
    return "nccl" if opts["distributed"]["num_gpus"] and opts["model_param"]["cuda_nccl"] else "gloo"


# ---------------------------------------------------------------------------------------------- the command


def run(opts: dict, components: Any, shard_id: int | None, argv: list[str],
        run_folder: Callable[[dict], AbstractContextManager[str]]) -> int:
    """Run the experiment in this process, or start and watch its local workers; return the exit code.

    `run_folder(opts)` opens the run's folder and yields its path; only rank 0 calls it, around the training.
    """
    place = locate(opts, shard_id)
    if os.environ.get(workers.WORKER_ENV):
        workers.follow_parent(int(os.environ[workers.WORKER_ENV]))
    if place.how == "spawn":
        return workers.supervise(opts, place, argv)
    if place.how == "single":
        with run_folder(opts) as folder:
            runner.run(opts, components, folder)
        return 0
    with joined(opts, components, place) as (device, room):
        try:
            if place.rank == 0:
                with _announced_folder(run_folder(opts), room) as folder:
                    runner.run(opts, components, folder, place.rank, place.world_size, device)
            else:
                runner.run(opts, components, _await_folder(room, opts), place.rank, place.world_size, device)
        except PlaygroundError as e:
            e.args = (f"rank {place.rank}: {e}", *e.args[1:])
            raise
        except RuntimeError as e:
            if _is_communication_failure(e):
                first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise LostPeer(f"rank {place.rank}: lost contact with the other processes ({first_line}). Another "
                               "rank died or hung; its own error says why. Re-run the same command (on every host) "
                               "to resume from the last checkpoint") from e
            raise
    return 0


@contextmanager
def _announced_folder(folder_context: AbstractContextManager[str], room: dist.Store) -> Iterator[str]:
    """Rank 0 opens the run folder and tells the others its path, or why it could not."""
    announced = False
    try:
        with folder_context as folder:
            room.set("folder", json.dumps({"folder": folder}))
            announced = True
            yield folder
    except BaseException as e:
        if not announced:
            room.set("folder", json.dumps({"error": str(e) or type(e).__name__,
                                           "exit_code": getattr(e, "exit_code", 1)}))
        raise


def _await_folder(room: dist.Store, opts: dict) -> str:
    try:
        answer = json.loads(room.get("folder"))
    except RuntimeError as e:
        raise RendezvousError(f"rank 0 did not open the run folder within distributed.rendezvous_timeout_s "
                              f"({opts['distributed']['rendezvous_timeout_s']} s): {e}") from None
    if "error" in answer:
        raise RankError(f"rank 0 could not open the run folder: {answer['error']}", answer["exit_code"])
    return answer["folder"]


def _is_communication_failure(e: RuntimeError) -> bool:
    """Whether a collective failed (another rank gone or hung) rather than this rank's own computation."""
    pattern = r"gloo|nccl|connection (closed|reset)|by peer|timed out|timeout|pair closure"
    return isinstance(e, dist.DistError) or re.search(pattern, str(e), re.IGNORECASE) is not None


# ---------------------------------------------------------------------------------------------- joining


@contextmanager
def joined(opts: dict, components: Any, place: Place) -> Iterator[tuple[torch.device, dist.Store]]:
    """This process as one rank of the run: labelled logs, its share of the CPU, met with the others, and in
    the default process group. Yields its device and the meeting point (a key-value store all ranks share)."""
    workers.label_logs(f"rank {place.rank}")
    _split_threads(opts, place)
    timeout = timedelta(seconds=opts["distributed"]["rendezvous_timeout_s"])
    store, where = _meeting_point(opts, components, place)
    room, pg_store = meet(store, opts, place, where)
    device, backend = device_of(opts, place), backend_of(opts)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL binds this process to its GPU
    dist.init_process_group(backend, store=pg_store, rank=place.rank, world_size=place.world_size,
                            timeout=timeout, device_id=device if backend == "nccl" else None)
    distributed.set_control_group(dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None)
    log.info("joined as %s on %s (%s, %d thread(s))", place, device, backend, torch.get_num_threads())
    atexit.register(_leave)
    yield device, room
    _leave(every_backend=True)  # after a failure only _leave at exit: NCCL's destroy may wait for gone peers


def _leave(every_backend: bool = False) -> None:
    """Free what holds the process group (DistributedDataParallel sits in reference cycles), then destroy it,
    while the interpreter is whole: gloo's threads torn down during interpreter finalization can abort the
    process (SIGABRT, "terminate called without an active exception")."""
    gc.collect()
    if dist.is_initialized() and (every_backend or dist.get_backend() == "gloo"):
        distributed.set_control_group(None)
        dist.destroy_process_group()


def _meeting_point(opts: dict, components: Any, place: Place) -> tuple[dist.Store, str]:
    """The key-value store every process of the run reaches, and words saying where it is."""
    d, timeout = opts["distributed"], timedelta(seconds=opts["distributed"]["rendezvous_timeout_s"])
    try:
        if place.how == "launcher":
            where = f"the starting process's store at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
            return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), place.world_size,
                                 is_master=False, timeout=timeout), where
        if place.how == "env":
            where = f"env:// ({os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')})"
            store, _, _ = next(dist.rendezvous("env://", place.rank, place.world_size, timeout=timeout))
            return store, where
        name = opts["model"]["rendezvous_py"]
        where = {"rendezvous_filestore": f"rendezvous_filestore in {d['rendezvous_path']}",
                 "rendezvous_tcp": f"rendezvous_tcp at {d['master_addr']}:{d['master_port']}"}.get(name, name)
        exp = SimpleNamespace(opts=opts, rank=place.rank, world_size=place.world_size, shard_id=place.shard_id)
        return components.modules["rendezvous"].rendezvous(exp, place.rank, place.world_size), where
    except PlaygroundError:
        raise
    except (RuntimeError, OSError, KeyError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RendezvousError(f"{place}: could not reach the meeting point, {where}, within "
                              f"{d['rendezvous_timeout_s']} s ({first_line}). Start shard 0 first or check the "
                              "address, port and firewall") from None


def meet(store: dist.Store, opts: dict, place: Place, where: str) -> tuple[dist.Store, dist.Store]:
    """Announce this process, wait for every other, and check that all run the same opts.

    Each attempt is a generation of the store (stores on shared files outlive crashed runs): the n-th process
    to arrive joins generation (n - 1) // world_size, so a re-run never reads an earlier attempt's keys.
    Returns the generation's room (for the run folder's path) and a store for the process group.
    """
    d = opts["distributed"]
    timeout = d["rendezvous_timeout_s"]
    generation = (store.add("playground/arrivals", 1) - 1) // place.world_size
    room = dist.PrefixStore(f"playground/{generation}", store)
    room.set(f"rank{place.rank}", json.dumps({
        "rank": place.rank, "shard": place.shard_id, "host": socket.gethostname(), "pid": os.getpid(),
        "torch": torch.__version__, "world_size": place.world_size, "opts": comparable_opts(opts)}))
    keys = [f"rank{r}" for r in range(place.world_size)]
    try:
        room.wait(keys, timedelta(seconds=timeout))
    except RuntimeError:
        present = [json.loads(room.get(k)) for k in keys if room.check([k])]
        _check_same_opts(present)
        missing = [r for r in range(place.world_size) if not room.check([f"rank{r}"])]
        arrived = store.add("playground/arrivals", 0) - generation * place.world_size
        # Withdraw, so that the next attempt starts from a clean generation.
        store.add("playground/arrivals", -1)
        room.delete_key(f"rank{place.rank}")
        per_host = place.world_size // d["num_shards"]
        who = ", ".join(f"rank {r} (shard {r // per_host})" for r in missing)
        hint = (f" {arrived} processes arrived, so two may have claimed the same rank: give each host its own "
                "--shard-id" if arrived >= place.world_size else
                " Start the missing shards with the same opts and their --shard-id" + (
                    ". If every host was running, an earlier crashed attempt may have left the rendezvous file stale: "
                    "delete it and re-run everywhere" if isinstance(store, dist.FileStore) else ""))
        raise RendezvousError(f"{place}: the rendezvous through {where} did not complete within "
                              f"distributed.rendezvous_timeout_s ({timeout} s): {who} never arrived.{hint}") from None
    peers = [json.loads(room.get(k)) for k in keys]
    _check_same_opts(peers)
    versions = {p["torch"] for p in peers}
    if len(versions) > 1:
        log.warning("processes run different PyTorch versions (%s); collectives may fail", ", ".join(sorted(versions)))
    return room, dist.PrefixStore("pg", room)


def comparable_opts(opts: dict) -> dict[str, Any]:
    """The opts as dotted keys, without those that may differ between hosts (HOST_LOCAL_OPTS)."""
    from playground.opts import flatten

    return {k: v for k, v in flatten(opts).items() if k not in HOST_LOCAL_OPTS}


def _check_same_opts(peers: list[dict]) -> None:
    """Raise OptsMismatch naming each differing key, and who has which value, against the lowest rank."""
    if len(peers) < 2:
        return
    first = min(peers, key=lambda p: p["rank"])
    lines = []
    for peer in sorted(peers, key=lambda p: p["rank"]):
        for key in sorted(set(first["opts"]) | set(peer["opts"])):
            mine, theirs = first["opts"].get(key, "<missing>"), peer["opts"].get(key, "<missing>")
            if mine != theirs:
                lines.append(f"{key}: {json.dumps(theirs)} on rank {peer['rank']} (host {peer['host']}, shard "
                             f"{peer['shard']}) but {json.dumps(mine)} on rank {first['rank']} (host "
                             f"{first['host']}, shard {first['shard']})")
    if lines:
        shown = "; ".join(lines[:8]) + (f"; and {len(lines) - 8} more" if len(lines) > 8 else "")
        raise OptsMismatch(f"the processes of this run have different opts (every host must run the same opts "
                           f"and --set overrides): {shown}")


def _split_threads(opts: dict, place: Place) -> None:
    """Share this host's cores between its processes: torch threads, and on CPU runs pinning to cores from
    distributed.first_cpu_id when those cores are all available."""
    if place.local_world_size == 1:
        return
    cores = workers.usable_cores()
    threads = max(1, len(cores) // place.local_world_size)
    torch.set_num_threads(threads)
    if opts["distributed"]["num_gpus"] or not hasattr(os, "sched_setaffinity"):
        return
    first = opts["distributed"]["first_cpu_id"] + place.local_rank * threads
    wanted = set(range(first, first + threads))
    if wanted <= set(cores):
        os.sched_setaffinity(0, wanted)
    else:
        log.warning("not pinning local rank %d to cores %s: this process may use %s (distributed.first_cpu_id %d)",
                    place.local_rank, sorted(wanted), cores, opts["distributed"]["first_cpu_id"])
