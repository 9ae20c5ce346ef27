"""Data parallelism through torch.distributed: the wrapped network, stops agreed by every rank, exact meters,
and the restored state every rank starts from.

With one process every function here is a no-op, so the single-process loop pays nothing for it. With several,
the default process group exists (playground.launch creates it, with an explicit timeout: every collective
here fails after distributed.rendezvous_timeout_s instead of hanging when another rank died or hangs).

Small control messages (stop votes, the restored state) travel on a gloo group: CPU tensors, so they never
synchronise a GPU with the host. On gloo runs that is the default group; NCCL runs get a second, gloo group.
"""
from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from playground.errors import PlaygroundError, RankError, UsageError
from playground.state import StopRequest

if TYPE_CHECKING:
    from playground.anyexp import AnyExp
    from playground.meters import Meter

_control_group: dist.ProcessGroup | None = None  # None: the default group (gloo runs)
VOTE_INTERVAL_S = 0.1  # vote about this often: a vote (~1.2 ms on gloo) then costs about 1% of training time
MAX_CALLS_BETWEEN_VOTES = 1000


def set_control_group(group: dist.ProcessGroup | None) -> None:
    """The group for control messages: a gloo group on NCCL runs, None (the default group) on gloo runs."""
    global _control_group
    _control_group = group


# ---------------------------------------------------------------------------------------------- the network


class _DataParallel(torch.nn.parallel.DistributedDataParallel):
    """DistributedDataParallel whose calls without autograd (test passes) run the bare network.

    DDP broadcasts buffers from rank 0 at the first forward after a training step; in a test pass that would be
    a collective inside a loop whose length differs between ranks (the test set's last global batch may leave
    some ranks nothing), so test passes skip DDP altogether. Training forwards are DDP's own.
    """

    def forward(self, *inputs, **kwargs):
        if not torch.is_grad_enabled():
            return self.module(*inputs, **kwargs)
        return super().forward(*inputs, **kwargs)


def wrap(network: torch.nn.Module, exp: AnyExp) -> torch.nn.Module:
    """The module the training step calls: `network` itself, or DistributedDataParallel around it."""
    if exp.world_size == 1:
        return network
    device_ids = [exp.device.index] if exp.device.type == "cuda" else None
    return _DataParallel(network, device_ids=device_ids)


# ---------------------------------------------------------------------------------------------- stopping together


def any_rank(flag: bool, exp: AnyExp) -> bool:
    """True on every rank when `flag` is true on any (a blocking all-reduce of one number)."""
    if exp.world_size == 1:
        return flag
    shared = torch.tensor([float(flag)])
    dist.all_reduce(shared, op=dist.ReduceOp.MAX, group=_control_group)
    return bool(shared.item())


_KINDS = {None: 0, "handler": 1, "signal": 2}  # a signal outranks a handler's request


def _vote(request: StopRequest | None, seconds_per_call: float) -> torch.Tensor:
    """This rank's vote: [kind, signal number, seconds per call]."""
    kind = _KINDS[request.kind if request else None]
    return torch.tensor([kind, request.signal or 0 if request else 0, seconds_per_call], dtype=torch.float64)


def _agreed(kind: int, signum: int, own: StopRequest | None) -> StopRequest | None:
    if not kind:
        return None
    if own is not None and _KINDS[own.kind] == kind:
        return own  # this rank asked in the same way: keep its own words
    if kind == _KINDS["signal"]:
        return StopRequest.from_signal(signum, " (received by another process)")
    return StopRequest("handler", "another process was asked to stop")


def agree_stop(exp: AnyExp, *, now: bool = False) -> None:
    """Turn stop requests (`exp.state.stop_requested`, by signals and handlers) into `exp.state.stop` on every
    rank at the same iteration, so that no rank waits in a collective the others never enter.

    The ranks vote in an all-reduce (on gloo over loopback about 1.2 ms, as much as a small model's whole
    gradient exchange), so they vote only every VOTE_INTERVAL_S of training or so: every call when a step takes
    longer, every k-th call for short steps, k agreed at each vote from the slowest rank's pace. A request thus
    stops every rank within about VOTE_INTERVAL_S (and one iteration), all at the same iteration. now=True (the
    end of an epoch) votes at once. A signal outranks a handler's request: if any rank was signalled, every rank
    ends as stopped by a signal (exit 143, resumable).
    """
    state = exp.state
    if state.stop is not None:
        return
    if exp.world_size == 1:
        state.stop = state.stop_requested
        return
    clock = state.votes
    clock.calls += 1
    if clock.calls < clock.every and not now:
        return
    pace = (time.perf_counter() - clock.since) / clock.calls if clock.since is not None else 0.0
    votes = _vote(state.stop_requested, pace)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX, group=_control_group)
    kind, signum, seconds_per_call = votes.tolist()
    if seconds_per_call > 0:
        clock.every = max(1, min(MAX_CALLS_BETWEEN_VOTES, int(VOTE_INTERVAL_S / seconds_per_call)))
    clock.calls, clock.since = 0, time.perf_counter()
    state.stop = _agreed(int(kind), int(signum), state.stop_requested)


