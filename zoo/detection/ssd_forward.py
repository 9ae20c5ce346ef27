"""Forward-pass component: the small SSD of zoo/detection/ssd.py for the shape scenes' classes."""
from __future__ import annotations

import torch

from playground.opts import Opt
from zoo.detection.shape_scenes import NUM_CLASSES
from zoo.detection.ssd import SSD

OPTS = {
    "model_param.width": Opt((int,), 32, doc="SSD backbone width: channels of its first stage (then 2x, 4x, 4x).",
                             minimum=2),
    "model_param.score_threshold": Opt((int, float), 0.05, doc="SSD: detections scoring at most this are dropped.",
                                       maximum=1),
    "model_param.nms_iou": Opt((int, float), 0.45, doc="SSD: a detection overlapping a better one of its class by "
                               "more than this IoU is suppressed.", exclusive_minimum=0, maximum=1),
    "model_param.max_detections": Opt((int,), 100, doc="SSD: most detections kept per image.", minimum=1),
    "model_param.nms_candidates": Opt((int,), 200, doc="SSD: best-scoring (anchor, class) pairs per image that "
                                      "non-maximum suppression considers (its cost grows with their square).",
                                      minimum=1),
}


def build_network(exp) -> torch.nn.Module:
    param = exp.opts["model_param"]
    return SSD(NUM_CLASSES, exp.opts["input"]["image_size"], param["width"], param["score_threshold"],
               param["nms_iou"], param["max_detections"], param["nms_candidates"])
