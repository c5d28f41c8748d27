"""Does the guarantee hold? Calibration repeated over many random calibrate/test splits of held-out data.

    python -m ctm.calibration_evidence --model models/mnist-ctm/1 [--splits 500] [--out out/calibration-evidence]
    (or: npm run calibrate -- --evidence --model mnist-ctm)

The held-out pool is the model's validation and test splits together (MNIST: 1,003 + 1,005 digits, none
seen in training). Each seeded split halves the pool: one half calibrates (Learn-then-Test, as
calibration.json does, and the old rule: the smallest threshold whose calibration accuracy reaches the
target), the other half measures what the chosen threshold achieved and the ticks it used. Per target
and confidence it reports the coverage, how often the promise held: for the guarantee that is "not
certified, or achieved >= target" (a request that cannot be certified is told so), for the old rule
"achieved >= target". Two readings of "achieved":

- test half: the accuracy on the other half. It carries that half's own sampling noise (about 0.5
  points at 97% on 1,004 items) and, because both halves come from one pool, a half that calibrated
  lucky leaves the unlucky items to the test half; so it reads below the confidence when the chosen
  threshold's accuracy sits right at the target.
- true: the pool is taken as the population, so each threshold's true accuracy is known exactly; the
  calibration set is drawn from it with replacement (i.i.d., as the guarantee assumes). This is the
  statement Learn-then-Test makes, and its coverage must be >= the confidence.

All of it per halting signal: certainty, and for a model with a halting head its `halt` output, so
that the two can be compared on the same draws; beside them the oracle, the fewest ticks any rule could
spend for the full run's answers (`oracle_ticks`).

Then per tick, on the whole pool: reliability diagrams and the expected calibration error (ECE, 10 equal
bins) of the certainty, of the top-class probability and of the halting signal as predictors of being
right.

Writes evidence.json and summary.md to --out, then draws the plots (docs/img by default) with
tools/harness/plot/calibrationPlots.ts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .calibrate import (
    SIGNAL_THRESHOLDS,
    THRESHOLDS,
    agreement_with_full_run,
    loss_table,
    model_outputs,
    resolve_model,
    signals_of,
)
from .guarantee import binomial_cdf, fixed_sequence, hoeffding_bentkus_p_value
from .paths import REPO

ACCURACY_TARGETS = (0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98)
CONSISTENCY_TARGETS = (0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
CONFIDENCES = (0.8, 0.9, 0.95, 0.99)
BINS = 10
# The plots are drawn by the shared TypeScript charting, so that they look like every other plot.
PLOTTER = REPO / "tools" / "harness" / "plot" / "calibrationPlots.ts"


def split_resample(
    losses: np.ndarray,
    ticks: np.ndarray,
    thresholds: list[float],
    targets,
    confidences,
    splits: int,
    seed: int = 0,
    population: bool = False,
) -> list[dict[str, Any]]:
    """Coverage and cost of the guarantee and of the old rule over `splits` random draws.

    losses, ticks (L, N): per threshold (descending, 1.0 first) and item; losses in [0, 1]: 0/1 for a
    single answer, tested with the exact binomial tail as calibration.json is; the fraction of positions
    wrong for a multi-position answer (a maze route), tested with Hoeffding-Bentkus as calibration.json is.
    population False: each draw halves the items, calibrates on one half and measures on the other.
    population True: the N items are the population, so every threshold's true accuracy is known; each
    draw calibrates on N/2 items drawn with replacement and measures the true accuracy of the choice.
    """
    binary = bool(np.all((losses == 0) | (losses == 1)))
    n = losses.shape[1]
    half = n // 2
    rng = np.random.default_rng(seed)
    ascending = np.argsort(thresholds)
    # (splits, ...) per target and confidence; the old rule does not depend on the confidence.
    records: dict[tuple, dict[str, list]] = {}
    for _ in range(splits):
        if population:
            cal, test = rng.integers(0, n, half), np.arange(n)
        else:
            order = rng.permutation(n)
            cal, test = order[:half], order[half:]
        errors = losses[:, cal].sum(1)
        test_loss = losses[:, test].mean(1)
        test_ticks = ticks[:, test].mean(1)
        for target in targets:
            alpha = 1 - target
            # Old rule: the smallest threshold whose calibration accuracy reaches the target (else every tick).
            reaching = [i for i in ascending if 1 - errors[i] / half >= target]
            old = reaching[0] if reaching else 0
            old_rec = records.setdefault(("old", target), {"achieved": [], "ticks": [], "certified": []})
            old_rec["achieved"].append(1 - test_loss[old])
            old_rec["ticks"].append(test_ticks[old])
            old_rec["certified"].append(bool(reaching))
            for confidence in confidences:
                p_values = (
                    binomial_cdf(int(round(k)), half, alpha)
                    if binary
                    else hoeffding_bentkus_p_value(k / half, half, alpha)
                    for k in errors
                )
                index = fixed_sequence(p_values, 1 - confidence)
                at = 0 if index is None else index
                rec = records.setdefault(("ltt", target, confidence), {"achieved": [], "ticks": [], "certified": []})
                rec["achieved"].append(1 - test_loss[at])
                rec["ticks"].append(test_ticks[at])
                rec["certified"].append(index is not None)
    rows = []
    for key, rec in records.items():
        achieved, certified = np.array(rec["achieved"]), np.array(rec["certified"])
        target = key[1]
        row = {
            "rule": key[0],
            "target": target,
            "confidence": key[2] if key[0] == "ltt" else None,
            "splits": splits,
            "certified_fraction": float(certified.mean()),
            "mean_achieved": float(achieved.mean()),
            "p05_achieved": float(np.percentile(achieved, 5)),
            "mean_ticks": float(np.mean(rec["ticks"])),
        }
        if key[0] == "ltt":
            row["coverage"] = float(np.mean(~certified | (achieved >= target)))
        else:
            row["coverage"] = float(np.mean(achieved >= target))
        rows.append(row)
    return rows


def oracle_ticks(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per item, the fewest ticks that give the full run's answer: the earliest tick from which the
    prediction equals the last tick's and stays equal; an item the full run gets wrong counts 1 tick.

    A lower bound that no causal rule reaches (it knows the future), for scale. predictions (N, T, P)
    class indices; targets (N, P). Returns (N,) ticks, 1-based.
    """
    final = predictions[:, -1]  # (N, P)
    same = (predictions == final[:, None]).all(-1)  # (N, T)
    # Ticks from the end that all equal the final answer: the run of True at the end of each row.
    settled = np.cumprod(same[:, ::-1], axis=1).sum(1)  # (N,)
    ticks = predictions.shape[1] - settled + 1
    right = (final == targets).all(-1)
    return np.where(right, ticks, 1)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Reliability diagram and expected calibration error of `confidence` as a predictor of `correct`.

    confidence, correct (N,); equal-width bins over [0, 1], the last one closed.
    """
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if count == 0:
            table.append({"bin": b, "count": 0, "confidence": None, "accuracy": None})
            continue
        mean_confidence, accuracy = float(confidence[members].mean()), float(correct[members].mean())
        ece += count / len(confidence) * abs(mean_confidence - accuracy)
        table.append({"bin": b, "count": count, "confidence": mean_confidence, "accuracy": accuracy})
    return {"ece": ece, "bins": table}


def summary_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"`{result['command']}` on {result['date']}: {result['pool']} held-out items, {result['splits']} draws of "
        f"{result['calibrate_count']} calibration items per mode",
        "",
        f"Full-run accuracy (last tick) {result['accuracy_last_tick']:.2%}; oracle: {result['oracle_mean_ticks']:.2f} "
        f"ticks on average (the earliest tick from which each answer is final; wrong ones count 1)",
        "",
        "**Signals compared**: mean ticks (test half) at each certified accuracy target, confidence 0.95, and how "
        "often it was certified",
        "",
        "| target accuracy | " + " | ".join(f"{s}: mean ticks (certified)" for s in result["signals"]) + " | oracle |",
        "|---:|" + "---:|" * (len(result["signals"]) + 1),
    ]
    for target in ACCURACY_TARGETS:
        cells = []
        for signal in result["signals"]:
            row = next(
                r
                for r in result["coverage"][signal]["accuracy"]
                if r["rule"] == "ltt" and r["target"] == target and r["confidence"] == 0.95
            )
            cells.append(f"{row['mean_ticks']:.2f} ({row['certified_fraction']:.0%})")
        lines.append(f"| {target} | " + " | ".join(cells) + f" | {result['oracle_mean_ticks']:.2f} |")
    lines.append("")
    for signal in result["signals"]:
        lines += [f"### Signal: {signal}", ""]
        lines += _coverage_tables(result["coverage"][signal])
    lines += ["**Expected calibration error per tick** (10 equal bins)", ""]
    ticks = result["reliability"]
    lines += ["| tick | " + " | ".join(str(t["tick"]) for t in ticks) + " |", "|---|" + "---:|" * len(ticks)]
    lines.append("| accuracy at the tick | " + " | ".join(f"{t['accuracy']:.1%}" for t in ticks) + " |")
    for key, name in (
        ("certainty", "ECE of certainty"),
        ("top", "ECE of top-class probability"),
        ("halt", "ECE of halt"),
    ):
        if key in ticks[0]:
            lines.append(f"| {name} | " + " | ".join(f"{t[key]['ece']:.3f}" for t in ticks) + " |")
    return "\n".join(lines) + "\n"


def _coverage_tables(coverage: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for kind in ("accuracy", "consistency"):
        rows = coverage[kind]
        old = {r["target"]: r for r in rows if r["rule"] == "old"}
        lines += [
            f"**{kind}**: coverage against the pool's true {kind} / on the other half, and mean ticks",
            "",
            "| target | confidence | certified | coverage: true | coverage: test half | achieved (test half) | "
            "mean ticks | old rule coverage: true / test half | old rule mean ticks | ticks paid |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sorted((r for r in rows if r["rule"] == "ltt"), key=lambda r: (r["target"], r["confidence"])):
            o = old[r["target"]]
            lines.append(
                f"| {r['target']} | {r['confidence']} | {r['certified_fraction']:.0%} | "
                f"{r['coverage_population']:.1%} | {r['coverage']:.1%} | {r['mean_achieved']:.2%} | "
                f"{r['mean_ticks']:.2f} | {o['coverage_population']:.1%} / {o['coverage']:.1%} | "
                f"{o['mean_ticks']:.2f} | {r['mean_ticks'] - o['mean_ticks']:+.2f} |"
            )
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    from .onnx_runner import OnnxCTM
    from .tasks import get_task

    parser = argparse.ArgumentParser(
        prog="python -m ctm.calibration_evidence",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="mnist-ctm", help="model folder, or a model name under --models-dir")
    parser.add_argument(
        "--models-dir", type=Path, default=REPO / "models", help="the model repository --model names are looked up in"
    )
    parser.add_argument("--splits", type=int, default=500, help="random calibrate/test draws per mode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    parser.add_argument(
        "--out", type=Path, default=REPO / "out" / "calibration-evidence", help="where evidence.json and summary.md go"
    )
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "img", help="where the PNGs go")
    parser.add_argument("--no-plots", action="store_true", help="write the JSON and markdown only")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    model = resolve_model(args.model, args.models_dir)
    runner = OnnxCTM(model)
    task = get_task(runner.manifest["task"])
    parts = [task.split(runner.config, name) for name in ("validation", "test")]
    inputs = np.concatenate([p.inputs.numpy() for p in parts])
    targets = np.concatenate([p.targets.numpy().reshape(len(p.targets), -1) for p in parts])
    out = model_outputs(runner, inputs)
    correct = (out["predictions"] == targets[:, None, :]).mean(-1)  # (N, T)
    signals = signals_of(out)

    coverage: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for signal_name, signal in signals.items():
        agreement = agreement_with_full_run(signal, out["predictions"])
        descending = sorted(SIGNAL_THRESHOLDS.get(signal_name, THRESHOLDS), reverse=True)
        coverage[signal_name] = {}
        for kind, score, kind_targets in (
            ("accuracy", correct, ACCURACY_TARGETS),
            ("consistency", agreement, CONSISTENCY_TARGETS),
        ):
            losses, ticks = loss_table(signal, 1 - score, descending)
            draws = [
                split_resample(losses, ticks, descending, kind_targets, CONFIDENCES, args.splits, args.seed, population)
                for population in (False, True)
            ]
            coverage[signal_name][kind] = [
                {**split, "coverage_population": population["coverage"], "mean_population": population["mean_achieved"]}
                for split, population in zip(*draws, strict=True)
            ]

    per_tick = []
    for t in range(out["certainty"].shape[1]):
        right = correct[:, t]
        entry = {
            "tick": t + 1,
            "accuracy": float(right.mean()),
            "certainty": reliability(out["certainty"][:, t], right),
            "top": reliability(out["top_probability"][:, t].mean(-1), right),
        }
        if "halt" in signals:
            # The head predicts "every position right"; for one position that is `right` itself.
            entry["halt"] = reliability(signals["halt"][:, t], (correct[:, t] == 1).astype(float))
        per_tick.append(entry)
    result = {
        "model": f"{runner.manifest['name']}/{runner.manifest['version']}",
        "command": " ".join(["npm run calibrate -- --evidence", *argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "pool": int(len(inputs)),
        "calibrate_count": int(len(inputs) // 2),
        "splits": args.splits,
        "seed": args.seed,
        "signals": list(signals),
        "accuracy_last_tick": float(correct[:, -1].mean()),
        "oracle_mean_ticks": float(oracle_ticks(out["predictions"], targets).mean()),
        "coverage": coverage,
        "reliability": per_tick,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evidence.json").write_text(json.dumps(result, indent=1) + "\n")
    markdown = summary_markdown(result)
    (args.out / "summary.md").write_text(markdown)
    print(markdown)
    if not args.no_plots:
        tsx = REPO / "node_modules" / ".bin" / "tsx"
        subprocess.run([str(tsx), str(PLOTTER), str(args.out / "evidence.json"), str(args.plots)], check=True)


if __name__ == "__main__":
    main()
