"""Reference checkpoints: every model family imports from the reference's own file layout, exports, and
onnxruntime matches our PyTorch model at every tick; unsafe pickles are refused; bad files are named."""

from __future__ import annotations

import datetime
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ctm.backbones import TruncatedResNet
from ctm.checkpoint import load_checkpoint, model_from_checkpoint
from ctm.config import RESNET_BACKBONES, CTMConfig, parse_overrides
from ctm.export import main as export_main
from ctm.fixtures import synthetic_inputs
from ctm.losses import dual_index_loss
from ctm.manifest import validate_manifest
from ctm.model import CTM
from ctm.onnx_runner import OnnxCTM
from ctm.reference import import_reference, normalise_layout
from ctm.safe_load import load_reference_file
from tests.reference_layouts import (
    reference_args,
    reference_state,
    resnet_layout,
    training_checkpoint,
    tutorial_state,
)

SMALL = dict(d_model=48, d_input=16, heads=2, iterations=4, memory_length=5, memory_hidden_dims=3, n_synch_out=8,
             n_synch_action=6, synapse_depth=3)  # fmt: skip


def export(tmp_path: Path, payload, *flags: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "checkpoint.pt"
    torch.save(payload, path)
    out = tmp_path / "models" / "imported" / "1"
    export_main(["--reference", str(path), "--out", str(out), *flags])
    return out


def assert_onnx_matches_pytorch(out: Path, expected_state: dict[str, torch.Tensor]) -> dict:
    """The folder is valid, holds exactly the checkpoint's weights, and ORT matches PyTorch at every tick."""
    manifest = json.loads((out / "manifest.json").read_text())
    validate_manifest(manifest, out)
    model = model_from_checkpoint(load_checkpoint(out / "checkpoint.pt")).eval()
    ours = model.state_dict()
    for key, value in expected_state.items():
        assert torch.equal(ours[key], value), key
    x = synthetic_inputs(manifest["input"], 2, seed=5)
    with torch.no_grad():
        logits, certainty = model(x)
    ort = OnnxCTM(out).run(x.numpy())
    expected = logits.permute(0, 2, 1).numpy()
    scale = max(1.0, float(np.abs(expected).max()))  # relative for large logits
    np.testing.assert_allclose(ort["logits"], expected, atol=1e-4 * scale, rtol=0)
    np.testing.assert_allclose(ort["certainty"], certainty.numpy(), atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 1e-3 and certainty.std() > 0  # not a degenerate model
    return manifest


def test_cifar10_resnet18_2_learnable_fourier_from_a_training_checkpoint(tmp_path):
    args = reference_args("image_classification", **SMALL, backbone_type="resnet18-2",
                          positional_embedding_type="learnable-fourier", dataset="cifar10")  # fmt: skip
    state = reference_state(args, 3)
    manifest = assert_onnx_matches_pytorch(export(tmp_path, training_checkpoint(state, args)), state)
    image = manifest["input"]["image"]
    assert (image["preprocess"], image["height"], image["channels"]) == ("resize", 32, 3)
    assert image["normalize"]["mean"] == pytest.approx([0.49139968, 0.48215827, 0.44653124])
    assert manifest["output"] == {"shape": [10], "labels": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                            "frog", "horse", "ship", "truck"]}  # fmt: skip
    assert manifest["architecture"]["heads"] == 2 and manifest["architecture"]["synapse_depth"] == 3
    assert manifest["source"]["architecture_from"] == "args" and "calibration" not in manifest


def test_imagenet_resnet50_1_multi_fourier_with_labels_and_a_warned_override(tmp_path, capsys):
    args = reference_args("image_classification", **SMALL, backbone_type="resnet50-1", dataset="imagenet",
                          positional_embedding_type="multi-learnable-fourier", neuron_select_type="random",
                          dropout=0.2)  # fmt: skip
    args.out_dims = 12  # a small head: the layout does not care how many classes
    state = reference_state(args, 3)
    (tmp_path / "labels.txt").write_text("".join(f"thing {i}\n" for i in range(12)))
    flags = ["--set", "input_shape=3,24,24", "--labels", str(tmp_path / "labels.txt")]
    manifest = assert_onnx_matches_pytorch(export(tmp_path, training_checkpoint(state, args), *flags), state)
    assert "--set input_shape=(3, 24, 24) overrides the checkpoint's args" in capsys.readouterr().err
    image = manifest["input"]["image"]
    assert (image["preprocess"], image["resize_shorter"], image["height"]) == ("center-crop", 27, 24)
    assert image["normalize"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert manifest["output"]["labels"][11] == "thing 11"
    assert manifest["architecture"]["dropout"] == 0.2  # the checkpoint's, not a task default


def test_maze_resnet34_1_custom_rotational_route_output(tmp_path):
    args = reference_args("mazes", **{**SMALL, "n_synch_action": 8}, backbone_type="resnet34-1",
                          positional_embedding_type="custom-rotational", neuron_select_type="first-last",
                          maze_route_length=6, expand_range=False)  # fmt: skip
    state = reference_state(args, 3)
    manifest = assert_onnx_matches_pytorch(export(tmp_path, training_checkpoint(state, args)), state)
    assert manifest["output"] == {"shape": [6, 5], "labels": ["up", "down", "left", "right", "wait"]}
    image = manifest["input"]["image"]
    assert (image["height"], image["width"], image["preprocess"]) == (39, 39, "resize")
    assert image["normalize"] == {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}  # --no-expand_range: [0, 1]


def test_parity_backbone_rotational_1d_with_data_and_calibration(tmp_path):
    args = reference_args("parity", **{**SMALL, "synapse_depth": 1}, parity_sequence_length=16)
    state = reference_state(args, 1)
    out = export(tmp_path, training_checkpoint(state, args), "--samples", "4")
    manifest = assert_onnx_matches_pytorch(out, state)
    assert manifest["output"]["shape"] == [16, 2] and manifest["input"]["shape"] == [16]
    assert manifest["architecture"]["neuron_select_type"] == "random"
    assert (out / "calibration.json").exists() and len(json.loads((out / "samples/labels.json").read_text())) == 4


def test_mnist_tutorial_notebook_layout_from_a_bare_state_dict(tmp_path):
    args = reference_args("image_classification", **{**SMALL, "synapse_depth": 1}, backbone_type="mnist-conv",
                          neuron_select_type="first-last")  # fmt: skip
    args.out_dims = 10
    state = tutorial_state(args)
    out = export(tmp_path, state, "--set", "heads=2", "--set", "iterations=4", "--samples", "3")
    renamed = {k.replace("synapses.0.", "synapses.1.").replace("synapses.2.", "synapses.3.") for k in state}
    assert "synapses.1.weight" in renamed
    model = model_from_checkpoint(load_checkpoint(out / "checkpoint.pt"))
    assert model.state_dict()["trace_processor.0.2.w1"].shape == (3, 2, 48)  # deep NLMs, not shallow
    assert torch.equal(model.state_dict()["trace_processor.0.2.w1"], state["trace_processor.2.w1"])
    manifest = assert_onnx_matches_pytorch(out, {"synapses.1.weight": state["synapses.0.weight"]})
    assert manifest["task"] == "mnist-tutorial" and manifest["source"]["layout"] == "tutorial"
    assert manifest["input"]["image"]["normalize"] == {"mean": [0.0], "std": [1.0]}  # ToTensor() pixels
    assert manifest["metrics"]["test"]["count"] > 0  # real MNIST digits, unnormalised, calibrate it


def test_shallow_wide_and_no_backbone_from_bare_state_dicts(tmp_path):
    base = {**SMALL, "iterations": 2, "synapse_depth": 1, "deep_memory": False}
    wide = reference_args("image_classification", **base, backbone_type="shallow-wide", dataset="cifar10")
    state = reference_state(wide, 3)
    flags = ["--task", "cifar10", "--set", "heads=2", "--set", "iterations=2", "--set", "input_shape=3,8,8"]
    assert_onnx_matches_pytorch(export(tmp_path / "wide", state, *flags), state)
    plain = reference_args("image_classification", **base, backbone_type="none", dataset="cifar100")
    plain.out_dims = 7
    state = reference_state(plain, 3)
    flags[1] = "cifar100"
    manifest = assert_onnx_matches_pytorch(export(tmp_path / "plain", state, *flags), state)
    assert manifest["output"]["labels"] == [f"class_{i}" for i in range(7)]
    assert manifest["architecture"]["deep_nlms"] is False and manifest["architecture"]["backbone"] == "none"


@pytest.mark.parametrize("name", RESNET_BACKBONES)
def test_every_resnet_has_the_reference_key_layout(name):
    depth, stages = (int(v) for v in name.removeprefix("resnet").split("-"))
    with torch.device("meta"):  # resnet152-4 has 58M parameters: shapes only
        ours = {f"backbone.{k}": list(v.shape) for k, v in TruncatedResNet(depth, stages).state_dict().items()}
    assert ours == resnet_layout(depth, stages)


def test_our_training_can_use_a_reference_backbone_and_embedding():
    config = CTMConfig(iterations=3, d_model=32, d_input=16, n_synch_out=6, n_synch_action=6).replace(
        **parse_overrides(["backbone=resnet18-1", "positional_embedding=learnable-fourier"])
    )
    model = CTM(config)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    logits, certainty = model(x)
    loss, _, _ = dual_index_loss(logits, certainty, y, config.output_shape)
    loss.backward()
    for name in ("initial_rgb.weight", "backbone.layer1.1.conv2.weight", "positional_embedding.Wr.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


# ---------------------------------------------------------------- refused, not exported


def cifar_checkpoint(**overrides):
    args = reference_args("image_classification", **{**SMALL, "iterations": 2, **overrides}, backbone_type="resnet18-1")
    return reference_state(args, 3), args


def refused(tmp_path: Path, payload, *flags: str) -> str:
    with pytest.raises(SystemExit) as error:
        export(tmp_path, payload, *flags)
    assert not (tmp_path / "models").exists()  # nothing in --out, nor the folders above it
    return str(error.value)


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    state, args = cifar_checkpoint()
    payload = training_checkpoint(state, args)
    payload["scheduler_state_dict"] = RunsCode(tmp_path / "ran")
    message = refused(tmp_path, payload)
    assert "posix.system" in message and "not on the allow-list" in message and "--unsafe-pickle" in message
    assert not (tmp_path / "ran").exists()


def test_a_global_outside_the_allow_list_needs_the_unsafe_opt_in(tmp_path):
    state, args = cifar_checkpoint()
    payload = training_checkpoint(state, args)
    payload["started"] = datetime.date(2026, 12, 1)  # harmless, but not something export needs
    assert "its pickle names datetime.date, which is not on the allow-list" in refused(tmp_path, payload)
    imported = import_reference(tmp_path / "checkpoint.pt", unsafe=True)  # what --unsafe-pickle does
    assert imported.source["architecture_from"] == "args" and imported.model.config.backbone == "resnet18-1"


def test_numpy_1_checkpoints_load_with_the_same_allow_list(tmp_path):
    """numpy 1.x pickles its arrays as numpy.core.multiarray.*, numpy 2 as numpy._core.multiarray.*."""
    torch.save({"model_state_dict": {"w": torch.ones(2)}, "h": [np.float64(0.5), np.arange(3.0)]}, tmp_path / "a.pt")
    written_by_numpy_1 = tmp_path / "b.pt"
    with zipfile.ZipFile(tmp_path / "a.pt") as src, zipfile.ZipFile(written_by_numpy_1, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info.filename, data)
    assert "numpy.core.multiarray._reconstruct" in torch.serialization.get_unsafe_globals_in_checkpoint(
        written_by_numpy_1
    )
    loaded = load_reference_file(written_by_numpy_1)
    assert loaded["h"][0] == 0.5 and loaded["h"][1].tolist() == [0.0, 1.0, 2.0]


def test_flags_for_reference_imports_are_refused_with_our_own_checkpoints(tmp_path):
    with pytest.raises(SystemExit, match="for --reference only"):
        export_main(["--checkpoint", "x.pt", "--set", "heads=2", "--out", str(tmp_path / "m" / "1")])


def test_swapped_keys_are_caught(tmp_path):
    state, args = cifar_checkpoint()
    state["q_proj.weight"], state["kv_proj.0.weight"] = state["kv_proj.0.weight"], state["q_proj.weight"]
    message = refused(tmp_path, training_checkpoint(state, args))
    assert "backbone: the checkpoint's args say 'resnet18-1' but the weights say '6 feature channels' " in message
    assert "(kv_proj.0.weight has shape [16, 6])" in message
    state, args = cifar_checkpoint()
    state["synapses.skip_lns.0.weight"], state["synapses.skip_lns.1.weight"] = (
        state["synapses.skip_lns.1.weight"], state["synapses.skip_lns.0.weight"],
    )  # fmt: skip
    message = refused(tmp_path, training_checkpoint(state, args))
    assert "key 'synapses.skip_lns.0.weight' has shape [32], expected [48]" in message


def test_a_transposed_weight_is_caught(tmp_path):
    state, args = cifar_checkpoint()
    state["q_proj.weight"] = state["q_proj.weight"].T.contiguous()
    message = refused(tmp_path, training_checkpoint(state, args))
    assert "key 'q_proj.weight' has shape [6, 16], expected [16, 6]" in message


def test_a_wrong_head_count_is_caught(tmp_path):
    state, args = cifar_checkpoint()
    message = refused(tmp_path, training_checkpoint(state, args), "--set", "heads=4")
    assert "heads: --set says 4 but the checkpoint's args say 2" in message
    message = refused(tmp_path, state, "--task", "cifar10", "--set", "iterations=2")  # bare: must be given
    assert "a bare state_dict does not say heads: pass --set heads=..." in message


def test_args_that_contradict_the_weights_name_both_values(tmp_path):
    state, args = cifar_checkpoint()
    args.d_model = 64
    message = refused(tmp_path, training_checkpoint(state, args))
    assert "d_model: the checkpoint's args say 64 but the weights say 48 (start_trace has shape [48, 5])" in message
    state, args = cifar_checkpoint()
    args.backbone_type = "resnet34-1"
    message = refused(tmp_path, training_checkpoint(state, args))
    assert "backbone: the checkpoint's args say 'resnet34-1' but the weights say 'resnet18-1'" in message


def test_unknown_backbone_keys_and_unimportable_families_are_named(tmp_path):
    state, args = cifar_checkpoint()
    state["backbone.stem.weight"] = state.pop("backbone.conv1.weight")
    assert "key 'backbone.conv1.weight'" in refused(tmp_path, training_checkpoint(state, args))
    state, args = cifar_checkpoint()
    args.N_to_sort = 30
    assert "sort-task checkpoint" in refused(tmp_path, training_checkpoint(state, args))
    state, args = cifar_checkpoint()
    args.dataset = "qamnist"
    assert "args.dataset is 'qamnist'" in refused(tmp_path, training_checkpoint(state, args))
    assert "--labels has 3 labels, the model has 10 classes" in refused(
        tmp_path, training_checkpoint(*cifar_checkpoint()), "--labels", str(_labels(tmp_path, 3))
    )


def _labels(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "three.json"
    path.write_text(json.dumps([f"l{i}" for i in range(count)]))
    return path


def test_a_failure_mid_export_leaves_nothing_behind(tmp_path, monkeypatch):
    import ctm.export

    def fail_halfway(model, out):
        (out / "encoder.onnx").write_text("half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ctm.export, "export_graphs", fail_halfway)
    with pytest.raises(RuntimeError, match="disk full"):
        export(tmp_path, training_checkpoint(*cifar_checkpoint()))
    assert not (tmp_path / "models").exists()  # no staging folder, no out, no parents it created
    existing = tmp_path / "models" / "imported" / "1"
    existing.mkdir(parents=True)
    (existing / "manifest.json").write_text("{}")
    with pytest.raises(RuntimeError, match="disk full"):
        export(tmp_path, training_checkpoint(*cifar_checkpoint()), "--force")
    assert sorted(p.name for p in existing.parent.iterdir()) == ["1"]  # the old folder, untouched
    assert (existing / "manifest.json").read_text() == "{}"


def test_ddp_and_torch_compile_prefixes_are_dropped():
    state = {"module.start_trace": torch.ones(1), "module.backbone._orig_mod.conv1.weight": torch.ones(1),
             "synapses._orig_mod.first_projection.0.weight": torch.ones(1)}  # fmt: skip
    renamed, layout = normalise_layout(state)
    assert sorted(renamed) == ["backbone.conv1.weight", "start_trace", "synapses.first_projection.0.weight"]
    assert layout == "reference"
