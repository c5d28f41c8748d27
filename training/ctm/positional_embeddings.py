"""Positional embeddings added to the backbone's feature map before it is flattened into tokens.

The reference implementation's four, with its parameter names (`positional_embedding.*`):
- `learnable-fourier`: learnable Fourier features of the (x, y) position scaled to [0, 1], then an MLP
  (Linear, GLU, Linear, LayerNorm) to the feature map's channels (Li et al. 2021, Algorithm 1);
- `multi-learnable-fourier`: ten of those, mixed by a softmax over learned weights;
- `custom-rotational`: a learned 2-vector rotated by 0..180 degrees along the width, the column's and
  the row's rotation concatenated and projected (a square W x W grid, as the reference builds it);
- `custom-rotational-1d`: the fixed vector (0, 1) rotated by 0..180 degrees along a sequence, projected.
Each depends only on the feature map's shape, never its values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

FOURIER_FEATURES, FOURIER_HIDDEN = 256, 128  # the reference's F_dim and H_dim (fixed there)


def _scaled_coordinates(height: int, width: int, like: Tensor) -> Tensor:
    """(H, W, 2): x and y of every cell, each scaled to [0, 1]."""
    xs = torch.arange(width, dtype=like.dtype, device=like.device).repeat(height, 1) / (width - 1)
    ys = torch.arange(height, dtype=like.dtype, device=like.device).unsqueeze(-1).repeat(1, width) / (height - 1)
    return torch.stack((xs, ys), dim=-1)


def _half_turn(steps: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin of `steps` angles evenly spaced from 0 to 180 degrees (float32, like the reference)."""
    # x * (pi / 180) is torch.deg2rad, which the ONNX exporter does not know.
    theta = torch.linspace(0, 180, steps, device=like.device) * (math.pi / 180)
    return torch.cos(theta), torch.sin(theta)


class LearnableFourierPositionalEncoding(nn.Module):
    def __init__(self, channels: int, gamma: float = 1 / 2.5):
        super().__init__()
        self.Wr = nn.Linear(2, FOURIER_FEATURES // 2, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(FOURIER_FEATURES, FOURIER_HIDDEN),
            nn.GLU(),
            nn.Linear(FOURIER_HIDDEN // 2, channels),
            nn.LayerNorm(channels),
        )
        nn.init.normal_(self.Wr.weight, mean=0, std=gamma**-2)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (1, C, H, W)."""
        projected = self.Wr(_scaled_coordinates(x.shape[2], x.shape[3], x))  # (H, W, F/2)
        features = torch.cat([torch.cos(projected), torch.sin(projected)], dim=-1) / math.sqrt(FOURIER_FEATURES)
        return self.mlp(features).permute(2, 0, 1).unsqueeze(0)


class MultiLearnableFourierPositionalEncoding(nn.Module):
    def __init__(self, channels: int, count: int = 10, gamma_range: tuple[float, float] = (1.0, 0.1)):
        super().__init__()
        self.embedders = nn.ModuleList(
            LearnableFourierPositionalEncoding(channels, float(gamma)) for gamma in np.linspace(*gamma_range, count)
        )
        self.combination = nn.Parameter(torch.ones(count))

    def forward(self, x: Tensor) -> Tensor:
        embeddings = torch.stack([embedder(x) for embedder in self.embedders])  # (N, 1, C, H, W)
        weights = self.combination.softmax(-1).view(-1, 1, 1, 1, 1)
        return (embeddings * weights).sum(0)


class CustomRotationalEmbedding(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.start_vector = nn.Parameter(torch.tensor([0.0, 1.0]))
        self.projection = nn.Sequential(nn.Linear(4, channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, W, W) -> (1, C, W, W). The reference derives the grid from the width alone."""
        width = x.shape[-1]
        cos, sin = _half_turn(width, x)
        s0, s1 = self.start_vector[0], self.start_vector[1]
        rotated = torch.stack((cos * s0 - sin * s1, sin * s0 + cos * s1), dim=-1)  # (W, 2)
        key = torch.cat(
            (rotated.unsqueeze(1).expand(width, width, 2), rotated.unsqueeze(0).expand(width, width, 2)), dim=-1
        )  # (W, W, 4): the row's rotation, then the column's
        return self.projection(key).permute(2, 0, 1).unsqueeze(0)


class CustomRotationalEmbedding1D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.projection = nn.Linear(2, channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, L) -> (1, C, L): the vector (0, 1) rotated is (-sin, cos)."""
        cos, sin = _half_turn(x.shape[2], x)
        return self.projection(torch.stack((-sin, cos), dim=-1)).transpose(0, 1).unsqueeze(0)


def build_positional_embedding(name: str, channels: int) -> nn.Module | None:
    if name == "none":
        return None
    if name == "learnable-fourier":
        return LearnableFourierPositionalEncoding(channels)
    if name == "multi-learnable-fourier":
        return MultiLearnableFourierPositionalEncoding(channels)
    if name == "custom-rotational":
        return CustomRotationalEmbedding(channels)
    if name == "custom-rotational-1d":
        return CustomRotationalEmbedding1D(channels)
    raise ValueError(f"unknown positional embedding {name!r}")
