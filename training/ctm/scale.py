"""Random-weight CTMs at the paper's sizes, exported to model folders for `npm run bench:scale`.

    python -m ctm.scale --preset imagenet --out .cache/scale/imagenet/1 [--external-data] [--force]

The shapes and the compute are what the benchmark measures, so the weights are PyTorch's default
initialisation and nothing is trained. Each preset is one family as the reference trains it (its
`train_imagenet.sh` and `mazes/train_ctm.sh`), or our shipped MNIST architecture; a `tiny-*` preset
keeps its family's backbone kind, input, output layout and pairing with small widths, for the tests.

Prints one JSON line: the folder, the export's seconds, the graph files and their bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from .config import CTMConfig
from .export import build_manifest, export_graphs, write_model_folder
from .fixtures import write_golden
from .model import CTM
from .reference import family_task
from .tasks import Task, get_task

IMAGENET = CTMConfig(
    iterations=50,
    d_model=4096,
    d_input=1024,
    heads=16,
    synapse_depth=8,
    n_synch_out=8196,
    n_synch_action=2048,
    neuron_select_type="random-pairing",
    n_random_pairing_self=32,
    memory_length=25,
    deep_nlms=True,
    memory_hidden_dims=64,
    backbone="resnet152-4",
    input_shape=(3, 224, 224),
    output_shape=(1000,),
)
MAZE = CTMConfig(
    iterations=75,
    d_model=2048,
    d_input=512,
    heads=16,
    synapse_depth=8,
    n_synch_out=64,
    n_synch_action=32,
    neuron_select_type="first-last",
    memory_length=25,
    deep_nlms=True,
    memory_hidden_dims=32,
    backbone="resnet34-2",
    input_shape=(3, 39, 39),  # mazes-medium, as the reference's maze images
    output_shape=(100, 5),
)
MNIST = get_task("mnist").model

PRESETS: dict[str, tuple[str, CTMConfig]] = {
    "imagenet": ("imagenet", IMAGENET),
    "maze": ("mazes-medium", MAZE),
    "mnist": ("mnist", MNIST),
    # Each family's tiny twin: same backbone kind, input, output layout and pairing; small widths.
    "tiny-imagenet": (
        "imagenet",
        IMAGENET.replace(
            iterations=6,
            d_model=32,
            d_input=16,
            heads=2,
            synapse_depth=4,
            n_synch_out=24,
            n_synch_action=12,
            n_random_pairing_self=4,
            memory_length=5,
            memory_hidden_dims=4,
            backbone="resnet18-1",
            input_shape=(3, 32, 32),
            output_shape=(10,),
        ),
    ),  # fmt: skip
    "tiny-maze": (
        "mazes-medium",
        MAZE.replace(
            iterations=6,
            d_model=32,
            d_input=16,
            heads=2,
            synapse_depth=4,
            n_synch_out=8,
            n_synch_action=4,
            memory_length=5,
            memory_hidden_dims=4,
            backbone="resnet18-1",
            input_shape=(3, 15, 15),
            output_shape=(6, 5),
        ),
    ),  # fmt: skip
    "tiny-mnist": ("mnist", MNIST.replace(iterations=6, d_model=32, d_input=16, n_synch_out=16, n_synch_action=8)),
}


def preset_task(family: str, config: CTMConfig) -> Task:
    if family == "mnist":
        return get_task("mnist")
    return family_task(family, config, {"expand_range": True}, None)


def build(preset: str, out: Path, external_data: bool = False, golden: int = 0, seed: int = 0) -> dict[str, Any]:
    """Export a random-weight model of `preset` to `out`; returns what was written and how long it took."""
    family, config = PRESETS[preset]
    task = preset_task(family, config)
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = CTM(config).eval()
    build_seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())

    def write(staging: Path) -> dict[str, Any]:
        export_graphs(model, staging, external_data=True if external_data else None)
        source = {"format": "ctm-serve/scale-preset", "preset": preset, "family": family, "seed": seed}
        manifest = build_manifest(model, task, f"scale-{preset}", 1, source, staging)
        for key in ("golden", "calibration", "samples"):  # random weights: nothing to calibrate or sample
            manifest.pop(key, None)
        if golden > 0:
            # Synthetic inputs for every family: the benchmark needs no data set.
            write_golden(model, dataclasses.replace(task, split=None), staging, [], manifest["name"], 1, golden)
            manifest["golden"] = "golden.json"
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    started = time.perf_counter()
    write_model_folder(out, write)
    export_seconds = time.perf_counter() - started
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return {
        "preset": preset,
        "family": family,
        "folder": str(out),
        "parameters": parameters,
        "build_seconds": round(build_seconds, 3),
        "export_seconds": round(export_seconds, 3),
        "files": files,
        "architecture": config.to_dict(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ctm.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=PRESETS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="model folder, e.g. .cache/scale/imagenet/1")
    parser.add_argument(
        "--external-data", action="store_true", help="store every graph's weights in a .data file beside it, "
        "as a graph over protobuf's 2 GB limit must be (larger graphs get one anyway)"
    )  # fmt: skip
    parser.add_argument("--golden", type=int, default=0, help="golden.json cases (PyTorch per tick); 0: none")
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise SystemExit(f"{args.out} exists and is not empty; pass --force to replace it")
    print(json.dumps(build(args.preset, args.out, args.external_data, args.golden)))


if __name__ == "__main__":
    main()
