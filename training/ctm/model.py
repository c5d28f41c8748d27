"""The Continuous Thought Machine.

One tick is a pure function `tick(k, v, state) -> (state, logits, certainty)`: it reads nothing but its
arguments and the parameters, mutates nothing, and always returns the same structure. `forward` is
only a loop over it, and the ONNX export turns exactly that function into `tick.onnx`.

Per tick (order matters for parity with the reference implementation):
  1. action synchronisation S_action from the current z (recurrence seeded inside tick 1)
  2. q = q_proj(S_action); o = multi-head attention of the single query over the input's K/V
  3. a = synapses([o; z])                       new pre-activations           (B, D)
  4. trace <- FIFO(trace, a)                    last M pre-activations        (B, D, M)
  5. z = NLM(trace)                             private MLP per neuron        (B, D)
  6. S_out from the new z; logits = output_projector(S_out)
  7. certainty = 1 - normalised entropy (averaged over positions for multi-position outputs)

Beside the tick, a model built with `halting_hidden > 0` has a halting head: from what the tick just
computed (S_out, the probabilities, z) it predicts whether this tick's answer is already right, the
signal a server halts on (`CTM.halt_logit`). Its inputs are detached, so learning it never changes
what the CTM predicts; it only learns to read the CTM.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import backbone_channels, build_backbone, build_initial_rgb
from .config import CTMConfig
from .neuron_models import NeuronLevelModels
from .positional_embeddings import build_positional_embedding
from .synapses import build_synapses
from .synchronisation import decay_factor, pair_products, select_neurons, sync_step


class TickState(NamedTuple):
    """Everything that carries over from one tick to the next. Every field is (B, ...)."""

    z: Tensor  # (B, D) post-activations
    trace: Tensor  # (B, D, M) pre-activation history, oldest first
    sync_action_alpha: Tensor  # (B, S_action)
    sync_action_beta: Tensor  # (B, S_action)
    sync_out_alpha: Tensor  # (B, S_out)
    sync_out_beta: Tensor  # (B, S_out)


class Thoughts(NamedTuple):
    """A forward pass over all ticks."""

    logits: Tensor  # (B, out_dims, T)
    certainty: Tensor  # (B, T)
    halt: Tensor  # (B, T) halting logits; (B, 0) for a model without a halting head (fixed structure, no None)


class HaltingHead(nn.Module):
    """P(the answer at this tick is right) from the tick's S_out, probabilities and post-activations.

    A small MLP on detached inputs: a learned reading of the CTM's state, as CALM's early-exit
    classifiers read a transformer's hidden states. Certainty summarises the probabilities alone and
    lags the answer; S_out and z also show whether the thought has settled. LayerNorm (no affine) puts
    S_out and z on one scale whatever the decay rates made of them.
    """

    def __init__(self, synch_size_out: int, out_dims: int, d_model: int, hidden: int):
        super().__init__()
        self.widths = (synch_size_out, d_model)  # static, so that the exported LayerNorms have fixed shapes
        self.net = nn.Sequential(
            nn.Linear(synch_size_out + out_dims + d_model, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, sync_out: Tensor, probabilities: Tensor, z: Tensor) -> Tensor:
        """(B, S_out), (B, out_dims), (B, D) -> halting logit (B,)."""
        features = torch.cat(
            [
                F.layer_norm(sync_out.detach(), self.widths[:1]),
                probabilities.detach(),
                F.layer_norm(z.detach(), self.widths[1:]),
            ],
            dim=-1,
        )
        return self.net(features).squeeze(-1)


class CTM(nn.Module):
    def __init__(self, config: CTMConfig):
        super().__init__()
        c = self.config = config
        d, n_model = c.d_input, c.d_model
        # Input -> tokens, as the reference: initial_rgb (ResNets only), backbone, + positional embedding.
        self.initial_rgb = build_initial_rgb(c.backbone, c.input_shape)
        self.backbone = build_backbone(c.backbone, c.input_shape, d)
        channels = backbone_channels(c.backbone, c.input_shape, d)
        self.positional_embedding = build_positional_embedding(c.positional_embedding, channels)
        self.kv_proj = nn.Sequential(nn.Linear(channels, d), nn.LayerNorm(d))
        self.q_proj = nn.Linear(c.synch_size_action, d)
        # Holds in_proj/out_proj parameters in torch's layout; the attention itself is computed by hand
        # (see `encode` and `attend`) so that the K/V projections run once per request, not per tick.
        self.attention = nn.MultiheadAttention(d, c.heads, dropout=c.dropout, batch_first=True)
        self.synapses = build_synapses(d + n_model, n_model, c.synapse_depth, c.unet_min_width, c.dropout)
        dropout_nlm = c.dropout if c.dropout_nlm is None else c.dropout_nlm
        self.trace_processor = NeuronLevelModels(
            n_model, c.memory_length, c.memory_hidden_dims, c.deep_nlms, c.do_layernorm_nlm, dropout_nlm
        )
        self.output_projector = nn.Sequential(nn.Linear(c.synch_size_out, c.out_dims))
        self.halting = (
            HaltingHead(c.synch_size_out, c.out_dims, n_model, c.halting_hidden) if c.halting_hidden > 0 else None
        )

        bound = math.sqrt(1 / n_model)
        self.start_activated_state = nn.Parameter(torch.empty(n_model).uniform_(-bound, bound))
        bound = math.sqrt(1 / (n_model + c.memory_length))
        self.start_trace = nn.Parameter(torch.empty(n_model, c.memory_length).uniform_(-bound, bound))
        self.decay_params_action = nn.Parameter(torch.zeros(c.synch_size_action))
        self.decay_params_out = nn.Parameter(torch.zeros(c.synch_size_out))

        generator = torch.Generator().manual_seed(c.index_seed)
        for kind, n in (("out", c.n_synch_out), ("action", c.n_synch_action)):
            left, right = select_neurons(c.neuron_select_type, kind, n_model, n, c.n_random_pairing_self, generator)
            self.register_buffer(f"{kind}_neuron_indices_left", left)
            self.register_buffer(f"{kind}_neuron_indices_right", right)

    # ---------------------------------------------------------------- per request, once
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Input batch -> attention keys and values, per head: each (B, heads, N, d_head).

        Projecting the tokens to K and V here rather than inside every tick is an exact identity:
        they do not depend on the tick.
        """
        tokens = self.kv_proj(self.tokens(x))  # (B, N, d)
        d = self.config.d_input
        w, b = self.attention.in_proj_weight, self.attention.in_proj_bias
        k = F.linear(tokens, w[d : 2 * d], b[d : 2 * d])
        v = F.linear(tokens, w[2 * d :], b[2 * d :])
        return self._split_heads(k), self._split_heads(v)

    def tokens(self, x: Tensor) -> Tensor:
        """Input batch -> (B, N, C): the backbone's feature map plus positional embedding, one token per cell."""
        features = self.backbone(self.initial_rgb(x))  # (B, C, *spatial)
        if self.positional_embedding is not None:
            features = features + self.positional_embedding(features)
        return features.flatten(2).transpose(1, 2)

    def initial_state(self, batch: int) -> TickState:
        """The learned start state, broadcast over the batch.

        The output accumulators are seeded from z_start before tick 1 (alpha = z_i z_j, beta = 1). The
        action accumulators start at zero: the recurrence's first step (alpha = e^{-r} 0 + z_i z_j,
        beta = 1) then equals the reference's seeding inside tick 1, with no special case for tick 1.
        """
        z = self.start_activated_state.unsqueeze(0).expand(batch, -1)
        trace = self.start_trace.unsqueeze(0).expand(batch, -1, -1)
        out_products = self._products(z, "out")
        action = z.new_zeros(batch, self.config.synch_size_action)
        return TickState(z, trace, action, action, out_products, torch.ones_like(out_products))

    # ---------------------------------------------------------------- per tick
    def tick(self, k: Tensor, v: Tensor, state: TickState) -> tuple[TickState, Tensor, Tensor]:
        """One internal tick. Returns (next state, logits (B, out_dims), certainty (B,))."""
        z, trace = state.z, state.trace
        action_alpha, action_beta, sync_action = sync_step(
            state.sync_action_alpha,
            state.sync_action_beta,
            self._products(z, "action"),
            decay_factor(self.decay_params_action),
        )
        attended = self.attend(self.q_proj(sync_action), k, v)  # (B, d)
        pre_activation = self.synapses(torch.cat([attended, z], dim=-1))  # (B, D)
        trace = torch.cat([trace[:, :, 1:], pre_activation.unsqueeze(-1)], dim=-1)  # (B, D, M)
        z = self.trace_processor(trace)  # (B, D)
        out_alpha, out_beta, sync_out = sync_step(
            state.sync_out_alpha,
            state.sync_out_beta,
            self._products(z, "out"),
            decay_factor(self.decay_params_out),
        )
        logits = self.output_projector(sync_out)
        next_state = TickState(z, trace, action_alpha, action_beta, out_alpha, out_beta)
        return next_state, logits, certainty(logits, self.config.output_shape)

    def halt_logit(self, state: TickState, logits: Tensor) -> Tensor:
        """The halting head's logit for the tick that produced `state` and `logits` (B,).

        Beside the tick, like `attention_map`: the tick keeps its outputs, and the export puts both in
        one graph. sigmoid(halt_logit) is the `halt` output a server reads.
        """
        if self.halting is None:
            raise ValueError("this model has no halting head (halting_hidden = 0). This is a bug.")
        sync_out = state.sync_out_alpha / torch.sqrt(state.sync_out_beta)
        return self.halting(sync_out, probabilities(logits, self.config.output_shape), state.z)

    def attend(self, query: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Multi-head attention of one query token over the input tokens (torch MHA semantics)."""
        d = self.config.d_input
        weights = F.dropout(self.attention_weights(query, k), self.attention.dropout, self.training)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(query.shape[0], d)  # (B, d)
        return self.attention.out_proj(out)

    def attention_weights(self, query: Tensor, k: Tensor) -> Tensor:
        """softmax(q K^T / sqrt(d_head)) of one query token over the input tokens: (B, h, 1, N)."""
        d = self.config.d_input
        w, b = self.attention.in_proj_weight, self.attention.in_proj_bias
        q = self._split_heads(F.linear(query, w[:d], b[:d]).unsqueeze(1))  # (B, h, 1, dh)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, h, 1, N)
        return scores.softmax(-1)

    def attention_map(self, k: Tensor, state: TickState) -> Tensor:
        """Where `tick(k, v, state)` looks: its query's attention weights over the tokens, (B, h, N).

        For visualisation, beside the tick rather than inside it, so that `tick` keeps its outputs. It
        recomputes the tick's query from the same state (S_action, then q_proj); the export puts both
        in one graph, where the shared subexpressions are computed once.
        """
        _, _, sync_action = sync_step(
            state.sync_action_alpha,
            state.sync_action_beta,
            self._products(state.z, "action"),
            decay_factor(self.decay_params_action),
        )
        return self.attention_weights(self.q_proj(sync_action), k).squeeze(2)

    # ---------------------------------------------------------------- all ticks
    def forward(self, x: Tensor, iterations: int | None = None) -> tuple[Tensor, Tensor]:
        """Run T ticks. Returns logits (B, out_dims, T) and certainty (B, T)."""
        thoughts = self.think(x, iterations)
        return thoughts.logits, thoughts.certainty

    def think(self, x: Tensor, iterations: int | None = None) -> Thoughts:
        """Run T ticks. Returns logits, certainty and the halting head's logits, stacked over ticks."""
        all_logits, all_certainty, all_halt = [], [], []
        for state, logits, cert in self.ticks(x, iterations):
            all_logits.append(logits)
            all_certainty.append(cert)
            if self.halting is not None:
                all_halt.append(self.halt_logit(state, logits))
        halt = torch.stack(all_halt, -1) if all_halt else x.new_zeros(x.shape[0], 0)
        return Thoughts(torch.stack(all_logits, -1), torch.stack(all_certainty, -1), halt)

    def ticks(self, x: Tensor, iterations: int | None = None) -> Iterator[tuple[TickState, Tensor, Tensor]]:
        """Encode once, then yield (state, logits, certainty) after every tick."""
        k, v = self.encode(x)
        state = self.initial_state(x.shape[0])
        for _ in range(iterations or self.config.iterations):
            state, logits, cert = self.tick(k, v, state)
            yield state, logits, cert

    # ---------------------------------------------------------------- internals
    def _products(self, z: Tensor, kind: str) -> Tensor:
        left = getattr(self, f"{kind}_neuron_indices_left")
        right = getattr(self, f"{kind}_neuron_indices_right")
        return pair_products(z, self.config.neuron_select_type, left, right)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, N, d) -> (B, heads, N, d_head)."""
        heads = self.config.heads
        return x.unflatten(-1, (heads, x.shape[-1] // heads)).transpose(1, 2)

    def clamp_decay_(self) -> None:
        """Project the decay rates back into [0, 15] after an optimiser step (as the reference does)."""
        with torch.no_grad():
            self.decay_params_action.clamp_(0, 15)
            self.decay_params_out.clamp_(0, 15)


def normalised_entropy(logits: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """Entropy of softmax(logits) divided by log(classes), averaged over positions. (B, out) -> (B,)."""
    logits = logits.reshape(logits.shape[0], -1, output_shape[-1])  # (B, positions, classes)
    log_p = logits.log_softmax(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) / math.log(output_shape[-1])
    return entropy.mean(-1)


def probabilities(logits: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """Softmax over the class dimension of every position, flattened like the logits. (B, out) -> (B, out)"""
    return logits.unflatten(-1, (-1, output_shape[-1])).softmax(-1).flatten(1)


def certainty(logits: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """1 - normalised entropy: 0 for a uniform prediction, 1 for a one-hot one. (B,)"""
    return 1.0 - normalised_entropy(logits, output_shape)
