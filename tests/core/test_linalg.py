"""tnkit.core.linalg: SVD truncation rule, QR and LQ."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, TOL, assert_close, random_array, random_unitary
from hypothesis import given, settings
from hypothesis import strategies as st

from tnkit.core.linalg import (
    DEFAULT_CUTOFF,
    TALL,
    cholesky_factor,
    gram,
    apply_matrix,
    gram_factor,
    gram_truncated_svd,
    lq,
    qr,
    svd,
    tall_qr,
    tall_truncated_svd,
    truncated_svd,
    truncation_rank,
)

SHAPES = [(6, 4), (4, 6), (5, 5), (1, 4), (4, 1), (12, 3)]
CUTOFFS = [0.0, 1e-12, 1e-4, 1e-2, 0.05, 0.2, 0.5, 0.9, 0.999]


def _spectrum(rng, r=12, decay=0.5):
    """Descending singular values spanning several orders of magnitude."""
    return np.sort(rng.random(r) * np.exp(-decay * np.arange(r)))[::-1]


# --------------------------------------------------------------------------- truncation rule


@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("max_bond", [None, 1, 3, 7, 100])
def test_truncation_rank_rule(rng, cutoff, max_bond):
    for _ in range(5):
        s = _spectrum(rng)
        k, discarded = truncation_rank(s, max_bond=max_bond, cutoff=cutoff)
        w = s**2
        total = w.sum()
        assert 1 <= k <= len(s)
        assert discarded == pytest.approx(w[k:].sum(), rel=1e-12, abs=1e-300)
        if max_bond is not None:
            assert k <= max_bond
        # the cutoff rule: the drop is allowed ...
        k_cut, _ = truncation_rank(s, cutoff=cutoff)
        assert w[k_cut:].sum() <= cutoff * total * (1 + 1e-12)
        # ... and maximal: dropping one more value would exceed the cutoff (or k == 1)
        if k_cut > 1:
            assert w[k_cut - 1 :].sum() > cutoff * total
        assert k == (k_cut if max_bond is None else min(k_cut, max_bond))


def test_truncation_rank_no_truncation_by_default(rng):
    s = _spectrum(rng)
    assert truncation_rank(s) == (len(s), 0.0)
    s0 = np.array([3.0, 1.0, 0.0, 0.0])  # exact zeros are kept with cutoff = 0
    assert truncation_rank(s0)[0] == 4


def test_truncation_rank_keeps_at_least_one():
    assert truncation_rank(np.array([1.0, 1.0]), cutoff=0.999)[0] == 1
    assert truncation_rank(np.array([1.0, 1e-3]), cutoff=0.999) == (1, pytest.approx(1e-6))
    k, disc = truncation_rank(np.zeros(4), cutoff=0.5)
    assert (k, disc) == (1, 0.0)
    assert truncation_rank(np.array([2.0]), cutoff=0.9) == (1, 0.0)


def test_truncation_rank_exact_boundary():
    # weights 0.5, 0.3, 0.2 of a total 1: cutoff 0.2 drops exactly the last value
    s = np.sqrt([0.5, 0.3, 0.2])
    assert truncation_rank(s, cutoff=0.2 + 1e-15)[0] == 2
    assert truncation_rank(s, cutoff=0.5 + 1e-15)[0] == 1
    assert truncation_rank(s, cutoff=0.19)[0] == 3


def test_default_cutoff_drops_numerical_noise():
    s = np.array([1.0, 0.5, 1e-11, 1e-13])
    assert truncation_rank(s, cutoff=DEFAULT_CUTOFF)[0] == 2
    assert truncation_rank(np.array([1.0, 1e-9]), cutoff=DEFAULT_CUTOFF)[0] == 2


# --------------------------------------------------------------------------- svd


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_svd_reconstructs(rng, shape, dtype):
    m = random_array(rng, shape, dtype)
    u, s, vh = svd(m)
    k = min(shape)
    assert u.shape == (shape[0], k) and s.shape == (k,) and vh.shape == (k, shape[1])
    assert np.all(np.diff(s) <= 0) and np.all(s >= 0)
    assert_close((u * s) @ vh, m, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 6), (6, 9), (7, 7)])
@pytest.mark.parametrize("max_bond", [None, 1, 2, 4])
@pytest.mark.parametrize("cutoff", [0.0, 1e-3, 0.1])
def test_truncated_svd_error_is_discarded_weight(rng, shape, dtype, max_bond, cutoff):
    m = random_array(rng, shape, dtype) * np.exp(-0.7 * np.arange(shape[1]))  # decaying spectrum
    u, s, vh, discarded = truncated_svd(m, max_bond=max_bond, cutoff=cutoff)
    k = len(s)
    assert u.shape == (shape[0], k) and vh.shape == (k, shape[1])
    full = np.linalg.svd(m, compute_uv=False)
    assert k == truncation_rank(full, max_bond=max_bond, cutoff=cutoff)[0]
    np.testing.assert_allclose(s, full[:k], rtol=1e-12)
    # Eckart-Young: the squared Frobenius error is exactly the discarded weight
    err = np.linalg.norm(m - (u * s) @ vh) ** 2
    total = np.linalg.norm(m) ** 2
    assert discarded == pytest.approx(np.sum(full[k:] ** 2), rel=1e-10, abs=1e-14 * total)
    assert err == pytest.approx(discarded, rel=1e-8, abs=1e-12 * total)
    assert discarded <= max(cutoff, 0.0) * total * (1 + 1e-12) or max_bond is not None
    # the factors are isometries
    assert_close(u.conj().T @ u, np.eye(k), dtype)
    assert_close(vh @ vh.conj().T, np.eye(k), dtype)


def test_truncated_svd_exact_low_rank(rng):
    m = random_array(rng, (8, 2)) @ random_array(rng, (2, 9))
    u, s, vh, discarded = truncated_svd(m, cutoff=DEFAULT_CUTOFF)
    assert len(s) == 2
    assert discarded < 1e-20 * np.linalg.norm(m) ** 2
    assert_close((u * s) @ vh, m)


# --------------------------------------------------------------------------- qr / lq


def _qr_of(factorization, m):
    """``(q, r, a)``: a QR factorisation ``a = q r``; an LQ of ``m`` is read as a QR of ``m^H``."""
    if factorization == "qr":
        q, r = qr(m)
        return q, r, m
    l_, q = lq(m)
    return q.conj().T, l_.conj().T, m.conj().T


@pytest.mark.parametrize("factorization", ["qr", "lq"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_qr_and_lq_give_an_isometry_and_a_triangle(rng, shape, dtype, factorization):
    q, r, a = _qr_of(factorization, random_array(rng, shape, dtype))
    k = min(shape)
    assert q.shape == (a.shape[0], k) and r.shape == (k, a.shape[1])
    assert_close(q @ r, a, dtype)
    assert_close(q.conj().T @ q, np.eye(k), dtype)
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=TOL[np.dtype(dtype)])


# --------------------------------------------------------------------------- tall-skinny matrices


def _conditioned(rng, rows, cols, log_cond, dtype=np.float64):
    """``rows x cols`` matrix with singular values ``logspace(0, -log_cond)``; returns it and the values."""
    u, _ = np.linalg.qr(random_array(rng, (rows, cols), dtype))
    s = np.logspace(0, -log_cond, cols)
    return (u * s) @ random_unitary(rng, cols, dtype), s


@pytest.mark.parametrize("log_cond", [0, 2, 5, 10, 14])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tall_qr_matches_numpy_at_any_conditioning(rng, log_cond, dtype):
    """One, two or three Cholesky passes (shifted) by the Gram matrix's condition, else Householder."""
    m, _ = _conditioned(rng, 256, 24, log_cond, dtype)
    q, r = tall_qr(m)
    assert q.shape == (256, 24) and r.shape == (24, 24)
    assert np.abs(q.conj().T @ q - np.eye(24)).max() < 1e-12
    assert np.abs(q @ r - m).max() < 1e-11 * np.abs(m).max()
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-12 * np.abs(r).max())
    # the same factorisation as LAPACK's up to the phases of R's diagonal
    q_ref, r_ref = np.linalg.qr(m)
    phase = np.diag(r_ref) / np.abs(np.diag(r_ref))
    r_pos = r_ref * phase.conj()[:, None]
    if log_cond <= 5:  # beyond, R's small rows are only defined to eps * ||m||
        np.testing.assert_allclose(r * (np.diag(r) / np.abs(np.diag(r))).conj()[:, None], r_pos, atol=1e-10)


