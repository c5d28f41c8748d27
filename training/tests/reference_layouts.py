"""Checkpoints as the reference implementation writes them, built without our model code.

Key names and shapes are written out from the reference's source (models/ctm.py, models/modules.py,
models/resnet.py, the MNIST tutorial notebook) and its task scripts' argparse defaults and checkpoint
dicts (tasks/*/train.py), so that a test fails if our model's layout drifts from theirs.
"""

from __future__ import annotations

import argparse
import math
import random

import numpy as np
import torch

RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 4, 36, 3)}


def batchnorm(prefix: str, c: int) -> dict[str, list[int]]:
    return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
            f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}  # fmt: skip


def resnet_layout(depth: int, stages: int, prefix: str = "backbone") -> dict[str, list[int]]:
    """models/resnet.py: conv1 3x3 (3 -> 64), bn1, layer1..stages of BasicBlock/Bottleneck."""
    layout = {f"{prefix}.conv1.weight": [64, 3, 3, 3], **batchnorm(f"{prefix}.bn1", 64)}
    bottleneck, in_planes = depth >= 50, 64
    for stage in range(stages):
        planes = 64 * 2**stage
        out = planes * (4 if bottleneck else 1)
        for block in range(RESNET_BLOCKS[depth][stage]):
            p = f"{prefix}.layer{stage + 1}.{block}"
            if bottleneck:
                layout[f"{p}.conv1.weight"] = [planes, in_planes, 1, 1]
                layout.update(batchnorm(f"{p}.bn1", planes))
                layout[f"{p}.conv2.weight"] = [planes, planes, 3, 3]
                layout.update(batchnorm(f"{p}.bn2", planes))
                layout[f"{p}.conv3.weight"] = [out, planes, 1, 1]
                layout.update(batchnorm(f"{p}.bn3", out))
            else:
                layout[f"{p}.conv1.weight"] = [planes, in_planes, 3, 3]
                layout.update(batchnorm(f"{p}.bn1", planes))
                layout[f"{p}.conv2.weight"] = [planes, planes, 3, 3]
                layout.update(batchnorm(f"{p}.bn2", planes))
            if block == 0 and (stage > 0 or in_planes != out):
                layout[f"{p}.downsample.0.weight"] = [out, in_planes, 1, 1]
                layout.update(batchnorm(f"{p}.downsample.1", out))
            in_planes = out
    return layout


def backbone_layout(backbone: str, in_channels: int, d_input: int) -> tuple[dict[str, list[int]], int]:
    """(keys and shapes, channels of the feature map) for the reference's backbones."""
    if backbone.startswith("resnet"):
        depth, stages = (int(v) for v in backbone.removeprefix("resnet").split("-"))
        layout = {"initial_rgb.weight": [3, in_channels, 1, 1], "initial_rgb.bias": [3]}
        layout.update(resnet_layout(depth, stages))
        return layout, 64 * 2 ** (stages - 1) * (4 if depth >= 50 else 1)
    if backbone == "shallow-wide":
        layout = {"backbone.layers.0.weight": [4096, in_channels, 3, 3], "backbone.layers.0.bias": [4096]}
        layout.update(batchnorm("backbone.layers.2", 2048))
        layout.update({"backbone.layers.3.weight": [4096, 64, 3, 3], "backbone.layers.3.bias": [4096]})
        layout.update(batchnorm("backbone.layers.5", 2048))
        return layout, 2048
    if backbone == "parity_backbone":
        return {"backbone.embedding.weight": [2, d_input]}, d_input
    if backbone == "mnist-conv":  # the tutorial notebook's
        layout = {"backbone.0.weight": [d_input, in_channels, 3, 3], "backbone.0.bias": [d_input]}
        layout.update(batchnorm("backbone.1", d_input))
        layout.update({"backbone.4.weight": [d_input, d_input, 3, 3], "backbone.4.bias": [d_input]})
        layout.update(batchnorm("backbone.5", d_input))
        return layout, d_input
    assert backbone == "none"
    return {}, in_channels


def fourier_layout(prefix: str, c: int) -> dict[str, list[int]]:
    """LearnableFourierPositionalEncoding with F_dim 256, H_dim 128."""
    return {f"{prefix}.Wr.weight": [128, 2], f"{prefix}.mlp.0.weight": [128, 256], f"{prefix}.mlp.0.bias": [128],
            f"{prefix}.mlp.2.weight": [c, 64], f"{prefix}.mlp.2.bias": [c],
            f"{prefix}.mlp.3.weight": [c], f"{prefix}.mlp.3.bias": [c]}  # fmt: skip


