"""Export a checkpoint to a self-describing model folder the server can load.

    python -m ctm.export --checkpoint checkpoints/mnist/ckpt.pt --out models/mnist-ctm/1
    python -m ctm.export --reference logs/cifar10/checkpoint.pt --out models/cifar10-ctm/1
    python -m ctm.export --reference state_dict.pt --task imagenet --set heads=16 --set iterations=50 --out ...

Writes encoder.onnx (input -> K, V, initial state), tick.onnx ((K, V, state) -> (state, logits,
certainty, probabilities, attention[, halt])), manifest.json, calibration.json (validation split), golden.json (PyTorch
per-tick outputs for the server's tests), samples/ (held-out test inputs) and checkpoint.pt.
docs/models.md describes the format. A reference checkpoint (`--reference`) is read by `ctm.reference`;
for the families we hold no data for (CIFAR, ImageNet, mazes) the folder has no calibration.json or
samples/, and golden.json uses synthetic inputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from .calibrate import calibrate_split, target_signal_of
from .checkpoint import CheckpointError, file_sha256, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import ConfigError, RunConfig, parse_overrides
from .fixtures import write_golden
from .model import CTM, TickState, probabilities
from .onnx_runner import OnnxCTM
from .reference import FAMILIES, import_reference, read_labels
from .samples import write_samples
from .tasks import Task, get_task

OPSET = 17
MANIFEST_SCHEMA_VERSION = 1
STATE_NAMES = TickState._fields
CONTEXT_NAMES = ("k", "v")
BATCH = "batch"


class EncoderGraph(nn.Module):
    """input (B, ...) -> (K, V, *initial state)."""

    def __init__(self, model: CTM):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        k, v = self.model.encode(x)
        return (k, v, *self.model.initial_state(x.shape[0]))


class TickGraph(nn.Module):
    """(K, V, *state) -> (*next state, logits, certainty, probabilities, attention[, halt]): `CTM.tick`,
    plus `CTM.attention_map` of the same state (B, heads, N), which a server copies only for callers who
    ask, and for a model with a halting head sigmoid(`CTM.halt_logit`) (B,), the halting signal."""

    def __init__(self, model: CTM):
        super().__init__()
        self.model = model

    def forward(self, k: Tensor, v: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        next_state, logits, certainty = self.model.tick(k, v, TickState(*state))
        attention = self.model.attention_map(k, TickState(*state))
        outputs = (*next_state, logits, certainty, probabilities(logits, self.model.config.output_shape), attention)
        if self.model.halting is None:
            return outputs
        return (*outputs, torch.sigmoid(self.model.halt_logit(next_state, logits)))


def export_graphs(model: CTM, out: Path, external_data: bool | None = None) -> None:
    """Write encoder.onnx and tick.onnx with a dynamic batch dimension on every tensor.

    A graph whose weights would not fit one protobuf message (2 GiB) keeps them in `<graph>.data`
    beside it, as onnxruntime loads them: `external_data=None` decides by size, True forces it for
    every graph (how the tests exercise the path), False refuses a graph that needs it.
    """
    model.eval()
    example = torch.zeros(2, *model.config.input_shape)  # batch 2: a size-1 batch could be specialised away
    with torch.no_grad():
        k, v, *state = EncoderGraph(model)(example)
    state_in = [f"{name}_in" for name in STATE_NAMES]
    state_out = [f"{name}_out" for name in STATE_NAMES]
    tick_outputs = [*state_out, "logits", "certainty", "probabilities", "attention"]
    if model.halting is not None:
        tick_outputs.append("halt")
    encoder_outputs = [*CONTEXT_NAMES, *STATE_NAMES]

    def dynamic(names: list[str]) -> dict[str, dict[int, str]]:
        return {name: {0: BATCH} for name in names}

    exports = {
        "encoder.onnx": dict(
            model=EncoderGraph(model).eval(),
            args=(example,),
            input_names=["input"],
            output_names=encoder_outputs,
            dynamic_axes=dynamic(["input", *encoder_outputs]),
        ),
        "tick.onnx": dict(
            model=TickGraph(model).eval(),
            args=(k, v, *state),
            input_names=[*CONTEXT_NAMES, *state_in],
            output_names=tick_outputs,
            dynamic_axes=dynamic([*CONTEXT_NAMES, *state_in, *tick_outputs]),
        ),
    }
    loose: dict[str, set[Path]] = {}
    for name, arguments in exports.items():
        before = set(out.iterdir())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-derived Python values
            # Wrappers in eval mode: the exporter restores each wrapper's mode afterwards, recursively, and
            # a wrapper left in training mode would switch BatchNorm in `model` back to batch statistics.
            torch.onnx.export(**arguments, f=str(out / name), opset_version=OPSET, dynamo=False)
        # Past 2 GiB the exporter writes each weight to its own file beside the graph: gather them below.
        loose[name] = set(out.iterdir()) - before - {out / name}
        if loose[name] and external_data is False:
            raise ValueError(f"{name} is over protobuf's 2 GiB limit and needs external data")
    encoder, tick = onnx.load(str(out / "encoder.onnx")), onnx.load(str(out / "tick.onnx"))
    _declare_encoder_output_shapes(encoder, tick)
    for name, graph in (("encoder.onnx", encoder), ("tick.onnx", tick)):
        for path in loose[name]:
            path.unlink()
        external = bool(external_data) or bool(loose[name]) or _weight_bytes(graph) >= PROTOBUF_LIMIT
        save_graph(graph, out / name, external)
        onnx.checker.check_model(str(out / name), full_check=True)


PROTOBUF_LIMIT = 2**31 - 1  # bytes: the most one protobuf message can hold
WEIGHT_HEADROOM = 2**26  # what the graph's nodes and names add beside the weights, generously


def _weight_bytes(graph: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in graph.graph.initializer) + WEIGHT_HEADROOM


def save_graph(graph: onnx.ModelProto, path: Path, external: bool) -> None:
    """Save `graph` to `path`, its weights in `<file>.data` beside it when `external` (one file, which
    onnxruntime finds next to the graph it was given by path)."""
    data = path.with_name(f"{path.name}.data")
    data.unlink(missing_ok=True)  # save_model appends to an existing data file
    if external:
        onnx.save_model(
            graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
            size_threshold=0,
        )  # fmt: skip
        data.chmod(0o644)  # onnx creates it private; a model folder is read by whoever serves it
    else:
        onnx.save_model(graph, str(path))


def _declare_encoder_output_shapes(encoder: onnx.ModelProto, tick: onnx.ModelProto) -> None:
    """Give the encoder's outputs the static shapes of the tick inputs they feed.

    The tracer names the dimensions of broadcast start states symbolically ("Expandz_dim_1"); the tick
    graph knows them as numbers, and the manifest should not make a server guess.
    """
    known = {v.name.removesuffix("_in"): v.type.tensor_type.shape for v in tick.graph.input}
    for output in encoder.graph.output:
        output.type.tensor_type.shape.CopyFrom(known[output.name])


def graph_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Names, shapes ("batch" for the dynamic dimension) and dtypes of a graph's inputs and outputs."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        return {"name": value.name, "shape": dims, "dtype": dtype}

    initialisers = {i.name for i in graph.initializer}
    inputs = [describe(v) for v in graph.input if v.name not in initialisers]
    return {"file": path.name, "inputs": inputs, "outputs": [describe(v) for v in graph.output]}


def build_manifest(
    model: CTM, task: Task, name: str, version: int, source: dict[str, Any], out: Path
) -> dict[str, Any]:
    config = model.config
    encoder, tick = graph_io(out / "encoder.onnx"), graph_io(out / "tick.onnx")
    shapes = {o["name"]: o["shape"][1:] for o in encoder["outputs"]}
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "name": name,
        "version": version,
        "task": task.name,
        "description": f"Continuous Thought Machine for {task.name} ({config.iterations} ticks, D={config.d_model})",
        "input": task.input_spec(config),
        "output": {"shape": list(config.output_shape), "labels": list(task.labels)},
        "ticks": {"trained": config.iterations, "max": config.iterations},
        "graphs": {"encoder": encoder, "tick": tick},
        "context": [{"name": n, "shape": shapes[n], "dtype": "float32"} for n in CONTEXT_NAMES],
        "state": [
            {
                "name": n,
                "init": n,
                "input": f"{n}_in",
                "output": f"{n}_out",
                "shape": shapes[n],
                "dtype": "float32",
            }
            for n in STATE_NAMES
        ],
        "outputs": {
            "logits": "logits",
            "certainty": "certainty",
            "probabilities": "probabilities",
            **({"halt": "halt"} if model.halting is not None else {}),
        },
        "attention": {"output": "attention", "token_grid": token_grid(model)},
        "opset": OPSET,
        "calibration": "calibration.json",
        "samples": "samples/labels.json",
        "golden": "golden.json",
        "architecture": config.to_dict(),
        "source": source,
    }
    if task.split is None:  # no data: nothing to calibrate or sample; golden.json still holds the numerics
        del manifest["calibration"], manifest["samples"]
    return manifest


def token_grid(model: CTM) -> list[int]:
    """How the N input tokens lie over the input, for drawing attention on it: the spatial shape of the
    backbone's feature map, whose cells `CTM.tokens` flattens row-major ([7, 7] for MNIST, [L] for a
    sequence)."""
    with torch.no_grad():
        features = model.backbone(model.initial_rgb(torch.zeros(2, *model.config.input_shape)))
    return list(features.shape[2:])


def export_model(
    model: CTM,
    task: Task,
    out: Path,
    name: str,
    version: int,
    source: dict[str, Any],
    run: RunConfig | None = None,
    step: int = 0,
    samples: int = 300,
    golden: int = 3,
) -> dict[str, Any]:
    """Write the whole model folder; returns the manifest."""
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    export_graphs(model, out)
    save_checkpoint(out / "checkpoint.pt", model, run or RunConfig(task=task.name), step)

    manifest = build_manifest(model, task, name, version, source, out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if task.split is None:
        write_golden(model, task, out, [], name, version, golden)
        return manifest
    validation = task.split(model.config, "validation")
    test = task.split(model.config, "test")
    runner = OnnxCTM(out)
    # Consistency is certified beside accuracy, so a fresh export serves target_consistency too.
    calibration = calibrate_split(runner, validation, "validation")
    target = target_signal_of(runner, task)  # on training-distribution items, apart from the calibration's
    if target is not None:
        calibration["target_signal"] = target
    test_calibration = calibrate_split(runner, test, "test")

    sample_index = write_samples(task, model.config, out / "samples", samples)

    manifest["metrics"] = {
        "validation": _summary(calibration),
        "test": {
            **_summary(test_calibration),
            # What GetModel and the playground show: accuracy (and, for routes, the share solved) by
            # tick, and each signal's full-run answer with its threshold table.
            "by_tick": test_calibration["fixed_ticks"],
            "signals": {
                name: {key: value for key, value in block.items() if key != "guarantees"}
                for name, block in test_calibration["signals"].items()
            },
        },
    }
    (out / "calibration.json").write_text(json.dumps(calibration, indent=1) + "\n")
    write_golden(model, task, out, sample_index, name, version, golden)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _summary(calibration: dict[str, Any]) -> dict[str, Any]:
    keys = ("count", "accuracy_most_certain", "accuracy_last_tick")
    return {key: calibration[key] for key in keys}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ctm.export",
        description="Export a CTM checkpoint to a model folder (encoder.onnx, tick.onnx, manifest.json, ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a ctm-serve checkpoint (python -m ctm.train)")
    source.add_argument(
        "--reference", type=Path, help="a checkpoint of the reference implementation: a training checkpoint "
        "(model_state_dict + args) or a bare state_dict"
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="model folder, e.g. models/mnist-ctm/1")
    parser.add_argument("--name", help="model name (default: the parent folder's name)")
    parser.add_argument(
        "--task", choices=FAMILIES, help="reference only: the task (the reference's --dataset) of a bare state_dict "
        "whose backbone does not tell it"
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="reference only: architecture fields the "
        "file does not hold (a bare state_dict: heads, iterations); beside args, an override with a warning"
    )  # fmt: skip
    parser.add_argument("--labels", type=Path, help="reference only: class labels, one per line or a JSON list")
    parser.add_argument(
        "--unsafe-pickle", action="store_true", help="UNSAFE: load the reference file with weights_only=False, "
        "which runs any code the file carries; only for a file you trust that the allow-list refuses"
    )  # fmt: skip
    parser.add_argument("--samples", type=int, default=300, help="held-out test inputs to write to samples/")
    parser.add_argument("--force", action="store_true", help="replace an existing model folder")
    args = parser.parse_args(argv)

    out: Path = args.out
    if args.checkpoint and (args.set or args.task or args.labels or args.unsafe_pickle):
        raise SystemExit("error: --set, --task, --labels and --unsafe-pickle are for --reference only")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise SystemExit(f"{out} exists and is not empty; pass --force to replace it")
    try:
        if args.checkpoint:
            payload = load_checkpoint(args.checkpoint)
            model = model_from_checkpoint(payload)
            run = RunConfig().replace(**payload["run_config"])
            task, step = get_task(run.task), payload["step"]
            checkpoint_path, source = args.checkpoint, {"format": payload["format"], "step": step}
        else:
            labels = read_labels(args.labels) if args.labels else None
            imported = import_reference(
                args.reference, parse_overrides(args.set), args.task, labels, unsafe=args.unsafe_pickle
            )
            model, task, step, checkpoint_path = imported.model, imported.task, 0, args.reference
            run, source = RunConfig(task=task.name), imported.source
    except (CheckpointError, ConfigError) as error:
        raise SystemExit(f"error: {error}") from error

    version = int(out.name) if out.name.isdigit() else 1
    name = args.name or (out.parent.name if out.name.isdigit() else out.name)
    source = {"checkpoint_sha256": file_sha256(checkpoint_path), "step": step, **source}
    manifest = write_model_folder(out, lambda staging: export_model(
        model, task, staging, name, version, source, run, step, samples=args.samples
    ))  # fmt: skip
    test = manifest.get("metrics", {}).get("test")
    summary = f"test accuracy {test['accuracy_most_certain']:.4f} (most certain)" if test else "no data to calibrate"
    print(f"exported {name} v{version} to {out}: {summary}")


def write_model_folder(out: Path, write: Any) -> Any:
    """Run `write(staging)` in a temporary folder beside `out`, then rename it to `out`.

    A failure leaves nothing behind: not the staging folder, not a half-replaced `out`, not the parent
    folders this call created.
    """
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    previous = out.parent / f".{out.name}-previous"
    try:
        result = write(staging)
        staging.chmod(0o755)  # mkdtemp makes it private
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
        return result
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if previous.exists() and not out.exists():
            previous.rename(out)
        for folder in created:  # innermost first
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise


if __name__ == "__main__":
    main()
