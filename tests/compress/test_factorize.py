"""TT-SVD of weights, entanglement, last-core refit and budget allocation vs dense references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_array
from tnkit.compress.numerics.allocate import SizeCurve, allocate_budget, lowrank_curve, mpo_curve
from tnkit.compress.numerics.factorize import (
    bond_for_params,
    max_bonds,
    mpo_factorize,
    mpo_num_params,
    mpo_to_dense,
    refit_last_core,
    weight_entanglement,
)


def test_full_bond_is_exact(rng):
    w = random_array(rng, (12, 18))
    f = mpo_factorize(w, n_cores=3)
    np.testing.assert_allclose(mpo_to_dense(f.cores), w, atol=1e-12)
    assert f.error == pytest.approx(0.0, abs=1e-20)


def test_truncation_error_is_discarded_weight(rng):
    w = random_array(rng, (16, 24))
    f = mpo_factorize(w, out_dims=(4, 4), in_dims=(6, 4), max_bond=5)
    approx = mpo_to_dense(f.cores)
    actual = np.linalg.norm(w - approx) ** 2 / np.linalg.norm(w) ** 2
    assert f.error == pytest.approx(actual, rel=1e-10)
    # two cores: the error is the tail of the singular values at the single cut
    m = w.reshape(4, 4, 6, 4).transpose(0, 2, 1, 3).reshape(24, 16)
    s = np.linalg.svd(m, compute_uv=False)
    assert actual == pytest.approx((s[5:] ** 2).sum() / (s**2).sum(), rel=1e-10)
    assert f.num_params == mpo_num_params((4, 4), (6, 4), 5)


def test_input_scale_factorises_scaled_weight(rng):
    w = random_array(rng, (8, 12))
    s = rng.uniform(0.5, 2.0, 12)
    f = mpo_factorize(w, n_cores=2, input_scale=s)
    np.testing.assert_allclose(mpo_to_dense(f.cores), w * s, atol=1e-12)


def test_bad_max_bond_and_dims(rng):
    w = random_array(rng, (8, 12))
    with pytest.raises(ValueError, match="`max_bond` must be at most"):
        mpo_factorize(w, n_cores=2, max_bond=10_000)
    with pytest.raises(ValueError, match="`in_dims` must be 2 integers"):
        mpo_factorize(w, out_dims=(2, 4), in_dims=(5, 3))
    with pytest.raises(ValueError, match="`input_scale`"):
        mpo_factorize(w, input_scale=-np.ones(12))


def test_bond_for_params_and_max_bonds():
    assert max_bonds((24, 24), (24, 24)) == (576,)
    b = bond_for_params((24, 24), (24, 24), 0.5 * 576 * 576)
    assert mpo_num_params((24, 24), (24, 24), b) <= 0.5 * 576 * 576 < mpo_num_params((24, 24), (24, 24), b + 1)


def test_entanglement_matches_dense_svd(rng):
    w = random_array(rng, (6, 10))
    ent = weight_entanglement(w, out_dims=(3, 2), in_dims=(5, 2))
    m = w.reshape(3, 2, 5, 2).transpose(0, 2, 1, 3).reshape(15, 4)
    p = np.linalg.svd(m, compute_uv=False) ** 2
    p /= p.sum()
    assert ent.shape == (1,)
    assert ent[0] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-10)
    assert weight_entanglement(np.outer(np.ones(6), np.ones(10)), n_cores=2)[0] == pytest.approx(0.0, abs=1e-10)


def _output_error(w, m, c):
    e = w - m
    return float(np.einsum("ij,jk,ik->", e, c, e))


@pytest.mark.parametrize("n_cores", [2, 3])
def test_refit_last_core_is_least_squares_optimum(rng, n_cores):
    out_dims, in_dims = ((2, 3), (3, 2)) if n_cores == 2 else ((2, 2, 2), (2, 3, 2))
    o, i = int(np.prod(out_dims)), int(np.prod(in_dims))
    w = random_array(rng, (o, i))
    x = random_array(rng, (200, i)) * rng.uniform(0.1, 3.0, i)
    c = x.T @ x / len(x)
    cores = list(mpo_factorize(w, out_dims=out_dims, in_dims=in_dims, max_bond=2).cores)
    before = _output_error(w, mpo_to_dense(cores), c)
    cores[-1] = refit_last_core(w, cores, c, damping=0.0)
    after = _output_error(w, mpo_to_dense(cores), c)
    assert after <= before
    # reference: brute-force least squares over the last core's entries
    shape = cores[-1].shape
    basis = []
    for k in range(int(np.prod(shape))):
        e = np.zeros(int(np.prod(shape)))
        e[k] = 1.0
        basis.append((mpo_to_dense(cores[:-1] + [e.reshape(shape)]) @ x.T).ravel())
    coef = np.linalg.lstsq(np.array(basis).T, (w @ x.T).ravel(), rcond=None)[0]
    best = _output_error(w, mpo_to_dense(cores[:-1] + [coef.reshape(shape)]), c)
    assert after == pytest.approx(best, rel=1e-6)


def test_curves_match_truncations(rng):
    w = random_array(rng, (16, 12))
    curve = mpo_curve(w, (4, 4), (4, 3), step=2)
    for size, err in zip(curve.sizes[:-1], curve.errors[:-1]):
        assert err == pytest.approx(mpo_factorize(w, out_dims=(4, 4), in_dims=(4, 3), max_bond=int(size)).error, rel=1e-9)
    assert curve.sizes[-1] == -1 and curve.errors[-1] == 0 and curve.params[-1] == w.size
    low = lowrank_curve(w, step=1)
    s = np.linalg.svd(w, compute_uv=False)
    assert low.errors[0] == pytest.approx((s[1:] ** 2).sum() / (s**2).sum())


def _brute_force(curves, budget):
    names = list(curves)
    best = None
    for combo in itertools.product(*(range(len(curves[n].params)) for n in names)):
        p = sum(curves[n].params[j] for n, j in zip(names, combo))
        if p <= budget:
            e = sum(curves[n].errors[j] for n, j in zip(names, combo))
            best = e if best is None else min(best, e)
    return best


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(10, 60))
def test_allocation_is_near_optimal_on_convex_curves(seed, budget):
    rng = np.random.default_rng(seed)
    curves = {}
    for name in "abc":
        params = np.cumsum(rng.integers(1, 6, 5))
        errors = np.sort(rng.uniform(0, 1, 5))[::-1]
        errors = np.minimum.accumulate(np.exp(-np.linspace(0, 3, 5) * rng.uniform(0.5, 2)))  # convex, decreasing
        curves[name] = SizeCurve(np.arange(5), params, errors)
    smallest = sum(c.params[0] for c in curves.values())
    if budget < smallest:
        with pytest.raises(ValueError, match="budget"):
            allocate_budget(curves, budget)
        return
    choice = allocate_budget(curves, budget)
    used = sum(curves[n].params[j] for n, j in choice.items())
    got = sum(curves[n].errors[j] for n, j in choice.items())
    assert used <= budget
    # greedy on convex curves: within the largest single step of the optimum
    slack = max(float(c.errors[0] - c.errors[-1]) for c in curves.values())
    assert got <= _brute_force(curves, budget) + slack + 1e-12
