"""The pluggable slots: one table that the opts checks, the resolver, `--dry-run`, the catalogue
(module_map.py, keyed by slot) and the README all read. Nothing else lists slots.

Each slot's contract is a `typing.Protocol`, for component authors and type checkers. Functions receive `exp`:
while parts are built, the run's facts (`playground.parts.RunInfo`: opts, seed, device, rank, world_size,
total_batch_size, epoch_iterations, folder); once the loop runs, the experiment itself (which has the same
attributes, plus state, network, optimizer, history).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from playground.events import EventHandler

if TYPE_CHECKING:
    import torch

    from playground.anyexp import AnyExp
    from playground.parts import RunInfo


class Input(Protocol):
    """Serves the datasets. Items are (input, label); either may be a tensor or a tuple, list or dict of them. A
    dataset may define get_batch(indices) returning a whole batch (faster: no collation; indices: a numpy int64
    row for training batches, a list of ints for test batches), collate(items) for labels that do not stack
    (boxes per image; sequences padded to the batch's longest, with their lengths), device_transform(inputs),
    applied to each batch's inputs once on the training device (work best done batched there, such as uint8
    pixels to normalised floats), and set_epoch(epoch), called before each epoch, to derive its augmentation
    from (seed, epoch, index)."""

    def get_dataset(self, exp: RunInfo, split: str) -> Any: ...


class Model(Protocol):
    """`Experiment`: an AnyExp subclass whose forward(inputs, labels) returns a dict of blobs with at least
    'loss' (a scalar tensor, the one optimised: with several losses, their weighted sum, each also a blob such
    as 'loss_box' that a ComputeLoss metric records); meters read the other blobs by name (e.g. 'softmax',
    'label'; 'output.boxes' reads into a dict blob). In test passes the network is in eval mode: forward then
    decodes what the test meters read (detections after NMS, greedy-decoded sequences)."""

    Experiment: type[AnyExp]


class ForwardPass(Protocol):
    """Builds the network, on CPU; the loop moves and wraps it."""

    def build_network(self, exp: RunInfo) -> torch.nn.Module: ...


class ParameterUpdate(Protocol):
    """Builds the optimizer; optionally also build_lr_scheduler(exp, optimizer) -> LRScheduler, stepped after
    every training iteration. A scheduler may also define epoch_end(exp), called at each epoch's end once its test
    pass is recorded (before the epoch's checkpoint): how ReduceLROnPlateau reads its metric."""

    def build_optimizer(self, exp: RunInfo, network: torch.nn.Module) -> torch.optim.Optimizer: ...


class Rendezvous(Protocol):
    """Where the processes of a multi-host run (num_shards > 1) meet: a torch.distributed Store. Called before
    the experiment is built, with `exp` holding only opts, rank, world_size and shard_id. Return at once (the
    launcher waits, and names who is missing); fail within distributed.rendezvous_timeout_s."""

    def rendezvous(self, exp: Any, rank: int, world_size: int) -> Any: ...


class Override(Protocol):
    """A module whose public functions replace the experiment class's methods of the same name, in a subclass
    (the base class stays untouched)."""


class OutputGenerator(Protocol):
    """The final results, written as results.json."""

    def gen_output(self, exp: AnyExp) -> dict: ...


class CheckpointPath(Protocol):
    """The file name of a checkpoint inside the run folder."""

    def checkpoint_name(self, exp: AnyExp, epoch: int, iteration: int, final: bool) -> str: ...


class Meter(Protocol):
    """A class built with meter_kargs. reset() before each test pass and each recorded training iteration;
    update(blobs) on every batch it measures; compute() -> float. With several processes it must be exact over
    all ranks, one of two ways (else the run is refused; values are never averaged over ranks): an attribute
    `sums` (a 1-D tensor of additive state, e.g. [correct, count]), all-reduced before compute(); or a method
    sync(group), called on every rank before compute(), that makes its state the union of every rank's in the
    torch.distributed `group` (CPU tensors; None: the default group), so every rank computes the global value."""

    def reset(self) -> None: ...
    def update(self, blobs: dict) -> None: ...
    def compute(self) -> float: ...


@dataclass(frozen=True)
class Slot:
    """One pluggable slot: where the opts name it, the Protocol it follows, and how it appears in the opts
    reference. `is_class`: the name resolves to a class (built per entry), else to a module."""

    key: str                 # opts key naming it; "[]" marks a field of every entry of a list
    protocol: type
    title: str
    doc: str
    required: bool = True
    default: str = ""
    example: str = ""
    is_class: bool = False
    base: type | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        """What the protocol declares (its methods and attributes), which the resolved object must have; a slot
        with a base class needs only to derive from it."""
        if self.base is not None:
            return ()
        members = vars(self.protocol)
        return (*members.get("__annotations__", {}),
                *(name for name, value in members.items() if not name.startswith("_") and callable(value)))

    @property
    def contract(self) -> str:
        return " ".join((self.protocol.__doc__ or "").split())


SLOTS: dict[str, Slot] = {
    "input": Slot("input.input_name_py", Input, "input", "Input component: serves the train and test datasets.",
                  example='"synthetic_input"'),
    "model": Slot("model.model_name_py", Model, "model", "Model component: a module defining `Experiment`, the "
                  "AnyExp subclass that computes the loss and outputs of a batch.", example='"classification_model"'),
    "forward_pass": Slot("model.forward_pass_py", ForwardPass, "forward pass", "Forward-pass component: builds "
                         "the network.", example='"mlp_forward"'),
    "parameter_update": Slot("model.parameter_update_py", ParameterUpdate, "parameter update", "Parameter-update "
                             "component: builds the optimizer and LR schedule. This or `optimizer_py` must be set.",
                             required=False, example='"sgd_param_update"'),
    "rendezvous": Slot("model.rendezvous_py", Rendezvous, "rendezvous", "Rendezvous component: how the hosts of a "
                       "multi-host run meet (num_shards > 1; one host's processes meet without it).",
                       example='"rendezvous_filestore"'),
    "override": Slot("model.additional_override_py", Override, "override", "Override component: its functions "
                     "replace methods of the experiment class.", required=False),
    "output": Slot("output.gen_output_py", OutputGenerator, "output generator", "Output component: assembles "
                   "results.json.", example='"output_generator"'),
    "checkpoint_path": Slot("output.gen_checkpoint_path_py", CheckpointPath, "checkpoint path", "Checkpoint-path "
                            "component: names checkpoint files.", required=False, default="gen_checkpoint_path"),
    "meter": Slot("output.metrics[].meter_py", Meter, "meter", "Meter class of a metric.", is_class=True),
    "handler": Slot("output.handlers[].handler_py", EventHandler, "handler", "Event handler class.",
                    is_class=True, base=EventHandler),
}
# The seed's other name for the parameter-update slot: used when parameter_update_py is empty.
OPTIMIZER_KEY = "model.optimizer_py"
MODULE_SLOTS = [name for name, slot in SLOTS.items() if not slot.is_class]


def slot_of_key(key: str) -> str:
    """The slot named by an opts key such as 'model.forward_pass_py' or 'output.metrics[2].meter_py'."""
    if key == OPTIMIZER_KEY:
        return "parameter_update"
    for name, slot in SLOTS.items():
        prefix, _, field = slot.key.partition("[]")
        if key == slot.key or (field and key.startswith(prefix + "[") and key.endswith("]" + field)):
            return name
    raise KeyError(key)
