"""ONNX export: onnxruntime matches PyTorch at every tick; the model folder is complete and valid."""

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctm.checkpoint import load_checkpoint, model_from_checkpoint
from ctm.export import export_graphs, export_model
from ctm.export import main as export_main
from ctm.manifest import ManifestError, validate_manifest
from ctm.model import CTM
from ctm.onnx_runner import OnnxCTM
from ctm.tasks import get_task
from tests.conftest import SHIPPED_MODEL, small_config
from tests.test_checkpoint import reference_state_dict

TOLERANCE = 1e-4


def assert_parity(model: CTM, folder: Path, batch_sizes=(1, 5)) -> None:
    """For each batch size and every trained tick, ORT logits, certainty and (with a halting head) the
    halting signal match PyTorch within 1e-4."""
    runner = OnnxCTM(folder)
    model.eval()
    inputs = get_task(runner.manifest["task"]).split(model.config, "validation").inputs
    for batch in batch_sizes:
        x = inputs[:batch]  # real inputs: the distribution the graphs will serve
        with torch.no_grad():
            logits, certainty, halt = model.think(x)  # (B, out, T), (B, T), (B, T) or (B, 0)
        out = runner.run(x.numpy())  # the state is fed back tick after tick, as the server does
        assert ("halt" in out) == (model.halting is not None)
        if model.halting is not None:
            np.testing.assert_allclose(out["halt"], torch.sigmoid(halt).numpy(), atol=TOLERANCE, rtol=0)
        assert out["logits"].shape == (batch, model.config.iterations, model.config.out_dims)
        np.testing.assert_allclose(out["logits"], logits.permute(0, 2, 1).numpy(), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(out["certainty"], certainty.numpy(), atol=TOLERANCE, rtol=0)
        if "attention" in runner.manifest:
            np.testing.assert_allclose(out["attention"], attention_maps(model, x).numpy(), atol=TOLERANCE, rtol=0)


@torch.no_grad()
def attention_maps(model: CTM, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's attention map at every tick: (B, T, heads, N)."""
    k, v = model.encode(x)
    state, maps = model.initial_state(len(x)), []
    for _ in range(model.config.iterations):
        maps.append(model.attention_map(k, state))
        state, _, _ = model.tick(k, v, state)
    return torch.stack(maps, 1)


def test_attention_map_is_what_the_tick_attends_with():
    model = CTM(small_config()).eval()
    x = get_task("mnist").split(model.config, "validation").inputs[:3]
    used = []
    original = model.attention_weights

    def recording(query, k):
        weights = original(query, k)
        used.append(weights.squeeze(2))
        return weights

    model.attention_weights = recording  # the instance attribute shadows the method for this model only
    with torch.no_grad():
        k, v = model.encode(x)
        state = model.initial_state(3)
        for _ in range(model.config.iterations):
            expected = model.attention_map(k, state)
            used.clear()
            state, _, _ = model.tick(k, v, state)
            assert len(used) == 1
            torch.testing.assert_close(used[0], expected, atol=1e-6, rtol=0)
            torch.testing.assert_close(expected.sum(-1), torch.ones(3, model.config.heads))


def test_small_mnist_model_graphs_match_pytorch(tmp_path):
    model = CTM(small_config(synapse_depth=4, neuron_select_type="random-pairing", n_random_pairing_self=2))
    export_model(model, get_task("mnist"), tmp_path, "tiny", 1, source={"format": "test"}, samples=5)
    assert_parity(model, tmp_path)


def test_halting_head_is_a_tick_output_declared_in_the_manifest(tmp_path):
    model = CTM(small_config(halting_hidden=16))
    manifest = export_model(model, get_task("mnist"), tmp_path, "tiny", 1, source={"format": "test"}, samples=3)
    assert manifest["outputs"]["halt"] == "halt"
    validate_manifest(manifest, tmp_path)
    assert_parity(model, tmp_path)
    calibration = json.loads((tmp_path / "calibration.json").read_text())
    assert set(calibration["signals"]) == {"certainty", "halt"}
    assert set(calibration["signals"]["halt"]["guarantees"]) >= {"accuracy", "consistency"}
    golden = json.loads((tmp_path / "golden.json").read_text())
    assert all(len(case["halt"]) == model.config.iterations for case in golden["cases"])
    broken = copy.deepcopy(manifest)
    broken["outputs"]["halt"] = "nope"
    with pytest.raises(ManifestError, match="outputs.halt"):
        validate_manifest(broken, tmp_path)


def test_a_model_without_a_halting_head_exports_as_before(tmp_path):
    model = CTM(small_config())
    manifest = export_model(model, get_task("mnist"), tmp_path, "tiny", 1, source={"format": "test"}, samples=3)
    assert "halt" not in manifest["outputs"]
    assert "halt" not in {o["name"] for o in manifest["graphs"]["tick"]["outputs"]}
    assert set(json.loads((tmp_path / "calibration.json").read_text())["signals"]) == {"certainty"}


def test_parity_task_model_with_multi_position_output(tmp_path):
    task = get_task("parity")
    config = task.model.replace(iterations=5, d_model=32, d_input=16, n_synch_out=8, n_synch_action=8)
    model = CTM(config)
    manifest = export_model(model, task, tmp_path, "parity-tiny", 1, source={"format": "test"}, samples=4)
    assert manifest["output"]["shape"] == [16, 2] and manifest["input"]["kind"] == "tensor"
    assert manifest["attention"] == {"output": "attention", "token_grid": [16]}
    assert_parity(model, tmp_path)
    samples = json.loads((tmp_path / "samples" / "labels.json").read_text())
    assert len(samples) == 4 and len(samples[0]["tensor"]) == 16 and len(samples[0]["label"]) == 16


def test_reference_layout_checkpoint_exports_with_parity(tmp_path):
    config = small_config(heads=1)
    state = reference_state_dict(config)
    checkpoint = tmp_path / "their_ctm.pt"
    torch.save(state, checkpoint)  # a bare state_dict: heads and ticks must be given
    out = tmp_path / "models" / "their-ctm" / "1"
    export_main(
        ["--reference", str(checkpoint), "--task", "mnist", "--set", "heads=1",
         "--set", f"iterations={config.iterations}", "--out", str(out), "--samples", "3"]
    )  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    validate_manifest(manifest, out)
    assert manifest["name"] == "their-ctm" and manifest["source"]["format"] == "reference"
    model = model_from_checkpoint(load_checkpoint(out / "checkpoint.pt"))
    assert model.config == config.replace(index_seed=0)
    torch.testing.assert_close(model.state_dict()["q_proj.weight"], state["q_proj.weight"])
    assert_parity(model, out)


def test_graphs_are_single_files_with_dynamic_batch(tmp_path):
    import onnx

    export_graphs(CTM(small_config()), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.onnx", "tick.onnx"]  # no external data
    for name in ("encoder.onnx", "tick.onnx"):
        graph = onnx.load(str(tmp_path / name)).graph
        for value in [*graph.input, *graph.output]:
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", (name, value.name)


@pytest.mark.skipif(not os.path.exists(os.path.join(SHIPPED_MODEL, "manifest.json")), reason="no shipped model")
def test_shipped_model_matches_its_checkpoint_and_is_valid():
    folder = Path(SHIPPED_MODEL)
    manifest = json.loads((folder / "manifest.json").read_text())
    validate_manifest(manifest, folder)
    model = model_from_checkpoint(load_checkpoint(folder / "checkpoint.pt"))
    assert_parity(model, folder)
    golden = json.loads((folder / "golden.json").read_text())
    runner = OnnxCTM(folder)
    for case in golden["cases"]:
        x = np.asarray(case["input"], dtype=np.float32).reshape(1, *case["input_shape"])
        out = runner.run(x)
        np.testing.assert_allclose(out["logits"][0], case["logits"], atol=TOLERANCE, rtol=0)
        attention = out["attention"][0].reshape(len(case["attention"]), -1)
        np.testing.assert_allclose(attention, case["attention"], atol=TOLERANCE, rtol=0)
        if "halt" in case:
            np.testing.assert_allclose(out["halt"][0], case["halt"], atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    export_model(CTM(small_config()), get_task("mnist"), folder, "tiny", 1, source={"format": "test"}, samples=3)
    return folder, json.loads((folder / "manifest.json").read_text())


def test_manifest_validates(exported):
    folder, manifest = exported
    validate_manifest(manifest, folder)
    assert manifest["attention"] == {"output": "attention", "token_grid": [7, 7]}
    assert {"encoder.onnx", "tick.onnx", "calibration.json", "golden.json", "checkpoint.pt"} <= {
        p.name for p in folder.iterdir()
    }


def test_export_calibrates_accuracy_and_consistency(exported):
    # Without consistency in a fresh export's calibration, target_consistency is refused on it.
    folder, _ = exported
    guarantees = json.loads((folder / "calibration.json").read_text())["signals"]["certainty"]["guarantees"]
    assert set(guarantees) >= {"accuracy", "consistency"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.pop("ticks"), "manifest field \\(top level\\): 'ticks' is a required property"),
        (lambda m: m["input"].update(kind="video"), "manifest field input.kind: 'video' is not one of"),
        (lambda m: m["output"]["labels"].pop(), "manifest field output.labels: 9 labels for 10 classes"),
        (lambda m: m["state"][0].update(input="nope_in"), "manifest field state.0.input: 'nope_in' is not among"),
        (lambda m: m["state"][1].update(shape=[3, 3]), "manifest field state.1.init: 'trace' has shape"),
        (lambda m: m["context"].pop(), "manifest field graphs.tick.inputs: 'v' is neither context nor state"),
        (lambda m: m["input"]["image"].pop("normalize"), "manifest field input.image: 'normalize' is a required"),
        (lambda m: m["graphs"]["tick"].update(file="../x.onnx"), "manifest field graphs.tick.file"),
        (lambda m: m.update(calibration="missing.json"), "manifest field calibration: file 'missing.json' not found"),
        (
            lambda m: m["input"]["image"].update(preprocess="center-crop"),
            "manifest field input.image: 'resize_shorter' is a required property",
        ),
        (
            lambda m: m["input"]["image"].update(preprocess="center-crop", resize_shorter=20),
            "manifest field input.image.resize_shorter: 20 is smaller than the crop 28x28",
        ),
        (
            lambda m: m["input"]["image"].update(resize_shorter=32),
            'manifest field input.image.resize_shorter: only for preprocess "center-crop", not "mnist-digit"',
        ),
        (
            lambda m: m["input"]["image"].update(preprocess="crop"),
            "manifest field input.image.preprocess: 'crop' is not",
        ),
    ],
)
def test_manifest_errors_name_the_field(exported, mutate, message):
    folder, manifest = exported
    broken = copy.deepcopy(manifest)
    mutate(broken)
    with pytest.raises(ManifestError, match=message):
        validate_manifest(broken, folder)
