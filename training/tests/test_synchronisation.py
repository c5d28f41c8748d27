"""The O(D_sub) recurrence equals the closed form over the whole post-activation history."""

import torch

from ctm.model import CTM
from ctm.synchronisation import pair_indices, sync_closed_form
from tests.conftest import small_config


def test_recurrence_equals_closed_form_over_history(pairing):
    config = small_config(neuron_select_type=pairing, n_random_pairing_self=2, iterations=9)
    model = CTM(config).eval()
    with torch.no_grad():  # non-trivial, distinct decay rates, some beyond the clamp
        model.decay_params_out.copy_(torch.linspace(-1.0, 17.0, config.synch_size_out))
        model.decay_params_action.copy_(torch.linspace(0.0, 3.0, config.synch_size_action))
    x = torch.randn(3, *config.input_shape)
    with torch.no_grad():
        k, v = model.encode(x)
        state = model.initial_state(3)
        history = [state.z]  # the output accumulators are seeded from the start state
        for _ in range(config.iterations):
            action_history = list(history)  # action sync at this tick reads z before the tick
            state, _, _ = model.tick(k, v, state)
            history.append(state.z)
            zs = torch.stack(history, 1)
            expected_out = sync_closed_form(
                zs, pairing, model.out_neuron_indices_left, model.out_neuron_indices_right, model.decay_params_out
            )
            torch.testing.assert_close(state.sync_out_alpha / state.sync_out_beta.sqrt(), expected_out)
            expected_action = sync_closed_form(
                torch.stack(action_history, 1),
                pairing,
                model.action_neuron_indices_left,
                model.action_neuron_indices_right,
                model.decay_params_action,
            )
            torch.testing.assert_close(state.sync_action_alpha / state.sync_action_beta.sqrt(), expected_action)


def test_pairing_modes_select_the_documented_pairs():
    dense = CTM(small_config(neuron_select_type="first-last"))
    n = dense.config.n_synch_out
    assert dense.config.synch_size_out == n * (n + 1) // 2
    assert dense.out_neuron_indices_left.tolist() == list(range(n))
    d = dense.config.d_model
    assert dense.action_neuron_indices_left.tolist() == list(range(d - n, d))
    left, right = pair_indices("first-last", dense.out_neuron_indices_left, dense.out_neuron_indices_right)
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == [(i, j) for i in range(n) for j in range(i, n)]

    pairing = CTM(small_config(neuron_select_type="random-pairing", n_random_pairing_self=3))
    assert pairing.config.synch_size_out == pairing.config.n_synch_out
    torch.testing.assert_close(pairing.out_neuron_indices_left[:3], pairing.out_neuron_indices_right[:3])


def test_decay_is_clamped_without_mutating_parameters():
    model = CTM(small_config())
    with torch.no_grad():
        model.decay_params_out.fill_(-5.0)
    before = model.decay_params_out.detach().clone()
    model(torch.randn(2, *model.config.input_shape))
    torch.testing.assert_close(model.decay_params_out.detach(), before)  # forward is pure
    model.clamp_decay_()
    assert model.decay_params_out.min().item() == 0.0
