"""Neural synchronisation: which neuron pairs are read, and the decayed recurrence over ticks.

For a pair (i, j) with learnable decay rate r_ij >= 0 the paper defines, over post-activations z_1..z_t,

    alpha_t = sum_tau e^{-r (t - tau)} z_tau,i z_tau,j ,   beta_t = sum_tau e^{-r (t - tau)} ,
    S_t     = alpha_t / sqrt(beta_t)

which is computed in O(D_sub) per tick by the recurrence alpha <- e^{-r} alpha + z_i z_j,
beta <- e^{-r} beta + 1. (The reference code writes the factor as r = exp(-decay); same thing.)
"""

from __future__ import annotations

import torch
from torch import Tensor

DECAY_MIN, DECAY_MAX = 0.0, 15.0


def select_neurons(
    mode: str, kind: str, d_model: int, n_synch: int, n_self: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Left and right neuron indices for one synchronisation (`kind` is "out" or "action").

    first-last: output reads the first n neurons, action the last n (dense, all pairs).
    random: two random index sets, all upper-triangle pairs of their outer product (semi-dense).
    random-pairing: n random left indices paired one-to-one with n right indices; the first `n_self`
    right indices equal the left ones, so those pairs see a neuron's own (squared) activity.
    """
    if mode == "first-last":
        start = 0 if kind == "out" else d_model - n_synch
        left = torch.arange(start, start + n_synch)
        return left, left.clone()
    left = torch.randint(0, d_model, (n_synch,), generator=generator)
    right = torch.randint(0, d_model, (n_synch,), generator=generator)
    if mode == "random-pairing":
        right[:n_self] = left[:n_self]
    return left, right


def pair_indices(mode: str, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """Expand neuron index sets to one (left, right) neuron per synchronisation entry."""
    if mode == "random-pairing":
        return left, right
    i, j = torch.triu_indices(len(left), len(right), device=left.device)
    return left[i], right[j]


def pair_products(z: Tensor, mode: str, left: Tensor, right: Tensor) -> Tensor:
    """z_i * z_j for every synchronisation entry. z: (B, D) -> (B, S)."""
    pl, pr = pair_indices(mode, left, right)
    return z[:, pl] * z[:, pr]


def decay_factor(decay_params: Tensor) -> Tensor:
    """e^{-r} with r clamped to [0, 15] (the clamp is functional: forward never mutates parameters)."""
    return torch.exp(-decay_params.clamp(DECAY_MIN, DECAY_MAX))


def sync_step(alpha: Tensor, beta: Tensor, products: Tensor, factor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One tick of the recurrence. Returns (alpha, beta, S), each (B, S)."""
    alpha = factor * alpha + products
    beta = factor * beta + 1.0
    return alpha, beta, alpha / torch.sqrt(beta)


def sync_closed_form(history: Tensor, mode: str, left: Tensor, right: Tensor, decay_params: Tensor) -> Tensor:
    """S over a whole post-activation history (B, t, D) by the explicit decayed sum (for tests)."""
    steps = history.shape[1]
    rate = decay_params.clamp(DECAY_MIN, DECAY_MAX)
    age = torch.arange(steps - 1, -1, -1, dtype=history.dtype)  # t - tau for tau = 1..t
    weights = torch.exp(-rate[None, :] * age[:, None])  # (t, S)
    products = torch.stack([pair_products(history[:, k], mode, left, right) for k in range(steps)], 1)
    alpha = (weights[None] * products).sum(1)
    beta = weights.sum(0)
    return alpha / torch.sqrt(beta)
