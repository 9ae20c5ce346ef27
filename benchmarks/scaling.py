"""Data-parallel scaling on CPU: samples/s of 1 vs 2 processes on a compute-bound network, the share of a
training step spent communicating, and what the loop's per-iteration stop vote costs.

    python benchmarks/scaling.py [--batch 32] [--image 32] [--steps 2] [--rounds 3]
    python benchmarks/scaling.py --gpu [--batch 128]     # ResNet-50 images/s on one GPU

The network is resnetdemo.resnet.ResNet (ResNet-18, small_input stem, 10 classes) on random 32 px images, or a
small conv net when resnetdemo is absent. Every process runs one thread, pinned to its own core, on its own
batch of --batch samples (the global batch doubles with 2 processes). Each measurement is a block of --steps
training steps between barriers; blocks of every kind are interleaved for --rounds rounds and the median kept:

    bare      the network alone, no DistributedDataParallel: the compute (with 2 processes, sharing the machine)
    ddp       DDP over gloo: what playground runs
    no_sync   DDP under no_sync(): everything but the gradient all-reduce
    +vote     ddp plus a stop vote: blocking (an all_reduce of one number after every step, as a plain any_rank
              would) or paced (distributed.agree_stop, which the loop calls: a vote about every 0.1 s)

Communication share of a step = 1 - bare / ddp; the gradient all-reduce's part = 1 - no_sync / ddp. The votes
are also timed on the MLP example (32 -> 64 -> 10, batch 32), whose steps are as short as one all-reduce.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from playground import distributed  # noqa: E402
from playground.state import ExperimentState  # noqa: E402


class _Voter:
    """What distributed.agree_stop reads of an experiment: nobody asks to stop here."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self.state = ExperimentState()


def build_network(name: str) -> torch.nn.Module:
    if name == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    try:
        from resnetdemo.resnet import ResNet
    except ImportError:
        return torch.nn.Sequential(  # a small conv net, if the ResNet demo is not there
            torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 128, 3, padding=1),
            torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(128, 256, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(256, 10))
    return ResNet(18, 10, small_input=True)


def worker(rank: int, world: int, port: int, args: argparse.Namespace, results) -> None:
    torch.set_num_threads(1)
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[rank % len(cores)]})
    if world > 1:
        store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0, timeout=timedelta(seconds=120))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timedelta(seconds=600))
    report = {}
    for name, batch, steps in [("net", args.batch, args.steps)] * (not args.vote_only) + [("mlp", 32, 300)]:
        torch.manual_seed(rank)
        network = build_network(name)
        model = torch.nn.parallel.DistributedDataParallel(network) if world > 1 else network
        bare = build_network(name)  # its own copy: DDP's gradient hooks stay out of the bare steps
        optimizers = {id(m): torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (model, bare)}
        x = torch.randn(batch, 32) if name == "mlp" else torch.randn(batch, 3, args.image, args.image)
        y = torch.randint(10, (batch,))
        flag = torch.zeros(1)

        def step(module: torch.nn.Module, context=contextlib.nullcontext) -> None:
            optimizer = optimizers[id(module)]
            with context():
                loss = F.cross_entropy(module(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()

        def blocking_vote() -> None:
            step(model)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)

        voter = _Voter(world)

        def paced_vote() -> None:
            step(model)
            distributed.agree_stop(voter)

        kinds: dict[str, Callable[[], None]] = {"bare": lambda: step(bare)}
        if world > 1:
            kinds.update(ddp=lambda: step(model), no_sync=lambda: step(model, model.no_sync),
                         blocking_vote=blocking_vote, paced_vote=paced_vote)
        for fn in kinds.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.rounds):
            for kind, fn in kinds.items():
                if world > 1:
                    dist.barrier()
                started = time.perf_counter()
                for _ in range(steps):
                    fn()
                times[kind].append((time.perf_counter() - started) / steps)
        report[name] = {kind: statistics.median(t) for kind, t in times.items()} | {"batch": batch}
    if rank == 0:
        results.put(report)
    if world > 1:
        dist.barrier()  # leave together: a rank tearing down while its peer still works can abort gloo
        dist.destroy_process_group()


def measure(world: int, args: argparse.Namespace) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(worker, args=(world, port, args, results), nprocs=world, join=True)
    return results.get()


def cpu(args: argparse.Namespace) -> None:
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        sys.exit("needs 2 cores")
    if args.vote_only:
        r = measure(2, args)["mlp"]
        print(f"MLP, 2 processes, medians of {args.rounds} rounds of 300 steps: ddp step {r['ddp'] * 1e3:.3f} ms, "
              f"no_sync {r['no_sync'] * 1e3:.3f} ms, blocking vote {r['blocking_vote'] * 1e3:.3f} ms, "
              f"paced vote (playground's) {r['paced_vote'] * 1e3:.3f} ms")
        return
    net = build_network("net")
    print(f"{type(net).__name__} ({sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters), "
          f"{args.image} px, batch {args.batch} per process, 1 thread per process, {cores} cores; medians of "
          f"{args.rounds} rounds of {args.steps} steps")
    one, two = measure(1, args), measure(2, args)
    t1, t2 = one["net"]["bare"], two["net"]
    rate1, rate2 = args.batch / t1, 2 * args.batch / t2["ddp"]
    print(f"1 process : {t1 * 1e3:8.1f} ms/step  {rate1:8.1f} samples/s")
    print(f"2 processes: {t2['ddp'] * 1e3:8.1f} ms/step  {rate2:8.1f} samples/s   speed-up {rate2 / rate1:.2f}x "
          f"(ideal 2.00x; efficiency {rate2 / rate1 / 2:.0%})")
    print(f"  each process alone-in-pair (no DDP) {t2['bare'] * 1e3:.1f} ms/step ({t2['bare'] / t1:.2f}x the "
          "1-process step: the cores share memory bandwidth and caches)")
    print(f"  communication share of a step: {1 - t2['bare'] / t2['ddp']:.1%} (1 - bare/ddp); gradient all-reduce "
          f"not hidden behind backward: {1 - t2['no_sync'] / t2['ddp']:.1%} (1 - no_sync/ddp)")
    for name in ("net", "mlp"):
        r = two[name]
        votes = ", ".join(f"{kind} {(r[f'{kind}_vote'] - r['ddp']) * 1e3:+.2f} ms "
                          f"({r[f'{kind}_vote'] / r['ddp'] - 1:+.1%})" for kind in ("blocking", "paced"))
        print(f"  stop vote on {name:3} (ddp step {r['ddp'] * 1e3:7.2f} ms): {votes}")


def gpu(args: argparse.Namespace) -> None:
    """ResNet-50 training images/s on one GPU: bf16 autocast, channels_last, cudnn.benchmark, 224 px."""
    from resnetdemo.resnet import ResNet

    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    net = ResNet(50, 1000).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(1000, (args.batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    started, steps = time.perf_counter(), 30
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    secs = (time.perf_counter() - started) / steps
    print(f"ResNet-50 on {torch.cuda.get_device_name()}: batch {args.batch}, {secs * 1e3:.1f} ms/step, "
          f"{args.batch / secs:.0f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=None, help="samples per process (CPU 32, GPU 128)")
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="ResNet-50 images/s on one GPU instead")
    parser.add_argument("--vote-only", action="store_true", help="only the stop votes' cost, on the MLP")
    args = parser.parse_args()
    args.batch = args.batch or (128 if args.gpu else 32)
    gpu(args) if args.gpu else cpu(args)


if __name__ == "__main__":
    main()
