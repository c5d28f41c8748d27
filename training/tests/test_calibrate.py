"""Calibration tables follow the server's halting rule."""

import numpy as np
import pytest

from ctm.calibrate import THRESHOLDS, calibrate, exit_ticks, smallest_threshold_within


def test_exit_ticks_first_reach_else_most_certain():
    certainty = np.array([[0.2, 0.95, 0.99], [0.3, 0.7, 0.5], [0.91, 0.2, 0.1]])
    ticks, answer, reached = exit_ticks(certainty, 0.9)
    assert ticks.tolist() == [2, 3, 1]
    assert answer.tolist() == [1, 1, 0]  # item 1 never reaches 0.9: its most certain tick (0.7)
    assert reached.tolist() == [True, False, True]


def test_calibration_table():
    certainty = np.array([[0.2, 0.95, 0.99], [0.3, 0.7, 0.5], [0.91, 0.2, 0.1]])
    correct = np.array([[0, 1, 1], [1, 0, 1], [0, 1, 1]], dtype=float)
    table = calibrate(certainty, correct, thresholds=(0.9, 1.0))
    low, high = table["thresholds"]
    assert low["accuracy"] == pytest.approx(1 / 3)  # item 0 right at tick 2; item 1 wrong at tick 2; item 2 wrong
    assert low["mean_ticks"] == pytest.approx(2.0)
    assert low["exit_histogram"] == [1, 1, 1]
    assert high["mean_ticks"] == 3 and high["reached_fraction"] == 0
    assert [f["accuracy_at_tick"] for f in table["fixed_ticks"]] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert table["accuracy_most_certain"] == pytest.approx(1 / 3)  # ticks 3, 2, 1
    assert smallest_threshold_within(table, 0.5)["threshold"] == 0.9


def test_threshold_grid_is_sorted_and_within_bounds():
    assert list(THRESHOLDS) == sorted(THRESHOLDS)
    assert THRESHOLDS[0] > 0 and THRESHOLDS[-1] == 1.0
