"""Forward-pass component: the FCN of zoo.segmentation.fcn, with a class per shape plus the background."""
from __future__ import annotations

import torch

from playground.opts import Opt
from zoo.segmentation.fcn import FCN
from zoo.segmentation.shape_masks import NUM_CLASSES


def _size_fits(widths: list, opts: dict) -> str:
    if not widths:
        return "the FCN needs at least one stage, e.g. [16, 32, 64, 128]"
    size, factor = opts["input"].get("image_size"), 2 ** len(widths)
    if isinstance(size, int) and size % factor:
        return (f"{len(widths)} stages halve the resolution {len(widths)} times, so input.image_size must be a "
                f"multiple of {factor}, got {size}")
    return ""


OPTS = {
    "model_param.fcn_widths": Opt((list,), [16, 32, 64, 128], doc="Channels of the FCN's encoder stages, finest "
                                  "first; each stage halves the resolution.", items=Opt((int,), minimum=1),
                                  check=_size_fits),
}


def build_network(exp) -> torch.nn.Module:
    return FCN(NUM_CLASSES, tuple(exp.opts["model_param"]["fcn_widths"]))
