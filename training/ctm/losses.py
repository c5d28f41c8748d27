"""The CTM's dual-index loss: learn to be right at some tick and to be right where most certain."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def per_tick_loss(logits: Tensor, targets: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """Cross-entropy at every tick, averaged over positions.

    logits (B, out_dims, T); targets (B,) or (B, positions) -> (B, T).
    """
    batch, _, ticks = logits.shape
    logits = logits.reshape(batch, -1, output_shape[-1], ticks)  # (B, P, C, T)
    targets = targets.reshape(batch, -1, 1).expand(-1, -1, ticks)  # (B, P, T)
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(1)


def dual_index_loss(
    logits: Tensor,
    certainty: Tensor,
    targets: Tensor,
    output_shape: tuple[int, ...],
    use_most_certain: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """0.5 * (CE at the min-loss tick t1 + CE at the most certain tick t2), averaged over the batch.

    With `use_most_certain=False`, t2 is the last tick. Returns (loss, t1, t2), ticks 0-based (B,).
    """
    losses = per_tick_loss(logits, targets, output_shape)  # (B, T)
    t1 = losses.argmin(-1)
    t2 = certainty.argmax(-1) if use_most_certain else torch.full_like(t1, losses.shape[-1] - 1)
    rows = torch.arange(losses.shape[0], device=losses.device)
    loss = 0.5 * (losses[rows, t1].mean() + losses[rows, t2].mean())
    return loss, t1, t2


def predictions_at(logits: Tensor, ticks: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """Class predictions read at one tick per item. logits (B, out, T), ticks (B,) -> (B, positions)."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    chosen = logits[rows, :, ticks]  # (B, out)
    return chosen.reshape(logits.shape[0], -1, output_shape[-1]).argmax(-1)


def accuracy_most_certain(logits: Tensor, certainty: Tensor, targets: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """Per-item accuracy (fraction of positions right) read at the most certain tick. (B,)"""
    predicted = predictions_at(logits, certainty.argmax(-1), output_shape)
    return (predicted == targets.reshape(predicted.shape)).float().mean(-1)


def maze_route_loss(
    logits: Tensor,
    certainty: Tensor,
    targets: Tensor,
    output_shape: tuple[int, ...],
    use_most_certain: bool = True,
    lookahead: int = 5,
) -> tuple[Tensor, Tensor, Tensor]:
    """The dual-index loss over a route, with the reference's automatic curriculum.

    A route is only learnable from its start: the tenth move means nothing before the first nine are
    known. So for each maze only the route positions up to `lookahead` past the longest correct prefix
    (at any tick) count; the rest of the loss is masked. Same returns as `dual_index_loss`.
    """
    batch, _, ticks = logits.shape
    positions, classes = output_shape
    per_position = F.cross_entropy(
        logits.reshape(batch, positions, classes, ticks).transpose(1, 2),
        targets.reshape(batch, positions, 1).expand(-1, -1, ticks),
        reduction="none",
    )  # (B, P, T)
    with torch.no_grad():
        correct = logits.reshape(batch, positions, classes, ticks).argmax(2) == targets.unsqueeze(-1)  # (B, P, T)
        prefix = correct.long().cumprod(1).sum(1)  # (B, T): moves right from the start, at each tick
        upto = (prefix.clamp(min=1) - 1).amax(-1) + lookahead  # (B,)
        mask = (torch.arange(positions, device=logits.device) < upto.unsqueeze(-1)).float()  # (B, P)
    losses = (per_position * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)  # (B, T)
    t1 = losses.argmin(-1)
    t2 = certainty.argmax(-1) if use_most_certain else torch.full_like(t1, ticks - 1)
    rows = torch.arange(batch, device=logits.device)
    return 0.5 * (losses[rows, t1].mean() + losses[rows, t2].mean()), t1, t2
