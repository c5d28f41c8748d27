"""Tasks: what a model learns, its default architecture and run settings, its data and its input spec.

A task is everything train, export and calibration need to know beyond the checkpoint itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import Tensor

from .config import CTMConfig
from .data import MNIST_MEAN, MNIST_STD, Split, augment_digits, mnist_split, parity_batch, parity_split
from .losses import dual_index_loss, maze_route_loss
from .maze import MOVES, maze_batch, maze_set


@dataclass(frozen=True)
class Task:
    name: str
    model: CTMConfig  # default architecture
    run: dict[str, Any]  # default RunConfig overrides
    labels: tuple[str, ...]
    input_spec: Callable[[CTMConfig], dict[str, Any]]  # manifest "input" section
    # None for the families we can import and serve but hold no data for (ctm.reference): no training,
    # and an export without calibration or samples.
    split: Callable[[CTMConfig, str], Split] | None
    train_batch: Callable[[CTMConfig, Split, int, torch.Generator, bool], tuple[Tensor, Tensor]] | None
    # (logits, certainty, targets, output_shape, use_most_certain) -> (loss, t1, t2)
    loss: Callable[..., tuple[Tensor, Tensor, Tensor]] = dual_index_loss


def _mnist_input_spec(config: CTMConfig) -> dict[str, Any]:
    channels, height, width = config.input_shape
    return {
        "kind": "image",
        "shape": list(config.input_shape),
        "dtype": "float32",
        "image": {
            "layout": "NCHW",
            "channels": channels,
            "height": height,
            "width": width,
            # Invert a light background, crop to the ink, fit into 20x20, centre by mass in 28x28:
            # how MNIST itself was made, so a dark digit photographed on white paper works.
            "preprocess": "mnist-digit",
            "normalize": {"mean": [MNIST_MEAN], "std": [MNIST_STD]},
        },
    }


def _mnist_train_batch(
    config: CTMConfig, train: Split, batch: int, generator: torch.Generator, augment: bool
) -> tuple[Tensor, Tensor]:
    index = torch.randint(0, len(train), (batch,), generator=generator)
    x = train.inputs[index]
    return (augment_digits(x, generator) if augment else x), train.targets[index]


def _parity_input_spec(config: CTMConfig) -> dict[str, Any]:
    return {
        "kind": "tensor",
        "shape": list(config.input_shape),
        "dtype": "float32",
        "tensor": {"values": [-1, 1]},
    }


def _parity_train_batch(
    config: CTMConfig, train: Split, batch: int, generator: torch.Generator, augment: bool
) -> tuple[Tensor, Tensor]:
    return parity_batch(batch, config.input_shape[0], generator)


def maze_input_spec(config: CTMConfig, expand_range: bool = True) -> dict[str, Any]:
    """The reference's maze input: RGB pixels in [-1, 1] (x * 2 - 1), or in [0, 1] for a run without
    --expand_range. Shared with `ctm.reference`, so an imported reference maze model and ours are
    preprocessed alike."""
    channels, height, width = config.input_shape
    mean, std = ([0.5] * channels, [0.5] * channels) if expand_range else ([0.0] * channels, [1.0] * channels)
    return {
        "kind": "image",
        "shape": list(config.input_shape),
        "dtype": "float32",
        "image": {
            "layout": "NCHW",
            "channels": channels,
            "height": height,
            "width": width,
            "preprocess": "resize",
            "normalize": {"mean": mean, "std": std},
        },
    }


def _maze_split(config: CTMConfig, name: str) -> Split:
    if name == "train":  # fresh mazes every step (`_maze_train_batch`); no fixed training set
        return Split(torch.empty(0, *config.input_shape), torch.empty(0, config.output_shape[0], dtype=torch.long))
    held = _cached_maze_set(config.input_shape[-1], config.output_shape[0], name, MAZE_HELD_OUT)
    return Split(held.inputs, held.targets)


def _maze_train_batch(
    config: CTMConfig, train: Split, batch: int, generator: torch.Generator, augment: bool
) -> tuple[Tensor, Tensor]:
    side, route_length = config.input_shape[-1], config.output_shape[0]
    return maze_batch(batch, side, route_length, generator, _held_out_mazes(side, route_length))


@cache
def _cached_maze_set(side: int, route_length: int, name: str, size: int):
    return maze_set(name, side, route_length, size)


def _held_out_mazes(side: int, route_length: int) -> frozenset[bytes]:
    """The validation and test pictures: training never draws one of them."""
    return _cached_held_out(side, route_length, MAZE_HELD_OUT)


@cache
def _cached_held_out(side: int, route_length: int, size: int) -> frozenset[bytes]:
    sets = [_cached_maze_set(side, route_length, name, size) for name in ("validation", "test")]
    return frozenset(m.pixels.tobytes() for held in sets for m in held.mazes)


PARITY_LENGTH = 16
MAZE_SIDE = 15  # pixels: 7 x 7 cells
MAZE_ROUTE_LENGTH = 20  # moves: routes of up to 10 cell steps
MAZE_HELD_OUT = 1000  # validation and test mazes each (tests make it smaller)

TASKS = {
    "mnist": Task(
        name="mnist",
        # The reference MNIST tutorial's CTM (D=128, M=15, depth-1 synapses, deep NLMs with H=8) with
        # a wider attention (4 heads of 16), random-pairing synchronisation (128 output / 64 action
        # pairs), 15 ticks and dropout 0.1. In side-by-side 300-step runs at 20 ticks, 4 heads with
        # 64/32 random pairs reached 87% validation accuracy against 83% for the tutorial's 1 head and
        # 16/16 dense pairs; docs/training.md records the full runs that led to these settings.
        model=CTMConfig(
            iterations=15,
            d_input=64,
            heads=4,
            neuron_select_type="random-pairing",
            n_synch_out=128,
            n_synch_action=64,
            n_random_pairing_self=8,
            dropout=0.1,  # 8k training digits: without it the model fits them all and generalises less
            halting_hidden=64,  # the halting head the server halts on (docs/models.md)
        ),
        # batch_size is per process (1 process of 1 thread trains the shipped model; docs/training.md).
        run={
            "steps": 6000,
            "batch_size": 64,
            "lr": 1.5e-3,
            "warmup_steps": 200,
            "augment": True,
            "hold_weight": 0.5,
            "compile": True,
        },
        labels=tuple(str(d) for d in range(10)),
        input_spec=_mnist_input_spec,
        split=lambda config, name: mnist_split(name),
        train_batch=_mnist_train_batch,
    ),
    "parity": Task(
        name="parity",
        model=CTMConfig(
            iterations=20,
            d_model=128,
            d_input=32,
            heads=2,
            n_synch_out=32,
            n_synch_action=32,
            neuron_select_type="random-pairing",
            n_random_pairing_self=4,
            synapse_depth=4,
            memory_length=8,
            memory_hidden_dims=8,
            output_shape=(PARITY_LENGTH, 2),
            backbone="parity-embedding",
            input_shape=(PARITY_LENGTH,),
        ),
        run={"steps": 2000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "augment": False},
        labels=("even", "odd"),
        input_spec=_parity_input_spec,
        split=lambda config, name: _cached_parity_split(config.input_shape[0], name),
        train_batch=_parity_train_batch,
    ),
    "maze": Task(
        name="maze",
        # The reference's maze family (truncated ResNet, first-last synchronisation, one output per route
        # position with certainty averaged over positions), small enough for 2 CPU cores; docs/training.md.
        model=CTMConfig(
            iterations=30,
            d_model=256,
            d_input=64,
            heads=4,
            n_synch_out=32,
            n_synch_action=16,
            neuron_select_type="first-last",
            synapse_depth=1,
            memory_length=15,
            memory_hidden_dims=8,
            output_shape=(MAZE_ROUTE_LENGTH, len(MOVES)),
            backbone="resnet18-1",
            positional_embedding="learnable-fourier",
            input_shape=(3, MAZE_SIDE, MAZE_SIDE),
            halting_hidden=64,
        ),
        # The shipped model's last run (docs/training.md): batch 64, the hold term so that more thought
        # never costs the route, the tick compiled; 20,000 steps from scratch.
        run={
            "steps": 20000,
            "batch_size": 64,
            "lr": 1e-3,
            "warmup_steps": 500,
            "augment": False,
            "eval_every": 1000,
            "hold_weight": 0.5,
            "compile": True,
        },
        labels=MOVES,
        input_spec=maze_input_spec,
        split=_maze_split,
        train_batch=_maze_train_batch,
        loss=maze_route_loss,
    ),
}


@cache
def _cached_parity_split(length: int, name: str) -> Split:
    return parity_split(name, length)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]
