"""Checkpoints: our self-describing format round-trips; the reference layout loads, and a wrong one is named."""

import pytest
import torch

from ctm.checkpoint import CheckpointError, check_state_dict, load_checkpoint, model_from_checkpoint, save_checkpoint
from ctm.config import CTMConfig, RunConfig
from ctm.model import CTM
from ctm.reference import import_reference
from tests.conftest import small_config


def reference_layout(D, M, H, d, S_a, S_o, n_a, n_o, out_dims, synapse: str, unet_widths=()):
    """Names and shapes written out from shared/reference/ctm-reference-facts.md, not from our model."""
    layout = {
        "start_activated_state": [D],
        "start_trace": [D, M],
        "decay_params_action": [S_a],
        "decay_params_out": [S_o],
        "action_neuron_indices_left": [n_a],
        "action_neuron_indices_right": [n_a],
        "out_neuron_indices_left": [n_o],
        "out_neuron_indices_right": [n_o],
        "kv_proj.0.weight": [d, d],
        "kv_proj.0.bias": [d],
        "kv_proj.1.weight": [d],
        "kv_proj.1.bias": [d],
        "q_proj.weight": [d, S_a],
        "q_proj.bias": [d],
        "attention.in_proj_weight": [3 * d, d],
        "attention.in_proj_bias": [3 * d],
        "attention.out_proj.weight": [d, d],
        "attention.out_proj.bias": [d],
        "trace_processor.0.0.w1": [M, 2 * H, D],
        "trace_processor.0.0.b1": [1, D, 2 * H],
        "trace_processor.0.0.T": [1],
        "trace_processor.0.2.w1": [H, 2, D],
        "trace_processor.0.2.b1": [1, D, 2],
        "trace_processor.0.2.T": [1],
        "output_projector.0.weight": [out_dims, S_o],
        "output_projector.0.bias": [out_dims],
    }
    if synapse == "linear":
        layout.update(
            {
                "synapses.1.weight": [2 * D, d + D],
                "synapses.1.bias": [2 * D],
                "synapses.3.weight": [D],
                "synapses.3.bias": [D],
            }
        )
    else:
        w = unet_widths
        layout.update(
            {
                "synapses.first_projection.0.weight": [w[0], d + D],
                "synapses.first_projection.0.bias": [w[0]],
                "synapses.first_projection.1.weight": [w[0]],
                "synapses.first_projection.1.bias": [w[0]],
            }
        )
        for i in range(len(w) - 1):
            layout.update(
                {
                    f"synapses.down_projections.{i}.1.weight": [w[i + 1], w[i]],
                    f"synapses.down_projections.{i}.1.bias": [w[i + 1]],
                    f"synapses.down_projections.{i}.2.weight": [w[i + 1]],
                    f"synapses.down_projections.{i}.2.bias": [w[i + 1]],
                    f"synapses.up_projections.{i}.1.weight": [w[i], w[i + 1]],
                    f"synapses.up_projections.{i}.1.bias": [w[i]],
                    f"synapses.up_projections.{i}.2.weight": [w[i]],
                    f"synapses.up_projections.{i}.2.bias": [w[i]],
                    f"synapses.skip_lns.{i}.weight": [w[i]],
                    f"synapses.skip_lns.{i}.bias": [w[i]],
                }
            )
    return layout


def core_shapes(model: CTM) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items() if not k.startswith("backbone.")}


def test_mnist_model_has_the_reference_tutorial_layout():
    model = CTM(CTMConfig())  # the mnist default: first-last 16/16, depth-1 synapses, deep NLMs
    expected = reference_layout(128, 15, 8, 32, 136, 136, 16, 16, 10, "linear")
    assert core_shapes(model) == expected


def test_unet_random_pairing_model_has_the_reference_layout():
    config = small_config(synapse_depth=4, neuron_select_type="random-pairing", n_random_pairing_self=2)
    model = CTM(config)
    expected = reference_layout(32, 5, 4, 16, 8, 8, 8, 8, 10, "unet", unet_widths=(32, 26, 21, 16))
    assert core_shapes(model) == expected


