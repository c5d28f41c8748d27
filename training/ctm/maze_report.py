"""How well an exported maze model solves the held-out test mazes, by tick and by threshold on each halting
signal it has (certainty; halt, for a model with a halting head).

    python -m ctm.maze_report models/maze-ctm/1 [--split test]

Runs the model folder's ONNX graphs (what the server runs) on the split and prints two markdown tables:
per tick t, the move accuracy and the share of mazes solved (every move of the route right, the wait
padding included) at tick t and, per signal, at the best-rated of ticks 1..t (for certainty the most
certain); per signal and threshold, the same at the server's halting rule (docs/models.md) with the ticks
it costs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .calibrate import SIGNAL_THRESHOLDS, exit_ticks, model_outputs, signals_of
from .onnx_runner import OnnxCTM
from .tasks import get_task


def route_scores(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """predictions (N, T, P), targets (N, P) -> move accuracy (N, T) and solved (N, T)."""
    right = predictions == targets[:, None, :]
    return right.mean(-1), right.all(-1).astype(np.float64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ctm.maze_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="exported maze model folder")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    args = parser.parse_args(argv)
    runner = OnnxCTM(args.model)
    manifest = json.loads((args.model / "manifest.json").read_text())
    split = get_task(manifest["task"]).split(runner.config, args.split)
    out = model_outputs(runner, split.inputs.numpy())
    signals = signals_of(out)
    moves, solved = route_scores(out["predictions"], split.targets.numpy())
    n, ticks = out["certainty"].shape
    rows = np.arange(n)

    print(f"{manifest['name']}/{manifest['version']} on {n} {args.split} mazes\n")
    header = "| tick | moves right at tick | solved at tick |"
    for name in signals:
        header += f" moves right, best {name} of 1..t | solved, best {name} of 1..t |"
    print(header)
    print("|---" * (3 + 2 * len(signals)) + "|")
    for t in range(1, ticks + 1):
        line = f"| {t} | {moves[:, t - 1].mean():.2%} | {solved[:, t - 1].mean():.2%} |"
        for signal in signals.values():
            best = signal[:, :t].argmax(1)
            line += f" {moves[rows, best].mean():.2%} | {solved[rows, best].mean():.2%} |"
        print(line)
    for name, signal in signals.items():
        print(f"\nHalting on {name}:\n")
        print("| threshold | moves right | solved | mean ticks | p90 ticks | reached |")
        print("|---|---|---|---|---|---|")
        for threshold in SIGNAL_THRESHOLDS[name]:
            ticks_run, answer, reached = exit_ticks(signal, threshold)
            print(
                f"| {threshold} | {moves[rows, answer].mean():.2%} | {solved[rows, answer].mean():.2%} "
                f"| {ticks_run.mean():.1f} | {np.percentile(ticks_run, 90):.0f} | {reached.mean():.0%} |"
            )


if __name__ == "__main__":
    main()
