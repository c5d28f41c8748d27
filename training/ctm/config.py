"""Model hyperparameters, defined once and shared by training, export and tests.

`CTMConfig` is frozen: a run's architecture is fixed the moment it is built. Overrides are strict, the
way nanoGPT's configurator is: an unknown key or a value of the wrong type is an error naming the key,
never a silently ignored typo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_origin, get_type_hints

NEURON_SELECT_TYPES = ("first-last", "random", "random-pairing")
RESNET_BACKBONES = tuple(f"resnet{depth}-{stages}" for depth in (18, 34, 50, 101, 152) for stages in (1, 2, 3, 4))
# Ours (mnist-conv is the reference MNIST tutorial's, parity-embedding our parity task's), then the reference's.
BACKBONES = ("mnist-conv", "parity-embedding", *RESNET_BACKBONES, "shallow-wide", "parity_backbone", "none")
POSITIONAL_EMBEDDINGS = (
    "none",
    "learnable-fourier",
    "multi-learnable-fourier",
    "custom-rotational",
    "custom-rotational-1d",
)


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class CTMConfig:
    """Architecture of a Continuous Thought Machine (symbols as in the paper).

    D = d_model neurons, M = memory_length, T = iterations (internal ticks).
    """

    iterations: int = 30  # T: internal ticks the model was trained to think for
    d_model: int = 128  # D: number of neurons
    d_input: int = 32  # width of attention tokens (K/V) and of the query
    heads: int = 1  # attention heads
    n_synch_out: int = 16  # neurons (or pairs) in the output synchronisation
    n_synch_action: int = 16  # neurons (or pairs) in the action synchronisation
    neuron_select_type: str = "first-last"
    n_random_pairing_self: int = 0  # self-pairs among random pairs (random-pairing only)
    synapse_depth: int = 1  # 1: Linear+GLU+LayerNorm; k > 1: U-Net MLP of depth k
    memory_length: int = 15  # M: length of each neuron's pre-activation trace
    deep_nlms: bool = True  # two-layer private MLP per neuron (else one layer)
    memory_hidden_dims: int = 8  # H: hidden width of the deep neuron-level models
    do_layernorm_nlm: bool = False
    dropout: float = 0.0
    dropout_nlm: float | None = None  # None: same as dropout
    output_shape: tuple[int, ...] = (10,)  # (classes,) or (positions, classes)
    backbone: str = "mnist-conv"
    positional_embedding: str = "none"  # added to the backbone's feature map before it becomes tokens
    input_shape: tuple[int, ...] = (1, 28, 28)  # one item, without the batch dimension
    index_seed: int = 0  # seeds the random neuron selections (stored as buffers anyway)
    unet_min_width: int = field(default=16)  # bottleneck width of the synapse U-Net
    halting_hidden: int = 0  # hidden width of the halting head (model.HaltingHead); 0: no head

    def __post_init__(self) -> None:
        positive = ("iterations", "d_model", "d_input", "heads", "n_synch_out", "n_synch_action")
        positive += ("synapse_depth", "memory_length", "memory_hidden_dims", "unet_min_width")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.halting_hidden < 0:
            raise ConfigError(f"halting_hidden must be >= 0 (0: no halting head), got {self.halting_hidden}")
        if self.neuron_select_type not in NEURON_SELECT_TYPES:
            raise ConfigError(
                f"neuron_select_type must be one of {NEURON_SELECT_TYPES}, got {self.neuron_select_type!r}"
            )
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.positional_embedding not in POSITIONAL_EMBEDDINGS:
            raise ConfigError(
                f"positional_embedding must be one of {', '.join(POSITIONAL_EMBEDDINGS)}, got {self.positional_embedding!r}"
            )
        if self.backbone == "none" and self.positional_embedding != "none":
            raise ConfigError("positional_embedding must be 'none' when backbone is 'none' (there is no feature map)")
        if (self.backbone in RESNET_BACKBONES or self.backbone in ("shallow-wide", "mnist-conv", "none")) and len(
            self.input_shape
        ) != 3:
            raise ConfigError(
                f"backbone {self.backbone!r} needs input_shape (channels, height, width), got {self.input_shape}"
            )
        if self.positional_embedding == "custom-rotational-1d" and len(self.input_shape) != 1:
            raise ConfigError(
                f"positional_embedding custom-rotational-1d needs a sequence input, got {self.input_shape}"
            )
        if self.d_input % self.heads:
            raise ConfigError(f"d_input ({self.d_input}) must be divisible by heads ({self.heads})")
        for name in ("n_synch_out", "n_synch_action"):
            if getattr(self, name) > self.d_model and self.neuron_select_type != "random-pairing":
                raise ConfigError(f"{name} must be <= d_model ({self.d_model}), got {getattr(self, name)}")
        if self.neuron_select_type == "random-pairing":
            smallest = min(self.n_synch_out, self.n_synch_action)
            if not 0 <= self.n_random_pairing_self <= smallest:
                raise ConfigError(f"n_random_pairing_self must be in [0, {smallest}], got {self.n_random_pairing_self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.output_shape or any(n < 1 for n in self.output_shape) or len(self.output_shape) > 2:
            raise ConfigError(f"output_shape must be (classes,) or (positions, classes), got {self.output_shape}")
        if self.output_shape[-1] < 2:
            raise ConfigError(f"output_shape must have at least 2 classes, got {self.output_shape}")

    @property
    def out_dims(self) -> int:
        """Width of the output projection: all positions' logits, flattened."""
        return math.prod(self.output_shape)

    @property
    def synch_size_out(self) -> int:
        return synch_representation_size(self.neuron_select_type, self.n_synch_out)

    @property
    def synch_size_action(self) -> int:
        return synch_representation_size(self.neuron_select_type, self.n_synch_action)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so a checkpoint holding it loads with `weights_only=True`."""
        out = dataclasses.asdict(self)
        out["output_shape"] = list(self.output_shape)
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CTMConfig:
        return cls().replace(**values)

    def replace(self, **overrides: Any) -> CTMConfig:
        """A copy with `overrides` applied; unknown keys and wrong types are errors naming the key."""
        return dataclasses.replace(self, **coerce_fields(type(self), overrides))


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """["key=value", ...] from repeated --set flags -> {key: value}; values are coerced by `replace`."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def synch_representation_size(neuron_select_type: str, n_synch: int) -> int:
    """Length of a synchronisation vector: all upper-triangle pairs, or n explicit pairs."""
    if neuron_select_type == "random-pairing":
        return n_synch
    return n_synch * (n_synch + 1) // 2