def reference_state_dict(config: CTMConfig) -> dict[str, torch.Tensor]:
    """Random weights in the reference layout (indices as the reference would pick them)."""
    layout = reference_layout(
        config.d_model, config.memory_length, config.memory_hidden_dims, config.d_input,
        config.synch_size_action, config.synch_size_out, config.n_synch_action, config.n_synch_out,
        config.out_dims, "linear",
    )  # fmt: skip
    generator = torch.Generator().manual_seed(3)

    def plausible(key: str, shape: list[int]) -> torch.Tensor:
        """Random values at the scale trained weights have, so float32 error stays at the trained scale."""
        noise = torch.randn(shape, generator=generator)
        if key.endswith(".T"):
            return 1 + 0.1 * noise
        if key.endswith(".w1"):
            return noise / shape[0] ** 0.5
        if key.endswith("weight") and len(shape) == 2:
            return noise / shape[1] ** 0.5
        if key.endswith("weight"):  # LayerNorm gain
            return 1 + 0.1 * noise
        return 0.1 * noise

    state = {k: plausible(k, shape) for k, shape in layout.items()}
    n, d = config.n_synch_out, config.d_model
    state["out_neuron_indices_left"] = state["out_neuron_indices_right"] = torch.arange(n)
    state["action_neuron_indices_left"] = state["action_neuron_indices_right"] = torch.arange(d - n, d)
    state["decay_params_action"] = state["decay_params_action"].abs()
    state["decay_params_out"] = state["decay_params_out"].abs()
    backbone = CTM(config).backbone.state_dict()  # the tutorial's conv backbone
    state.update({f"backbone.{k}": v for k, v in backbone.items()})
    return state


def test_reference_state_dict_loads_and_infers_the_architecture(tmp_path):
    truth = small_config(heads=1)
    state = reference_state_dict(truth)
    path = tmp_path / "reference.pt"
    torch.save({"model_state_dict": state}, path)
    imported = import_reference(path, {"heads": "1", "iterations": str(truth.iterations)}, family="mnist")
    assert imported.model.config == truth.replace(index_seed=0)
    torch.testing.assert_close(imported.model.state_dict()["q_proj.weight"], state["q_proj.weight"])


def test_wrong_reference_state_dict_names_the_key(tmp_path):
    state = reference_state_dict(small_config(heads=1))
    settings = {"heads": "1", "iterations": "3"}

    def attempt(broken):
        torch.save(broken, tmp_path / "broken.pt")
        return import_reference(tmp_path / "broken.pt", settings, family="mnist")

    with pytest.raises(CheckpointError, match=r"missing key 'synapses.3.bias' \(expected shape \[32\]\)"):
        attempt({k: v for k, v in state.items() if k != "synapses.3.bias"})
    with pytest.raises(CheckpointError, match=r"key 'output_projector.0.bias' has shape \[7\], expected \[10\]"):
        attempt(dict(state, **{"output_projector.0.bias": torch.zeros(7)}))
    with pytest.raises(CheckpointError, match="reference state_dict is missing key 'start_trace'"):
        attempt({k: v for k, v in state.items() if k != "start_trace"})
    with pytest.raises(CheckpointError, match=r"unexpected key 'extra.weight'"):
        attempt(dict(state, **{"extra.weight": torch.ones(2)}))
    with pytest.raises(CheckpointError, match=r"does not fit the model"):
        check_state_dict(CTM(small_config(heads=1)), dict(state, **{"q_proj.bias": torch.ones(3)}))


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = CTM(small_config())
    run = RunConfig(steps=7)
    save_checkpoint(tmp_path / "ckpt.pt", model, run, step=7)
    payload = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # plain types only
    assert payload["step"] == 7 and payload["run_config"]["steps"] == 7
    restored = model_from_checkpoint(load_checkpoint(tmp_path / "ckpt.pt"))
    assert restored.config == model.config
    for key, value in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value)
    with pytest.raises(CheckpointError, match="not a ctm-serve/1 checkpoint"):
        torch.save({"something": 1}, tmp_path / "other.pt")
        load_checkpoint(tmp_path / "other.pt")