def positional_layout(kind: str, c: int) -> dict[str, list[int]]:
    p = "positional_embedding"
    if kind == "learnable-fourier":
        return fourier_layout(p, c)
    if kind == "multi-learnable-fourier":
        layout = {f"{p}.combination": [10]}
        for i in range(10):
            layout.update(fourier_layout(f"{p}.embedders.{i}", c))
        return layout
    if kind == "custom-rotational":
        return {f"{p}.start_vector": [2], f"{p}.projection.0.weight": [c, 4], f"{p}.projection.0.bias": [c]}
    if kind == "custom-rotational-1d":
        return {f"{p}.projection.weight": [c, 2], f"{p}.projection.bias": [c]}
    assert kind == "none"
    return {}


def core_layout(a: argparse.Namespace, d_backbone: int) -> dict[str, list[int]]:
    """models/ctm.py without the backbone: start states, synchronisation, attention, synapses, NLMs, output."""
    D, M, H, d = a.d_model, a.memory_length, a.memory_hidden_dims, a.d_input
    dense = a.neuron_select_type != "random-pairing"
    s_out = a.n_synch_out * (a.n_synch_out + 1) // 2 if dense else a.n_synch_out
    s_act = a.n_synch_action * (a.n_synch_action + 1) // 2 if dense else a.n_synch_action
    layout = {
        "start_activated_state": [D], "start_trace": [D, M],
        "decay_params_action": [s_act], "decay_params_out": [s_out],
        "action_neuron_indices_left": [a.n_synch_action], "action_neuron_indices_right": [a.n_synch_action],
        "out_neuron_indices_left": [a.n_synch_out], "out_neuron_indices_right": [a.n_synch_out],
        "kv_proj.0.weight": [d, d_backbone], "kv_proj.0.bias": [d], "kv_proj.1.weight": [d], "kv_proj.1.bias": [d],
        "q_proj.weight": [d, s_act], "q_proj.bias": [d],
        "attention.in_proj_weight": [3 * d, d], "attention.in_proj_bias": [3 * d],
        "attention.out_proj.weight": [d, d], "attention.out_proj.bias": [d],
        "output_projector.0.weight": [a.out_dims, s_out], "output_projector.0.bias": [a.out_dims],
    }  # fmt: skip
    if a.deep_memory:
        layout.update({"trace_processor.0.0.w1": [M, 2 * H, D], "trace_processor.0.0.b1": [1, D, 2 * H],
                       "trace_processor.0.0.T": [1], "trace_processor.0.2.w1": [H, 2, D],
                       "trace_processor.0.2.b1": [1, D, 2], "trace_processor.0.2.T": [1]})  # fmt: skip
    else:
        layout.update({"trace_processor.0.0.w1": [M, 2, D], "trace_processor.0.0.b1": [1, D, 2],
                       "trace_processor.0.0.T": [1]})  # fmt: skip
    if a.synapse_depth == 1:
        layout.update({"synapses.1.weight": [2 * D, d + D], "synapses.1.bias": [2 * D],
                       "synapses.3.weight": [D], "synapses.3.bias": [D]})  # fmt: skip
    else:
        w = [int(x) for x in np.linspace(D, 16, a.synapse_depth)]
        layout.update({"synapses.first_projection.0.weight": [w[0], d + D], "synapses.first_projection.0.bias": [w[0]],
                       "synapses.first_projection.1.weight": [w[0]], "synapses.first_projection.1.bias": [w[0]]})  # fmt: skip
        for i in range(len(w) - 1):
            for way, (a_, b_) in (("down", (w[i + 1], w[i])), ("up", (w[i], w[i + 1]))):
                p = f"synapses.{way}_projections.{i}"
                layout.update(
                    {f"{p}.1.weight": [a_, b_], f"{p}.1.bias": [a_], f"{p}.2.weight": [a_], f"{p}.2.bias": [a_]}
                )
            layout.update({f"synapses.skip_lns.{i}.weight": [w[i]], f"synapses.skip_lns.{i}.bias": [w[i]]})
    return layout


