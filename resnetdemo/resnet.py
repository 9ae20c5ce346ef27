"""ResNet-18/34/50/101/152 (He et al. 2015), written from scratch for the resnetdemo components.

The bottleneck puts its stride on the 3x3 convolution, as Caffe2's `models/resnet.py` and torchvision do
("ResNet v1.5"); the parameter count is the paper's (ResNet-50 for 1000 classes: 25,557,032).
"""
from __future__ import annotations

import functools
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

# num_layer -> (block type, blocks per stage)
STAGE_BLOCKS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_MULTIPLIERS = (1, 2, 4, 8)  # channels of each stage's 3x3 convolutions, in units of `width`


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, bn: functools.partial):
        super().__init__()
        self.conv1, self.bn1 = _conv(in_channels, width, 3, stride), bn(width)
        self.conv2, self.bn2 = _conv(width, width, 3), bn(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, width, stride, bn)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch: the one zero-gamma init targets."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus the shortcut (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, bn: functools.partial):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1, self.bn1 = _conv(in_channels, width, 1), bn(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), bn(width)
        self.conv3, self.bn3 = _conv(width, out_channels, 1), bn(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, bn)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch: the one zero-gamma init targets."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int, bn: functools.partial) -> nn.Module | None:
    """Projection shortcut (1x1 conv + BN) where the shape changes; identity (None) otherwise."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(_conv(in_channels, out_channels, 1, stride), bn(out_channels))


class _KeepNormStats:
    """Restores the BN buffers of `module` after a checkpointed stage is recomputed in backward.

    Recomputation runs the stage's BNs in training mode a second time; without this their running statistics
    (and num_batches_tracked) would be updated twice per step, so evaluation would differ from an unchecked run.
    """

    def __init__(self, module: nn.Module):
        self.buffers = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                        for b in m.buffers()]
        self.saved: list[torch.Tensor] = []

    def __enter__(self) -> None:
        self.saved = [b.detach().clone() for b in self.buffers]

    def __exit__(self, *exc_info: object) -> None:
        with torch.no_grad():
            for buffer, saved in zip(self.buffers, self.saved):
                buffer.copy_(saved)
        self.saved = []


def _stage_contexts(stage: nn.Module) -> tuple[nullcontext, _KeepNormStats]:
    return nullcontext(), _KeepNormStats(stage)


class ResNet(nn.Module):
    """A ResNet mapping a float image batch (N, 3, H, W) to logits (N, num_classes).

    small_input: a stem for 32-64 px images (3x3 conv, stride 1, no max-pool) instead of ImageNet's 7x7/2 conv
        and 3x3/2 max-pool.
    bn_epsilon, bn_momentum: every BatchNorm's eps and momentum, in PyTorch's convention
        (running = (1 - momentum) * running + momentum * batch).
    zero_init_residual_gamma: when not None, the gamma of each block's last BN starts at this value (Caffe2's
        `bn_init_gamma`; 0 makes every block start as the identity). Float32 turns Caffe2's 1e-323 into 0.
    activation_checkpointing: while training, keep only each residual stage's input and recompute its
        activations in backward (Caffe2's memonger). Trades compute for memory; results are unchanged.
    width: channels of the stem and the first stage (64 in the paper); stages double it. Smaller widths make
        ResNets small enough to train on a CPU in minutes.
    """

    def __init__(self, num_layer: int, num_classes: int, *, small_input: bool = False, bn_epsilon: float = 1e-5,
                 bn_momentum: float = 0.1, zero_init_residual_gamma: float | None = None,
                 activation_checkpointing: bool = False, width: int = 64):
        super().__init__()
        if num_layer not in STAGE_BLOCKS:
            raise ValueError(f"num_layer must be one of {', '.join(map(str, STAGE_BLOCKS))}, got {num_layer!r}")
        if width < 1:
            raise ValueError(f"width must be a positive number of channels, got {width!r}")
        kind, blocks_per_stage = STAGE_BLOCKS[num_layer]
        block = BasicBlock if kind == "basic" else Bottleneck
        bn = functools.partial(nn.BatchNorm2d, eps=bn_epsilon, momentum=bn_momentum)
        self.num_layer = num_layer
        self.activation_checkpointing = activation_checkpointing

        if small_input:
            self.stem = nn.Sequential(_conv(3, width, 3), bn(width), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(_conv(3, width, 7, 2), bn(width), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        stages, channels = [], width
        for i, (multiplier, count) in enumerate(zip(STAGE_MULTIPLIERS, blocks_per_stage)):
            blocks = []
            for j in range(count):
                blocks.append(block(channels, width * multiplier, 2 if i > 0 and j == 0 else 1, bn))
                channels = width * multiplier * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual_gamma)

    def _init_weights(self, zero_init_residual_gamma: float | None) -> None:
        """He (MSRA) init for convolutions, gamma 1 / beta 0 for BN, N(0, 0.01) for the classifier (Goyal et al.)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        if zero_init_residual_gamma is not None:
            for b in self.blocks():
                nn.init.constant_(b.last_bn.weight, zero_init_residual_gamma)

    def blocks(self) -> list[BasicBlock | Bottleneck]:
        """Every residual block, in order."""
        return [b for stage in self.stages for b in stage]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        checkpointing = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for stage in self.stages:
            x = self._checkpointed(stage, x) if checkpointing else stage(x)
        return self.fc(torch.flatten(self.pool(x), 1))

    @staticmethod
    def _checkpointed(stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # Compiled graphs recompute in their own backward without replaying buffer updates, and only accept
            # TorchDispatchMode contexts here.
            return checkpoint(stage, x, use_reentrant=False)
        return checkpoint(stage, x, use_reentrant=False, context_fn=functools.partial(_stage_contexts, stage))
