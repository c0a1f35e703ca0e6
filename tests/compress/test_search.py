"""The per-layer family search: candidates' exact errors and the multiple-choice knapsack vs brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)

import tnkit.compress as tc
from tnkit.compress.numerics.factorize import mpo_factorize, mpo_to_dense
from tnkit.compress.layers.lowrank import LowRankLinear
from tnkit.core.linalg import cholesky_whitener
from tnkit.compress.numerics.search import (
    LayerOptions,
    gradient_weights,
    knapsack,
    layer_options,
    lowrank_dims,
    search_allocation,
    whitened_weight,
)


def _covariance(rng, n, tokens=200):
    x = rng.standard_normal((tokens, n)) * np.exp(rng.standard_normal(n))
    return x.T @ x / tokens


def _abs_error(w, m, c):
    e = w - m
    return float(np.trace(e @ c @ e.T))


def _brute(costs, values, budget):
    best = None
    for combo in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(c[j] for c, j in zip(costs, combo))
        if cost <= budget:
            val = sum(v[j] for v, j in zip(values, combo))
            if best is None or val < best[0] - 1e-12:
                best = (val, combo)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_knapsack_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(2, 5)
    costs = [np.sort(rng.integers(1, 12, size=rng.integers(1, 5))) for _ in range(groups)]
    values = [np.sort(rng.random(len(c)))[::-1] * rng.random() for c in costs]  # not convex in general
    least = sum(int(c.min()) for c in costs)
    budget = int(least + rng.integers(0, 15))
    choice = knapsack(costs, values, budget, resolution=budget)  # unit cost 1: exact
    best_val, _ = _brute(costs, values, budget)
    assert sum(int(c[j]) for c, j in zip(costs, choice)) <= budget
    assert sum(v[j] for v, j in zip(values, choice)) == pytest.approx(best_val, abs=1e-12)


def test_knapsack_coarse_resolution_fits_budget_and_is_near_optimal():
    rng = np.random.default_rng(5)
    costs = [np.sort(rng.integers(10, 400, size=6)) for _ in range(5)]
    values = [np.sort(rng.random(6))[::-1] for _ in costs]
    budget = int(sum(c.min() for c in costs) + 500)
    choice = knapsack(costs, values, budget, resolution=16)
    exact = _brute(costs, values, budget)[0]
    got = sum(v[j] for v, j in zip(values, choice))
    assert sum(int(c[j]) for c, j in zip(costs, choice)) <= budget
    assert got <= exact + 0.25 * max(float(v.max()) for v in values)


def test_knapsack_rejects_an_impossible_budget():
    with pytest.raises(ValueError, match="budget"):
        knapsack([np.array([5, 9])], [np.array([1.0, 0.0])], 4)


def test_flops_constraint_is_met(rng):
    opts = {}
    for k in range(4):
        p = np.array([10, 20, 30, 40])
        opts[f"l{k}"] = LayerOptions(("lowrank",) * 3 + ("dense",), np.array([1, 2, 3, -1]), p,
                                     np.array([4.0, 2.0, 1.0, 0.0]) * (k + 1), np.array([10, 20, 30, 80]))
    free = search_allocation(opts, 130)
    flops = lambda ch: sum(int(opts[n].flops[j]) for n, j in ch.items())  # noqa: E731
    bound = flops(free) - 20
    capped = search_allocation(opts, 130, max_flops=bound)
    assert flops(capped) <= bound
    assert sum(int(opts[n].params[j]) for n, j in capped.items()) <= 130


def test_lowrank_candidate_is_the_two_core_split_and_reproduces_lowranklinear(rng):
    w = rng.standard_normal((12, 20))
    c = _covariance(rng, 20)
    rank = 5
    layer = LowRankLinear.from_weight(torch.as_tensor(w), rank=rank, method="whiten", covariance=c)
    # the MPO whose core 0 holds every output leg and core 1 every input leg, truncated in the whitened basis
    s = cholesky_whitener(c)
    out_dims, in_dims = lowrank_dims(12, 20)
    f = mpo_factorize(w @ s, out_dims=out_dims, in_dims=in_dims, max_bond=rank)
    m = mpo_to_dense(f.cores) @ np.linalg.inv(s)
    lr = layer.dense_weight().detach().double().numpy()
    np.testing.assert_allclose(m, lr, atol=1e-8 * np.abs(w).max())
    opts = layer_options(w, c, families=("lowrank",), step=1)
    j = list(opts.sizes).index(rank)
    assert opts.families[j] == "lowrank" and opts.params[j] == rank * (12 + 20)
    # the whitener carries a 1e-6 relative damping (cholesky_whitener), hence not 1e-10
    assert opts.errors[j] == pytest.approx(_abs_error(w, lr, c), rel=1e-4)
    assert opts.families[-1] == "dense" and opts.errors[-1] == 0.0


@pytest.mark.parametrize("family, n_cores", [("mpo", 2), ("mpo3", 3)])
def test_mpo_candidates_report_the_exact_error_of_the_layer_built(rng, family, n_cores):
    w = rng.standard_normal((16, 24))
    c = _covariance(rng, 24)
    opts = layer_options(w, c, families=(family,), mpo_fractions=(0.4,))
    j = opts.families.index(family)
    lin = torch.nn.Linear(24, 16, bias=False, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w))
    layer = tc.MPOLinear.from_linear_whitened(lin, c, n_cores=n_cores, max_bond=int(opts.sizes[j]), sweeps=0,
                                              ridge=0.3)
    x = torch.eye(24, dtype=torch.float64)
    m = (layer(x) - layer(torch.zeros(1, 24, dtype=torch.float64))).T.detach().numpy()
    assert opts.errors[j] == pytest.approx(_abs_error(w, m, c), rel=1e-6)
    assert opts.params[j] == layer.num_params


def test_search_objective_never_worse_than_uniform_whitened_svd(rng):
    names = [f"l{k}" for k in range(5)]
    ws = {n: rng.standard_normal((16, 24)) * rng.random() for n in names}
    cs = {n: _covariance(rng, 24) for n in names}
    opts = {n: layer_options(ws[n], cs[n], families=("lowrank", "mpo"), step=1) for n in names}
    for keep in (0.3, 0.5, 0.8):
        budget = int(keep * 16 * 24 * 5)
        choice = search_allocation(opts, budget, resolution=budget)
        found = sum(opts[n].errors[j] for n, j in choice.items())
        rank = int(keep * 16 * 24 / 40)
        uniform = 0.0
        for n in names:
            lr = LowRankLinear.from_weight(torch.as_tensor(ws[n]), rank=rank, method="whiten", covariance=cs[n])
            uniform += _abs_error(ws[n], lr.dense_weight().detach().double().numpy(), cs[n])
        assert found <= uniform * (1 + 1e-9)


def test_gradient_weights_are_positive_and_normalised():
    model = tc.tiny_llama(seed=1)
    layers = tc.find_layers(model)
    ids = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (2, 32)))
    w = gradient_weights(model, layers, [ids])
    assert set(w) == set(layers)
    assert all(v > 0 for v in w.values())
    assert np.mean(list(w.values())) == pytest.approx(1.0)
    assert all(p.requires_grad for p in model.parameters())


def test_gradient_weights_in_bfloat16_are_float32_ones_to_bfloat16_rounding():
    model = tc.tiny_llama(seed=1)
    layers = tc.find_layers(model)
    ids = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (4, 64)))
    exact = gradient_weights(model, layers, [ids])
    fast = gradient_weights(model, layers, [ids], precision="bfloat16")
    assert fast != exact  # the products did run in bfloat16
    ratios = np.array([fast[n] / exact[n] for n in layers])
    np.testing.assert_allclose(ratios, 1.0, atol=0.02)
    with pytest.raises(ValueError, match="precision"):
        gradient_weights(model, layers, [ids], precision="float16")


def test_layer_options_validate_inputs(rng):
    with pytest.raises(ValueError, match="families"):
        layer_options(np.ones((4, 6)), np.eye(6), families=("tucker",))
    with pytest.raises(ValueError, match="covariance"):
        layer_options(np.ones((4, 6)), np.eye(5))


def test_whitened_factors_from_a_shared_whitener_are_svd_llms(rng):
    """The factors from a given whitener are those of lowrank_factors(method="whiten") on the covariance, bit for bit."""
    from tnkit.compress.layers.lowrank import lowrank_factors

    c = _covariance(rng, 20)
    s = cholesky_whitener(c)
    np.testing.assert_allclose(whitened_weight(np.eye(12, 20), s), np.eye(12, 20) @ s, rtol=1e-14, atol=1e-14)
    for shape in ((12, 20), (30, 20)):  # wide and tall: q/k/v and gate/up share one input
        w = rng.standard_normal(shape).astype(np.float32)
        u, v, err = lowrank_factors(w, 5, method="whiten", whitener=s)
        u0, v0, err0 = lowrank_factors(w, 5, method="whiten", covariance=c)
        np.testing.assert_array_equal(u, u0)
        np.testing.assert_array_equal(v, v0)
        assert err == err0
    with pytest.raises(ValueError, match="rank"):
        lowrank_factors(w, 21, method="whiten", whitener=s)
    with pytest.raises(ValueError, match="whitener"):
        lowrank_factors(w, 5, method="svd", whitener=s)
    with pytest.raises(ValueError, match="whitener"):
        lowrank_factors(w, 5, method="whiten", whitener=s, covariance=c)


def test_whiten_layers_sharing_an_input_equal_lowranklinear_from_linear():
    """compress_model's whitened SVD (one whitener per shared input) builds the layers LowRankLinear builds alone."""
    base, model = tc.tiny_llama(seed=3), tc.tiny_llama(seed=3)
    ids = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (4, 32)))
    layers = tc.find_layers(base)
    stats = tc.collect_activation_stats(base, layers, [ids])
    tc.compress_model(model, method="whiten", max_bond=6, calibration=[ids], progress=False)
    modules = dict(model.named_modules())
    for name, layer in layers.items():
        ref = LowRankLinear.from_linear(layer, rank=6, method="whiten", covariance=stats[name].covariance)
        got = modules[name]
        assert torch.equal(got.u, ref.u) and torch.equal(got.v, ref.v)
        assert got.truncation_error == ref.truncation_error and got.original_params == ref.original_params


