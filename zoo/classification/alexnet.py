"""A small AlexNet-style CNN: five convolutions (5x5 then 3x3) with three max-pools, then fully connected layers
with dropout, as in AlexNet (two here, not three); BatchNorm after each convolution, so it trains in a few CPU
minutes."""
from __future__ import annotations

import torch
from torch import nn


def _conv(channels_in: int, channels_out: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    """Images (N, 3, H, W), H and W at least 32, to class scores (N, num_classes). `width` is the first
    convolution's channels (AlexNet's is 96); the adaptive pool makes the classifier independent of H and W."""

    def __init__(self, num_classes: int = 10, width: int = 24, hidden: int = 128, dropout: float = 0.25):
        super().__init__()
        w = width
        self.features = nn.Sequential(*_conv(3, w, 5), nn.MaxPool2d(2), *_conv(w, 2 * w, 3), nn.MaxPool2d(2),
                                      *_conv(2 * w, 3 * w, 3), *_conv(3 * w, 3 * w, 3), *_conv(3 * w, 2 * w, 3),
                                      nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * w * 16, hidden),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))
