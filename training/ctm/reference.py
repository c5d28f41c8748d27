"""Import a checkpoint written by the reference implementation (SakanaAI/continuous-thought-machines).

Where each architecture field comes from, in this order:
1. A training checkpoint (`{"model_state_dict": ..., "args": Namespace, ...}`, as its task scripts save
   it): everything from `args`, including the task family (`args.dataset`), the input size and output
   shape. `--set KEY=VALUE` still overrides, with a warning; `heads` cannot be overridden, since no
   weight shape shows it and a different count computes a different function.
2. A bare state_dict: everything the weights' shapes and key names determine is derived from them
   (D, d_input, M, NLM depth and width, NLM layernorm, synapse depth, synchronisation sizes and
   pairing, output width, backbone and positional embedding, input channels). What they cannot tell
   must be given: `--set heads=N --set iterations=T`, and `--task` (the reference's dataset name) where
   the backbone does not decide it. Nothing is defaulted silently.
Either way, a value that contradicts the weights is an error naming both values and the key.

Layouts: the reference package's (`models/ctm.py`) and the MNIST tutorial notebook's (`synapses.0/2`,
`trace_processor.0/2`, no temperature `T`), which is renamed to the package's on import with T = 1
(the notebook divides by nothing: the same function). Prefixes from DDP (`module.`) and torch.compile
(`_orig_mod.`) are dropped.

The sort model (`models/ctm_sort.py`) is a different class: no attention and no action
synchronisation, the raw input concatenated into every synapse step, and an answer read by CTC
decoding over all ticks rather than at one tick, which the server's per-tick halting does not fit.
It is refused with that reason, as are the LSTM/feed-forward baselines and the QA-MNIST and RL models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .backbones import RESNET_STAGE_BLOCKS, backbone_channels, resnet_spec
from .checkpoint import CheckpointError, check_state_dict
from .config import RESNET_BACKBONES, ConfigError, CTMConfig, coerce_fields
from .data import MNIST_MEAN, MNIST_STD, Split
from .maze import MOVES
from .model import CTM
from .safe_load import UnsafeCheckpointError, load_reference_file
from .tasks import Task, get_task, maze_input_spec

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MAZE_MOVES = MOVES  # the reference's route encoding 0..4
# Normalisation constants as the reference's image_classification/train.py applies them.
CIFAR10_MEAN, CIFAR10_STD = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.5070751592371341, 0.48654887331495067, 0.4409178433670344)
CIFAR100_STD = (0.2673342858792403, 0.2564384629170882, 0.27615047132568393)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_RESIZE, IMAGENET_CROP = 256, 224  # Resize(256) then CenterCrop(224) at test time

# args key -> CTMConfig field, as the reference scripts pass them to ContinuousThoughtMachine.
ARGS_FIELDS = {
    "iterations": "iterations",
    "d_model": "d_model",
    "d_input": "d_input",
    "heads": "heads",
    "n_synch_out": "n_synch_out",
    "n_synch_action": "n_synch_action",
    "synapse_depth": "synapse_depth",
    "memory_length": "memory_length",
    "deep_memory": "deep_nlms",
    "memory_hidden_dims": "memory_hidden_dims",
    "do_normalisation": "do_layernorm_nlm",
    "backbone_type": "backbone",
    "positional_embedding_type": "positional_embedding",
    "dropout": "dropout",
    "neuron_select_type": "neuron_select_type",
    "n_random_pairing_self": "n_random_pairing_self",
}
IMPORT_SETTINGS = ("expand_range",)  # --set keys that are not CTMConfig fields (mazes' input range)
FAMILIES = ("cifar10", "cifar100", "imagenet", "mazes-small", "mazes-medium", "mazes-large", "parity")
FAMILIES += ("mnist", "mnist-tutorial")


@dataclass
class ReferenceImport:
    model: CTM
    task: Task
    source: dict[str, Any]  # recorded in the manifest: format, family, layout, where each field came from
    warnings: list[str]


# ---------------------------------------------------------------- the file


def split_payload(payload: Any, path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(state_dict, args as a dict or None) from a training checkpoint or a bare state_dict."""
    if isinstance(payload, dict) and str(payload.get("format", "")).startswith("ctm-serve/"):
        raise CheckpointError(f"{path}: a ctm-serve checkpoint; export it with --checkpoint, not --reference")
    if isinstance(payload, dict) and "model_state_dict" in payload:
        state, args = payload["model_state_dict"], payload.get("args")
        if isinstance(args, argparse.Namespace):
            args = vars(args)
        elif args is not None and not isinstance(args, dict):
            raise CheckpointError(f"{path}: 'args' is a {type(args).__name__}, expected an argparse Namespace")
    else:
        state, args = payload, None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors, or a dict with 'model_state_dict'")
    return dict(state), args