@pytest.mark.parametrize("shape, shared", [((12, 10), False), ((10, 10), False), ((6, 10), True), ((6, 10), False)])
def test_a_kept_basis_gives_the_whitened_low_rank_factors_of_every_rank(shape, shared):
    from tnkit.compress.layers.lowrank import lowrank_factors

    rng = np.random.default_rng(11)
    out, inp = shape
    w, c = rng.standard_normal(shape), _covariance(rng, inp)
    s = cholesky_whitener(c)
    plain = layer_options(w, c, step=1, whitener=s if shared else None)
    kept = layer_options(w, c, step=1, whitener=s if shared else None, keep_basis=True)
    assert plain.basis is None and kept.basis is not None
    np.testing.assert_allclose(kept.errors, plain.errors, rtol=1e-9, atol=1e-12 * plain.errors.max())
    assert kept.basis.side == ("right" if inp <= out else "left")
    for rank in range(1, min(shape) + 1):
        u, v, err = kept.basis.factors(w, rank, s)
        u0, v0, err0 = lowrank_factors(w, rank, method="whiten", covariance=c)
        np.testing.assert_allclose(u @ v, u0 @ v0, rtol=1e-8, atol=1e-10 * np.abs(w).max())
        assert err == pytest.approx(err0, rel=1e-7, abs=1e-12)
        if rank in kept.sizes:  # the candidate's absolute error is the factors' output error
            j = int(np.flatnonzero(kept.sizes == rank)[0])
            damped = c + 1e-6 * np.mean(np.diag(c)) * np.eye(inp)  # the whitener's damping
            assert _abs_error(w, u @ v, damped) == pytest.approx(kept.errors[j], rel=1e-7)
    with pytest.raises(ValueError, match="rank"):
        kept.basis.factors(w, min(shape) + 1, s)
    assert kept.without_basis().basis is None and kept.without_basis().errors is kept.errors
