"""Checkpoints that describe themselves, and loading the reference implementation's layout.

Our checkpoint is a dict of plain types and tensors, so it loads with `torch.load(weights_only=True)`:
    {"format": "ctm-serve/1", "model": state_dict, "model_args": CTMConfig.to_dict(),
     "run_config": RunConfig.to_dict(), "step": int, "metrics": {...},
     optional "optimizer", "scheduler", "rng"}

A checkpoint of the reference implementation is read by `ctm.reference` (our module names are its
layout, so loading one is a strict `load_state_dict`).
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


def init_from_checkpoint(model: CTM, payload: dict[str, Any]) -> list[str]:
    """Load a checkpoint's weights into a model that may add a halting head to the same CTM.

    Every parameter of the checkpoint must fit; only the halting head's may be missing (they keep their
    fresh initialisation). Returns the names left fresh.
    """
    fresh = [k for k in model.state_dict() if k not in payload["model"] and k.startswith("halting.")]
    expected = {k: v for k, v in model.state_dict().items() if k not in fresh}
    problems = [f"missing key {k!r}" for k in expected if k not in payload["model"]]
    problems += [f"unexpected key {k!r}" for k in payload["model"] if k not in expected]
    problems += [
        f"key {k!r} has shape {list(payload['model'][k].shape)}, expected {list(v.shape)}"
        for k, v in expected.items()
        if k in payload["model"] and tuple(payload["model"][k].shape) != tuple(v.shape)
    ]
    if problems:
        raise CheckpointError("--init: the checkpoint does not fit the model: " + "; ".join(problems))
    model.load_state_dict(payload["model"], strict=False)
    return fresh


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
        raise CheckpointError(
            "state_dict does not fit the model: "
            + "; ".join(problems)
            + ". The file is not a CTM in this layout, or --set/--task describe another architecture"
        )
