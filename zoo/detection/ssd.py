"""A small SSD (single-shot multibox detector) and its loss.

A conv backbone halves the image five times; class and box heads read its last three feature maps (strides 8,
16 and 32), each cell holding four anchors: two square sizes and two 2:1 rectangles. In training the network
returns raw scores and offsets; in eval mode it also decodes them into detections (boxes, scores, classes per
image, after per-class non-maximum suppression), what the mAP meter and the drawing handler read.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from zoo.detection import boxes as box_ops

SOURCE_STAGES = 3                      # heads on the last three stages
ANCHOR_SCALES = (0.18, 0.36, 0.65)     # anchor size per source map, as a fraction of the image
ASPECT_RATIOS = (2.0, 0.5)             # the rectangles at each source's scale
ANCHORS_PER_CELL = 2 + len(ASPECT_RATIOS)


def conv_bn(width_in: int, width_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(width_in, width_out, 3, stride, 1, bias=False), nn.BatchNorm2d(width_out),
                         nn.ReLU(inplace=True))


def anchor_grid(image_size: int, map_sizes: list[int]) -> torch.Tensor:
    """Every anchor [cx, cy, w, h] in pixels, ordered as the heads' outputs are flattened: by map, row, column,
    then the cell's anchors (sizes s and sqrt(s * s_next), then s at each aspect ratio)."""
    scales = [s * image_size for s in ANCHOR_SCALES] + [image_size]
    anchors = []
    for k, size in enumerate(map_sizes):
        s = scales[k]
        shapes = [(s, s), (math.sqrt(s * scales[k + 1]),) * 2]
        shapes += [(s * math.sqrt(r), s / math.sqrt(r)) for r in ASPECT_RATIOS]
        step = image_size / size
        centers = (torch.arange(size, dtype=torch.float32) + 0.5) * step
        cy, cx = torch.meshgrid(centers, centers, indexing="ij")
        wh = torch.tensor(shapes, dtype=torch.float32)
        cells = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, len(shapes), 2)
        anchors.append(torch.cat([cells, wh.expand(size * size, -1, -1)], -1).reshape(-1, 4))
    return torch.cat(anchors)