# ---------------------------------------------------------------------------------------------- meters


def check_meters(meters: dict[str, Meter], world_size: int) -> None:
    """With several processes every meter must be exact over all ranks: additive `sums`, or `sync(group)`.
    Averaging per-rank values would be wrong for F1, AUROC and any metric that is not a mean over samples."""
    if world_size == 1:
        return
    if inexact := [name for name, meter in meters.items() if not hasattr(meter, "sums") and not hasattr(meter, "sync")]:
        raise UsageError(f"output.metrics: {', '.join(map(repr, inexact))} can't be computed over {world_size} "
                         "processes: a meter needs additive `sums` or a `sync(group)` method (see the Meter protocol "
                         "in playground/slots.py); run with one process, or use TorchMetric")


def compute_all(meters: dict[str, Meter], exp: AnyExp) -> dict[str, float]:
    """Every meter's value over all ranks, the same on every rank.

    Meters that keep `sums` are reduced exactly in one all-reduce whatever their number (sums of counts, never
    averages of averages; a rank that measured nothing, such as one left out of the test set's last batch,
    contributes zeros). Their lengths are agreed at the first reduction of these meters (one more all-reduce,
    once) and must not change afterwards. The others are synced (`sync(group)`, in the order of the metrics, on
    the control group: their states travel as CPU tensors) before each computes its value. check_meters has
    refused meters offering neither.
    """
    if exp.world_size == 1 or not meters:
        return {name: meter.compute() for name, meter in meters.items()}
    exact = {name: m for name, m in meters.items() if hasattr(m, "sums")}
    device = exp.device
    known = exp.state.reduction_lengths
    key = tuple(exact)
    if exact and key not in known:
        lengths = torch.tensor([0 if m.sums is None else len(m.sums) for m in exact.values()], dtype=torch.int64,
                               device=device)
        dist.all_reduce(lengths, op=dist.ReduceOp.MAX)
        known[key] = lengths.tolist()
    parts = []
    for (name, meter), n in zip(exact.items(), known.get(key, ())):
        if meter.sums is not None and len(meter.sums) != n:
            raise PlaygroundError(f"meter {name!r}: its sums changed length from {n} to {len(meter.sums)}; a "
                                  "meter's sums must keep their length for distributed reduction")
        parts.append(torch.zeros(n, dtype=torch.float64, device=device) if meter.sums is None
                     else meter.sums.to(device=device, dtype=torch.float64))
    if parts:
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        offset = 0
        for meter, n in zip(exact.values(), known[key]):
            meter.sums = flat[offset:offset + n]
            offset += n
    for name, meter in meters.items():
        if name not in exact:
            meter.sync(_control_group)
    return {name: meter.compute() for name, meter in meters.items()}


# ---------------------------------------------------------------------------------------------- restoring


def _broadcast_bytes(data: bytes | None, exp: AnyExp) -> bytes:
    """Rank 0's `data` on every rank (others pass None)."""
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64)
    dist.broadcast(size, src=0, group=_control_group)
    buffer = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if exp.rank == 0 and data
              else torch.empty(int(size.item()), dtype=torch.uint8))
    if size.item():
        dist.broadcast(buffer, src=0, group=_control_group)
    return buffer.numpy().tobytes()


def restore(exp: AnyExp, restore_rank0: Callable[[AnyExp], None]) -> None:
    """Rank 0 restores (the newest intact checkpoint, or the pretrained model) and every rank takes its whole
    state: weights, optimizer, counters, history, RNG. Only rank 0 needs to see the run folder, and every rank
    continues from the same iteration with the same data order. Rank 0's failure is raised on every rank."""
    if exp.world_size == 1:
        restore_rank0(exp)
        return
    outcome: dict = {}
    failure: BaseException | None = None
    if exp.rank == 0:
        try:
            restore_rank0(exp)
        except BaseException as e:  # every rank must hear of it, or they wait for the state below
            failure = e
            outcome = {"error": f"{type(e).__name__}: {e}" if not isinstance(e, PlaygroundError) else str(e),
                       "exit_code": getattr(e, "exit_code", 1)}
    outcome = json.loads(_broadcast_bytes(json.dumps(outcome).encode() if exp.rank == 0 else None, exp))
    if failure is not None:
        raise failure
    if outcome:
        raise RankError(f"rank 0: {outcome['error']}", outcome["exit_code"])
    buffer = io.BytesIO()
    if exp.rank == 0:
        torch.save(exp.checkpoint_state(), buffer)
    state = _broadcast_bytes(buffer.getvalue() if exp.rank == 0 else None, exp)
    if exp.rank != 0:
        exp.load_checkpoint_state(torch.load(io.BytesIO(state), map_location=exp.device, weights_only=True))
