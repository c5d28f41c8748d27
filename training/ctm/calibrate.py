"""Calibration: which threshold on a halting signal buys which accuracy, how many ticks it costs, and
what it certifies.

A signal is a per-tick score in [0, 1] the server can halt on: the model's certainty (every model) and,
for a model with a halting head, `halt` (its estimate that the tick's answer is right). The halting rule
is the server's (docs/models.md): ticks are 1-based; halt after the first tick t with signal_t >=
threshold and answer with tick t; if no tick reaches it, run all T ticks and answer with the tick whose
signal was highest (earliest on ties): for certainty, the most certain tick, as the paper reads a CTM.
For a grid of target accuracies and consistencies (agreement with the answer after all ticks under the
same signal) and confidence levels, the file also holds the threshold Learn-then-Test certifies
(ctm.guarantee), per signal.

    python -m ctm.calibrate --model models/mnist-ctm/1 [--split validation] [--write]
recomputes calibration.json of an exported model folder with onnxruntime (what the server runs);
    python -m ctm.calibrate --model mnist-ctm --unlabeled DIR
certifies consistency on DIR's inputs (no labels needed) and writes calibration-N.json beside the model;
    python -m ctm.calibrate --evidence [...]
runs ctm.calibration_evidence (coverage over random calibrate/test splits; reliability per tick).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .guarantee import CONFIDENCES, METHOD, TARGETS, learn_then_test, risk_upper_bound
from .paths import REPO

SCHEMA_VERSION = 3
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".tif", ".tiff")

THRESHOLDS = tuple(
    sorted({round(float(t), 4) for t in [*np.arange(0.05, 0.9, 0.05), *np.arange(0.9, 0.99, 0.01)]} | {
        0.99, 0.995, 0.999, 1.0,
    })
)  # fmt: skip
# A halting head's sigmoid saturates near 1, where its useful thresholds lie: a finer grid there.
HALT_THRESHOLDS = tuple(sorted({*THRESHOLDS, *(round(0.99 + i / 1000, 4) for i in range(10)), 0.9995, 0.9998, 0.9999}))
SIGNAL_THRESHOLDS = {"certainty": THRESHOLDS, "halt": HALT_THRESHOLDS}


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


def calibrate(
    signals: dict[str, np.ndarray],
    correct: np.ndarray,
    predictions: np.ndarray | None = None,
    data: dict[str, Any] | None = None,
    grids: dict[str, tuple[float, ...]] | None = None,
) -> dict[str, Any]:
    """Accuracy per fixed tick budget and, per signal, accuracy and ticks per threshold and what can be
    certified.

    signals: name -> (N, T) scores in [0, 1], "certainty" first; correct (N, T) in [0, 1], the fraction
    of an item's positions the model gets right at each tick; predictions (N, T, P) class indices, from
    which each signal's consistency (agreement with its own full-run answer) is measured; without them
    the file certifies accuracy only. `data` describes where the items came from (provenance).
    """
    certainty = signals["certainty"]
    n, ticks = certainty.shape
    rows = np.arange(n)
    routes = predictions is not None and predictions.shape[-1] > 1  # several positions: also whole answers right
    fixed = []
    for t in range(1, ticks + 1):
        best = certainty[:, :t].argmax(1)
        row = {
            "ticks": t,
            "accuracy_at_tick": float(correct[:, t - 1].mean()),
            "accuracy_most_certain": float(correct[rows, best].mean()),
        }
        if routes:
            row["solved_at_tick"] = float((correct[:, t - 1] == 1).mean())
        fixed.append(row)
    data = data or {"count": int(n)}
    blocks = {}
    for name, signal in signals.items():
        grid = (grids or SIGNAL_THRESHOLDS).get(name, THRESHOLDS)
        agreement = None if predictions is None else agreement_with_full_run(signal, predictions)
        blocks[name] = signal_calibration(signal, correct, grid, agreement, data)
        if routes:
            blocks[name]["solved_full_run"] = float((correct[rows, signal.argmax(1)] == 1).mean())
    return {
        "schema_version": SCHEMA_VERSION,
        "count": int(n),
        "ticks": int(ticks),
        "accuracy_most_certain": fixed[-1]["accuracy_most_certain"],
        "accuracy_last_tick": fixed[-1]["accuracy_at_tick"],
        "fixed_ticks": fixed,
        "signals": blocks,
    }


def signal_calibration(
    signal: np.ndarray, correct: np.ndarray, thresholds, agreement: np.ndarray | None, data: dict[str, Any]
) -> dict[str, Any]:
    """One signal's threshold table and guarantees."""
    n, ticks = signal.shape
    rows = np.arange(n)
    table = []
    for threshold in thresholds:
        ticks_run, answer, reached = exit_ticks(signal, threshold)
        row = {
            "threshold": threshold,
            "accuracy": float(correct[rows, answer].mean()),
            "mean_ticks": float(ticks_run.mean()),
            "p50_ticks": float(np.percentile(ticks_run, 50)),
            "p90_ticks": float(np.percentile(ticks_run, 90)),
            "p99_ticks": float(np.percentile(ticks_run, 99)),
            "reached_fraction": float(reached.mean()),
            "exit_histogram": np.bincount(ticks_run - 1, minlength=ticks).tolist(),
        }
        if agreement is not None:
            row["consistency"] = float(agreement[rows, answer].mean())
        table.append(row)
    guarantees: dict[str, Any] = {"method": METHOD, "accuracy": certify(signal, 1 - correct, thresholds, data)}
    if agreement is not None:
        guarantees["consistency"] = certify(signal, 1 - agreement, thresholds, data)
    return {
        "accuracy_full_run": float(correct[rows, signal.argmax(1)].mean()),
        "thresholds": table,
        "guarantees": guarantees,
    }


