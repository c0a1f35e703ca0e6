"""The default recipe (method "auto"): the pruning/factorisation split chosen on held-out calibration loss."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from token_data import random_token_batches
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)

import tnkit.compress as tc
from tnkit.compress.recipes.prune import block_linear_params
from tnkit.compress.recipes.recipe import (
    AUTO_SPLITS,
    adopt,
    descend,
    heldout_loss,
    heldout_split,
    prune_fraction,
)


@pytest.fixture(scope="module")
def calib():
    return random_token_batches(1, 4096, seq_len=64, n_batches=3)


def test_auto_adopts_the_best_one_shot_split_or_pruning_alone_whichever_is_better(calib):
    base = tc.tiny_llama(seed=2)
    before = block_linear_params(base)
    model = copy.deepcopy(base)
    # float32 statistics: the candidates must equal the plain methods' (which measure in float32) below
    res = tc.compress_model(model, ratio=0.6, calibration=calib, stats_precision="float32", progress=False)
    assert res.method == "auto" == tc.DEFAULT_METHOD and res.extra["auto_prunable"] is True
    predicted, losses = res.extra["auto_predicted"], res.extra["auto_losses"]
    searched = sorted(round(prune_fraction(0.6, s), 6) for s in AUTO_SPLITS if s < 1.0)
    # built from the most pruning down while the held-out loss falls (the first compared with pruning alone's)
    assert sorted(predicted) == searched[:len(predicted)] and predicted
    walk = [losses[0.6]] + [predicted[k] for k in sorted(predicted)]
    assert all(a > b for a, b in zip(walk[:-2], walk[1:-1]))
    assert len(predicted) == len(searched) or walk[-1] >= walk[-2]
    assert all(np.isfinite(v) and v > 0 for v in predicted.values())
    best = min(predicted, key=predicted.get)
    assert sorted(losses) == sorted({best, 0.6})  # the best one-shot split, and pruning alone
    assert losses[best] == predicted[best]
    assert losses[res.extra["auto_prune"]] == min(losses.values())
    fit, held = heldout_split(calib)
    assert len(fit) == 2 and len(held) == 1
    assert heldout_loss(model, held) == pytest.approx(min(losses.values()), rel=1e-6)
    kept = sum(r.params if r.form != "dense" else r.original_params for r in res.layers)
    assert kept <= 0.6 * before + 1
    # both candidates are the plain methods run directly on the fitting batches with the same sensitivities
    weights = tc.gradient_weights(base, tc.find_layers(base), fit[:1])
    pruned = copy.deepcopy(base)
    tc.compress_model(pruned, method="prune", ratio=0.6, calibration=fit, progress=False)
    searched = copy.deepcopy(base)
    tc.compress_model(searched, method="search", ratio=0.6, prune=None if best == 1.0 else best, calibration=fit,
                      sequential=False, weights=weights, progress=False)
    for m, keep in ((pruned, 0.6), (searched, best)):
        assert heldout_loss(m, held) == pytest.approx(losses[keep], rel=1e-5)
        assert heldout_loss(model, held) <= heldout_loss(m, held) + 1e-9


def test_each_split_is_scored_by_its_one_shot_held_out_loss_and_the_best_is_kept(calib):
    from tnkit.compress.recipes.pipeline import _best_split

    base = tc.tiny_llama(seed=5)
    fit, held = heldout_split(calib)
    layers = tc.find_layers(base)
    search = dict(stats=tc.collect_activation_stats(base, layers, fit),
                  weights=tc.gradient_weights(base, layers, fit[:1]), families=("lowrank",), step=8, max_flops=None)
    best, losses = _best_split(base, 0.6, (0.0, 0.5), search, held, False)
    assert sorted(losses) == [0.8, 1.0]
    for keep in (0.8, 1.0):
        m = copy.deepcopy(base)
        tc.compress_model(m, method="search", ratio=0.6, prune=None if keep == 1.0 else keep, sequential=False,
                          calibration=fit, weights=search["weights"], progress=False)
        assert losses[keep] == pytest.approx(heldout_loss(m, held), rel=1e-6)
    assert best.prune == min(losses, key=losses.get) and best.loss == losses[best.prune]
    assert heldout_loss(best.model, held) == pytest.approx(best.loss, rel=1e-6)
    assert best.result.params_after == tc.count_params(best.model) < tc.count_params(base)
    ref = tc.tiny_llama(seed=5)
    for p, q in zip(base.parameters(), ref.parameters()):  # the model itself is untouched
        assert p.shape == q.shape and bool((p == q).all())


def test_auto_validates_before_work(calib):
    model = tc.tiny_llama()
    with pytest.raises(ValueError, match="calibration"):
        tc.compress_model(model, ratio=0.6, progress=False)
    with pytest.raises(ValueError, match="prune"):
        tc.compress_model(model, ratio=0.6, prune=0.8, calibration=calib, progress=False)
    with pytest.raises(ValueError, match="layers"):
        tc.compress_model(model, ratio=0.6, calibration=calib, layers=list(tc.find_layers(model))[:2], progress=False)
    with pytest.raises(ValueError, match="max_bond"):
        tc.compress_model(model, max_bond=4, calibration=calib, progress=False)
    with pytest.raises(ValueError, match="stats_precision"):
        tc.compress_model(model, ratio=0.6, calibration=calib, stats_precision="float16", progress=False)


def test_heldout_split_and_adopt():
    batches = [np.zeros(1), np.ones(1), np.full(1, 2.0)]
    fit, held = heldout_split(batches)
    assert len(fit) == 2 and held[0][0] == 2.0
    assert heldout_split(batches[:1]) == (batches[:1], batches[:1])
    a, b = tc.tiny_llama(seed=0), tc.tiny_llama(seed=1)
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        adopt(a, tc.tiny_gpt2())
    adopt(a, b)
    assert a.model is b.model and a.config is b.config


def test_calibration_batches_hold_out_the_end_of_the_text():
    ids = np.arange(20_000)
    batches = tc.calibration_batches(ids, seq_len=64, batch_size=4, n_batches=4)
    assert len(batches) == 4 and all(tuple(b.shape) == (4, 64) for b in batches)
    cut = int(len(ids) * 0.9)
    assert all(int(b.max()) < cut for b in batches[:-1]) and int(batches[-1].min()) >= cut
    with pytest.raises(ValueError, match="n_batches"):
        tc.calibration_batches(ids, seq_len=64, batch_size=4, n_batches=1)
    with pytest.raises(ValueError, match="at least"):
        tc.calibration_batches(ids[:1000], seq_len=64, batch_size=4, n_batches=3)


@pytest.mark.parametrize("n", range(1, 10))
def test_descend_finds_the_minimum_of_a_unimodal_sequence_walking_down_from_its_end(n):
    rng = np.random.default_rng(n)
    for m in range(n + 1):  # m == n: the known point after the last index is the minimum
        values = np.abs(np.arange(n + 1) - m) + rng.uniform(0.0, 0.5, n + 1) * (np.arange(n + 1) != m)
        calls = []
        seen = descend(lambda i: calls.append(i) or values[i], n, above=values[n])
        assert calls == list(range(n - 1, n - 1 - len(calls), -1))  # from the end down, each index once
        best = min(seen, key=seen.get)
        assert (best == m) if m < n else (seen[best] > values[n] and calls == [n - 1])
        assert len(calls) == min(n - m + 1, n)
    # the measured SmolLM2 one-shot losses of the four search splits (shares 0, 0.25, 0.5, 0.75) and pruning alone:
    # 70% kept (two splits built) and 90% kept (three)
    for losses, above, best, built in (((4.638, 4.326, 4.076, 3.946), 4.122, 3, 2),
                                       ((3.364, 3.324, 3.319, 3.472), 3.533, 2, 3)):
        seen = descend(lambda i: losses[i], 4, above=above)
        assert min(seen, key=seen.get) == best and len(seen) == built
    with pytest.raises(ValueError, match="n"):
        descend(lambda i: 0.0, 0)


def test_bfloat16_statistics_are_float32_statistics_to_bfloat16_rounding(calib):
    from tnkit.compress.calibrate.calibration import stats_precision

    model = tc.tiny_llama(seed=3)
    layers = tc.find_layers(model)
    ref = tc.collect_activation_stats(model, layers, calib)
    low = tc.collect_activation_stats(model, layers, calib, precision="bfloat16")
    for name in layers:
        a, b = ref[name].covariance, low[name].covariance
        assert ref[name].n_tokens == low[name].n_tokens
        # bfloat16 keeps 8 bits of mantissa (relative rounding 2**-9) through a two-block forward
        assert np.linalg.norm(b - a) <= 3e-2 * np.linalg.norm(a)
        assert np.allclose(low[name].mean_abs, ref[name].mean_abs, rtol=3e-2, atol=1e-3 * ref[name].mean_abs.max())
    assert stats_precision(model) in ("float32", "bfloat16")
    assert stats_precision(model.double()) == "float32"
    with pytest.raises(ValueError, match="precision"):
        tc.collect_activation_stats(model, layers, calib, precision="half")


def test_auto_with_bfloat16_statistics_builds_the_same_kind_of_model(calib):
    base = tc.tiny_llama(seed=2)
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    ra = tc.compress_model(a, ratio=0.6, calibration=calib, stats_precision="float32", progress=False)
    rb = tc.compress_model(b, ratio=0.6, calibration=calib, stats_precision="bfloat16", progress=False)
    pa, pb = ra.extra["auto_predicted"], rb.extra["auto_predicted"]
    common = set(pa) & set(pb)  # both walks start at the split with the most pruning
    assert min(pa) in common
    for keep in common:
        assert pb[keep] == pytest.approx(pa[keep], rel=2e-2)
    assert rb.extra["auto_losses"][0.6] == pytest.approx(ra.extra["auto_losses"][0.6], rel=2e-2)
