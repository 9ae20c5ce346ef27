"""DumpGraph: the network's graph written into the run folder, in forms people can open."""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from playground import checkpoint
from playground.errors import UsageError
from playground.events import EventHandler
from playground.handlers.example import example_inputs

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)
FORMATS = ("export", "fx", "onnx")


class DumpGraph(EventHandler):
    """At train begin (rank 0), for each of `formats`:

    "export": graph_export.txt, torch.export's ATen graph with shapes and source lines (on an example batch);
    "fx": graph_fx.txt, torch.fx.symbolic_trace's module-level graph and generated code (no example needed);
    "onnx": graph.onnx for Netron and other ONNX viewers; skipped, with a note in the log, when the onnx
    package is not installed. A format the network cannot be traced into (data-dependent control flow, say)
    is reported as a warning naming the reason; training goes on.
    input_shape: one sample's shape; null reads the first training sample.
    """

    def __init__(self, formats: list[str] = FORMATS, input_shape: list[int] | None = None):
        if unknown := [f for f in formats if f not in FORMATS]:
            raise UsageError(f"DumpGraph: unknown formats {unknown}; choose from {list(FORMATS)}")
        self.formats, self.input_shape = list(formats), input_shape
        self.written: list[str] = []

    def on_train_begin(self, exp: AnyExp) -> None:
        if exp.rank != 0:
            return
        network, inputs = exp.network, example_inputs(exp, self.input_shape)
        was_training = network.training
        network.eval()
        try:
            for fmt in self.formats:
                if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
                    log.info("DumpGraph: onnx is not installed; no graph.onnx (pip install onnx onnxscript)")
                    continue
                path = os.path.join(exp.folder, "graph.onnx" if fmt == "onnx" else f"graph_{fmt}.txt")
                try:
                    _WRITERS[fmt](network, inputs, path)
                except Exception as e:  # a debugging aid: an untraceable network must not stop training
                    log.warning("DumpGraph: no %s graph: %s: %s", fmt, type(e).__name__, str(e).splitlines()[0]
                                if str(e) else "")
                    continue
                self.written.append(path)
        finally:
            network.train(was_training)
        if self.written:
            log.info("DumpGraph: wrote %s", ", ".join(self.written))


def _export(network: torch.nn.Module, inputs: Any, path: str) -> None:
    program = torch.export.export(network, (inputs,))
    checkpoint.atomic_write(path, str(program).encode())


def _fx(network: torch.nn.Module, inputs: Any, path: str) -> None:
    traced = torch.fx.symbolic_trace(network)
    text = f"# torch.fx graph of {type(network).__name__}\n{traced.graph}\n\n# generated code\n{traced.code}"
    checkpoint.atomic_write(path, text.encode())


def _onnx(network: torch.nn.Module, inputs: Any, path: str) -> None:
    torch.onnx.export(network, (inputs,), path)


_WRITERS = {"export": _export, "fx": _fx, "onnx": _onnx}