class SSD(nn.Module):
    """SSD for `num_classes` classes on square `image_size` images; `width` sets the backbone's channels (a
    stride-2 stem of width / 2, then stages of width, 2x, 4x, 4x, each halving the map). Eval mode adds
    "detections": per image, a dict of boxes [n, 4] (x0, y0, x1, y1 pixels), scores [n] and labels [n], at most
    `max_detections`, scored above `score_threshold`, from the `nms_candidates` best (anchor, class) pairs after
    per-class NMS at `nms_iou`."""

    def __init__(self, num_classes: int, image_size: int = 64, width: int = 32, score_threshold: float = 0.05,
                 nms_iou: float = 0.45, max_detections: int = 100, nms_candidates: int = 200):
        super().__init__()
        self.num_classes, self.image_size = num_classes, image_size
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        self.max_detections, self.nms_candidates = max_detections, nms_candidates
        widths = [width, 2 * width, 4 * width, 4 * width]
        self.stem = conv_bn(3, width // 2, stride=2)
        self.stages = nn.ModuleList()
        width_in = width // 2
        for i, width_out in enumerate(widths):
            layers = [conv_bn(width_in, width_out, stride=2)] + ([conv_bn(width_out, width_out)] if i < 3 else [])
            self.stages.append(nn.Sequential(*layers))
            width_in = width_out
        sources = widths[-SOURCE_STAGES:]
        self.class_heads = nn.ModuleList(nn.Conv2d(w, ANCHORS_PER_CELL * (num_classes + 1), 3, padding=1)
                                         for w in sources)
        self.box_heads = nn.ModuleList(nn.Conv2d(w, ANCHORS_PER_CELL * 4, 3, padding=1) for w in sources)
        map_sizes = [-(-image_size // 2)]
        for _ in widths:
            map_sizes.append(-(-map_sizes[-1] // 2))  # a stride-2 3x3 conv with padding 1
        self.register_buffer("anchors", anchor_grid(image_size, map_sizes[-SOURCE_STAGES:]), persistent=False)

    def forward(self, images: torch.Tensor) -> dict:
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"SSD: built for {self.image_size}x{self.image_size} images (its anchors), got "
                             f"{tuple(images.shape[-2:])}")
        x, features = self.stem(images), []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        features = features[-SOURCE_STAGES:]
        logits = torch.cat([_flat(head(f), self.num_classes + 1) for head, f in zip(self.class_heads, features)], 1)
        offsets = torch.cat([_flat(head(f), 4) for head, f in zip(self.box_heads, features)], 1)
        output = {"class_logits": logits, "box_offsets": offsets}
        if not self.training:
            output["detections"] = self.detect(logits, offsets)
        return output

    def detect(self, logits: torch.Tensor, offsets: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image: the best-scoring (anchor, class) pairs, decoded, suppressed per class, in score order."""
        scores = logits.float().softmax(-1)[..., 1:]                       # [B, A, C]; 0 is the background
        boxes = box_ops.decode(offsets.float(), self.anchors).clamp(0, self.image_size)
        top, index = scores.flatten(1).topk(min(self.nms_candidates, scores[0].numel()), dim=1)
        anchor, labels = index // self.num_classes, index % self.num_classes
        boxes = boxes.gather(1, anchor.unsqueeze(-1).expand(-1, -1, 4))
        keep = box_ops.batched_nms(boxes, labels, top > self.score_threshold, self.nms_iou)
        keep &= keep.cumsum(1) <= self.max_detections
        return [{"boxes": b[k], "scores": s[k], "labels": c[k]} for b, s, c, k in zip(boxes, top, labels, keep)]


def _flat(head_output: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """[B, anchors x per_anchor, H, W] -> [B, H x W x anchors, per_anchor], the anchors' order."""
    return head_output.permute(0, 2, 3, 1).reshape(head_output.shape[0], -1, per_anchor)


class MultiBoxLoss(nn.Module):
    """SSD's loss on the network's output and a batch's targets (a list of {"boxes", "labels"} per image):
    {"loss_cls": cross-entropy over the positive anchors and `negative_ratio` x as many hard negatives,
    "loss_box": smooth L1 of the positives' offsets}, each divided by the number of positives and multiplied by
    its weight; their sum is the loss optimised. Anchors match boxes at IoU >= `match_iou`."""

    def __init__(self, anchors: torch.Tensor, cls_weight: float = 1.0, box_weight: float = 1.0,
                 negative_ratio: float = 3.0, match_iou: float = 0.5):
        super().__init__()
        self.register_buffer("anchors", anchors.detach().clone(), persistent=False)
        self.cls_weight, self.box_weight = cls_weight, box_weight
        self.negative_ratio, self.match_iou = negative_ratio, match_iou

    def forward(self, output: dict, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        logits, offsets = output["class_logits"].float(), output["box_offsets"].float()
        anchors = self.anchors.to(logits.device)
        matched = [box_ops.match(t["boxes"], t["labels"], anchors, self.match_iou) for t in targets]
        classes = torch.stack([c for c, _ in matched])
        target_offsets = torch.stack([o for _, o in matched])
        positive = classes > 0
        num_positive = positive.sum().clamp(min=1)
        ce = F.cross_entropy(logits.flatten(0, 1), classes.flatten(), reduction="none").view_as(classes)
        negative = box_ops.hard_negatives(ce, positive, self.negative_ratio)
        loss_cls = ce[positive | negative].sum() / num_positive
        loss_box = F.smooth_l1_loss(offsets[positive], target_offsets[positive], reduction="sum") / num_positive
        return {"loss_cls": self.cls_weight * loss_cls, "loss_box": self.box_weight * loss_box}
