"""ctm.scale: the benchmark's presets are the paper's sizes, and a graph's weights can live in a .data
file beside it (as a graph over protobuf's 2 GiB limit must) and still run exactly as PyTorch does."""

import json

import numpy as np
import onnx
import torch

from ctm.manifest import validate_manifest
from ctm.model import CTM
from ctm.onnx_runner import OnnxCTM
from ctm.scale import PRESETS, build

TOLERANCE = 1e-4


def test_presets_are_the_reference_scripts_sizes():
    family, imagenet = PRESETS["imagenet"]
    assert family == "imagenet"
    assert (imagenet.d_model, imagenet.d_input, imagenet.heads, imagenet.synapse_depth) == (4096, 1024, 16, 8)
    assert (imagenet.n_synch_out, imagenet.n_synch_action, imagenet.n_random_pairing_self) == (8196, 2048, 32)
    assert (imagenet.neuron_select_type, imagenet.iterations, imagenet.memory_length) == ("random-pairing", 50, 25)
    assert (imagenet.deep_nlms, imagenet.memory_hidden_dims, imagenet.backbone) == (True, 64, "resnet152-4")
    assert (imagenet.input_shape, imagenet.output_shape) == ((3, 224, 224), (1000,))
    family, maze = PRESETS["maze"]
    assert family.startswith("mazes-")
    assert (maze.d_model, maze.d_input, maze.heads, maze.synapse_depth, maze.iterations) == (2048, 512, 16, 8, 75)
    assert (maze.memory_length, maze.deep_nlms, maze.memory_hidden_dims) == (25, True, 32)
    assert (maze.neuron_select_type, maze.n_synch_out, maze.n_synch_action) == ("first-last", 64, 32)
    assert (maze.backbone, maze.output_shape) == ("resnet34-2", (100, 5))
    for name in ("imagenet", "maze", "mnist"):  # each family has a tiny twin of the same kind
        big, tiny = PRESETS[name][1], PRESETS[f"tiny-{name}"][1]
        assert (tiny.neuron_select_type, len(tiny.output_shape)) == (big.neuron_select_type, len(big.output_shape))


def test_forced_external_data_exports_loads_and_matches_pytorch(tmp_path):
    folder = tmp_path / "scale-tiny-maze" / "1"
    record = build("tiny-maze", folder, external_data=True, seed=3)
    assert {"encoder.onnx.data", "tick.onnx.data"} <= set(record["files"])
    for name in ("encoder.onnx", "tick.onnx"):
        graph = onnx.load(str(folder / name), load_external_data=False).graph
        assert graph.initializer and all(
            t.data_location == onnx.TensorProto.EXTERNAL and t.external_data[0].value == f"{name}.data"
            for t in graph.initializer
        ), name
        assert (folder / f"{name}.data").stat().st_mode & 0o044 == 0o044  # readable by whoever serves it
    manifest = json.loads((folder / "manifest.json").read_text())
    validate_manifest(manifest, folder)

    torch.manual_seed(3)  # the same random weights as build()
    model = CTM(PRESETS["tiny-maze"][1]).eval()
    x = torch.rand(2, *model.config.input_shape) * 2 - 1
    with torch.no_grad():
        logits, certainty = model(x)
    out = OnnxCTM(folder).run(x.numpy())
    np.testing.assert_allclose(out["logits"], logits.permute(0, 2, 1).numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(out["certainty"], certainty.numpy(), atol=TOLERANCE, rtol=0)


def test_a_small_graph_is_one_file_unless_forced(tmp_path):
    record = build("tiny-mnist", tmp_path / "scale-tiny-mnist" / "1")
    assert not any(name.endswith(".data") for name in record["files"])


def test_a_graph_over_the_limit_gets_external_data_without_being_asked(tmp_path, monkeypatch):
    import ctm.export

    monkeypatch.setattr(ctm.export, "PROTOBUF_LIMIT", ctm.export.WEIGHT_HEADROOM + 1)  # any weights exceed it
    record = build("tiny-mnist", tmp_path / "scale-tiny-mnist" / "1")
    assert {"encoder.onnx.data", "tick.onnx.data"} <= set(record["files"])
    OnnxCTM(tmp_path / "scale-tiny-mnist" / "1").run(np.zeros((1, 1, 28, 28), dtype=np.float32))