def random_values(layout: dict[str, list[int]], a: argparse.Namespace, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random, non-trivial values for every entry (none left at a zero or one init), at trained scales."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        noise = torch.randn(shape, generator=g)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000 + seed, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith(".T"):
            state[key] = 1 + 0.2 * torch.rand(shape, generator=g)
        elif key.startswith("decay_params"):
            state[key] = torch.rand(shape, generator=g) * 3 - 0.2  # some below 0: the clamp matters
        elif key.endswith(".w1"):
            state[key] = noise / math.sqrt(shape[0])
        elif key.endswith("Wr.weight"):
            state[key] = noise * 2
        elif len(shape) >= 2:
            state[key] = noise / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(("weight", "start_vector", "combination")):
            state[key] = 1 + 0.2 * noise
        else:
            state[key] = 0.2 * noise
    D = a.d_model
    for kind, n in (("out", a.n_synch_out), ("action", a.n_synch_action)):
        if a.neuron_select_type == "first-last":
            left = torch.arange(0, n) if kind == "out" else torch.arange(D - n, D)
            right = left
        else:
            left = torch.randint(0, D, (n,), generator=g)
            right = torch.randint(0, D, (n,), generator=g)
            if a.neuron_select_type == "random-pairing":
                right[: a.n_random_pairing_self] = left[: a.n_random_pairing_self]
        state[f"{kind}_neuron_indices_left"], state[f"{kind}_neuron_indices_right"] = left, right
    return state


def reference_args(script: str, **overrides) -> argparse.Namespace:
    """The Namespace a task script saves: its argparse defaults, the command line, and what it sets after."""
    common = dict(model="ctm", dropout=0.0, positional_embedding_type="none", neuron_select_type="random-pairing",
                  n_random_pairing_self=0, deep_memory=True, dropout_nlm=None, do_normalisation=False, num_layers=2,
                  batch_size=32, lr=1e-3, training_iterations=100001, warmup_steps=5000, use_scheduler=True,
                  scheduler_type="cosine", milestones=[8000, 15000, 20000], gamma=0.1, weight_decay=0.0,
                  weight_decay_exclusion_list=[], gradient_clipping=-1, do_compile=False, log_dir="logs/scratch",
                  save_every=1000, seed=412, reload=False, device=[-1], use_amp=False)  # fmt: skip
    if script == "image_classification":
        defaults = dict(d_model=512, backbone_type="resnet18-4", d_input=128, heads=4, iterations=75, synapse_depth=4,
                        n_synch_out=512, n_synch_action=512, memory_length=25, memory_hidden_dims=4,
                        dataset="cifar10", data_root="data/")  # fmt: skip
    elif script == "mazes":
        defaults = dict(d_model=512, backbone_type="resnet34-2", d_input=128, heads=8, iterations=75, synapse_depth=8,
                        n_synch_out=32, n_synch_action=32, memory_length=25, memory_hidden_dims=32,
                        maze_route_length=100, cirriculum_lookahead=5, expand_range=True, dataset="mazes-medium",
                        data_root="data/mazes")  # fmt: skip
    else:
        assert script == "parity"
        common.pop("model")
        defaults = dict(model_type="ctm", parity_sequence_length=64, d_model=1024, d_input=512, synapse_depth=1,
                        heads=8, n_synch_out=32, n_synch_action=32, neuron_select_type="random",
                        n_random_pairing_self=256, iterations=75, memory_length=25, memory_hidden_dims=16,
                        positional_embedding_type="custom-rotational-1d", backbone_type="parity_backbone",
                        dataset="parity", full_eval=False)  # fmt: skip
    args = argparse.Namespace(**{**common, **defaults, **overrides})
    if script == "image_classification":
        args.out_dims = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}[args.dataset]
    elif script == "mazes":
        args.out_dims = args.maze_route_length * 5
    else:
        args.out_dims = args.parity_sequence_length * 2
        args.use_most_certain = True
    args.__dict__.update({k: v for k, v in overrides.items() if k == "out_dims"})
    return args


