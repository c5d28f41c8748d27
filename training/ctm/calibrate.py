"""Calibration: which certainty threshold buys which accuracy, and how many ticks it costs.

The halting rule is the server's (docs/models.md): ticks are 1-based; halt after the first tick t with
certainty_t >= threshold and answer with tick t; if no tick reaches it, run all T ticks and answer with
the most certain one (earliest on ties), as the paper reads a CTM.

    python -m ctm.calibrate --model models/mnist-ctm/1 [--split validation]
recomputes calibration.json of an exported model folder with onnxruntime (what the server runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS = tuple(
    sorted({round(float(t), 4) for t in [*np.arange(0.05, 0.9, 0.05), *np.arange(0.9, 0.99, 0.01)]} | {
        0.99, 0.995, 0.999, 1.0,
    })
)  # fmt: skip


def exit_ticks(certainty: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item: ticks run (1-based), tick whose prediction is the answer (0-based), and whether it reached.

    certainty (N, T).
    """
    reached = certainty >= threshold
    any_reached = reached.any(1)
    first = reached.argmax(1)  # first True; 0 when none (masked below)
    most_certain = certainty.argmax(1)  # earliest on ties
    answer = np.where(any_reached, first, most_certain)
    ticks_run = np.where(any_reached, first + 1, certainty.shape[1])
    return ticks_run, answer, any_reached


def calibrate(certainty: np.ndarray, correct: np.ndarray, thresholds=THRESHOLDS) -> dict[str, Any]:
    """Accuracy and ticks per threshold, and accuracy per fixed tick budget.

    certainty (N, T) in [0, 1]; correct (N, T) in [0, 1], the fraction of an item's positions the model
    gets right at each tick.
    """
    n, ticks = certainty.shape
    rows = np.arange(n)
    table = []
    for threshold in thresholds:
        ticks_run, answer, reached = exit_ticks(certainty, threshold)
        table.append(
            {
                "threshold": threshold,
                "accuracy": float(correct[rows, answer].mean()),
                "mean_ticks": float(ticks_run.mean()),
                "p50_ticks": float(np.percentile(ticks_run, 50)),
                "p90_ticks": float(np.percentile(ticks_run, 90)),
                "p99_ticks": float(np.percentile(ticks_run, 99)),
                "reached_fraction": float(reached.mean()),
                "exit_histogram": np.bincount(ticks_run - 1, minlength=ticks).tolist(),
            }
        )
    fixed = []
    for t in range(1, ticks + 1):
        best = certainty[:, :t].argmax(1)
        fixed.append(
            {
                "ticks": t,
                "accuracy_at_tick": float(correct[:, t - 1].mean()),
                "accuracy_most_certain": float(correct[rows, best].mean()),
            }
        )
    return {
        "schema_version": 1,
        "count": int(n),
        "ticks": int(ticks),
        "accuracy_most_certain": fixed[-1]["accuracy_most_certain"],
        "accuracy_last_tick": fixed[-1]["accuracy_at_tick"],
        "thresholds": table,
        "fixed_ticks": fixed,
    }


def smallest_threshold_within(calibration: dict[str, Any], points: float) -> dict[str, Any]:
    """The smallest threshold whose accuracy is within `points` (percentage points) of full-tick accuracy."""
    full = calibration["accuracy_most_certain"]
    for row in calibration["thresholds"]:
        if row["accuracy"] >= full - points / 100:
            return row
    return calibration["thresholds"][-1]


def main(argv: list[str] | None = None) -> None:
    from .onnx_runner import OnnxCTM
    from .tasks import get_task

    parser = argparse.ArgumentParser(prog="python -m ctm.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="exported model folder (manifest.json inside)")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--write", action="store_true", help="rewrite calibration.json (validation split only)")
    args = parser.parse_args(argv)

    runner = OnnxCTM(args.model)
    task = get_task(runner.manifest["task"])
    split = task.split(runner.config, args.split)
    certainty, correct = runner.certainty_and_correct(split.inputs.numpy(), split.targets.numpy())
    result = {"split": args.split, **calibrate(certainty, correct)}
    if args.write:
        if args.split != "validation":
            raise SystemExit("--write only rewrites the validation calibration")
        (args.model / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    for row in result["thresholds"]:
        print(f"{row['threshold']:>6}  accuracy {row['accuracy']:.4f}  mean ticks {row['mean_ticks']:.2f}")


if __name__ == "__main__":
    main()
