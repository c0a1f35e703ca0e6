"""Whitened MPO truncation and ALS refit against dense numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_array
from tnkit.compress import MPOLinear, compress_model, tiny_llama, token_batches
from tnkit.compress.numerics.allocate import lowrank_curve
from tnkit.compress.numerics.factorize import mpo_factorize, mpo_to_dense
from tnkit.compress.layers.lowrank import lowrank_factors
from tnkit.compress.numerics.whitened_mpo import (
    als_refit,
    kronecker_covariance,
    whitened_error,
    whitened_mpo_curve,
    whitened_mpo_factorize,
)
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)


def _covariance(rng, n, *, tokens=400, outliers=True):
    """Second moment of correlated activations with a few outlier channels (as in LLMs)."""
    x = random_array(rng, (tokens, n)) @ random_array(rng, (n, n))
    if outliers:
        x[:, rng.choice(n, 2, replace=False)] *= 20.0
    return x.T @ x / tokens


def _dense_whitened_error(w, m, c):
    """Reference: ||(W - M) S||_F^2 / ||W S||_F^2 with S from an eigendecomposition of C."""
    evals, vecs = np.linalg.eigh(c)
    s = vecs * np.sqrt(np.clip(evals, 0, None))
    return np.linalg.norm((w - m) @ s) ** 2 / np.linalg.norm(w @ s) ** 2


def test_whitened_error_matches_dense_reference(rng):
    w, m = random_array(rng, (6, 12)), random_array(rng, (6, 12))
    c = _covariance(rng, 12)
    assert whitened_error(w, m, c) == pytest.approx(_dense_whitened_error(w, m, c), rel=1e-10)


def test_kronecker_covariance_is_exact_for_a_kronecker_product(rng):
    a, b, d = (_covariance(rng, n, outliers=False) for n in (3, 4, 2))
    c = np.kron(np.kron(a, b), d)
    f = kronecker_covariance(c, (3, 4, 2))
    np.testing.assert_allclose(np.kron(np.kron(f[0], f[1]), f[2]), c, rtol=1e-9, atol=1e-9 * np.abs(c).max())


def test_kronecker_covariance_is_the_best_rank_one_rearrangement(rng):
    c = _covariance(rng, 12)
    f0, f1 = kronecker_covariance(c, (3, 4), iterations=50)
    # Van Loan-Pitsianis: the nearest Kronecker product is the top singular pair of the rearranged matrix
    r = c.reshape(3, 4, 3, 4).transpose(0, 2, 1, 3).reshape(9, 16)
    u, s, vh = np.linalg.svd(r)
    best = s[0] * np.outer(u[:, 0], vh[0]).reshape(3, 3, 4, 4).transpose(0, 2, 1, 3).reshape(12, 12)
    np.testing.assert_allclose(np.kron(f0, f1), best, atol=1e-8 * np.abs(c).max())


@pytest.mark.parametrize("n_cores,channel_scale", [(2, True), (2, False), (3, True)])
def test_exact_at_full_bond(rng, n_cores, channel_scale):
    w = random_array(rng, (12, 18))
    c = _covariance(rng, 18)
    f = whitened_mpo_factorize(w, c, n_cores=n_cores, sweeps=1, channel_scale=channel_scale)
    np.testing.assert_allclose(f.dense(), w, atol=1e-9)
    assert f.error == pytest.approx(0.0, abs=1e-18)
    assert f.truncation_error == pytest.approx(0.0, abs=1e-18)


def test_error_is_the_whitened_error_of_the_returned_cores(rng):
    w = random_array(rng, (12, 16))
    c = _covariance(rng, 16)
    f = whitened_mpo_factorize(w, c, out_dims=(3, 4), in_dims=(4, 4), max_bond=3, sweeps=2)
    assert f.error == pytest.approx(_dense_whitened_error(w, f.dense(), c), rel=1e-9)
    assert f.num_params == sum(core.size for core in f.cores)


def test_truncation_reports_the_whitened_error_for_kronecker_statistics(rng):
    # with a Kronecker-product C (and no channel scale) the truncation basis is exactly whitened:
    # the discarded weight the TT-SVD reports is the true whitened error, and it is optimal
    w = random_array(rng, (12, 16))
    c = np.kron(_covariance(rng, 4, outliers=False), _covariance(rng, 4, outliers=False))
    f = whitened_mpo_factorize(w, c, out_dims=(3, 4), in_dims=(4, 4), max_bond=3, sweeps=0,
                               channel_scale=False, damping=0.0)
    assert f.truncation_error == pytest.approx(_dense_whitened_error(w, f.dense(), c), rel=1e-8)
    g = whitened_mpo_factorize(w, c, out_dims=(3, 4), in_dims=(4, 4), max_bond=3, sweeps=3,
                               channel_scale=False, damping=0.0)
    assert g.error == pytest.approx(f.error, rel=1e-8)  # ALS cannot beat the optimum


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 2, 4]), st.booleans())
def test_refit_never_increases_the_whitened_error(seed, bond, channel_scale):
    rng = np.random.default_rng(seed)
    w = random_array(rng, (8, 12))
    c = _covariance(rng, 12, tokens=30)  # rank-deficient is allowed too
    f = whitened_mpo_factorize(w, c, out_dims=(2, 4), in_dims=(3, 4), max_bond=bond, sweeps=3,
                               cg_iterations=3, channel_scale=channel_scale)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(f.history, f.history[1:]))


def test_whitening_beats_plain_tt_svd_on_the_output_error(rng):
    w = random_array(rng, (16, 16))
    c = _covariance(rng, 16)
    plain = mpo_factorize(w, out_dims=(4, 4), in_dims=(4, 4), max_bond=4)
    white = whitened_mpo_factorize(w, c, out_dims=(4, 4), in_dims=(4, 4), max_bond=4, sweeps=2)
    assert white.error < whitened_error(w, mpo_to_dense(plain.cores), c)


def test_als_refit_converges_to_the_dense_least_squares_core(rng):
    # one core update with enough CG iterations solves the normal equations exactly
    w = random_array(rng, (6, 8))
    c = _covariance(rng, 8)
    cores = list(mpo_factorize(w, out_dims=(2, 3), in_dims=(2, 4), max_bond=2).cores)
    new, _ = als_refit(w, cores, c, sweeps=1, cg_iterations=60)
    # reference: last core by dense least squares with the first core of the refitted MPO fixed
    a = new[0][0]  # (o0, i0, r)
    design = np.einsum("aIr,xy->aIxry", a, np.eye(4)).reshape(2, 8, 2 * 4)  # rows (o0), cols (I,x), unknowns (r,y)
    s = np.linalg.cholesky(c + 1e-12 * np.eye(8))
    sol = []
    for o1 in range(3):
        target = w.reshape(2, 3, 8)[:, o1, :] @ s  # (o0, in)
        lhs = np.einsum("aiu,ij->aju", design, s).reshape(-1, 8)
        sol.append(np.linalg.lstsq(lhs, target.reshape(-1), rcond=None)[0])
    ref = np.stack(sol, 1).reshape(2, 4, 3).transpose(0, 2, 1)[..., None]  # (r, o1, i1, 1)
    np.testing.assert_allclose(mpo_to_dense([new[0], ref]), mpo_to_dense(new), atol=1e-6)


def test_curve_matches_factorisation_errors(rng):
    w = random_array(rng, (16, 16))
    c = _covariance(rng, 16)
    curve = whitened_mpo_curve(w, c, (4, 4), (4, 4), step=2)
    for size, params, err in zip(curve.sizes[:-1], curve.params[:-1], curve.errors[:-1]):
        f = whitened_mpo_factorize(w, c, out_dims=(4, 4), in_dims=(4, 4), max_bond=int(size), sweeps=0)
        assert err == pytest.approx(f.truncation_error, rel=1e-6, abs=1e-12)
        assert params == f.num_params + 16  # cores plus the channel scale
    assert curve.sizes[-1] == -1 and curve.errors[-1] == 0.0


def test_mpo_linear_whitened_layer(rng):
    lin = torch.nn.Linear(16, 12).double()
    c = _covariance(rng, 16)
    layer = MPOLinear.from_linear_whitened(lin, c, n_cores=2, max_bond=3, sweeps=1)
    w = lin.weight.detach().numpy()
    approx = layer.dense_weight().detach().numpy()
    assert layer.truncation_error == pytest.approx(_dense_whitened_error(w, approx, c), rel=1e-8)
    x = torch.as_tensor(random_array(rng, (3, 16)))
    for mode in ("factored", "dense"):
        layer.forward_mode = mode
        torch.testing.assert_close(layer(x), x @ layer.dense_weight().T + lin.bias, rtol=1e-9, atol=1e-9)
    assert layer.input_scale is not None and layer.num_params == sum(p.numel() for p in layer.cores) + 12 + 16


def test_bad_covariance_is_named(rng):
    w = random_array(rng, (4, 6))
    with pytest.raises(ValueError, match=r"`covariance` must have shape \(6, 6\)"):
        whitened_mpo_factorize(w, np.eye(5), n_cores=2)
    with pytest.raises(ValueError, match="`max_bond` must be at most"):
        whitened_mpo_factorize(w, np.eye(6), n_cores=2, max_bond=100)


def test_whiten_lowrank_curve_is_the_svd_llm_error(rng):
    # the curve the "whiten" allocation uses: error at rank k = whitened error of the rank-k factors
    w = random_array(rng, (10, 12))
    c = _covariance(rng, 12)
    from tnkit.compress.layers.lowrank import cholesky_whitener

    curve = lowrank_curve(w @ cholesky_whitener(c), step=1)
    u, v, err = lowrank_factors(w, 3, method="whiten", covariance=c)
    assert curve.errors[2] == pytest.approx(err, rel=1e-8)
    assert err == pytest.approx(_dense_whitened_error(w, u @ v, c), rel=1e-4)


@pytest.mark.parametrize("allocation", ["uniform", "curve"])
def test_compress_model_mpo_whiten_meets_budget(allocation):
    model = tiny_llama(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    ids = np.random.default_rng(0).integers(0, 256, 2048)
    calib = token_batches(ids, seq_len=64, batch_size=4, n_batches=2)
    res = compress_model(model, method="mpo-whiten", ratio=0.5, calibration=calib, allocation=allocation,
                         progress=False)
    original = sum(r.original_params for r in res.layers)
    kept = sum(r.params for r in res.layers)  # cores, channel scales (and dense layers left alone)
    assert res.extra["allocation"] == allocation
    assert 0.3 * original < kept <= 0.5 * original
    assert any(r.form == "mpo" for r in res.layers)
    assert all(0.0 <= r.error < 1.0 for r in res.layers)
    out = model(input_ids=torch.as_tensor(ids[:16])[None]).logits
    assert torch.isfinite(out).all()


def _dead_channel_statistics(rng, n, *, tokens=200):
    """Calibration second moment with two near-dead channels and a wide spectrum, and a held-out one without them."""
    mix = np.linalg.qr(random_array(rng, (n, n)))[0] * np.exp(rng.uniform(-3, 0, n))

    def moment(count, dead):
        x = random_array(rng, (count, n)) @ mix
        x[:, dead] *= 1e-4
        return x.T @ x / count

    return moment(tokens, [5, n - 2]), moment(2000, [])


@pytest.mark.parametrize("ridge,bounded", [(0.0, False), (None, True)])
def test_ridge_bounds_weight_and_held_out_error(rng, ridge, bounded):
    # what went wrong on SmolLM2 (weight errors of 400x ||W|| in MLP layers with a near-dead input
    # channel): directions the calibration tokens barely excite are free for the truncation
    from tnkit.compress.recipes.pipeline import DEFAULT_RIDGE

    ridge = DEFAULT_RIDGE["mpo-whiten"] if ridge is None else ridge
    w = random_array(rng, (24, 36))
    calib, held = _dead_channel_statistics(rng, 36)
    f = whitened_mpo_factorize(w, calib, out_dims=(4, 6), in_dims=(6, 6), max_bond=4, sweeps=1, ridge=ridge)
    weight_error = np.sum((w - f.dense()) ** 2) / np.sum(w**2)
    held_out = whitened_error(w, f.dense(), held)
    assert f.error < 0.6  # the calibration error is fine either way
    # on the given C; without a ridge C's condition number is ~1e10 and the two routes agree to ~1e-8
    assert f.error == pytest.approx(_dense_whitened_error(w, f.dense(), calib), rel=1e-8 if bounded else 1e-6)
    if bounded:
        # ||E||^2 <= tr(E C' E^T) / (ridge tr(C) / n), C' = C + ridge tr(C) / n I
        c_ridge = calib + ridge * np.trace(calib) / 36 * np.eye(36)
        e = w - f.dense()
        assert np.sum(e * e) <= np.einsum("ij,jk,ik->", e, c_ridge, e) / (ridge * np.trace(calib) / 36) * (1 + 1e-9)
        assert weight_error < 2.0 and held_out < 1.0
    else:
        assert weight_error > 100 and held_out > 100  # the old behaviour: unbounded


def test_ridge_covariance_and_its_errors():
    from tnkit.compress.layers.lowrank import ridge_covariance

    c = np.diag([4.0, 0.0])
    np.testing.assert_allclose(ridge_covariance(c, 0.5), np.diag([5.0, 1.0]))
    assert ridge_covariance(c, 0.0) is not None and np.array_equal(ridge_covariance(c, 0.0), c)
    with pytest.raises(ValueError, match="`ridge` must be a number >= 0"):
        ridge_covariance(c, -1.0)
    with pytest.raises(ValueError, match="`covariance` must be a square matrix"):
        ridge_covariance(np.ones((2, 3)), 0.1)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.0, 1e-2]), st.sampled_from([(10, 12), (12, 10)]))
def test_whiten_weight_error_never_exceeds_the_weight(seed, ridge, shape):
    # SVD-LLM's error is (I - P_k) W for a projector P_k on the output side: unlike the whitened MPO it cannot
    # blow up along barely excited input directions, whatever the statistics (here: 5 tokens for 12 channels)
    rng = np.random.default_rng(seed)
    w = random_array(rng, shape)
    calib, _ = _dead_channel_statistics(rng, shape[1], tokens=5)
    u, v, _ = lowrank_factors(w, 3, method="whiten", covariance=calib, ridge=ridge)
    e = w - u @ v
    assert np.sum(e * e) <= np.sum(w * w) * (1 + 1e-6)
    # and it is an output-side projection: the residual is orthogonal to the kept output space
    np.testing.assert_allclose(np.linalg.pinv(u) @ e, 0.0, atol=1e-6 * np.abs(w).max())