def training_checkpoint(state: dict[str, torch.Tensor], args: argparse.Namespace) -> dict:
    """The dict the task scripts torch.save: weights, optimiser state, histories, args and RNG states."""
    rng = np.random.RandomState(args.seed)
    return {
        "model_state_dict": state,
        "optimizer_state_dict": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
                                 "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]},
        "scheduler_state_dict": {"base_lrs": [1e-4], "last_epoch": 3, "_step_count": 4, "warmup_epochs": 500},
        "scaler_state_dict": {},
        "iteration": 3,
        "train_losses": [2.3, 2.1],
        "test_losses": [np.float64(2.2)],
        "train_accuracies": [rng.rand(args.iterations)],  # per-tick accuracy arrays
        "test_accuracies": [rng.rand(args.iterations)],
        "train_accuracies_most_certain": [np.float64(0.4)],
        "test_accuracies_most_certain": [np.float32(0.35)],
        "iters": [0, 1],
        "args": args,
        "torch_rng_state": torch.get_rng_state(),
        "numpy_rng_state": rng.get_state(),
        "random_rng_state": random.Random(args.seed).getstate(),
    }  # fmt: skip


def reference_state(args: argparse.Namespace, in_channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full reference-layout state_dict for `args`, random values."""
    layout, channels = backbone_layout(args.backbone_type, in_channels, args.d_input)
    layout.update(positional_layout(args.positional_embedding_type, channels))
    layout.update(core_layout(args, channels))
    return random_values(layout, args, seed)


def tutorial_state(a: argparse.Namespace, seed: int = 0) -> dict[str, torch.Tensor]:
    """The MNIST tutorial notebook's layout: synapses.0/2, trace_processor.0/2, no T, first-last indices."""
    state = reference_state(a, 1, seed)
    renamed = {}
    for key, value in state.items():
        if key.endswith(".T"):
            continue
        key = key.replace("synapses.1.", "synapses.0.").replace("synapses.3.", "synapses.2.")
        key = key.replace("trace_processor.0.0.", "trace_processor.0.").replace(
            "trace_processor.0.2.", "trace_processor.2."
        )
        renamed[key] = value
    return renamed


def export_server_fixtures(root: str) -> None:
    """Reference-layout CIFAR-10 and maze training checkpoints (random weights) in ROOT/cases, exported
    to ROOT/models, and for each an RGB PNG with PyTorch's per-tick outputs on it in ROOT/cases (for
    the server's tests, which send it over gRPC; and for trying `--reference` without a reference run).

        node scripts/py.mjs -m tests.reference_layouts /tmp/ctm-ref
    """
    import json
    from pathlib import Path

    from PIL import Image

    from ctm.checkpoint import load_checkpoint, model_from_checkpoint
    from ctm.export import main as export_main

    small = dict(d_model=32, d_input=16, heads=2, iterations=4, memory_length=4, memory_hidden_dims=3,
                 n_synch_out=8, n_synch_action=6, synapse_depth=2)  # fmt: skip
    cases = {
        "cifar10-ref": reference_args("image_classification", **small, backbone_type="resnet18-1"),
        "maze-ref": reference_args(
            "mazes",
            **small,
            backbone_type="resnet18-1",
            maze_route_length=6,
            dataset="mazes-small",
            positional_embedding_type="custom-rotational",
        ),  # fmt: skip
    }
    root_path = Path(root)
    (root_path / "cases").mkdir(parents=True, exist_ok=True)
    for seed, (name, args) in enumerate(cases.items()):
        checkpoint = root_path / "cases" / f"{name}.pt"
        torch.save(training_checkpoint(reference_state(args, 3, seed), args), checkpoint)
        out = root_path / "models" / name / "1"
        export_main(["--reference", str(checkpoint), "--out", str(out)])
        manifest = json.loads((out / "manifest.json").read_text())
        image = manifest["input"]["image"]
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels, mode="RGB").save(root_path / "cases" / f"{name}.png")
        mean = torch.tensor(image["normalize"]["mean"]).view(3, 1, 1)
        std = torch.tensor(image["normalize"]["std"]).view(3, 1, 1)
        x = ((torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 - mean) / std).unsqueeze(0)
        model = model_from_checkpoint(load_checkpoint(out / "checkpoint.pt")).eval()
        with torch.no_grad():
            logits, certainty = model(x)
        case = {"png": f"{name}.png", "logits": logits[0].T.tolist(), "certainty": certainty[0].tolist()}
        (root_path / "cases" / f"{name}.json").write_text(json.dumps(case))


if __name__ == "__main__":
    import sys

    export_server_fixtures(sys.argv[1])
