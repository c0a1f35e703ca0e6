"""tnkit.core.linalg: Gram-route factors and singular values, damped Gram factors, whitening, in-place symmetry.

Every result is compared with numpy's dense SVD, Cholesky or explicit symmetric matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, assert_close, random_array

from tnkit.core.linalg import (
    cholesky_whitener,
    gram,
    gram_factor,
    gram_singular_values,
    gram_truncated_factors,
    symmetrize_,
    truncation_rank,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(30, 12), (12, 30), (9, 9)])
def test_gram_singular_values_match_the_dense_svd(rng, shape, dtype):
    a = random_array(rng, shape, dtype)
    s = np.linalg.svd(a, compute_uv=False)
    assert_close(gram_singular_values(a), s, dtype, scale=s[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
@pytest.mark.parametrize("max_bond, cutoff", [(1, 0.0), (5, 0.0), (12, 0.0), (None, 1e-2), (7, 0.2)])
def test_gram_truncated_factors_give_the_truncated_svd(rng, shape, dtype, max_bond, cutoff):
    a = random_array(rng, shape, dtype)
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    k, discarded = truncation_rank(s, max_bond=max_bond, cutoff=cutoff)
    left, right, disc = gram_truncated_factors(a, max_bond=max_bond, cutoff=cutoff)
    assert left.shape == (shape[0], k) and right.shape == (k, shape[1])
    assert_close(left @ right, (u[:, :k] * s[:k]) @ vh[:k], dtype, scale=s[0])
    assert disc == pytest.approx(discarded, rel=1e-3 if dtype in (np.float32, np.complex64) else 1e-8,
                                 abs=1e-5 * s[0] ** 2)


def test_gram_truncated_factors_are_exact_at_full_rank_of_an_ill_conditioned_matrix(rng):
    a = random_array(rng, (40, 10)) @ np.diag(np.logspace(0, -12, 10))
    left, right, disc = gram_truncated_factors(a)
    np.testing.assert_allclose(left @ right, a, atol=1e-13)
    assert disc == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_gram_factor_in_place_reuses_the_storage_and_matches_numpy(rng, dtype, order):
    x = random_array(rng, (40, 12), dtype)
    g = np.asarray(gram(x), order=order)
    expected = np.linalg.cholesky(g.astype(np.float64) + 0.5 * np.mean(np.diag(g)) * np.eye(12)).T
    kept = g.copy()
    f = gram_factor(g, damping=0.5)
    np.testing.assert_array_equal(g, kept)  # not overwritten by default
    assert_close(f, expected, dtype, scale=np.abs(expected).max())
    f = gram_factor(g, damping=0.5, overwrite=True)
    assert np.shares_memory(f, g)
    assert_close(f, expected, dtype, scale=np.abs(expected).max())
    np.testing.assert_array_equal(np.tril(f, -1), 0)


def test_gram_factor_of_an_indefinite_matrix_leaves_it_intact_and_clips(rng):
    v = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    w = np.array([4.0, 2.0, 1.0, 0.5, 0.0, -1e-9])  # a rounding error made it indefinite
    g = (v * w) @ v.T
    g = (g + g.T) / 2
    kept = g.copy()
    f = gram_factor(g, overwrite=True)
    np.testing.assert_allclose(g, kept, atol=1e-15)  # the failed in-place Cholesky was undone
    np.testing.assert_allclose(f.T @ f, (v * np.clip(w, 0, None)) @ v.T, atol=1e-12)
    np.testing.assert_array_equal(np.tril(f, -1), 0)
    shift = 0.1 * np.mean(np.diag(g))
    damped = gram_factor(g, damping=0.1)  # the shift outweighs the rounding error: one Cholesky
    np.testing.assert_allclose(damped.T @ damped, g + shift * np.eye(6), atol=1e-12)
    tiny = gram_factor(g, damping=1e-12)  # too small: raised tenfold until Cholesky succeeds
    added = np.diag(tiny.T @ tiny - kept)
    np.testing.assert_allclose(tiny.T @ tiny - kept, np.diag(added), atol=1e-12)
    used = added[0] / (1e-12 * np.mean(np.diag(kept)))
    assert np.allclose(added, added[0]) and 10 <= used <= 1e5 and np.isclose(used, 10.0 ** round(np.log10(used)))
    np.testing.assert_array_equal(g, kept)


def test_gram_factor_takes_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = x.T @ x
    f = gram_factor(g, damping=1e-3)
    shift = 1e-3 * float(torch.diagonal(g).mean())
    torch.testing.assert_close(f.T @ f, g + shift * torch.eye(5, dtype=torch.float64))


def test_gram_factor_refuses_a_negative_damping():
    with pytest.raises(ValueError, match="`damping`"):
        gram_factor(np.eye(3), damping=-1.0)


def test_cholesky_whitener_is_the_lower_factor_of_the_damped_covariance(rng):
    x = rng.standard_normal((8, 30))  # 8 samples of 30 channels: C is singular
    c = x.T @ x / 8
    s = cholesky_whitener(c)
    assert np.array_equal(np.triu(s, 1), np.zeros_like(s))
    np.testing.assert_allclose(s @ s.T, c + 1e-6 * np.mean(np.diag(c)) * np.eye(30), atol=1e-12)
    kept = c.copy()
    s2 = cholesky_whitener(c, overwrite=True)
    assert np.shares_memory(s2, c)
    np.testing.assert_allclose(s2, s, atol=1e-14)
    with pytest.raises(ValueError, match="square"):
        cholesky_whitener(kept[:3])


@pytest.mark.parametrize("source", ["upper", "lower"])
@pytest.mark.parametrize("n", [1, 7, 1100])  # 1100: several blocks of rows
def test_symmetrize_copies_one_triangle_in_place(rng, source, n):
    a = rng.standard_normal((n, n))
    tri = np.triu(a) if source == "upper" else np.tril(a)
    expected = tri + (np.triu(a, 1) if source == "upper" else np.tril(a, -1)).T
    out = symmetrize_(a, source=source)
    assert out is a
    np.testing.assert_array_equal(a, expected)
    with pytest.raises(ValueError, match="`source`"):
        symmetrize_(a, source="both")
