"""Lanczos ground state and Krylov exponential against dense linear algebra."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from tnkit.algorithms.krylov import expm_krylov, lanczos_ground


def _hermitian(rng, n, dtype):
    a = rng.standard_normal((n, n))
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal((n, n))
    return (a + a.conj().T) / 2


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lanczos_finds_lowest_eigenpair(dtype):
    rng = np.random.default_rng(0)
    h = _hermitian(rng, 60, dtype)
    e, v = np.linalg.eigh(h)
    x0 = rng.standard_normal((4, 15)).astype(dtype)
    energy, x, info = lanczos_ground(
        lambda y: (h @ y.reshape(-1)).reshape(y.shape), x0, tol=1e-11, max_krylov=40, max_restarts=100
    )
    assert x.shape == x0.shape
    assert info.converged
    assert energy == pytest.approx(e[0], abs=1e-10)
    assert abs(np.vdot(v[:, 0], x.reshape(-1))) == pytest.approx(1.0, abs=1e-10)


def test_lanczos_stops_on_invariant_subspace():
    h = np.diag([3.0, -1.0, 2.0, 5.0])
    energy, x, info = lanczos_ground(lambda y: h @ y, np.array([0.0, 1.0, 1.0, 0.0]))
    assert energy == pytest.approx(-1.0, abs=1e-14)
    assert info.n_matvecs <= 2


def test_lanczos_rejects_zero_start():
    with pytest.raises(ValueError, match="nonzero"):
        lanczos_ground(lambda y: y, np.zeros(3))


@pytest.mark.parametrize("factor", [-0.2j, -3.0j, -0.5, 0.25])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_expm_krylov_matches_scipy(factor, dtype):
    rng = np.random.default_rng(1)
    h = _hermitian(rng, 40, dtype)
    v = rng.standard_normal(40).astype(dtype)
    w, info = expm_krylov(lambda y: h @ y, v, factor, tol=1e-13, max_krylov=25)
    exact = scipy.linalg.expm(factor * h) @ v
    assert info.converged
    np.testing.assert_allclose(w, exact, atol=1e-11 * np.linalg.norm(exact))


def test_expm_krylov_of_zero_vector_is_zero():
    w, info = expm_krylov(lambda y: y, np.zeros(5), -1j)
    assert not np.any(w) and info.n_matvecs == 0


@pytest.mark.parametrize("tol", [1e-6, 1e-9, 1e-12])
@pytest.mark.parametrize("factor", [-0.05j, -0.5j, -0.1])
def test_expm_krylov_error_is_below_its_tolerance(tol, factor):
    """The returned vector includes the leading error term, so its error is below ``tol`` and
    below the estimate it reports (which is the size of that term)."""
    rng = np.random.default_rng(2)
    h = _hermitian(rng, 120, np.complex128)
    v = rng.standard_normal(120) + 1j * rng.standard_normal(120)
    v /= np.linalg.norm(v)
    w, info = expm_krylov(lambda y: h @ y, v, factor, tol=tol)
    e, u = np.linalg.eigh(h)
    exact = u @ (np.exp(factor * e) * (u.conj().T @ v))
    assert info.converged and info.error <= tol
    assert np.linalg.norm(w - exact) <= tol * max(1.0, np.linalg.norm(exact))


def test_krylov_workspace_reuses_bases_without_changing_results():
    from tnkit.algorithms.krylov import krylov_workspace

    rng = np.random.default_rng(3)
    h = _hermitian(rng, 50, np.complex128)
    vs = [rng.standard_normal(50) + 1j * rng.standard_normal(50) for _ in range(3)]
    plain = [expm_krylov(lambda y: h @ y, v, -0.3j)[0] for v in vs]
    with krylov_workspace():
        reused = [expm_krylov(lambda y: h @ y, v, -0.3j)[0] for v in vs]
        energy, _, _ = lanczos_ground(lambda y: h @ y, vs[0], tol=1e-10, max_krylov=50)
    for a, b in zip(plain, reused, strict=True):
        np.testing.assert_array_equal(a, b)
    assert energy == pytest.approx(np.linalg.eigvalsh(h)[0], abs=1e-9)
