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
