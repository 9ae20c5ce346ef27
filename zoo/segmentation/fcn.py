"""A small fully convolutional network (FCN) for semantic segmentation: per-pixel class scores at the input's
resolution, for any input size divisible by 2^stages."""
from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(width_in: int, width_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(width_in, width_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(width_out),
                         nn.ReLU(inplace=True))


class FCN(nn.Module):
    """Encoder: stages of two 3x3 convolutions, each halving the resolution first (the first by a stride-2
    convolution, which spares the costly full-resolution layers; the others by max-pooling). Head: from the
    coarsest stage back up, one stage at a time: upsample x2 (bilinear), project to the finer stage's width
    (1x1), add that stage's features (the skip connection that restores the detail pooling lost), refine (3x3);
    then a 1x1 classifier at half resolution, whose scores are upsampled x2 to the input's. Returns logits
    (N, num_classes, H, W)."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 3):
        super().__init__()
        widths = tuple(widths)
        self.encoder = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(width_in, width), conv_bn_relu(width, width)) if i else
            nn.Sequential(conv_bn_relu(width_in, width, stride=2), conv_bn_relu(width, width))
            for i, (width_in, width) in enumerate(zip((in_channels, *widths), widths)))
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.project = nn.ModuleList(nn.Conv2d(coarse, fine, 1) for fine, coarse in zip(widths, widths[1:]))
        self.refine = nn.ModuleList(conv_bn_relu(fine, fine) for fine in widths[:-1])
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        x = images
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        for i in reversed(range(len(self.refine))):
            x = self.refine[i](self.project[i](self.upsample(x)) + skips[i])
        return self.upsample(self.classifier(x))