def test_tall_qr_falls_back_to_householder_for_rank_deficient_and_wide(rng):
    m = random_array(rng, (200, 3)) @ random_array(rng, (3, 10))  # rank 3 < 10 columns
    q, r = tall_qr(m)
    assert_close(q @ r, m)
    assert_close(q.T @ q, np.eye(q.shape[1]))
    wide = random_array(rng, (10, 4))  # not tall (rows < TALL * cols): plain QR
    assert 10 < TALL * 4
    q, r = tall_qr(wide)
    q_ref, r_ref = np.linalg.qr(wide)
    assert_close(np.abs(r), np.abs(r_ref))
    zero = np.zeros((64, 4))
    q, r = tall_qr(zero)
    assert_close(q @ r, zero)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_tall_qr_single_precision(rng, dtype):
    m, _ = _conditioned(rng, 400, 20, 3, np.complex128 if np.dtype(dtype).kind == "c" else np.float64)
    m = m.astype(dtype)
    q, r = tall_qr(m)
    assert q.dtype == dtype
    assert np.abs(q.conj().T @ q - np.eye(20)).max() < 1e-5
    assert np.abs(q @ r - m).max() < 1e-5 * np.abs(m).max()


@pytest.mark.parametrize("log_cond", [1, 3, 6, 12])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tall_truncated_svd_and_gram_truncated_svd_match_numpy(rng, log_cond, dtype):
    m, s = _conditioned(rng, 160, 16, log_cond, dtype)
    for max_bond in (5, 16):
        _, s_ref, _ = np.linalg.svd(m, full_matrices=False)
        u, sv, vh, disc = tall_truncated_svd(m, max_bond=max_bond, cutoff=0.0)
        np.testing.assert_allclose(sv, s_ref[:max_bond], rtol=1e-8, atol=1e-13 * s_ref[0])  # SVD: eps * s_max
        assert disc == pytest.approx(np.sum(s_ref[max_bond:] ** 2), rel=1e-6, abs=1e-26)
        assert_close((u * sv) @ vh, _best_rank(m, max_bond), dtype)
        u2, sv2, disc2 = gram_truncated_svd(m, max_bond=max_bond, cutoff=0.0)
        assert np.abs(u2.conj().T @ u2 - np.eye(len(sv2))).max() < 1e-12
        np.testing.assert_allclose(sv2, s_ref[: len(sv2)], rtol=1e-7, atol=1e-13 * s_ref[0])
        assert disc2 == pytest.approx(np.sum(s_ref[len(sv2):] ** 2), rel=1e-6, abs=1e-14 * s_ref[0] ** 2)
        # the kept subspace is the leading singular subspace: U U^H m is the best rank-k approximation
        assert_close(u2 @ (u2.conj().T @ m), _best_rank(m, len(sv2)), dtype)


