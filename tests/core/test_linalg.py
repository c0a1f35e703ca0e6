"""tnkit.core.linalg: SVD truncation rule, QR and LQ."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, TOL, assert_close, random_array

from tnkit.core.linalg import DEFAULT_CUTOFF, lq, qr, svd, truncated_svd, truncation_rank

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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_qr(rng, shape, dtype):
    m = random_array(rng, shape, dtype)
    q, r = qr(m)
    k = min(shape)
    assert q.shape == (shape[0], k) and r.shape == (k, shape[1])
    assert_close(q @ r, m, dtype)
    assert_close(q.conj().T @ q, np.eye(k), dtype)
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=TOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lq(rng, shape, dtype):
    m = random_array(rng, shape, dtype)
    l_, q = lq(m)
    k = min(shape)
    assert l_.shape == (shape[0], k) and q.shape == (k, shape[1])
    assert_close(l_ @ q, m, dtype)
    assert_close(q @ q.conj().T, np.eye(k), dtype)
    np.testing.assert_allclose(np.triu(l_, 1), 0, atol=TOL[np.dtype(dtype)])
