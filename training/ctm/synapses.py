"""The synapse model: mixes information across all D neurons once per tick.

Input is [attention output; z] (in that order, as the reference code concatenates), output is the
new pre-activation a_t (B, D).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn


def unet_widths(d_model: int, depth: int, min_width: int = 16) -> list[int]:
    """`depth` evenly spaced widths from D down to the bottleneck, truncated to integers."""
    return [int(w) for w in np.linspace(d_model, min_width, depth)]


class SynapseUNet(nn.Module):
    """U-Net MLP: project to D, go down to the bottleneck, come back up adding same-level skips.

    Each level on the way up adds the skip from the same level on the way down, then LayerNorms.
    """

    def __init__(self, d_in: int, d_model: int, depth: int, min_width: int = 16, dropout: float = 0.0):
        super().__init__()
        self.widths = unet_widths(d_model, depth, min_width)
        w = self.widths
        self.first_projection = nn.Sequential(nn.Linear(d_in, w[0]), nn.LayerNorm(w[0]), nn.SiLU())
        self.down_projections = nn.ModuleList()
        self.up_projections = nn.ModuleList()
        self.skip_lns = nn.ModuleList()
        for i in range(len(w) - 1):
            self.down_projections.append(
                nn.Sequential(nn.Dropout(dropout), nn.Linear(w[i], w[i + 1]), nn.LayerNorm(w[i + 1]), nn.SiLU())
            )
            self.up_projections.append(
                nn.Sequential(nn.Dropout(dropout), nn.Linear(w[i + 1], w[i]), nn.LayerNorm(w[i]), nn.SiLU())
            )
            self.skip_lns.append(nn.LayerNorm(w[i]))

    def forward(self, x: Tensor) -> Tensor:
        downs = [self.first_projection(x)]
        for layer in self.down_projections:
            downs.append(layer(downs[-1]))
        up = downs[-1]
        for level in reversed(range(len(self.up_projections))):
            up = self.skip_lns[level](self.up_projections[level](up) + downs[level])
        return up


def build_synapses(d_in: int, d_model: int, depth: int, min_width: int, dropout: float) -> nn.Module:
    """Depth 1: Dropout, Linear(d_in -> 2D), GLU, LayerNorm(D). Depth k > 1: `SynapseUNet`."""
    if depth == 1:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, 2 * d_model), nn.GLU(), nn.LayerNorm(d_model))
    return SynapseUNet(d_in, d_model, depth, min_width, dropout)
