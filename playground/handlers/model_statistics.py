"""ModelStatistics: parameter counts, FLOPs per sample and a per-layer table, written once into the run folder."""
from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from playground import checkpoint, data
from playground.events import EventHandler
from playground.handlers.example import example_inputs

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class ModelStatistics(EventHandler):
    """At train begin (rank 0), writes model_statistics.txt (a table) and model_statistics.json.

    FLOPs are those of one forward pass of one sample in eval mode, counted by torch.utils.flop_counter (matrix
    multiplies and convolutions; a multiply-add counts 2; training costs about 3x); recurrent layers (LSTM, GRU)
    it cannot count are named in a warning. input_shape: the shape of one sample, e.g. [3, 224, 224]; null reads
    the first training sample (a tensor or a structure of them, such as (padded tokens, lengths)).
    """

    def __init__(self, input_shape: list[int] | None = None, filename: str = "model_statistics"):
        self.input_shape, self.filename = input_shape, filename

    def on_train_begin(self, exp: AnyExp) -> None:
        if exp.rank != 0:
            return
        stats = statistics(exp.network, example_inputs(exp, self.input_shape))
        base = os.path.join(exp.folder, self.filename)
        checkpoint.atomic_write(base + ".json", json.dumps(stats, indent=1).encode())
        checkpoint.atomic_write(base + ".txt", format_table(stats).encode())
        log.info("ModelStatistics: %s parameters (%s trainable), %s forward FLOPs per sample; see %s.txt",
                 f"{stats['parameters']:,}", f"{stats['trainable_parameters']:,}", f"{stats['flops_per_sample']:,}",
                 base)
        if stats["uncounted_layers"]:
            log.warning("ModelStatistics: %s", _UNCOUNTED.format(", ".join(stats["uncounted_layers"])))


def statistics(network: torch.nn.Module, inputs: Any) -> dict[str, Any]:
    """Counts for `network` on one batch `inputs` (FLOPs divided by the batch size): a tensor, or a structure
    of them such as (padded tokens, lengths), sized as labels are (playground.data.batch_size)."""
    shapes: dict[str, list] = {}
    hooks = [module.register_forward_hook(_record_shape(shapes, name))
             for name, module in network.named_modules() if not list(module.children())]
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(inputs)
    finally:
        network.train(was_training)
        for hook in hooks:
            hook.remove()
    per_module = counter.get_flop_counts()
    root, batch = type(network).__name__, max(data.batch_size(inputs), 1)
    layers, uncounted = [], []
    for name, module in network.named_modules():
        if list(module.children()) or not name:
            continue
        flops = sum(per_module.get(f"{root}.{name}", {}).values())
        layers.append({"name": name, "type": type(module).__name__, "output_shape": shapes.get(name),
                       "parameters": sum(p.numel() for p in module.parameters(recurse=False)),
                       "flops_per_sample": flops // batch})
        if isinstance(module, torch.nn.RNNBase) and not flops:
            uncounted.append(f"{name} ({type(module).__name__})")
    params = list(network.parameters())
    return {"model": root, "parameters": sum(p.numel() for p in params),
            "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
            "buffers": sum(b.numel() for b in network.buffers()),
            "flops_per_sample": counter.get_total_flops() // batch,
            "input_shape": _per_sample_shape(inputs), "layers": layers, "uncounted_layers": uncounted}


def _per_sample_shape(inputs: Any) -> Any:
    """The shape of one sample of `inputs`, in the same structure: [3, 32, 32], or [[12], []] for (tokens, lengths)."""
    if isinstance(inputs, torch.Tensor):
        return list(inputs.shape[1:])
    if isinstance(inputs, dict):
        return {key: _per_sample_shape(value) for key, value in inputs.items()}
    return [_per_sample_shape(value) for value in inputs]


def _record_shape(shapes: dict[str, list], name: str) -> Any:
    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, tuple) and output:  # a recurrent layer's (outputs, final state)
            output = output[0]
        if isinstance(output, torch.Tensor):
            shapes[name] = list(output.shape[1:])
    return hook


_UNCOUNTED = ("the FLOPs leave out {} (torch.utils.flop_counter has no formula for recurrent layers); their "
              "parameters are counted")


def format_table(stats: dict[str, Any]) -> str:
    rows = [("layer", "type", "output shape (per sample)", "parameters", "FLOPs/sample")]
    rows += [(layer["name"], layer["type"], str(layer["output_shape"] or ""), f"{layer['parameters']:,}",
              f"{layer['flops_per_sample']:,}") for layer in stats["layers"]]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([
        f"model {stats['model']}, input {stats['input_shape']} per sample",
        f"parameters {stats['parameters']:,} ({stats['trainable_parameters']:,} trainable), buffers "
        f"{stats['buffers']:,}",
        f"forward FLOPs per sample {stats['flops_per_sample']:,} (torch.utils.flop_counter; training ~3x)",
        *([_UNCOUNTED.format(", ".join(stats["uncounted_layers"]))] if stats["uncounted_layers"] else []), "",
        *lines, ""])
