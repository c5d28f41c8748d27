"""Checkpoints that describe themselves, and loading the reference implementation's layout.

Our checkpoint is a dict of plain types and tensors, so it loads with `torch.load(weights_only=True)`:
    {"format": "ctm-serve/1", "model": state_dict, "model_args": CTMConfig.to_dict(),
     "run_config": RunConfig.to_dict(), "step": int, "metrics": {...},
     optional "optimizer", "scheduler", "rng"}

A reference checkpoint is a state_dict (bare, or under "model_state_dict") in the layout documented in
shared/reference/ctm-reference-facts.md. Our module names are that layout, so loading one is a strict
`load_state_dict` after inferring the architecture from the tensor shapes; what shapes cannot tell
(attention heads, ticks, the backbone's task) comes from the caller.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import CTMConfig, RunConfig
from .model import CTM

FORMAT = "ctm-serve/1"


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model; the message names the key."""


def save_checkpoint(path: str | Path, model: CTM, run: RunConfig, step: int, **extra: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model": model.state_dict(),
        "model_args": model.config.to_dict(),
        "run_config": run.to_dict(),
        "step": step,
        **extra,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash mid-save never leaves a truncated checkpoint behind


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not a weights-only checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (use --reference for a reference state_dict)")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> CTM:
    model = CTM(CTMConfig.from_dict(payload["model_args"]))
    check_state_dict(model, payload["model"])
    model.load_state_dict(payload["model"])
    return model


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_state_dict(model: CTM, state_dict: dict[str, Tensor]) -> None:
    """Raise `CheckpointError` naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    problems = [
        f"missing key {k!r} (expected shape {list(v.shape)})" for k, v in expected.items() if k not in state_dict
    ]
    problems += [f"unexpected key {k!r}" for k in state_dict if k not in expected]
    problems += [
        f"key {k!r} has shape {list(state_dict[k].shape)}, expected {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if problems:
        raise CheckpointError("state_dict does not fit the model: " + "; ".join(problems))


def read_reference_state_dict(path: str | Path, allow_pickle: bool = False) -> dict[str, Tensor]:
    """A reference checkpoint's state_dict: a bare state_dict or one under "model_state_dict".

    Reference training scripts pickle an argparse Namespace beside the weights, which
    `weights_only=True` refuses; `allow_pickle=True` loads such a file in full (only for files you trust).
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: holds more than tensors and plain types ({error}); if you trust the file, "
            "pass --allow-pickle to load it in full"
        ) from error
    state = payload.get("model_state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state_dict or a dict with 'model_state_dict'")
    return state


def infer_reference_config(state: dict[str, Tensor], base: CTMConfig) -> CTMConfig:
    """Read the architecture from tensor shapes; `base` supplies what shapes cannot tell.

    Shapes give D, M, d_input, synapse depth, NLM depth and hidden size, output width, the
    synchronisation sizes and the neuron selection mode. Heads, ticks, backbone and input shape
    come from `base` (the task's defaults, overridden by the caller).
    """

    def need(key: str) -> Tensor:
        if key not in state:
            raise CheckpointError(f"reference state_dict is missing key {key!r}")
        return state[key]

    d_model, memory = need("start_trace").shape
    d_input = need("kv_proj.0.weight").shape[0]
    deep = "trace_processor.0.2.w1" in state
    hidden = need("trace_processor.0.0.w1").shape[1] // 2 if deep else base.memory_hidden_dims
    if "synapses.1.weight" in state:
        depth = 1
    else:
        downs = {k.split(".")[2] for k in state if k.startswith("synapses.down_projections.")}
        depth = len(downs) + 1
    out_dims = need("output_projector.0.weight").shape[0]
    output_shape = base.output_shape if out_dims == base.out_dims else (out_dims,)

    sizes, mode = {}, None
    for kind in ("out", "action"):
        left = need(f"{kind}_neuron_indices_left")
        right = need(f"{kind}_neuron_indices_right")
        n, size = len(left), need(f"decay_params_{kind}").shape[0]
        if size == n:
            this_mode = "random-pairing"
        elif size == n * (n + 1) // 2:
            start = 0 if kind == "out" else d_model - n
            dense = torch.equal(left, right) and torch.equal(left, torch.arange(start, start + n))
            this_mode = "first-last" if dense else "random"
        else:
            raise CheckpointError(
                f"decay_params_{kind} has {size} entries; {n} neurons allow {n} (random-pairing) "
                f"or {n * (n + 1) // 2} (all pairs)"
            )
        if mode is not None and this_mode != mode:
            raise CheckpointError(f"output and action synchronisation disagree on the mode ({mode} vs {this_mode})")
        mode, sizes[kind] = this_mode, n
    n_self = 0
    if mode == "random-pairing":
        left, right = state["out_neuron_indices_left"], state["out_neuron_indices_right"]
        while n_self < len(left) and left[n_self] == right[n_self]:
            n_self += 1
        n_self = min(n_self, sizes["action"])
    return base.replace(
        d_model=int(d_model),
        memory_length=int(memory),
        d_input=int(d_input),
        deep_nlms=deep,
        memory_hidden_dims=int(hidden),
        do_layernorm_nlm="trace_processor.0.0.layernorm.weight" in state,
        synapse_depth=depth,
        output_shape=list(output_shape),
        neuron_select_type=mode,
        n_synch_out=sizes["out"],
        n_synch_action=sizes["action"],
        n_random_pairing_self=n_self,
    )


def model_from_reference(state: dict[str, Tensor], base: CTMConfig) -> CTM:
    model = CTM(infer_reference_config(state, base))
    check_state_dict(model, state)
    model.load_state_dict(state)
    return model
