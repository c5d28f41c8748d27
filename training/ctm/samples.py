"""Held-out test inputs written beside an exported model, for the load test and the server's tests.

Each entry records `split_index`, its position in the test split.
Image tasks: 8-bit PNG files in the task's own format (MNIST: 28x28 grayscale, white digit on black,
taken in turn from each class of the test split; mazes: the RGB maze picture, labelled with its route
as moves). Tensor tasks: the raw inputs inline in labels.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import CTMConfig
from .data import mnist_pixels
from .tasks import Task


def balanced_order(labels: np.ndarray) -> list[int]:
    """Indices that cycle through the classes (0, 1, ..., 9, 0, 1, ...), in split order within a class."""
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = []
    while any(by_class):
        order += [indices.pop(0) for indices in by_class if indices]
    return order


def write_samples(task: Task, config: CTMConfig, folder: Path, count: int) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    index: list[dict[str, Any]] = []
    if task.name == "maze":
        test = task.split(config, "test")
        pictures = ((test.inputs[:count] + 1) / 2 * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for n, picture in enumerate(pictures):
            name = f"{n:04d}.png"
            Image.fromarray(picture, mode="RGB").save(folder / name)
            index.append({"file": name, "label": test.targets[n].tolist(), "split_index": n})
    elif task.input_spec(config)["kind"] == "image":
        pixels, labels = mnist_pixels("test")
        for n, i in enumerate(balanced_order(labels)[:count]):
            name = f"{n:04d}_{labels[i]}.png"
            Image.fromarray(np.round(pixels[i] * 255).astype(np.uint8), mode="L").save(folder / name)
            index.append({"file": name, "label": int(labels[i]), "split_index": int(i)})
    else:
        test = task.split(config, "test")
        for n in range(min(count, len(test))):
            index.append(
                {
                    "tensor": test.inputs[n].tolist(),
                    "shape": list(test.inputs.shape[1:]),
                    "label": test.targets[n].tolist(),
                    "split_index": n,
                }
            )
    (folder / "labels.json").write_text(json.dumps(index, indent=0 if index and "tensor" in index[0] else 1) + "\n")
    return index
