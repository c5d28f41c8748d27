"""The guarantee keeps its promise on the halt signal, with the shipped model's own halt scores.

The shipped MNIST model runs once (onnxruntime, as the server runs it) on its 2,008 held-out digits;
that pool is taken as the population, so every threshold's true accuracy is known. Each seeded draw
calibrates on 1,004 digits drawn from it with replacement (i.i.d., as Learn-then-Test assumes) through
`certify`, the function that writes calibration.json, and checks the true accuracy of the threshold it
chose. The naive rule (the smallest threshold whose calibration accuracy reaches the target) is drawn on
the same digits: near the model's best accuracy it over-promises, which is why the guarantee exists.
"""

import math

import numpy as np
import pytest

from ctm.calibrate import HALT_THRESHOLDS, certify, loss_table, model_outputs
from ctm.onnx_runner import OnnxCTM
from ctm.tasks import get_task
from tests.conftest import SHIPPED_MODEL

CONFIDENCE = 0.95
# Near the model's best (98.2% after every tick): where a lucky calibration sample looks good enough.
TARGETS = (0.97, 0.975, 0.98)
DRAWS = 200


@pytest.fixture(scope="module")
def halt_and_correct() -> tuple[np.ndarray, np.ndarray]:
    runner = OnnxCTM(SHIPPED_MODEL)
    assert "halt" in runner.manifest["outputs"], "the shipped MNIST model must have a halting head"
    task = get_task(runner.manifest["task"])
    parts = [task.split(runner.config, name) for name in ("validation", "test")]
    inputs = np.concatenate([p.inputs.numpy() for p in parts])
    targets = np.concatenate([p.targets.numpy() for p in parts])
    out = model_outputs(runner, inputs)
    correct = (out["predictions"][..., 0] == targets[:, None]).astype(float)  # (N, T)
    return out["halt"], correct


def test_the_guarantee_keeps_coverage_on_the_halt_signal_where_the_naive_rule_does_not(halt_and_correct):
    halt, correct = halt_and_correct
    n = len(halt)
    descending = sorted(HALT_THRESHOLDS, reverse=True)
    losses, _ = loss_table(halt, 1 - correct, descending)  # (L, N)
    true_error = losses.mean(1)  # each threshold's error rate on the population
    ascending = np.argsort(descending)
    rng = np.random.default_rng(25)
    held = dict.fromkeys(TARGETS, 0)
    naive_held = dict.fromkeys(TARGETS, 0)
    for _ in range(DRAWS):
        cal = rng.integers(0, n, n // 2)
        table = certify(
            halt[cal], 1 - correct[cal], thresholds=HALT_THRESHOLDS, targets=TARGETS, confidences=(CONFIDENCE,)
        )
        calibration_error = losses[:, cal].mean(1)
        for point in table["certified"]:
            target, threshold = point["target"], point["threshold"]
            # Not certified is a kept promise: the request runs every tick and is told so.
            held[target] += threshold is None or true_error[descending.index(threshold)] <= 1 - target
        for target in TARGETS:
            reaching = [i for i in ascending if calibration_error[i] <= 1 - target]
            naive_held[target] += not reaching or true_error[reaching[0]] <= 1 - target
    # Three standard errors of a proportion at the confidence, over DRAWS seeded draws, is the bar.
    bar = CONFIDENCE - 3 * math.sqrt(CONFIDENCE * (1 - CONFIDENCE) / DRAWS)
    coverage = {t: held[t] / DRAWS for t in TARGETS}
    naive = {t: naive_held[t] / DRAWS for t in TARGETS}
    assert all(c >= bar for c in coverage.values()), f"guarantee coverage {coverage}, bar {bar:.3f}"
    # The same draws show the check can fail: selecting on the sample alone over-promises.
    assert min(naive.values()) < bar, f"naive coverage {naive}, bar {bar:.3f}"