def normalise_layout(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Drop DDP/compile prefixes; rename the tutorial notebook's layout to the package's. Returns the layout."""
    state = {
        re.sub(r"(^module\.|\._orig_mod(?=\.))", "", key).removeprefix("_orig_mod."): v for key, v in state.items()
    }
    if "synapses.0.weight" not in state or "trace_processor.0.w1" not in state:
        return state, "reference"
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        key = re.sub(r"^synapses\.0\.", "synapses.1.", key)  # the package has Dropout at index 0
        key = re.sub(r"^synapses\.2\.", "synapses.3.", key)
        key = re.sub(r"^trace_processor\.(\d)\.", r"trace_processor.0.\1.", key)  # one more Sequential level
        renamed[key] = value
    for layer in ("0", "2"):  # the notebook's SuperLinear has no temperature: T = 1 is the same function
        if f"trace_processor.0.{layer}.w1" in renamed:
            renamed[f"trace_processor.0.{layer}.T"] = torch.ones(1)
    return renamed, "tutorial"


# ---------------------------------------------------------------- what the weights say


@dataclass(frozen=True)
class Fact:
    value: Any
    evidence: str  # the key (and shape) that shows it


def _need(state: dict[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise CheckpointError(f"reference state_dict is missing key {key!r}")
    return state[key]


def _shape(state: dict[str, Tensor], key: str) -> str:
    return f"{key} has shape {list(state[key].shape)}"


def detect_backbone(state: dict[str, Tensor]) -> Fact:
    keys = set(state)
    if "backbone.layer1.0.conv1.weight" in keys:
        bottleneck = "backbone.layer1.0.conv3.weight" in keys
        stages = max(int(m.group(1)) for k in keys if (m := re.match(r"backbone\.layer(\d)\.", k)))
        blocks = [len({k.split(".")[2] for k in keys if k.startswith(f"backbone.layer{s}.")}) for s in range(1, 5)]
        candidates = [
            depth
            for depth, counts in RESNET_STAGE_BLOCKS.items()
            if (depth >= 50) == bottleneck and list(counts[:stages]) == blocks[:stages]
        ]
        if not candidates:
            raise CheckpointError(f"backbone.layer*: {blocks[:stages]} blocks per stage match no reference ResNet")
        # resnet50/101/152 truncated before stage 3 are the same network; the smallest name stands for all.
        return Fact(f"resnet{candidates[0]}-{stages}", f"backbone.layer1..{stages} with {blocks[:stages]} blocks")
    if "backbone.layers.0.weight" in keys and "backbone.layers.3.weight" in keys:
        return Fact("shallow-wide", _shape(state, "backbone.layers.0.weight"))
    if "backbone.embedding.weight" in keys:
        name = "parity-embedding" if "backbone.positional_embedding" in keys else "parity_backbone"
        return Fact(name, "backbone.embedding.weight")
    if "backbone.0.weight" in keys and "backbone.4.weight" in keys:
        return Fact("mnist-conv", _shape(state, "backbone.0.weight"))
    unknown = sorted(k for k in keys if k.startswith("backbone."))
    if unknown:
        raise CheckpointError(f"unknown backbone: keys {unknown[:3]} match none of the reference's backbones")
    return Fact("none", "no backbone.* keys")


def detect_positional_embedding(state: dict[str, Tensor]) -> Fact:
    keys = set(state)
    if "positional_embedding.Wr.weight" in keys:
        return Fact("learnable-fourier", "positional_embedding.Wr.weight")
    if "positional_embedding.combination" in keys:
        return Fact("multi-learnable-fourier", "positional_embedding.combination")
    if "positional_embedding.start_vector" in keys:
        return Fact("custom-rotational", "positional_embedding.start_vector")
    if "positional_embedding.projection.weight" in keys:
        return Fact("custom-rotational-1d", "positional_embedding.projection.weight")
    unknown = sorted(k for k in keys if k.startswith("positional_embedding."))
    if unknown:
        raise CheckpointError(f"unknown positional embedding: keys {unknown[:3]} match none of the reference's")
    return Fact("none", "no positional_embedding.* keys")


def shape_facts(state: dict[str, Tensor]) -> dict[str, Fact]:
    """Every architecture field the weights' shapes and key names determine."""
    d_model, memory = _need(state, "start_trace").shape
    kv = _need(state, "kv_proj.0.weight")
    deep = "trace_processor.0.2.w1" in state
    facts = {
        "d_model": Fact(int(d_model), _shape(state, "start_trace")),
        "memory_length": Fact(int(memory), _shape(state, "start_trace")),
        "d_input": Fact(int(kv.shape[0]), _shape(state, "kv_proj.0.weight")),
        "deep_nlms": Fact(deep, "trace_processor.0.2.w1 " + ("present" if deep else "absent")),
        "do_layernorm_nlm": Fact(
            "trace_processor.0.0.layernorm.weight" in state, "trace_processor.0.0.layernorm.weight present or not"
        ),
        "out_dims": Fact(
            int(_need(state, "output_projector.0.weight").shape[0]), _shape(state, "output_projector.0.weight")
        ),
        "backbone": detect_backbone(state),
        "positional_embedding": detect_positional_embedding(state),
    }
    if deep:
        w1 = _need(state, "trace_processor.0.0.w1")
        facts["memory_hidden_dims"] = Fact(int(w1.shape[1]) // 2, _shape(state, "trace_processor.0.0.w1"))
    if "synapses.1.weight" in state:
        facts["synapse_depth"] = Fact(1, "synapses.1.weight (a single linear layer)")
    else:
        _need(state, "synapses.first_projection.0.weight")
        downs = {k.split(".")[2] for k in state if k.startswith("synapses.down_projections.")}
        facts["synapse_depth"] = Fact(len(downs) + 1, f"{len(downs)} synapses.down_projections")

    all_pairs = {}
    for kind in ("out", "action"):
        left = _need(state, f"{kind}_neuron_indices_left")
        n, size = len(left), _need(state, f"decay_params_{kind}").shape[0]
        facts[f"n_synch_{kind}"] = Fact(n, _shape(state, f"{kind}_neuron_indices_left"))
        evidence = _shape(state, f"decay_params_{kind}")
        if size == n * (n + 1) // 2 and n > 1:
            all_pairs[kind] = Fact(True, evidence)
        elif size == n:
            all_pairs[kind] = Fact(n == 1, evidence)  # one neuron: one pair either way
        else:
            raise CheckpointError(
                f"decay_params_{kind} has {size} entries; {n} neurons allow {n} (random-pairing) "
                f"or {n * (n + 1) // 2} (all pairs)"
            )
    if (
        all_pairs["out"].value != all_pairs["action"].value
        and max(facts["n_synch_out"].value, facts["n_synch_action"].value) > 1
    ):
        raise CheckpointError("output and action synchronisation disagree on the pairing (all pairs vs random pairs)")
    facts["all_pairs"] = all_pairs["out"]

    backbone = facts["backbone"].value
    if backbone in RESNET_BACKBONES:
        facts["input_channels"] = Fact(
            int(_need(state, "initial_rgb.weight").shape[1]), _shape(state, "initial_rgb.weight")
        )
    elif backbone == "shallow-wide":
        facts["input_channels"] = Fact(
            int(state["backbone.layers.0.weight"].shape[1]), _shape(state, "backbone.layers.0.weight")
        )
    elif backbone == "mnist-conv":
        facts["input_channels"] = Fact(int(state["backbone.0.weight"].shape[1]), _shape(state, "backbone.0.weight"))
    elif backbone == "none":
        facts["input_channels"] = Fact(int(kv.shape[1]), _shape(state, "kv_proj.0.weight"))
    facts["backbone_channels"] = Fact(int(kv.shape[1]), _shape(state, "kv_proj.0.weight"))
    return facts


def pairing_from_indices(state: dict[str, Tensor], all_pairs: bool, d_model: int) -> tuple[str, int]:
    """neuron_select_type and n_random_pairing_self as far as the stored indices show them.

    Both only decide which indices a new model draws; the stored indices are what the model computes with.
    """
    if not all_pairs:
        left, right = state["out_neuron_indices_left"], state["out_neuron_indices_right"]
        n_self = 0
        while (
            n_self < len(left) and n_self < len(state["action_neuron_indices_left"]) and left[n_self] == right[n_self]
        ):
            n_self += 1
        return "random-pairing", n_self
    dense = all(
        torch.equal(state[f"{kind}_neuron_indices_left"], state[f"{kind}_neuron_indices_right"])
        and torch.equal(
            state[f"{kind}_neuron_indices_left"], torch.arange(start, start + len(state[f"{kind}_neuron_indices_left"]))
        )
        for kind, start in (("out", 0), ("action", d_model - len(state["action_neuron_indices_left"])))
    )
    return ("first-last" if dense else "random"), 0


# ---------------------------------------------------------------- families


def family_from_args(args: dict[str, Any]) -> str:
    if "N_to_sort" in args:
        raise CheckpointError(
            "a sort-task checkpoint (args.N_to_sort): the reference's sort CTM has no attention and reads its "
            "answer by CTC decoding over all ticks, which a per-tick server cannot serve; not supported"
        )
    model = args.get("model", args.get("model_type", "ctm"))
    if model != "ctm":
        raise CheckpointError(f"args.model is {model!r}: only CTM checkpoints can be imported (not the baselines)")
    dataset = args.get("dataset")
    if dataset in FAMILIES:
        return dataset
    if "parity_sequence_length" in args:
        return "parity"
    raise CheckpointError(
        f"args.dataset is {dataset!r}: importable families are {', '.join(FAMILIES)} "
        "(QA-MNIST and RL checkpoints are different models)"
    )


def family_shapes(family: str, out_dims: int, args: dict[str, Any] | None) -> dict[str, Any]:
    """input_shape and output_shape of a family (from args where the run chose them, else from out_dims)."""
    if family == "parity":
        length = int(args["parity_sequence_length"]) if args and "parity_sequence_length" in args else out_dims // 2
        return {"input_shape": (length,), "output_shape": (length, 2)}
    if family.startswith("mazes-"):
        route = int(args["maze_route_length"]) if args and "maze_route_length" in args else out_dims // 5
        side = 99 if family == "mazes-large" else 39  # the reference's maze images
        return {"input_shape": (3, side, side), "output_shape": (route, 5)}
    if family == "imagenet":
        return {"input_shape": (3, IMAGENET_CROP, IMAGENET_CROP), "output_shape": (out_dims,)}
    if family in ("cifar10", "cifar100"):
        return {"input_shape": (3, 32, 32), "output_shape": (out_dims,)}
    return {"input_shape": (1, 28, 28), "output_shape": (out_dims,)}  # mnist, mnist-tutorial


def family_task(family: str, config: CTMConfig, settings: dict[str, Any], labels: list[str] | None) -> Task:
    """The Task export needs: input preprocessing for the manifest, labels, and data where we have it."""
    channels, *size = config.input_shape if len(config.input_shape) == 3 else (None,)
    classes = config.output_shape[-1]

    def image(preprocess: str, mean, std, **extra: Any):
        height, width = size
        spec = {"layout": "NCHW", "channels": channels, "height": height, "width": width, "preprocess": preprocess}
        spec.update(extra)
        spec["normalize"] = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
        return lambda c: {"kind": "image", "shape": list(c.input_shape), "dtype": "float32", "image": spec}

    if family in ("mnist", "parity"):
        task = get_task(family)
    elif family == "mnist-tutorial":  # the notebook feeds ToTensor() pixels in [0, 1], unnormalised
        mnist = get_task("mnist")

        def raw_split(c: CTMConfig, name: str) -> Split:
            split = mnist.split(c, name)
            return Split(split.inputs * MNIST_STD + MNIST_MEAN, split.targets)

        spec = mnist.input_spec(config)
        spec["image"]["normalize"] = {"mean": [0.0], "std": [1.0]}
        task = dataclasses.replace(mnist, name=family, input_spec=lambda c: spec, split=raw_split)
    elif family == "cifar10":
        task = _no_data_task(family, CIFAR10_LABELS, image("resize", CIFAR10_MEAN, CIFAR10_STD))
    elif family == "cifar100":
        task = _no_data_task(family, (), image("resize", CIFAR100_MEAN, CIFAR100_STD))
    elif family == "imagenet":
        shorter = round(max(size) * IMAGENET_RESIZE / IMAGENET_CROP)  # 256 for the usual 224 crop
        task = _no_data_task(family, (), image("center-crop", IMAGENET_MEAN, IMAGENET_STD, resize_shorter=shorter))
    else:  # mazes: pixels in [0, 1], or [-1, 1] (x * 2 - 1) when the run used --expand_range; as our maze task
        expand = settings["expand_range"]
        task = _no_data_task(family, MAZE_MOVES, lambda c: maze_input_spec(c, expand))
    if labels is not None:
        if len(labels) != classes:
            raise CheckpointError(f"--labels has {len(labels)} labels, the model has {classes} classes")
        task = dataclasses.replace(task, labels=tuple(labels))
    elif len(task.labels) != classes:
        task = dataclasses.replace(task, labels=tuple(f"class_{i}" for i in range(classes)))
    return task


def _no_data_task(name: str, labels: tuple[str, ...], input_spec) -> Task:
    return Task(
        name=name, model=CTMConfig(), run={}, labels=labels, input_spec=input_spec, split=None, train_batch=None
    )


def read_labels(path: str | Path) -> list[str]:
    """A JSON list of strings, or one label per line."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        labels = json.loads(text)
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not all(isinstance(label, str) and label for label in labels):
        raise CheckpointError(f"--labels {path}: expected non-empty strings")
    return labels


# ---------------------------------------------------------------- putting it together


def import_reference(
    path: str | Path,
    overrides: dict[str, str] | None = None,
    family: str | None = None,
    labels: list[str] | None = None,
    unsafe: bool = False,
) -> ReferenceImport:
    """Read `path` and build our CTM with its weights; raises `CheckpointError` naming what is wrong."""
    try:
        payload = load_reference_file(path, unsafe)
    except UnsafeCheckpointError as error:
        raise CheckpointError(str(error)) from error
    state, args = split_payload(payload, path)
    state, layout = normalise_layout(state)
    facts = shape_facts(state)
    overrides = dict(overrides or {})
    settings = {k: overrides.pop(k) for k in IMPORT_SETTINGS if k in overrides}
    try:
        given = coerce_fields(CTMConfig, overrides)
    except ConfigError as error:
        raise CheckpointError(f"--set: {error}") from error
    warnings: list[str] = []
    origin: dict[str, str] = {}

    if args is not None:
        family = _check_family(family, family_from_args(args), "args.dataset")
        fields: dict[str, Any] = {}
        for arg, field in ARGS_FIELDS.items():
            if arg in args:
                fields[field] = args[arg]
            elif field not in ("dropout", "n_random_pairing_self"):
                raise CheckpointError(f"args has no {arg!r}: a reference training run always records it")
        fields["dropout_nlm"] = args.get("dropout_nlm")
        out_dims = int(args.get("out_dims", facts["out_dims"].value))
        fields.update(family_shapes(family, out_dims, args))
        origin = {k: "args" for k in fields}
        if family.startswith("mazes-"):
            settings.setdefault("expand_range", args.get("expand_range", True))
        for key, value in given.items():
            if key == "heads" and value != fields["heads"]:
                raise CheckpointError(
                    f"heads: --set says {value} but the checkpoint's args say {fields['heads']}; the weights were "
                    "trained with that many heads and no weight shape shows it, so it cannot be overridden"
                )
            if key in fields and fields[key] != value:
                warnings.append(f"--set {key}={value} overrides the checkpoint's args ({key}={fields[key]})")
            fields[key] = value
            origin[key] = "--set"
    else:
        family = _check_family(family, _family_from_keys(facts, layout), "the weights' keys")
        if family is None:
            raise CheckpointError(
                f"a bare state_dict with backbone {facts['backbone'].value!r} does not say which task it was "
                f"trained on: pass --task (one of {', '.join(FAMILIES)})"
            )
        fields = {k: f.value for k, f in facts.items() if k in CTMConfig.__dataclass_fields__}
        select, n_self = pairing_from_indices(state, facts["all_pairs"].value, facts["d_model"].value)
        fields.update(neuron_select_type=select, n_random_pairing_self=n_self)
        fields.update(family_shapes(family, facts["out_dims"].value, None))
        if "input_channels" in facts and len(fields["input_shape"]) == 3:
            fields["input_shape"] = (facts["input_channels"].value, *fields["input_shape"][1:])
        origin = {k: "weights" for k in fields}
        missing = [k for k in ("heads", "iterations") if k not in given]
        if family.startswith("mazes-") and "expand_range" not in settings:
            missing.append("expand_range")
        if missing:
            raise CheckpointError(
                f"a bare state_dict does not say {', '.join(missing)}: pass "
                + " ".join(f"--set {k}=..." for k in missing)
                + " (a checkpoint saved with its args needs none)"
            )
        for key, value in given.items():
            fields[key] = value
            origin[key] = "--set"
    if "expand_range" in settings:
        settings["expand_range"] = coerce_fields(_Settings, {"expand_range": settings["expand_range"]})["expand_range"]

    _check_against_weights(fields, facts, origin)
    try:
        config = CTMConfig().replace(**fields)
    except ConfigError as error:
        raise CheckpointError(str(error)) from error
    model = CTM(config)
    check_state_dict(model, state)
    model.load_state_dict(state)
    model.eval()
    source = {
        "format": "reference",
        "layout": layout,
        "family": family,
        "architecture_from": "args" if args is not None else "weights",
        "set": {k: str(v) for k, v in {**given, **settings}.items()},
    }
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return ReferenceImport(model, family_task(family, config, settings, labels), source, warnings)


@dataclass(frozen=True)
class _Settings:
    expand_range: bool = True


def _family_from_keys(facts: dict[str, Fact], layout: str) -> str | None:
    if layout == "tutorial":
        return "mnist-tutorial"
    if facts["backbone"].value in ("parity_backbone", "parity-embedding"):
        return "parity"
    return None


def _check_family(given: str | None, found: str | None, where: str) -> str | None:
    if given is not None and given not in FAMILIES:
        raise CheckpointError(f"--task {given!r}: importable families are {', '.join(FAMILIES)}")
    if given is not None and found is not None and given != found:
        raise CheckpointError(f"--task says {given!r} but {where} say {found!r}")
    return found or given


def _equivalent_backbones(a: str, b: str) -> bool:
    """resnet50/101/152 cut before stage 3 are the same network (same blocks, same keys)."""
    if a in RESNET_BACKBONES and b in RESNET_BACKBONES:
        (da, sa), (db, sb) = resnet_spec(a), resnet_spec(b)
        return sa == sb and RESNET_STAGE_BLOCKS[da][:sa] == RESNET_STAGE_BLOCKS[db][:sb]
    return a == b


def _check_against_weights(fields: dict[str, Any], facts: dict[str, Fact], origin: dict[str, str]) -> None:
    """Every field the weights determine must agree with them: an error names both values and the key."""

    def contradiction(field: str, value: Any, weights: Any, evidence: str) -> CheckpointError:
        said = origin.get(field, "the configuration")
        said = "--set" if said == "--set" else ("the checkpoint's args" if said == "args" else said)
        return CheckpointError(
            f"{field}: {said} say {value!r} but the weights say {weights!r} ({evidence}); "
            "the checkpoint and its args do not belong together, or the --set value is wrong"
        )

    for field, fact in facts.items():
        if field in ("out_dims", "all_pairs", "input_channels", "backbone_channels"):
            continue
        if field == "memory_hidden_dims" and not fields.get("deep_nlms"):
            continue
        value = fields.get(field)
        same = _equivalent_backbones(value, fact.value) if field == "backbone" else value == fact.value
        if not same:
            raise contradiction(field, value, fact.value, fact.evidence)
    width = math.prod(fields["output_shape"])
    if width != facts["out_dims"].value:
        raise contradiction(
            "output_shape", list(fields["output_shape"]), facts["out_dims"].value, facts["out_dims"].evidence
        )
    all_pairs = fields["neuron_select_type"] != "random-pairing"
    if all_pairs != facts["all_pairs"].value and max(fields["n_synch_out"], fields["n_synch_action"]) > 1:
        pairing = "all pairs (first-last or random)" if facts["all_pairs"].value else "random-pairing"
        raise contradiction("neuron_select_type", fields["neuron_select_type"], pairing, facts["all_pairs"].evidence)
    if "input_channels" in facts and fields["input_shape"][0] != facts["input_channels"].value:
        raise contradiction(
            "input_shape",
            list(fields["input_shape"]),
            f"{facts['input_channels'].value} channels",
            facts["input_channels"].evidence,
        )
    channels = backbone_channels(fields["backbone"], tuple(fields["input_shape"]), fields["d_input"])
    if channels != facts["backbone_channels"].value:
        raise contradiction(
            "backbone",
            fields["backbone"],
            f"{facts['backbone_channels'].value} feature channels",
            facts["backbone_channels"].evidence,
        )
