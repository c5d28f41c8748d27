"""Run an exported model folder with onnxruntime, tick by tick, exactly as the server does.

Everything comes from manifest.json: graph files, the context tensors passed to every tick, and the
state pairs fed back from one tick's outputs to the next tick's inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .config import CTMConfig


class OnnxCTM:
    def __init__(self, folder: str | Path, threads: int = 0):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self.config = CTMConfig.from_dict(self.manifest["architecture"])
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        graphs = self.manifest["graphs"]
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(self.folder / graphs["encoder"]["file"]), options, providers=providers)
        self.tick_graph = ort.InferenceSession(str(self.folder / graphs["tick"]["file"]), options, providers=providers)

    def run(self, inputs: np.ndarray, ticks: int | None = None) -> dict[str, np.ndarray]:
        """Per-tick outputs for a batch: logits (B, T, out), certainty (B, T), probabilities (B, T, out),
        and, when the manifest declares them, attention (B, T, heads, N) and halt (B, T)."""
        m = self.manifest
        encoded = dict(
            zip(
                [o["name"] for o in m["graphs"]["encoder"]["outputs"]],
                self.encoder.run(None, {"input": inputs.astype(np.float32)}),
                strict=True,
            )
        )
        context = {c["name"]: encoded[c["name"]] for c in m["context"]}
        state = {s["input"]: encoded[s["init"]] for s in m["state"]}
        names = [o["name"] for o in m["graphs"]["tick"]["outputs"]]
        names_of = dict(m["outputs"])
        per_tick: dict[str, list[np.ndarray]] = {key: [] for key in names_of}
        if "attention" in m:
            per_tick["attention"], names_of["attention"] = [], m["attention"]["output"]
        for _ in range(ticks or m["ticks"]["max"]):
            out = dict(zip(names, self.tick_graph.run(None, {**context, **state}), strict=True))
            state = {s["input"]: out[s["output"]] for s in m["state"]}
            for key in per_tick:
                per_tick[key].append(out[names_of[key]])
        return {key: np.stack(values, 1) for key, values in per_tick.items()}
