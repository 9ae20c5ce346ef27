"""The component roles: what a module named by each `*_py` opt must define, and what it receives.

Every function receives `exp`, the running experiment (an `AnyExp`). What components may read from it:
`exp.opts` (the resolved opts), `exp.seed`, `exp.device`, `exp.rank`, `exp.world_size`, `exp.total_batch_size`,
`exp.epoch_iterations`, `exp.state` (epoch, iteration, global_step), `exp.network` and `exp.optimizer` once built,
and `exp.folder` (the checkpoint folder).
"""
from __future__ import annotations

from dataclasses import dataclass

from playground.events import EventHandler


@dataclass(frozen=True)
class Role:
    """A pluggable slot: the attributes the resolved object must have, and what they do (a class role may also
    name the base class it must derive from)."""

    title: str
    needs: tuple[str, ...]
    contract: str
    is_class: bool = False
    base: type | None = None


ROLES: dict[str, Role] = {
    "input.input_name_py": Role(
        "input", ("get_dataset",),
        "get_dataset(exp, split) -> torch Dataset for split 'train' or 'test'. Items are (input, label); a "
        "dataset may define get_batch(indices) returning a whole batch (faster: no collation), "
        "device_transform(inputs), applied to each batch's inputs once they are on the training device (for "
        "work best done batched there, such as uint8 pixels to normalised floats), and set_epoch(epoch), called "
        "before each epoch, to derive its augmentation from (seed, epoch, index)."),
    "model.model_name_py": Role(
        "model", ("Experiment",),
        "Experiment: an AnyExp subclass whose forward(inputs, labels) returns a dict of blobs with at least "
        "'loss' (a scalar tensor); meters read the other blobs by name (e.g. 'softmax', 'label')."),
    "model.forward_pass_py": Role(
        "forward pass", ("build_network",),
        "build_network(exp) -> torch.nn.Module: the network, on CPU; the framework moves and wraps it."),
    "model.parameter_update_py": Role(
        "parameter update", ("build_optimizer",),
        "build_optimizer(exp, network) -> torch.optim.Optimizer; optionally build_lr_scheduler(exp, optimizer) "
        "-> LRScheduler, stepped after every training iteration."),
    "model.optimizer_py": Role(
        "optimizer", ("build_optimizer",), "The same protocol as parameter_update_py."),
    "model.rendezvous_py": Role(
        "rendezvous", ("rendezvous",),
        "rendezvous(exp, rank, world_size) -> torch.distributed.Store where every process meets; called only "
        "when several hosts train (num_shards > 1; one host meets at its launcher, torchrun's workers through "
        "env://). The processes meet before the experiment is built, so `exp` is a namespace holding only opts, "
        "rank, world_size and shard_id. Return at once (do not wait for the others: playground.launch waits, "
        "and names who is missing); fail within distributed.rendezvous_timeout_s."),
    "model.additional_override_py": Role(
        "override", (),
        "Public functions of the module replace the experiment class's methods of the same name, in a "
        "subclass (the base class stays untouched)."),
    "output.gen_output_py": Role(
        "output generator", ("gen_output",),
        "gen_output(exp) -> dict: the final results, written as results.json."),
    "output.gen_checkpoint_path_py": Role(
        "checkpoint path", ("checkpoint_name",),
        "checkpoint_name(exp, epoch, iteration, final) -> file name inside the checkpoint folder."),
    "meter_py": Role(
        "meter", ("reset", "update", "compute"),
        "A class built with meter_kargs: reset(), update(blobs) on every batch it measures, compute() -> float. "
        "An attribute `sums` (a 1-D tensor) lets distributed runs reduce it exactly.", is_class=True),
    "handler_py": Role(
        "handler", (),
        "A playground.events.EventHandler subclass built with kargs; its on_<event>(exp) methods are called at "
        "each event.", is_class=True, base=EventHandler),
}


def role_for(key: str) -> Role:
    """The role of an opts key such as 'output.metrics[2].meter_py'."""
    return ROLES.get(key) or ROLES[key.rsplit(".", 1)[-1]]
