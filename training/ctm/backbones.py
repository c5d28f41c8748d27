"""Backbones turn one input into the tokens that the CTM attends to: x -> (B, N, C)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MnistConvBackbone(nn.Sequential):
    """Two conv3x3 + BatchNorm + ReLU + maxpool2 blocks (the reference MNIST tutorial's backbone).

    (B, 1, 28, 28) -> (B, 49, C): one token per cell of the 7x7 feature map.
    """

    def __init__(self, in_channels: int, channels: int):
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).flatten(2).transpose(1, 2)


class ParityBackbone(nn.Module):
    """A +/-1 sequence (B, L) -> (B, L, C): an embedding of each sign plus a learned position embedding."""

    def __init__(self, length: int, channels: int):
        super().__init__()
        self.embedding = nn.Embedding(2, channels)
        self.positional_embedding = nn.Parameter(torch.randn(length, channels) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding((x > 0).long()) + self.positional_embedding


def build_backbone(name: str, input_shape: tuple[int, ...], channels: int) -> nn.Module:
    if name == "mnist-conv":
        return MnistConvBackbone(input_shape[0], channels)
    if name == "parity-embedding":
        return ParityBackbone(input_shape[0], channels)
    raise ValueError(f"unknown backbone {name!r}")
