"""MPS compression: SVD sweeps (exact error report) and variational fitting."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, assert_close, dense_fidelity, rel_err2

from tnkit import MPS, TruncationReport
from tnkit.errors import OptionError
from tnkit.mps.truncation import svd_sweep

N = 7
DIMS = (2, 3, 2, 2, 3, 2, 2)


def _target(seed, dtype, start="none", scale=2.5):
    """A bond-8 state to compress, with a chosen canonical bookkeeping.

    ``start``: "none" (no canonical structure), "left" (centre 0), "right" (centre N-1),
    or "middle" (centre 3): these exercise both sweep directions of ``svd_compress``.
    """
    psi = MPS.random(N, 8, phys_dim=DIMS, dtype=dtype, seed=seed, normalize=False)
    psi = psi * scale
    if start == "left":
        psi.canonicalize_(0)
    elif start == "right":
        psi.canonicalize_(N - 1)
    elif start == "middle":
        psi.canonicalize_(3)
    return psi


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start", ["none", "left", "right", "middle"])
@pytest.mark.parametrize(
    "max_bond, cutoff", [(1, 1e-20), (2, 1e-20), (4, 1e-20), (6, 1e-20), (None, 1e-2), (None, 0.1), (3, 1e-3)]
)
def test_svd_compress_report_is_exact(dtype, start, max_bond, cutoff):
    psi = _target(7, dtype, start)
    v = psi.to_dense()
    phi, report = psi.compress(max_bond=max_bond, cutoff=cutoff)
    w = phi.to_dense()
    assert isinstance(report, TruncationReport)
    assert report.method == "svd" and report.sweeps == 0
    err = rel_err2(v, w)
    assert err > 1e-8  # these parameters do truncate
    assert report.error == pytest.approx(err, abs=1e-12)
    assert float(report) == report.error
    assert report.error == pytest.approx(sum(report.discarded), abs=1e-15)
    assert report.fidelity == pytest.approx(1.0 - report.error, abs=1e-15)
    assert report.fidelity == pytest.approx(dense_fidelity(v, w), abs=1e-12)
    assert report.bond_dims == phi.bond_dims
    assert len(report.discarded) == N - 1
    if max_bond is not None:
        assert phi.max_bond_dim <= max_bond
    else:
        assert all(d <= cutoff * (1 + 1e-12) for d in report.discarded)
    # the result is the projection of the input, not renormalised
    assert phi.norm() ** 2 == pytest.approx((1 - report.error) * psi.norm() ** 2, rel=1e-10)
    # it comes back in canonical form, with correct bookkeeping
    assert phi.center is not None and phi.is_canonical()
    # the input is untouched
    assert_close(psi.to_dense(), v, dtype)
    assert "TruncationReport(method='svd'" in str(report)


@pytest.mark.parametrize("dtype", DTYPES)
def test_svd_compress_without_truncation_is_exact(dtype):
    psi = _target(3, dtype)
    v = psi.to_dense()
    phi, report = psi.compress()
    assert report.error == pytest.approx(0.0, abs=1e-20)
    assert_close(phi.to_dense(), v, dtype)
    phi2, report2 = psi.compress(max_bond=100)
    assert phi2.bond_dims == psi.bond_dims
    assert_close(phi2.to_dense(), v, dtype)


def test_svd_compress_removes_redundant_bonds():
    ghz = MPS.product_state("000000") + MPS.product_state("111111")
    doubled = ghz + ghz  # bond 4, Schmidt rank 2
    assert doubled.max_bond_dim == 4
    phi, report = doubled.compress()
    assert phi.bond_dims == (2,) * 5
    assert report.error == pytest.approx(0.0, abs=1e-20)
    assert_close(phi.to_dense(), 2 * ghz.to_dense())


def test_svd_compress_product_state_to_bond_one():
    psi = MPS.random(6, 4, seed=5)
    phi, report = psi.compress(max_bond=1)
    assert phi.bond_dims == (1,) * 5
    assert report.error == pytest.approx(rel_err2(psi.to_dense(), phi.to_dense()), abs=1e-12)


def test_svd_compress_single_site():
    psi = MPS.product_state([np.array([0.6, 0.8j])])
    phi, report = psi.compress(max_bond=1)
    assert report.error == 0.0 and report.discarded == ()
    assert_close(phi.to_dense(), psi.to_dense(), complex)


def test_svd_sweep_returns_schmidt_values():
    psi = MPS.random(6, 4, dtype=complex, seed=9).canonicalize_(0)
    v = psi.to_dense()
    tensors = list(psi.tensors)
    discarded, svals = svd_sweep(tensors, "right")
    assert discarded == [0.0] * 5
    for b, s in enumerate(svals):
        ref = np.linalg.svd(v.reshape(2 ** (b + 1), -1), compute_uv=False)
        np.testing.assert_allclose(s, ref[: len(s)], atol=1e-12)
    assert_close(MPS(tensors).to_dense(), v, complex)


# --------------------------------------------------------------------------- fit


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start", ["none", "right"])
@pytest.mark.parametrize("max_bond", [1, 2, 3, 5])
def test_fit_compress(dtype, start, max_bond):
    psi = _target(11, dtype, start)
    v = psi.to_dense()
    _, svd_report = psi.compress(max_bond=max_bond)
    phi, report = psi.compress(max_bond=max_bond, method="fit", max_sweeps=4)
    w = phi.to_dense()
    assert report.method == "fit"
    assert 1 <= report.sweeps <= 4
    assert phi.max_bond_dim <= max_bond
    assert report.bond_dims == phi.bond_dims
    fid = dense_fidelity(v, w)
    assert report.fidelity == pytest.approx(fid, abs=1e-10)
    assert report.error == pytest.approx(1.0 - report.fidelity, abs=1e-15)
    assert report.fidelity >= svd_report.fidelity - 1e-12
    # the fit is the projection of the target onto its own manifold: <phi|psi> = ||phi||^2
    assert_close(np.vdot(w, v), np.vdot(w, w).real, dtype, scale=np.vdot(v, v).real)
    assert rel_err2(v, w) == pytest.approx(report.error, abs=1e-10)
    # right-canonical with centre 0
    assert phi.center == 0 and phi.is_canonical(0)
    assert_close(psi.to_dense(), v, dtype)


def test_fit_improves_on_svd_for_a_hard_target():
    """A state where the one-pass SVD truncation is measurably suboptimal in fidelity."""
    psi = MPS.random(8, 6, seed=17, normalize=False)
    _, svd_report = psi.compress(max_bond=2)
    phi, fit_report = psi.compress(max_bond=2, method="fit", max_sweeps=8, tol=1e-14)
    assert fit_report.fidelity > svd_report.fidelity + 1e-3  # 0.8706 vs 0.8687
    assert fit_report.fidelity == pytest.approx(dense_fidelity(psi.to_dense(), phi.to_dense()), abs=1e-10)
    assert fit_report.sweeps >= 2


def test_fit_without_truncation_is_exact():
    psi = _target(5, complex)
    phi, report = psi.compress(method="fit", max_sweeps=2)
    assert report.fidelity == pytest.approx(1.0, abs=1e-12)
    assert_close(phi.to_dense(), psi.to_dense(), complex)


def test_fit_two_sites():
    psi = MPS.random(2, 2, phys_dim=3, dtype=complex, seed=1, normalize=False)
    phi, report = psi.compress(max_bond=1, method="fit")
    v, w = psi.to_dense(), phi.to_dense()
    assert report.fidelity == pytest.approx(dense_fidelity(v, w), abs=1e-12)
    s = np.linalg.svd(v.reshape(3, 3), compute_uv=False)
    assert report.fidelity == pytest.approx(s[0] ** 2 / np.sum(s**2), abs=1e-12)  # optimal


def test_fit_single_site():
    psi = MPS([np.array([[[3.0], [4.0]]])])
    phi, report = psi.compress(method="fit")
    assert report.fidelity == pytest.approx(1.0)
    assert_close(phi.to_dense(), psi.to_dense())


# --------------------------------------------------------------------------- errors


def test_compress_errors():
    psi = MPS.random(4, 2, seed=0)
    with pytest.raises(OptionError, match=r"`method` must be one of \['dm', 'fit', 'src', 'svd'\], got 'zipup'"):
        psi.compress(method="zipup")
    with pytest.raises(ValueError, match="`max_bond` must be an integer >= 1"):
        psi.compress(max_bond=0)
    with pytest.raises(TypeError, match="`max_bond` must be an integer"):
        psi.compress(max_bond=2.5)
    with pytest.raises(ValueError, match=r"`cutoff` must lie in \[0, 1\)"):
        psi.compress(cutoff=1.0)
    with pytest.raises(ValueError, match="`max_sweeps` must be an integer >= 1"):
        psi.compress(method="fit", max_sweeps=0)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("max_bond", [2, 5, 8])
def test_dm_compress_equals_svd_compress(dtype, max_bond):
    """The density-matrix route gives the SVD truncation, from a non-canonical gauge too."""
    psi = MPS.random(9, 8, dtype=dtype, seed=3)
    psi[4] = psi[4] * 1.7  # leave the gauge non-canonical around site 4
    v = psi.to_dense()
    small_svd, rep_svd = psi.compress(max_bond=max_bond, method="svd")
    small_dm, rep_dm = psi.compress(max_bond=max_bond, method="dm")
    assert small_dm.bond_dims == small_svd.bond_dims
    assert small_dm.is_canonical(psi.n_sites - 1)
    err = np.linalg.norm(small_dm.to_dense() - v) ** 2 / np.linalg.norm(v) ** 2
    assert rep_dm.error == pytest.approx(err, abs=1e-10)
    assert rep_dm.error == pytest.approx(rep_svd.error, abs=1e-10)
