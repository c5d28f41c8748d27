"""Neuron-level models (NLMs): every neuron has its own private MLP over its pre-activation trace.

All D private MLPs run at once as one batched matrix product per layer (the paper's einsum
'BDM,MHD->BDH'), never as a Python loop over neurons.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SuperLinear(nn.Module):
    """D independent linear maps, one per neuron: (B, D, in) -> (B, D, out).

    Parameter names and shapes follow the reference layout: w1 (in, out, D), b1 (1, D, out) and a
    learnable scalar temperature T that divides the output.
    """

    def __init__(self, in_dims: int, out_dims: int, n_neurons: int, do_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.layernorm = nn.LayerNorm(in_dims) if do_norm else nn.Identity()
        bound = 1 / math.sqrt(in_dims + out_dims)
        self.w1 = nn.Parameter(torch.empty(in_dims, out_dims, n_neurons).uniform_(-bound, bound))
        self.b1 = nn.Parameter(torch.zeros(1, n_neurons, out_dims))
        self.T = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layernorm(self.dropout(x))  # (B, D, in)
        # (D, B, in) @ (D, in, out) -> (D, B, out): one batched matmul for all neurons. The paper writes
        # it as einsum('BDM,MHD->BDH'); exported to ONNX, that Einsum ran each tick 1.3x slower in
        # onnxruntime than this MatMul (batch 1 and 32), which is what the server pays per tick.
        # The copies to contiguous memory (neuron_matmul) let the CPU's batched matmul skip a copy of every
        # neuron's slice (1.4x faster per layer, forward and backward).
        out = neuron_matmul(x, self.w1)
        return (out + self.b1) / self.T


@torch.compiler.disable
def neuron_matmul(x: Tensor, w1: Tensor) -> Tensor:
    """(B, D, in) x w1 (in, out, D) -> (B, D, out): every neuron's own linear map, as one batched matmul.

    Left out of `torch.compile` (a graph break, forward and backward run eager): Inductor drops the two
    copies to contiguous memory (to it they are layout choices), and the CPU's batched matmul then
    copies every neuron's weight slice on each call, 10x slower than eager (2.6 ms against 0.24 ms a
    call at batch 32, D = 256; `training/bench/step_speed.py --profile`). Leaving the whole NLM out
    instead (GLUs included) was slower (docs/training.md, "Training speed"). The exported graph is
    unchanged (the same operators; the copies are no-ops there).
    """
    return torch.matmul(x.transpose(0, 1).contiguous(), w1.permute(2, 0, 1).contiguous()).transpose(0, 1)


class NeuronLevelModels(nn.Sequential):
    """Trace (B, D, M) -> post-activations z (B, D).

    Deep: SuperLinear(M -> 2H), GLU, SuperLinear(H -> 2), GLU. Shallow: SuperLinear(M -> 2), GLU.
    The double nesting (`trace_processor.0.0.w1`) matches the reference state_dict layout.
    """

    def __init__(self, d_model: int, memory_length: int, hidden: int, deep: bool, do_norm: bool, dropout: float):
        if deep:
            layers = [
                SuperLinear(memory_length, 2 * hidden, d_model, do_norm, dropout),
                nn.GLU(),
                SuperLinear(hidden, 2, d_model, do_norm, dropout),
                nn.GLU(),
            ]
        else:
            layers = [SuperLinear(memory_length, 2, d_model, do_norm, dropout), nn.GLU()]
        super().__init__(nn.Sequential(*layers))

    def forward(self, trace: Tensor) -> Tensor:
        return self[0](trace).squeeze(-1)