def _best_rank(m, k):
    u, s, vh = np.linalg.svd(m, full_matrices=False)
    return (u[:, :k] * s[:k]) @ vh[:k]


def test_gram_truncated_svd_takes_the_accurate_route_for_tiny_kept_values(rng, monkeypatch):
    """Kept values below 1e-4 of the largest (1e-8 squared) go through the Cholesky/Householder SVD."""
    import tnkit.core.linalg as linalg

    calls = []
    original = linalg.tall_truncated_svd
    monkeypatch.setattr(linalg, "tall_truncated_svd", lambda *a, **k: calls.append(1) or original(*a, **k))
    m, s = _conditioned(rng, 256, 16, 8)  # s_min = 1e-8: squared 1e-16, below the Gram's resolution
    u, sv, disc = gram_truncated_svd(m, cutoff=DEFAULT_CUTOFF)
    assert calls and len(sv) == 16
    np.testing.assert_allclose(sv, s, rtol=1e-6)
    calls.clear()
    u, sv, disc = gram_truncated_svd(m, max_bond=4)  # kept values >= 1e-8 * 4/15... well resolved
    assert not calls and len(sv) == 4
    calls.clear()
    gram_truncated_svd(m.astype(np.float32), max_bond=4)  # single precision: never the Gram route
    assert calls


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 80),
    cols=st.integers(1, 12),
    max_bond=st.one_of(st.none(), st.integers(1, 12)),
    cutoff=st.sampled_from([0.0, 1e-12, 1e-3, 0.1]),
    seed=st.integers(0, 2**31 - 1),
)
def test_gram_truncated_svd_property(rows, cols, max_bond, cutoff, seed):
    """Any shape: orthonormal U, the leading singular values, and the exact discarded weight."""
    rng = np.random.default_rng(seed)
    m = random_array(rng, (rows, cols)) * np.exp(-0.8 * np.arange(cols))
    u, s, disc = gram_truncated_svd(m, max_bond=max_bond, cutoff=cutoff)
    full = np.linalg.svd(m, compute_uv=False)
    k = len(s)
    assert k == truncation_rank(full, max_bond=max_bond, cutoff=cutoff)[0]
    np.testing.assert_allclose(s, full[:k], rtol=1e-7, atol=1e-12 * full[0])
    assert np.abs(u.T @ u - np.eye(k)).max() < 1e-10
    err = np.linalg.norm(m - u @ (u.T @ m)) ** 2
    total = np.linalg.norm(m) ** 2
    assert err == pytest.approx(disc, rel=1e-6, abs=1e-12 * total)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_and_factors(rng, dtype):
    m = random_array(rng, (50, 6), dtype)
    g = gram(m)
    assert_close(g, m.conj().T @ m, dtype)
    f = gram_factor(g)
    assert_close(f.conj().T @ f, g, dtype)
    np.testing.assert_allclose(np.tril(f, -1), 0, atol=1e-14)  # Cholesky: upper triangular
    singular = gram(random_array(rng, (50, 2), dtype) @ random_array(rng, (2, 6), dtype))  # rank 2
    f = gram_factor(singular)
    assert_close(f.conj().T @ f, singular, dtype, scale=np.abs(singular).max())
    upper = cholesky_factor(g)
    assert upper is not None and np.allclose(upper, gram_factor(g))
    ill, _ = _conditioned(rng, 60, 6, 3, dtype)  # cond(Gram) = 1e6 > 1e3: one pass is not enough
    assert cholesky_factor(gram(ill)) is None
    assert cholesky_factor(singular) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_peak_magnitude(dtype):
    from tnkit.core.linalg import peak_magnitude

    a = np.array([[0.5, -3.0], [2.0, 1.0]], dtype=dtype)
    if np.iscomplexobj(a):
        a[0, 0] = 3j + 2  # |3j + 2| = 3.606 > 3
    assert peak_magnitude(a) == pytest.approx(float(np.abs(a).max()))
    assert peak_magnitude(np.zeros((0, 3), dtype=dtype)) == 0.0
    assert peak_magnitude(-np.ones(4, dtype=dtype)) == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, axis, rows",
    [((64, 5, 3), 0, 64), ((3, 64, 5), 1, 64), ((2, 3, 40, 7), 2, 40), ((48, 6), 0, 30), ((5, 64), 1, 64), ((8, 4), 0, 8)],
)
def test_apply_matrix_upper_triangular_matches_dense(rng, dtype, shape, axis, rows):
    """Row blocks that skip the zero lower part give the full product (square and trapezoidal factors)."""
    t = random_array(rng, shape, dtype)
    m = np.triu(random_array(rng, (rows, shape[axis]), dtype))
    expected = np.moveaxis(np.tensordot(m, t, axes=([1], [axis])), 0, axis)
    out = apply_matrix(t, m, axis, upper=True)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert_close(out, expected, dtype, scale=np.abs(expected).max())
    assert_close(apply_matrix(t, m, axis), expected, dtype, scale=np.abs(expected).max())


