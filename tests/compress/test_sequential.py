"""Sequential calibration: block by block, each layer fitted on the compressed model's own inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from token_data import random_token_batches
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)

import tnkit.compress as tc
from tnkit.compress.calibrate.sequential import corrected_weight


@pytest.fixture
def calib():
    return random_token_batches(0, 3000, seq_len=64, n_batches=2, seed=None)


def test_corrected_weight_is_the_least_squares_fit_on_the_compressed_inputs(rng):
    """``W*`` minimises sum_t ||W x_t - W' x'_t||^2 (dense lstsq reference, ridge 0)."""
    x = rng.standard_normal((500, 12))
    x_comp = x + 0.3 * rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12))
    w = rng.standard_normal((7, 12))
    w_star = corrected_weight(w, x.T @ x_comp / 500, x_comp.T @ x_comp / 500, ridge=0.0)
    reference = np.linalg.lstsq(x_comp, x @ w.T, rcond=None)[0].T
    np.testing.assert_allclose(w_star, reference, rtol=1e-9, atol=1e-10)
    same = corrected_weight(w, x.T @ x / 500, x.T @ x / 500, ridge=0.0)  # nothing compressed upstream: W* = W
    np.testing.assert_allclose(same, w, rtol=1e-9, atol=1e-10)


def _final_hidden_error(base, model, batches):
    err = 0.0
    with torch.no_grad():
        for b in batches:
            ref = base(b, output_hidden_states=True).hidden_states[-1]
            out = model(b, output_hidden_states=True).hidden_states[-1]
            err += float(((out - ref) ** 2).sum() / (ref**2).sum())
    return err


@pytest.mark.parametrize("feedback_ridge", [None, 1e-12])
def test_full_rank_sequential_reproduces_the_model(calib, feedback_ridge):
    """At full rank nothing is truncated, the two streams agree (and every ``W*`` is ``W``): the logits are unchanged."""
    base, model = tc.tiny_llama(seed=0), tc.tiny_llama(seed=0)
    chosen = tc.find_layers(model, roles=["q", "o"])
    full = min(min(tc.linear_weight(m).shape) for m in chosen.values())
    assert all(tc.linear_weight(m).shape == (full, full) for m in chosen.values())
    res = tc.compress_model(model, method="whiten", max_bond=full, layers=chosen, calibration=calib, sequential=True,
                            feedback_ridge=feedback_ridge, progress=False)
    assert res.extra["sequential"] and res.extra["feedback_ridge"] == feedback_ridge
    assert {r.form for r in res.layers} == {"lowrank"}
    x = calib[0][:1]
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, base(x).logits, rtol=1e-4, atol=1e-4)


def test_error_feedback_fits_the_original_outputs_on_the_calibration_tokens(calib):
    """With feedback, the last layers see the compressed stream yet aim at the original outputs: lower error there."""
    base = tc.tiny_llama(seed=0)
    errors = {}
    for ridge in (None, 1e-6):
        model = tc.tiny_llama(seed=0)
        tc.compress_model(model, method="whiten", ratio=0.4, calibration=calib, sequential=True, feedback_ridge=ridge,
                          progress=False)
        errors[ridge] = _final_hidden_error(base, model, calib)
    assert errors[1e-6] < errors[None]


def test_each_layer_is_truncated_for_the_inputs_the_compressed_model_feeds_it(calib):
    """Re-whitening: the last block's q projection, fed the compressed stream, has the smallest output error
    there among layers of its rank; the one-shot layer (whitened for the original inputs) does worse."""
    name = "model.layers.1.self_attn.q_proj"
    base = tc.tiny_llama(seed=0)
    w = tc.linear_weight(dict(base.named_modules())[name]).detach().double().numpy()
    layers = {}
    for seq in (False, True):
        model = tc.tiny_llama(seed=0)
        tc.compress_model(model, method="whiten", ratio=0.4, calibration=calib, sequential=seq, progress=False)
        layers[seq] = model
    fed = layers[True]  # the inputs that the sequentially compressed model gives the layer
    c = tc.collect_activation_stats(fed, {name: dict(fed.named_modules())[name]}, calib)[name].covariance

    def output_error(model):
        e = w - tc.linear_weight(dict(model.named_modules())[name]).detach().double().numpy()
        return np.einsum("ij,jk,ik->", e, c, e)

    rank = dict(layers[True].named_modules())[name].rank
    assert dict(layers[False].named_modules())[name].rank == rank
    singular = np.linalg.svd(w @ np.linalg.cholesky(c), compute_uv=False)
    optimal = float(np.sum(singular[rank:] ** 2))  # the best rank-r error in the metric of these inputs
    assert output_error(layers[True]) == pytest.approx(optimal, rel=1e-3)
    assert output_error(layers[False]) > optimal * (1 + 1e-3)


@pytest.mark.parametrize("method", ["mpo-whiten", "asvd"])
def test_sequential_runs_for_gpt2_blocks_and_other_data_aware_methods(calib, method):
    """GPT-2 passes its blocks positional arguments (replayed as captured); Conv1D weights; MPO builders."""
    gpt = tc.tiny_gpt2(seed=1)
    res = tc.compress_model(gpt, method=method, ratio=0.5, calibration=calib, sequential=True, progress=False)
    assert res.params_after < res.params_before
    with torch.no_grad():
        assert torch.isfinite(gpt(calib[0]).logits).all()


def test_sequential_argument_errors(calib):
    model = tc.tiny_llama(seed=0)
    with pytest.raises(ValueError, match="`sequential` needs a data-aware method"):
        tc.compress_model(model, method="svd", ratio=0.5, calibration=calib, sequential=True)
    with pytest.raises(ValueError, match="and no calibration"):
        tc.compress_model(model, method="whiten", ratio=0.5, sequential=True)
    with pytest.raises(ValueError, match="`feedback_ridge` needs `sequential=True`"):
        tc.compress_model(model, method="whiten", ratio=0.5, calibration=calib, feedback_ridge=0.1)


def test_the_statistics_run_stops_at_the_last_layer_to_compress(calib):
    """Only q_proj compressed: each block's statistics run stops at q_proj's input (no MLP runs) and nothing runs
    after the last block, yet every layer equals the one built on a full forward pass of the partly compressed model."""
    model, ref = tc.tiny_llama(seed=0), tc.tiny_llama(seed=0)
    chosen = tc.find_layers(model, roles=["q"])
    blocks = model.model.layers
    runs = []
    for i, block in enumerate(blocks):
        block.mlp.register_forward_hook(lambda *args, i=i: runs.append(i))
    tc.compress_model(model, method="whiten", max_bond=4, layers=chosen, calibration=calib, sequential=True,
                      progress=False)
    # only the compressed blocks' outputs feeding the next block: blocks 0 .. n-2, once per batch
    assert sorted(runs) == sorted(list(range(len(blocks) - 1)) * len(calib))
    for name in chosen:
        layer = dict(ref.named_modules())[name]
        st = tc.collect_activation_stats(ref, {name: layer}, calib)[name]
        new = tc.LowRankLinear.from_linear(layer, rank=4, method="whiten", covariance=st.covariance)
        tc.replace_layers(ref, {name: new})
        got = dict(model.named_modules())[name]
        torch.testing.assert_close(got.dense_weight(), new.dense_weight(), rtol=1e-5, atol=1e-6)
