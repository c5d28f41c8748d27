"""The dual-index loss picks the min-loss tick and the most certain (or last) tick."""

import pytest
import torch
import torch.nn.functional as F

from ctm.losses import accuracy_most_certain, answers_right, dual_index_loss, halting_loss, per_tick_loss


def hand_made():
    # 2 items, 3 classes, 4 ticks. Item 0: right (class 2) only at tick 1; most certain at tick 3.
    logits = torch.zeros(2, 3, 4)
    logits[0, 2, 1] = 3.0  # lowest loss at tick 1
    logits[0, 0, 3] = 9.0  # very certain (and wrong) at tick 3
    logits[1, 1, 0] = 5.0  # item 1: right (class 1) and most certain at tick 0
    logits[1, 1, 2] = 1.0
    targets = torch.tensor([2, 1])
    certainty = torch.tensor([[0.1, 0.5, 0.2, 0.9], [0.8, 0.1, 0.3, 0.2]])
    return logits, certainty, targets


def test_dual_index_loss_picks_the_right_ticks():
    logits, certainty, targets = hand_made()
    loss, t1, t2 = dual_index_loss(logits, certainty, targets, (3,))
    assert t1.tolist() == [1, 0]
    assert t2.tolist() == [3, 0]
    ce = lambda item, tick: F.cross_entropy(logits[item, :, tick][None], targets[item][None])  # noqa: E731
    expected = 0.5 * ((ce(0, 1) + ce(1, 0)) / 2 + (ce(0, 3) + ce(1, 0)) / 2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_dual_index_loss_can_use_the_last_tick():
    logits, certainty, targets = hand_made()
    _, _, t2 = dual_index_loss(logits, certainty, targets, (3,), use_most_certain=False)
    assert t2.tolist() == [3, 3]


def test_multi_position_loss_averages_positions():
    logits = torch.randn(2, 4 * 2, 3)  # 4 positions x 2 classes, 3 ticks
    targets = torch.randint(0, 2, (2, 4))
    losses = per_tick_loss(logits, targets, (4, 2))
    item, tick = 1, 2
    by_hand = F.cross_entropy(logits[item, :, tick].reshape(4, 2), targets[item])
    assert losses[item, tick].item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_accuracy_is_read_at_the_most_certain_tick():
    logits, certainty, targets = hand_made()
    assert accuracy_most_certain(logits, certainty, targets, (3,)).tolist() == [0.0, 1.0]


def test_hold_term_is_the_mean_loss_after_the_best_tick():
    logits, certainty, targets = hand_made()
    plain, t1, _ = dual_index_loss(logits, certainty, targets, (3,))
    held, _, _ = dual_index_loss(logits, certainty, targets, (3,), hold_weight=0.5)
    losses = per_tick_loss(logits, targets, (3,))  # (B, T)
    # Item 0's best tick is 1: ticks 2 and 3 follow it. Item 1's is 0: ticks 1, 2 and 3 follow it.
    after = (losses[0, 2:].mean() + losses[1, 1:].mean()) / 2
    assert t1.tolist() == [1, 0]
    assert held.item() == pytest.approx(plain.item() + 0.5 * after.item(), rel=1e-6)
    # An item whose best tick is the last has nothing after it: it adds nothing (not a division by zero).
    last = torch.zeros(1, 3, 2)
    last[0, 1, 1] = 4.0
    only, _, _ = dual_index_loss(last, torch.tensor([[0.1, 0.9]]), torch.tensor([1]), (3,), hold_weight=1.0)
    base, _, _ = dual_index_loss(last, torch.tensor([[0.1, 0.9]]), torch.tensor([1]), (3,))
    assert only.item() == pytest.approx(base.item())


def test_answers_right_needs_every_position():
    # 2 positions x 2 classes, 2 ticks: item 0 right at tick 1 only at both positions.
    logits = torch.zeros(1, 4, 2)
    logits[0, 1, :] = 1.0  # position 0: class 1 at both ticks
    logits[0, 2, 0] = 1.0  # position 1: class 0 at tick 0 (wrong), class 1 at tick 1 (right)
    logits[0, 3, 1] = 1.0
    assert answers_right(logits, torch.tensor([[1, 1]]), (2, 2)).tolist() == [[False, True]]


def test_halting_loss_learns_which_ticks_are_right():
    right = torch.tensor([[False, True, True], [False, False, True]])
    confident = halting_loss(torch.tensor([[-5.0, 5.0, 5.0], [-5.0, -5.0, 5.0]]), right)
    backwards = halting_loss(torch.tensor([[5.0, -5.0, -5.0], [5.0, 5.0, -5.0]]), right)
    assert confident.item() < 0.01 < 5 < backwards.item()


def test_every_tick_term_is_the_mean_loss_over_all_ticks():
    logits, certainty, targets = hand_made()
    plain, _, _ = dual_index_loss(logits, certainty, targets, (3,))
    every, _, _ = dual_index_loss(logits, certainty, targets, (3,), every_tick_weight=0.25)
    mean = per_tick_loss(logits, targets, (3,)).mean()
    assert every.item() == pytest.approx(plain.item() + 0.25 * mean.item(), rel=1e-6)