def test_apply_matrix_upper_reads_only_the_upper_triangle(rng):
    """The blocked path skips the zero corner below its row blocks: garbage there does not change the result."""
    t = rng.standard_normal((64, 64, 64))
    upper = np.triu(rng.standard_normal((64, 64)))
    junk = upper.copy()
    junk[48:, :16] = rng.standard_normal((16, 16))  # below the diagonal blocks for 2 or 4 blocks
    np.testing.assert_allclose(apply_matrix(t, junk, 1, upper=True), apply_matrix(t, upper, 1), atol=1e-12)
    assert not np.allclose(apply_matrix(t, junk, 1), apply_matrix(t, upper, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_factor_is_upper_triangular_when_singular(rng, dtype):
    singular = gram(random_array(rng, (50, 2), dtype) @ random_array(rng, (2, 6), dtype))  # rank 2
    f = gram_factor(singular)
    np.testing.assert_allclose(np.tril(f, -1), 0, atol=1e-14)
    assert_close(f.conj().T @ f, singular, dtype, scale=np.abs(singular).max())


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    k=st.integers(1, 70),
    extra=st.integers(0, 6),
    axis_pick=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_apply_matrix_upper_property(shape, k, extra, axis_pick, seed):
    """Any shape, axis and upper trapezoidal factor (rows <= columns): the blocked product equals einsum."""
    rng = np.random.default_rng(seed)
    axis = axis_pick % (len(shape) + 1)
    full = list(shape)
    full.insert(axis, k + extra)
    t = rng.standard_normal(full)
    m = np.triu(rng.standard_normal((k, k + extra)))
    expected = np.moveaxis(np.tensordot(m, t, axes=([1], [axis])), 0, axis)
    np.testing.assert_allclose(apply_matrix(t, m, axis, upper=True), expected, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("shape, axis, rows", [((64, 5, 3), 0, 64), ((3, 64, 5), 1, 40), ((5, 64), 1, 64), ((8, 4), 0, 8)])
def test_apply_matrix_writes_into_out(rng, dtype, upper, shape, axis, rows):
    """With ``out`` the product lands in the given array (every route: row blocks, one product, last axis)."""
    t = random_array(rng, shape, dtype)
    m = np.triu(random_array(rng, (rows, shape[axis]), dtype))
    expected = np.moveaxis(np.tensordot(m, t, axes=([1], [axis])), 0, axis)
    out = np.full(expected.shape, np.nan, dtype=expected.dtype)
    result = apply_matrix(t, m, axis, upper=upper, out=out)
    assert result is out or np.shares_memory(result, out)
    assert_close(out, expected, dtype, scale=np.abs(expected).max())


def test_apply_matrix_rejects_a_wrong_out(rng):
    t = rng.standard_normal((4, 5, 6))
    m = rng.standard_normal((3, 5))
    with pytest.raises(ValueError, match=r"out: expected a C-contiguous float64 array of shape \(4, 3, 6\)"):
        apply_matrix(t, m, 1, out=np.empty((4, 5, 6)))
    with pytest.raises(ValueError, match="out: expected"):
        apply_matrix(t, m, 1, out=np.empty((4, 3, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="out: expected"):
        apply_matrix(t, m, 1, out=np.empty((6, 3, 4)).T)  # right shape, not C-contiguous
