"""Width pruning of a tiny Llama: a plain smaller LlamaForCausalLM that transformers loads on its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from token_data import random_token_batches
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)

import tnkit.compress as tc
from tnkit.compress.recipes.prune import prune_width


@pytest.fixture(scope="module")
def calib():
    return random_token_batches(0, 2048, seq_len=64, n_batches=3)


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.as_tensor(ids)[None]).logits


@pytest.mark.parametrize("widths", [dict(intermediate_size=60, heads_per_group=1),
                                    dict(intermediate_size=72, kv_groups=1), dict(ratio=0.6)])
def test_pruned_model_loads_in_plain_transformers_with_the_same_logits(tmp_path, calib, widths):
    from transformers import AutoModelForCausalLM

    model = tc.tiny_llama(seed=3)
    res = prune_width(model, calibration=calib, **widths)
    cfg = model.config
    assert cfg.intermediate_size == res.intermediate_size
    assert cfg.num_key_value_heads == res.kv_groups
    assert cfg.num_attention_heads == res.kv_groups * res.heads_per_group
    assert res.params_after == tc.block_linear_params(model)
    if "ratio" in widths:
        assert res.ratio <= widths["ratio"]
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "LlamaForCausalLM"
    ids = np.arange(40) % 256
    np.testing.assert_allclose(_logits(loaded, ids).numpy(), _logits(model, ids).numpy(), atol=1e-5)


def test_pruning_nothing_changes_nothing(calib):
    model = tc.tiny_llama(seed=3)
    ids = np.arange(30)
    before = _logits(model, ids)
    prune_width(model, calibration=calib)
    np.testing.assert_allclose(_logits(model, ids).numpy(), before.numpy(), atol=1e-6)


def test_least_squares_fold_lowers_the_mlp_output_error(calib):
    ref = tc.tiny_llama(seed=4)
    errors = {}
    for fold in (False, True):
        model = tc.tiny_llama(seed=4)
        errors[fold] = prune_width(model, intermediate_size=40, calibration=calib, fold=fold).removed_energy
    assert errors[True] < errors[False]
    del ref


def test_activation_weighted_scores_keep_the_loud_channel(calib):
    model = tc.tiny_llama(seed=5)
    mlp = model.model.layers[0].mlp
    with torch.no_grad():
        mlp.down_proj.weight[:, 7] *= 50.0  # channel 7 now dominates the MLP's output
    prune_width(model, intermediate_size=10, calibration=calib, fold=False)
    ref = tc.tiny_llama(seed=5).model.layers[0].mlp.gate_proj.weight[7]
    kept = model.model.layers[0].mlp.gate_proj.weight
    assert any(torch.equal(row, ref) for row in kept)


def test_prune_validates_before_work(calib):
    model = tc.tiny_llama()
    with pytest.raises(ValueError, match="ratio"):
        prune_width(model, ratio=1.5, calibration=calib)
    with pytest.raises(ValueError, match="intermediate_size"):
        prune_width(model, intermediate_size=1000, calibration=calib)
    with pytest.raises(ValueError, match="calibration"):
        prune_width(model, ratio=0.5)
    with pytest.raises(TypeError, match="Llama"):
        prune_width(tc.tiny_gpt2(), ratio=0.5, calibration=calib)
    with pytest.raises(ValueError, match="fold_ridge"):
        prune_width(model, ratio=0.5, calibration=calib, fold_ridge=-0.1)
    with pytest.raises(TypeError, match="fold_ridge"):
        prune_width(model, ratio=0.5, calibration=calib, fold_ridge="0.1")
    with pytest.raises(ValueError, match="channel_score"):
        prune_width(model, ratio=0.5, calibration=calib, channel_score="fisher")


def test_obs_channel_choice_is_the_cheapest_single_removal_after_the_fold():
    from tnkit.compress.recipes.prune import CHANNEL_SCORES, _removed

    rng = np.random.default_rng(7)
    x = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    c, w = x.T @ x / 400, rng.standard_normal((5, 12))
    ridge = 0.0
    errors = [_removed(w, c, np.delete(np.arange(12), j), fold=True, ridge=ridge)[0] for j in range(12)]
    keep = CHANNEL_SCORES["obs"](w, c, 11, ridge)
    assert np.setdiff1d(np.arange(12), keep).tolist() == [int(np.argmin(errors))]
    keep3 = CHANNEL_SCORES["obs"](w, c, 9, ridge)  # greedy, three at once: never worse than the energy scores here
    energy3 = CHANNEL_SCORES["energy"](w, c, 9, ridge)
    assert _removed(w, c, keep3, fold=True, ridge=ridge)[0] <= _removed(w, c, energy3, fold=True, ridge=ridge)[0] + 1e-12


def test_compress_model_prune_method_and_stage(calib):
    model = tc.tiny_llama(seed=2)
    res = tc.compress_model(model, method="prune", ratio=0.7, calibration=calib, progress=False)
    assert res.extra["prune"].ratio <= 0.7
    model = tc.tiny_llama(seed=2)
    before = tc.block_linear_params(model)
    res = tc.compress_model(model, method="search", ratio=0.6, prune=0.85, calibration=calib, progress=False)
    kept = sum(r.params if r.form != "dense" else r.original_params for r in res.layers)
    assert kept <= 0.6 * before + 1


@pytest.mark.parametrize("widths, block_layers", [
    (dict(heads_per_group=1), ("self_attn.q_proj", "self_attn.o_proj")),  # the MLP then sees other inputs
    (dict(intermediate_size=50), ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"))])
def test_pruned_stats_are_the_pruned_models_own_in_the_first_block(calib, widths, block_layers):
    from tnkit.compress.recipes.prune import pruned_stats

    model = tc.tiny_llama(seed=3)
    stats = tc.collect_activation_stats(model, tc.find_layers(model), calib)
    res = prune_width(model, stats=stats, fold=False, **widths)
    cut = pruned_stats(stats, res)
    fresh = tc.collect_activation_stats(model, tc.find_layers(model), calib)
    assert sum(res.errors.values()) > 0 and len(res.errors) == 2 * model.config.num_hidden_layers
    for name in block_layers:
        name = f"model.layers.0.{name}"
        np.testing.assert_allclose(cut[name].covariance, fresh[name].covariance, rtol=1e-5, atol=1e-6)
        assert cut[name].mean_abs.shape == fresh[name].mean_abs.shape


@pytest.mark.parametrize("ridge", [0.0, 0.1, 1.0])
def test_fold_error_equals_the_explicit_output_error(ridge):
    from tnkit.compress.recipes.prune import _removed

    rng = np.random.default_rng(3)
    w = rng.standard_normal((7, 12))
    x = rng.standard_normal((40, 12)) @ rng.standard_normal((12, 12))
    c = x.T @ x / 40
    keep = np.array([0, 2, 3, 5, 8, 9, 11])
    err, folded = _removed(w, c, keep, fold=True, ridge=ridge)
    full = np.zeros_like(w)
    full[:, keep] = folded
    e = w - full
    assert err == pytest.approx(float(np.sum((e @ c) * e)), rel=1e-9)
    drop = np.setdiff1d(np.arange(12), keep)
    assert err <= float(np.sum((w[:, drop] @ c[np.ix_(drop, drop)]) * w[:, drop])) + 1e-12


def test_pruning_spreads_its_blocks_over_the_callers_threads(calib, monkeypatch):
    from threadpoolctl import threadpool_limits

    import tnkit.compress.recipes.prune as prune

    seen = []
    real = prune.map_on_threads
    monkeypatch.setattr(prune, "map_on_threads", lambda fn, items, workers: seen.append(workers) or real(fn, items, 1))
    with threadpool_limits(2):  # the caller's BLAS threads: the block workers, not the one-thread section's count
        prune_width(tc.tiny_llama(seed=0), ratio=0.7, calibration=calib)
    assert seen == [2]