def loss_table(certainty: np.ndarray, loss: np.ndarray, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold (in the order given) and item: the loss of the answer and the ticks run. Both (L, N)."""
    rows = np.arange(len(certainty))
    losses, ticks = [], []
    for threshold in thresholds:
        ticks_run, answer, _ = exit_ticks(certainty, threshold)
        losses.append(loss[rows, answer])
        ticks.append(ticks_run)
    return np.stack(losses), np.stack(ticks)


def certify(
    certainty: np.ndarray,
    loss: np.ndarray,
    thresholds=THRESHOLDS,
    data: dict[str, Any] | None = None,
    targets=TARGETS,
    confidences=CONFIDENCES,
) -> dict[str, Any]:
    """For every (target, confidence) on the grid, the Learn-then-Test threshold, or null when none certifies.

    loss (N, T) in [0, 1]: 1 - accuracy or 1 - agreement of each tick. `risk_bound` is the upper
    confidence bound on the loss at the threshold chosen (at 1.0 when none is); `mean_ticks` is what the
    threshold cost on these items.
    """
    descending = sorted(thresholds, reverse=True)
    if descending[0] != 1.0:
        raise ValueError(f"the threshold grid must include 1.0 (every tick), got {descending[0]} at most")
    losses, ticks = loss_table(certainty, loss, descending)
    certified = []
    for confidence in confidences:
        delta = 1 - confidence
        for target in targets:
            index = learn_then_test(losses, 1 - target, delta)
            at = 0 if index is None else index
            certified.append(
                {
                    "target": target,
                    "confidence": confidence,
                    "threshold": None if index is None else descending[index],
                    "risk_bound": risk_upper_bound(losses[at], delta),
                    "mean_ticks": float(ticks[at].mean()),
                }
            )
    return {"data": data or {"count": int(len(certainty))}, "count": int(len(certainty)), "certified": certified}


def agreement_with_full_run(signal: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """(N, T): fraction of positions whose prediction at each tick equals the answer after all T ticks.

    The answer after all ticks is what the server returns when nothing halts early: the tick of the T
    whose signal was highest (earliest on ties; for certainty, the most certain tick). Threshold 1.0
    gives that same answer, so its consistency is 1. signal (N, T); predictions (N, T, P) class indices.
    """
    rows = np.arange(len(signal))
    final = predictions[rows, signal.argmax(1)]  # (N, P)
    return (predictions == final[:, None, :]).mean(-1)


def model_outputs(runner, inputs: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """certainty (N, T), predictions (N, T, P), top-class probability (N, T, P) and, for a model with a
    halting head, halt (N, T) of an exported model."""
    classes = runner.config.output_shape[-1]
    parts: dict[str, list[np.ndarray]] = {"certainty": [], "predictions": [], "top_probability": []}
    if "halt" in runner.manifest["outputs"]:
        parts["halt"] = []
    for start in range(0, len(inputs), batch):
        out = runner.run(inputs[start : start + batch])
        b, t = out["certainty"].shape
        probabilities = out["probabilities"].reshape(b, t, -1, classes)  # (B, T, P, C)
        parts["certainty"].append(out["certainty"])
        parts["predictions"].append(probabilities.argmax(-1))
        parts["top_probability"].append(probabilities.max(-1))
        if "halt" in parts:
            parts["halt"].append(out["halt"])
    return {key: np.concatenate(values) for key, values in parts.items()}


def signals_of(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The halting signals among `model_outputs`: certainty, and halt where the model has it."""
    return {name: outputs[name] for name in ("certainty", "halt") if name in outputs}


SELECTION_ITEMS = 2000
SELECTION_SEED = 20261207


def choose_target_signal(
    signals: dict[str, np.ndarray], correct: np.ndarray, data: dict[str, Any], within_points: float = 0.5
) -> dict[str, Any]:
    """The signal a target that names none is certified on: the one whose threshold rule comes within
    `within_points` of the best full-run accuracy in the fewest mean ticks (ties: the first, certainty).

    It is chosen on items apart from the calibration's (`data` says which): a choice made on the
    calibration items would spend part of the confidence their guarantees state.
    """
    rows = np.arange(len(correct))
    full_run = {name: float(correct[rows, signal.argmax(1)].mean()) for name, signal in signals.items()}
    goal = max(full_run.values()) - within_points / 100
    mean_ticks = {}
    for name, signal in signals.items():
        mean_ticks[name] = float(signal.shape[1])  # every tick, when no threshold reaches the goal
        for threshold in SIGNAL_THRESHOLDS.get(name, THRESHOLDS):
            ticks_run, answer, _ = exit_ticks(signal, threshold)
            if correct[rows, answer].mean() >= goal:
                mean_ticks[name] = min(mean_ticks[name], float(ticks_run.mean()))
    chosen = min(signals, key=lambda name: mean_ticks[name])  # min keeps the first of equals
    return {
        "signal": chosen,
        "rule": f"fewest mean ticks within {within_points} points of the best full-run accuracy",
        "mean_ticks": mean_ticks,
        "accuracy_full_run": full_run,
        "data": data,
    }


def target_signal_of(runner, task) -> dict[str, Any] | None:
    """choose_target_signal on SELECTION_ITEMS items drawn from the task's training distribution (fresh
    mazes; training digits unaugmented), seeded; None for a model with one signal or no training data."""
    if "halt" not in runner.manifest["outputs"] or task.split is None:
        return None
    generator = torch.Generator().manual_seed(SELECTION_SEED)
    inputs, targets = task.train_batch(
        runner.config, task.split(runner.config, "train"), SELECTION_ITEMS, generator, False
    )
    out = model_outputs(runner, inputs.numpy())
    correct = (out["predictions"] == targets.numpy().reshape(len(targets), 1, -1)).mean(-1)
    data = {"kind": "labeled", "split": "train", "count": SELECTION_ITEMS, "seed": SELECTION_SEED}
    return choose_target_signal(signals_of(out), correct, data)


def smallest_threshold_within(calibration: dict[str, Any], points: float, signal: str = "certainty") -> dict[str, Any]:
    """The smallest threshold on `signal` whose accuracy is within `points` (percentage points) of the
    signal's full-run accuracy."""
    block = calibration["signals"][signal]
    for row in block["thresholds"]:
        if row["accuracy"] >= block["accuracy_full_run"] - points / 100:
            return row
    return block["thresholds"][-1]


def calibration_files(folder: Path, base: str = "calibration.json") -> list[tuple[int, Path]]:
    """The folder's calibrations, oldest first: `calibration.json` is version 1, `calibration-N.json` N."""
    stem, suffix = Path(base).stem, Path(base).suffix
    found = [(1, folder / base)] if (folder / base).exists() else []
    for path in folder.glob(f"{stem}-*{suffix}"):
        number = path.name[len(stem) + 1 : -len(suffix)]
        if number.isdigit() and int(number) >= 2:
            found.append((int(number), path))
    return sorted(found)


def read_unlabeled(folder: Path, manifest: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Model inputs from a folder, and its provenance (file count and a SHA-256 over names and bytes).

    Image models: image files already at the model's input size, as the model's samples/ are (MNIST: a
    28x28 white digit on black); they are scaled to [0, 1] and normalised, the steps every preprocessing
    mode ends with. Camera photos need the server's `mnist-digit` cropping first, which this does not
    repeat. Any model: `.npy` files of already preprocessed inputs, shaped like one input or a batch.
    """
    spec = manifest["input"]
    shape = tuple(spec["shape"])
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"))
    if not files:
        raise SystemExit(f"--unlabeled {folder}: no image ({', '.join(IMAGE_SUFFIXES)}) or .npy files in it")
    digest = hashlib.sha256()
    inputs = []
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
        if path.suffix.lower() == ".npy":
            array = np.load(path).astype(np.float32)
            array = array.reshape(-1, *shape) if array.size % math.prod(shape) == 0 else array
            if array.shape[1:] != shape:
                raise SystemExit(f"--unlabeled {path}: shape {list(array.shape)} is not [n, *{list(shape)}]")
            inputs.append(array)
            continue
        if spec["kind"] != "image":
            raise SystemExit(f"--unlabeled {path}: model inputs are tensors; give .npy files")
        image = spec["image"]
        with Image.open(path) as opened:
            pixels = np.asarray(opened.convert("L" if image["channels"] == 1 else "RGB"), dtype=np.float32) / 255
        if pixels.shape[:2] != (image["height"], image["width"]):
            raise SystemExit(
                f"--unlabeled {path}: {pixels.shape[1]}x{pixels.shape[0]} pixels; images must already be "
                f"{image['width']}x{image['height']} like the model's samples/"
            )
        chw = pixels.reshape(image["height"], image["width"], -1).transpose(2, 0, 1)
        mean = np.array(image["normalize"]["mean"], dtype=np.float32)[:, None, None]
        std = np.array(image["normalize"]["std"], dtype=np.float32)[:, None, None]
        inputs.append(((chw - mean) / std)[None])
    batch = np.concatenate(inputs)
    provenance = {
        "kind": "unlabeled",
        "dir": str(folder.resolve()),
        "count": int(len(batch)),
        "files": len(files),
        "sha256": digest.hexdigest(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return batch, provenance


def calibrate_split(runner, split, name: str) -> dict[str, Any]:
    """The calibration of an exported model on a labelled split: accuracy and consistency, certified."""
    targets = split.targets.numpy().reshape(len(split.targets), 1, -1)
    out = model_outputs(runner, split.inputs.numpy())
    correct = (out["predictions"] == targets).mean(-1)
    data = {"kind": "labeled", "split": name, "count": int(len(correct))}
    return {"split": name, **calibrate(signals_of(out), correct, out["predictions"], data=data)}


def upgraded(calibration: dict[str, Any], path: Path) -> dict[str, Any]:
    """A calibration in this schema: a schema_version 2 file (certainty only, written before halting
    signals) is moved under `signals.certainty`; schema_version 1 certified nothing and must be redone."""
    version = calibration.get("schema_version")
    if version == SCHEMA_VERSION:
        return calibration
    if version != 2:
        raise SystemExit(f"{path}: schema_version {version}; rerun npm run calibrate -- --model ... --write first")
    block = {
        "accuracy_full_run": calibration["accuracy_most_certain"],
        "thresholds": calibration.pop("thresholds"),
        "guarantees": calibration.pop("guarantees"),
    }
    return {**calibration, "schema_version": SCHEMA_VERSION, "signals": {"certainty": block}}


def calibrate_unlabeled(model: Path, folder: Path, runner=None) -> Path:
    """Writes calibration-N.json beside the model: the newest calibration with consistency recalibrated.

    Accuracy needs labels, so its table and guarantees are carried over from the newest calibration;
    consistency (the early answer equals the answer after all ticks) is certified on `folder`'s inputs.
    """
    from .onnx_runner import OnnxCTM

    runner = runner or OnnxCTM(model)
    base = runner.manifest.get("calibration") or "calibration.json"
    existing = calibration_files(model, base)
    if not existing:
        raise SystemExit(f"{model}: no {base} to start from; export the model or run --write first")
    version, newest = existing[-1]
    calibration = upgraded(json.loads(newest.read_text()), newest)
    inputs, provenance = read_unlabeled(folder, runner.manifest)
    out = model_outputs(runner, inputs)
    for name, signal in signals_of(out).items():
        agreement = agreement_with_full_run(signal, out["predictions"])
        grid = SIGNAL_THRESHOLDS.get(name, THRESHOLDS)
        calibration["signals"][name]["guarantees"]["consistency"] = certify(signal, 1 - agreement, grid, provenance)
    calibration["derived_from"] = newest.name
    path = model / f"{Path(base).stem}-{version + 1}{Path(base).suffix}"
    path.write_text(json.dumps(calibration, indent=1) + "\n")
    return path


def resolve_model(name: str, models_dir: Path) -> Path:
    """A model folder, or a model name under models_dir (its highest version)."""
    path = Path(name)
    if (path / "manifest.json").exists():
        return path
    versions = [v for v in (models_dir / name).glob("*") if v.name.isdigit() and (v / "manifest.json").exists()]
    if not versions:
        raise SystemExit(f"--model {name}: neither a model folder nor a model under {models_dir}/")
    return max(versions, key=lambda v: int(v.name))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--evidence" in argv:
        from .calibration_evidence import main as evidence

        return evidence([a for a in argv if a != "--evidence"])

    from .onnx_runner import OnnxCTM
    from .tasks import get_task

    parser = argparse.ArgumentParser(
        prog="python -m ctm.calibrate",
        description=__doc__.split("\n\n")[0],
        epilog="--evidence [options] runs ctm.calibration_evidence instead (see --evidence --help)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="exported model folder, or a model name under --models-dir")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=REPO / "models",
        help="the model repository that --model names are looked up in",
    )
    parser.add_argument(
        "--split", default="validation", choices=("validation", "test"), help="which held-out split to calibrate on"
    )
    parser.add_argument("--write", action="store_true", help="rewrite calibration.json (validation split only)")
    parser.add_argument(
        "--unlabeled", type=Path, help="certify consistency on these inputs; writes calibration-N.json beside the model"
    )
    args = parser.parse_args(argv)
    model = resolve_model(args.model, args.models_dir)

    runner = OnnxCTM(model)
    if args.unlabeled:
        path = calibrate_unlabeled(model, args.unlabeled, runner)
        print(f"wrote {path}")
        return None
    task = get_task(runner.manifest["task"])
    result = calibrate_split(runner, task.split(runner.config, args.split), args.split)
    target = target_signal_of(runner, task)
    if target is not None:
        result["target_signal"] = target
        print(f"targets that name no signal: {target['signal']} ({target['rule']}: {target['mean_ticks']})")
    if args.write:
        if args.split != "validation":
            raise SystemExit("--write only rewrites the validation calibration")
        (model / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    for signal, block in result["signals"].items():
        print(f"signal {signal} (full run: accuracy {block['accuracy_full_run']:.4f})")
        for row in block["thresholds"]:
            print(
                f"{row['threshold']:>7}  accuracy {row['accuracy']:.4f}  consistency {row['consistency']:.4f}"
                f"  mean ticks {row['mean_ticks']:.2f}"
            )
    return None


if __name__ == "__main__":
    main()
