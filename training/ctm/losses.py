"""The CTM's dual-index loss: learn to be right at some tick and to be right where most certain.

Additions of ours, all off by default (the reference's loss exactly):
- hold: the mean loss over the ticks after the best one, weighted. Without it nothing trains the ticks
  after the answer was found, and a model can lose its answer by thinking longer (our first maze
  model solved 50.2% of mazes at tick 21 and 47.2% at tick 30). It also rewards finding the answer
  late (fewer ticks follow it): on MNIST it moved the answers later (docs/training.md).
- every tick: the mean loss over all ticks, weighted, as early-exit networks train every exit (deep
  supervision: BranchyNet, MSDNet). It asks for the best answer so far at every tick, so an easy input
  is answered early and kept; the dual-index terms still leave the hard ones time to think.
- the halting head's loss: binary cross-entropy of its logit against "the answer at this tick is right"
  (every position right, for a route), at every tick.
"""

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
    hold_weight: float = 0.0,
    every_tick_weight: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """0.5 * (CE at the min-loss tick t1 + CE at the most certain tick t2), averaged over the batch,
    plus `hold_weight` times the mean CE over the ticks after t1 and `every_tick_weight` times the mean
    CE over all ticks.

    With `use_most_certain=False`, t2 is the last tick. Returns (loss, t1, t2), ticks 0-based (B,).
    """
    losses = per_tick_loss(logits, targets, output_shape)
    return select_ticks(losses, certainty, use_most_certain, hold_weight, every_tick_weight)


def select_ticks(
    losses: Tensor, certainty: Tensor, use_most_certain: bool, hold_weight: float, every_tick_weight: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """The dual-index reduction of per-tick losses (B, T), the hold and every-tick terms. Returns
    (loss, t1, t2)."""
    batch, ticks = losses.shape
    t1 = losses.argmin(-1)
    t2 = certainty.argmax(-1) if use_most_certain else torch.full_like(t1, ticks - 1)
    rows = torch.arange(batch, device=losses.device)
    loss = 0.5 * (losses[rows, t1].mean() + losses[rows, t2].mean())
    if hold_weight > 0:
        after = (torch.arange(ticks, device=losses.device) > t1.unsqueeze(-1)).float()  # (B, T)
        held = (losses * after).sum(-1) / after.sum(-1).clamp(min=1)
        loss = loss + hold_weight * held.mean()
    if every_tick_weight > 0:
        loss = loss + every_tick_weight * losses.mean()
    return loss, t1, t2


def answers_right(logits: Tensor, targets: Tensor, output_shape: tuple[int, ...]) -> Tensor:
    """Whether each tick's answer is right: every position's top class is its target. (B, out, T) -> (B, T)"""
    batch, _, ticks = logits.shape
    predicted = logits.reshape(batch, -1, output_shape[-1], ticks).argmax(2)  # (B, P, T)
    return (predicted == targets.reshape(batch, -1, 1)).all(1)


def halting_loss(halt_logits: Tensor, right: Tensor) -> Tensor:
    """Binary cross-entropy of the halting head's logits (B, T) against `answers_right` (B, T)."""
    return F.binary_cross_entropy_with_logits(halt_logits, right.float())


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
    hold_weight: float = 0.0,
    every_tick_weight: float = 0.0,
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
    return select_ticks(losses, certainty, use_most_certain, hold_weight, every_tick_weight)
