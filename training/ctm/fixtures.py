"""Golden fixtures: PyTorch's per-tick outputs for a few inputs, so that every runtime can be held to them.

    python -m ctm.fixtures models/mnist-ctm/1 [--count 3]

rewrites golden.json of a model folder from its checkpoint.pt. The inputs are the first samples of the
folder (raw tensors, already normalised: what the encoder takes), so a test can also send the sample
file itself. The Python tests hold onnxruntime to these values and the server's tests hold
onnxruntime-node to them, within 1e-4.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .model import CTM
from .tasks import Task


@torch.no_grad()
def golden_cases(model: CTM, inputs: Tensor, labels: Tensor) -> list[dict[str, Any]]:
    """Per-tick logits, certainty, probabilities, attention (flattened heads x tokens) and, for a model
    with a halting head, its halting signal, for a batch of raw-tensor inputs."""
    model.eval()
    logits, certainty, halt = model.think(inputs)  # (B, out, T), (B, T), (B, T) or (B, 0)
    k, v = model.encode(inputs)
    state, attention = model.initial_state(len(inputs)), []
    for _ in range(model.config.iterations):
        attention.append(model.attention_map(k, state).flatten(1))  # (B, heads * N)
        state, _, _ = model.tick(k, v, state)
    classes = model.config.output_shape[-1]
    probabilities = logits.transpose(1, 2).unflatten(-1, (-1, classes)).softmax(-1).flatten(2)  # (B, T, out)
    cases = [
        {
            "input_shape": list(inputs.shape[1:]),
            "input": inputs[i].flatten().tolist(),
            "label": labels[i].tolist(),
            "logits": logits[i].T.tolist(),
            "certainty": certainty[i].tolist(),
            "probabilities": probabilities[i].tolist(),
            "attention": [a[i].tolist() for a in attention],
        }
        for i in range(len(inputs))
    ]
    if halt.shape[-1]:
        for case, row in zip(cases, torch.sigmoid(halt), strict=True):
            case["halt"] = row.tolist()
    return cases


def synthetic_inputs(input_spec: dict[str, Any], count: int, seed: int = 0) -> Tensor:
    """`count` seeded random inputs as the encoder takes them (images: normalised uniform pixels)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *input_spec["shape"])
    if input_spec["kind"] != "image":
        values = torch.tensor(input_spec.get("tensor", {}).get("values", [-1.0, 1.0]), dtype=torch.float32)
        return values[torch.randint(0, len(values), shape, generator=generator)]
    normalize = input_spec["image"]["normalize"]
    mean = torch.tensor(normalize["mean"]).view(-1, 1, 1)
    std = torch.tensor(normalize["std"]).view(-1, 1, 1)
    return (torch.rand(shape, generator=generator) - mean) / std


def write_golden(
    model: CTM, task: Task, folder: Path, samples: list[dict[str, Any]], name: str, version: int, count: int = 3
) -> None:
    """Write golden.json for the first `count` samples (entries of samples/labels.json).

    A task without data (an imported CIFAR, ImageNet or maze model) gets `count` synthetic inputs instead:
    uniform random pixels, normalised as the manifest says, with no label.
    """
    if task.split is None:
        inputs = synthetic_inputs(task.input_spec(model.config), count)
        cases = golden_cases(model, inputs, torch.full((count,), -1))
        for case in cases:
            case["label"], case["sample"] = None, None
    else:
        chosen = samples[:count]
        test = task.split(model.config, "test")
        rows = torch.tensor([sample["split_index"] for sample in chosen], dtype=torch.long)
        cases = golden_cases(model, test.inputs[rows], test.targets[rows])
        for case, sample in zip(cases, chosen, strict=True):
            case["sample"] = f"samples/{sample['file']}" if "file" in sample else None
    document = {
        "model": name,
        "version": version,
        "ticks": model.config.iterations,
        "output_shape": list(model.config.output_shape),
        "cases": cases,
    }
    (folder / "golden.json").write_text(json.dumps(document) + "\n")


def main(argv: list[str] | None = None) -> None:
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .tasks import get_task

    parser = argparse.ArgumentParser(prog="python -m ctm.fixtures", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="exported model folder (with checkpoint.pt and samples/)")
    parser.add_argument("--count", type=int, default=3, help="how many samples to write")
    args = parser.parse_args(argv)
    manifest = json.loads((args.model / "manifest.json").read_text())
    model = model_from_checkpoint(load_checkpoint(args.model / "checkpoint.pt"))
    samples = json.loads((args.model / "samples" / "labels.json").read_text())
    write_golden(
        model, get_task(manifest["task"]), args.model, samples, manifest["name"], manifest["version"], args.count
    )
    print(f"wrote {args.model / 'golden.json'} ({args.count} cases)")


if __name__ == "__main__":
    main()
