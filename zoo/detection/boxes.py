"""Box arithmetic of a single-shot detector: IoU, offsets against anchors, matching, hard negatives, NMS.

Boxes are [x0, y0, x1, y1] in pixels; anchors are [cx, cy, w, h]. Everything is batched torch ops, so it runs
on the training device and needs no torchvision.
"""
from __future__ import annotations

import torch

VARIANCES = (0.1, 0.2)  # SSD's scaling of centre and size offsets: brings both to about unit variance


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box in `a` [..., N, 4] with every box in `b` [..., M, 4]: [..., N, M]."""
    top_left = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def corners(anchors: torch.Tensor) -> torch.Tensor:
    """[cx, cy, w, h] -> [x0, y0, x1, y1]."""
    return torch.cat([anchors[..., :2] - anchors[..., 2:] / 2, anchors[..., :2] + anchors[..., 2:] / 2], -1)


def encode(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """The offsets [dx, dy, dw, dh] that turn `anchors` into `boxes` (the box head's regression target)."""
    centers, sizes = (boxes[..., :2] + boxes[..., 2:]) / 2, (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)
    return torch.cat([(centers - anchors[..., :2]) / anchors[..., 2:] / VARIANCES[0],
                      torch.log(sizes / anchors[..., 2:]) / VARIANCES[1]], -1)


def decode(offsets: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """The boxes that `offsets` make of `anchors` (encode's inverse)."""
    centers = anchors[..., :2] + offsets[..., :2] * VARIANCES[0] * anchors[..., 2:]
    sizes = anchors[..., 2:] * torch.exp((offsets[..., 2:] * VARIANCES[1]).clamp(max=8.0))  # no inf from noise
    return torch.cat([centers - sizes / 2, centers + sizes / 2], -1)


def match(boxes: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, threshold: float = 0.5,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of each anchor for one image with ground truth `boxes` [G, 4] of classes `labels` [G]:
    (class [A], 0 for background and 1 + label for an object; the offsets [A, 4] of its box). An anchor takes the
    box it overlaps most when the IoU reaches `threshold`; every box also takes its best anchor, so none is
    left without one however small it is."""
    num_anchors = anchors.shape[0]
    if boxes.shape[0] == 0:
        return labels.new_zeros(num_anchors), anchors.new_zeros(num_anchors, 4)
    iou = box_iou(boxes, corners(anchors))                   # [G, A]
    best_iou, best_box = iou.max(0)                          # per anchor
    best_anchor = iou.argmax(1)                              # per box
    best_box[best_anchor] = torch.arange(len(boxes), device=boxes.device)
    best_iou[best_anchor] = 1.0
    classes = torch.where(best_iou >= threshold, labels[best_box] + 1, torch.zeros_like(best_box))
    return classes, encode(boxes[best_box], anchors)


def hard_negatives(background_loss: torch.Tensor, positive: torch.Tensor, ratio: float = 3.0) -> torch.Tensor:
    """The negatives [B, A] that train the classifier: in each image, the `ratio` x positives anchors without an
    object whose background loss is highest (the rest, mostly easy background, would swamp the loss)."""
    loss = background_loss.detach().masked_fill(positive, -1.0)
    rank = loss.argsort(1, descending=True).argsort(1)
    return (rank < positive.sum(1, keepdim=True) * ratio) & ~positive


def batched_nms(boxes: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor, iou_threshold: float,
                ) -> torch.Tensor:
    """Greedy non-maximum suppression per class, for a batch of candidates [B, K] sorted by descending score:
    which to keep [B, K]. A candidate is kept when it is valid and no kept, higher-scoring candidate of its class
    overlaps it by more than `iou_threshold`. Fixed shapes throughout: K steps of a few batched ops."""
    overlaps = (box_iou(boxes, boxes) > iou_threshold) & (classes[:, :, None] == classes[:, None, :])
    keep = torch.zeros_like(valid)
    for i in range(valid.shape[1]):
        suppressed = (keep[:, :i] & overlaps[:, :i, i]).any(1)
        keep[:, i] = valid[:, i] & ~suppressed
    return keep