def coerce_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Check `values` against the dataclass `cls`; convert lists to tuples and ints to floats.

    Accepts the strings a command line gives ("true", "3", "1e-3", "16,2") as well as JSON values.
    """
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown {cls.__name__} key {key!r}; known keys: {', '.join(sorted(known))}")
        out[key] = _coerce(key, value, hints[key])
    return out


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if args and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list of integers, got {value!r}")
        return tuple(_coerce(key, v, args[0]) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise ConfigError(f"{key} must be a boolean, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key} has an unsupported type {hint!r}. This is a bug.")


@dataclass(frozen=True)
class RunConfig:
    """How a model is trained (not what it is). Stored in every checkpoint."""

    task: str = "mnist"
    steps: int = 3000
    batch_size: int = 64  # per process
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200  # linear warmup, then cosine decay to zero at `steps`
    grad_clip: float = 5.0  # max global gradient norm; 0 disables clipping
    seed: int = 0
    augment: bool = True
    use_most_certain: bool = True  # dual-index loss: most certain tick (else the last tick)
    # Weight of the "hold" term: the mean loss over the ticks after the best one, so that an answer,
    # once found, is kept rather than lost with more thought. 0: the reference's loss exactly.
    hold_weight: float = 0.0
    # Weight of the mean loss over every tick (deep supervision, as early-exit networks train every
    # exit): easy inputs answered early and kept. 0: off.
    every_tick_weight: float = 0.0
    halting_weight: float = 1.0  # weight of the halting head's loss (models with halting_hidden > 0)
    compile: bool = False  # torch.compile the tick (faster steps after a ~40 s compile; docs/training.md)
    eval_every: int = 500
    checkpoint_every: int = 500
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip}")
        for name in ("hold_weight", "every_tick_weight", "halting_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> RunConfig:
        return dataclasses.replace(self, **coerce_fields(type(self), overrides))
