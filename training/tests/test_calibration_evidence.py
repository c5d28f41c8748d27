"""The evidence's oracle: the fewest ticks that give the full run's answers, on a hand-made example."""

import subprocess

import numpy as np

from ctm.calibration_evidence import PLOTTER, oracle_ticks
from ctm.paths import REPO


def test_oracle_is_the_earliest_tick_from_which_the_answer_is_final():
    # 4 items, 5 ticks, one position each (predictions (N, T, 1)).
    predictions = np.array(
        [
            [3, 3, 3, 3, 3],  # final from tick 1
            [1, 3, 3, 1, 3],  # changes back at tick 4: final only from tick 5
            [0, 2, 2, 2, 2],  # final from tick 2
            [5, 5, 5, 5, 5],  # final from tick 1, but wrong: counts 1 tick
        ]
    )[..., None]
    targets = np.array([[3], [3], [2], [4]])
    assert oracle_ticks(predictions, targets).tolist() == [1, 5, 2, 1]


def test_oracle_needs_every_position_of_a_route():
    # 2 positions: the answer is final when both are; the full run is right.
    predictions = np.array([[[0, 1], [2, 1], [2, 3], [2, 3]]])  # (1, 4, 2)
    assert oracle_ticks(predictions, np.array([[2, 3]])).tolist() == [3]
    assert oracle_ticks(predictions, np.array([[2, 1]])).tolist() == [1]  # the full run is wrong


def test_the_plot_script_it_runs_is_there_and_asks_for_the_evidence():
    # evidence.json is drawn by a TypeScript script run by its path: moving it must fail here, not at
    # the end of an hour of calibration.
    tsx = REPO / "node_modules" / ".bin" / "tsx"
    run = subprocess.run([str(tsx), str(PLOTTER)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "<evidence.json> <png dir>" in run.stderr
