"""TerminateOnNaN: fail the run at the first non-finite loss, before any checkpoint can hold broken weights."""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import torch

from playground import distributed
from playground.errors import NonFiniteLossError
from playground.events import EventHandler

if TYPE_CHECKING:
    from playground.anyexp import AnyExp


class TerminateOnNaN(EventHandler):
    """Checks the loss blob `blob_name` after every training iteration and fails the run when it is not finite.

    The failure is raised at once, so the loop writes nothing more: the newest checkpoint stays the last good
    one. Before each scheduled checkpoint (epoch ends, checkpoint_every_iters, requested ones) it also checks the
    weights, since a finite loss can come with a step that made them non-finite. Reading the loss synchronises a
    GPU with the host once per iteration; in distributed runs every process stops at the same iteration.
    """

    def __init__(self, blob_name: str = "loss"):
        self.blob_name = blob_name

    def on_iteration_end(self, exp: AnyExp) -> None:
        loss = exp.blobs[self.blob_name].detach()
        bad = not bool(torch.isfinite(loss).all())
        if not bad and self._checkpoint_follows(exp):
            bad = not _weights_finite(exp.network)
        if distributed.any_rank(bad, exp):
            self._fail(exp, loss)

    def on_epoch_end(self, exp: AnyExp) -> None:
        """The epoch's checkpoint is written right after this event: only finite weights may go into it."""
        if distributed.any_rank(not _weights_finite(exp.network), exp):
            self._fail(exp, None)

    @staticmethod
    def _checkpoint_follows(exp: AnyExp) -> bool:
        """Whether the loop writes a checkpoint at this iteration boundary (the epoch's end is on_epoch_end's)."""
        return bool(exp.checkpoint_due() or exp.state.stop_requested or exp.state.stop)

    def _fail(self, exp: AnyExp, loss: torch.Tensor | None) -> None:
        value = float(loss.float().mean()) if loss is not None and loss.numel() else math.nan
        what = f"the loss is {value}" if loss is not None and not math.isfinite(value) else "the weights are not finite"
        last = os.path.basename(exp.checkpoints[-1]) if exp.checkpoints else "none was written"
        raise NonFiniteLossError(
            f"TerminateOnNaN: {what} at epoch {exp.state.epoch} iteration {exp.state.iteration} (training step "
            f"{exp.state.global_step}); the run failed and wrote no checkpoint after the last good one ({last}). "
            "Fix the cause (e.g. a lower learning rate), then re-run the same command to resume from it")


def _weights_finite(network: torch.nn.Module) -> bool:
    tensors = [p.detach() for p in network.parameters() if p.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
