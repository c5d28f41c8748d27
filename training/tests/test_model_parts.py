"""The model's parts against their definitions: per-neuron MLPs, the synapse U-Net, attention, certainty."""

import math

import pytest
import torch
import torch.nn.functional as F

from ctm.config import ConfigError, CTMConfig
from ctm.model import CTM, certainty
from ctm.neuron_models import NeuronLevelModels, SuperLinear
from ctm.synapses import SynapseUNet, build_synapses, unet_widths
from tests.conftest import small_config


@pytest.mark.parametrize("deep", [True, False])
def test_batched_nlm_equals_a_loop_over_neurons(deep):
    d, m, h = 12, 7, 5
    nlm = NeuronLevelModels(d, m, h, deep=deep, do_norm=False, dropout=0.0)
    with torch.no_grad():
        for layer in nlm[0]:
            if isinstance(layer, SuperLinear):
                layer.b1.normal_()
                layer.T.fill_(1.7)
    trace = torch.randn(4, d, m)
    expected = torch.empty(4, d)
    for n in range(d):  # neuron n's private MLP, written out by hand
        out = trace[:, n]
        for layer in nlm[0]:
            if isinstance(layer, SuperLinear):
                out = (out @ layer.w1[:, :, n] + layer.b1[0, n]) / layer.T
            else:
                out = F.glu(out, -1)
        expected[:, n] = out.squeeze(-1)
    torch.testing.assert_close(nlm(trace), expected)


def test_unet_widths_and_skips_match_the_spec():
    assert unet_widths(128, 4) == [128, 90, 53, 16]
    assert unet_widths(100, 2) == [100, 16]
    unet = SynapseUNet(d_in=40, d_model=128, depth=4)
    assert [m[1].out_features for m in unet.down_projections] == [90, 53, 16]
    assert [m[1].out_features for m in unet.up_projections] == [128, 90, 53]
    assert [ln.normalized_shape[0] for ln in unet.skip_lns] == [128, 90, 53]

    x = torch.randn(3, 40)
    downs = [unet.first_projection(x)]
    for layer in unet.down_projections:
        downs.append(layer(downs[-1]))
    up = downs[-1]
    for level in (2, 1, 0):  # up from the bottleneck, adding the same level's skip, then LayerNorm
        up = unet.skip_lns[level](unet.up_projections[level](up) + downs[level])
    torch.testing.assert_close(unet(x), up)


def test_depth_one_synapse_is_linear_glu_layernorm():
    synapse = build_synapses(40, 16, depth=1, min_width=16, dropout=0.0)
    names = [type(m).__name__ for m in synapse]
    assert names == ["Dropout", "Linear", "GLU", "LayerNorm"]
    assert synapse[1].weight.shape == (32, 40)


def test_attention_matches_torch_multihead_attention():
    model = CTM(small_config(heads=4, d_input=16)).eval()
    tokens = torch.randn(3, 9, 16)
    query = torch.randn(3, 16)
    expected, _ = model.attention(query.unsqueeze(1), tokens, tokens)
    d = 16
    w, b = model.attention.in_proj_weight, model.attention.in_proj_bias
    k = model._split_heads(F.linear(tokens, w[d : 2 * d], b[d : 2 * d]))
    v = model._split_heads(F.linear(tokens, w[2 * d :], b[2 * d :]))
    torch.testing.assert_close(model.attend(query, k, v), expected.squeeze(1))


def test_certainty_is_one_minus_normalised_entropy_averaged_over_positions():
    uniform = torch.zeros(1, 10)
    assert certainty(uniform, (10,)).item() == pytest.approx(0.0, abs=1e-6)
    confident = torch.tensor([[100.0] + [0.0] * 9])
    assert certainty(confident, (10,)).item() == pytest.approx(1.0, abs=1e-6)
    # two positions: one uniform (certainty 0), one with p = (0.9, 0.1)
    p = torch.tensor([0.9, 0.1])
    logits = torch.cat([torch.zeros(2), p.log()]).unsqueeze(0)
    entropy = -(p * p.log()).sum() / math.log(2)
    assert certainty(logits, (2, 2)).item() == pytest.approx(((1 - 1.0) + (1 - entropy.item())) / 2, abs=1e-6)


def test_tick_is_pure_and_forward_is_a_loop_over_it():
    model = CTM(small_config()).eval()
    x = torch.randn(2, *model.config.input_shape)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        logits, cert = model(x)
        k, v = model.encode(x)
        state = model.initial_state(2)
        first = model.tick(k, v, state)
        again = model.tick(k, v, state)
    for a, b in zip(first[0], again[0], strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(first[1], logits[..., 0])
    torch.testing.assert_close(first[2], cert[..., 0])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, params[key])
    assert logits.shape == (2, 10, model.config.iterations) and cert.shape == (2, model.config.iterations)


def test_config_overrides_are_strict():
    with pytest.raises(ConfigError, match="unknown CTMConfig key 'd_modle'"):
        CTMConfig().replace(d_modle=3)
    with pytest.raises(ConfigError, match="heads must be an integer"):
        CTMConfig().replace(heads="two")
    with pytest.raises(ConfigError, match=r"d_input \(30\) must be divisible by heads \(4\)"):
        CTMConfig().replace(d_input=30, heads=4)
    assert CTMConfig().replace(output_shape="16,2", deep_nlms="false").output_shape == (16, 2)
    assert CTMConfig.from_dict(CTMConfig().to_dict()) == CTMConfig()
