"""apply_mpo (every method) and its truncation reports against dense ``W @ psi``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tnkit
from tnkit import MPO, MPS
from tnkit.errors import OptionError
from tnkit.mps.apply import APPLY_METHODS, apply_mpo
from conftest import random_array as rand
from conftest import assert_close_rtol as assert_close
from conftest import DTYPES, random_mpo
from tnkit.testing import TOL

RTOL = TOL[np.dtype(np.float64)]  # 1e-10, the float64/complex128 entry of the one dtype table


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(8675309)


def dense_fidelity(v, w) -> float:
    return float(abs(np.vdot(v, w)) ** 2 / (np.vdot(v, v).real * np.vdot(w, w).real))


#: Methods that take ``cutoff`` (all but the fixed-bond randomized "src", tested below).
CUTOFF_METHODS = tuple(m for m in APPLY_METHODS if m != "src")


def test_apply_methods_tuple():
    assert set(APPLY_METHODS) == {"zipup", "dm", "direct", "src", "fit"}


# ----------------------------------------------------------------------------- exact application


@pytest.mark.parametrize("method", CUTOFF_METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_sites", [1, 2, 5])
def test_exact_equals_dense(rng, method, dtype, n_sites):
    dims = (2, 3, 2, 2, 3)[:n_sites]
    w = random_mpo(rng, dims, dims, 3, dtype)
    psi = MPS.random(n_sites, 4, phys_dim=dims, dtype=dtype, seed=rng)
    ref = w.to_dense() @ psi.to_dense()
    out, report = apply_mpo(w, psi, method=method, cutoff=0.0, return_report=True)
    assert isinstance(out, MPS)
    assert_close(out.to_dense(), ref)
    assert report.fidelity == pytest.approx(1.0, abs=1e-10)
    assert report.error == pytest.approx(0.0, abs=1e-10)
    # default cutoff, no report: still the exact product to working precision
    assert_close(apply_mpo(w, psi, method=method).to_dense(), ref)


@pytest.mark.parametrize("method", CUTOFF_METHODS)
def test_exact_unnormalised_and_non_canonical_input(rng, method):
    # psi is a sum (no canonical centre) and not normalised; the result is not renormalised.
    a = MPS.random(5, 3, seed=rng)
    b = MPS.random(5, 2, seed=rng)
    psi = 3.0 * a + b
    assert psi.center is None
    w = random_mpo(rng, (2,) * 5, (2,) * 5, 2)
    before = [t.copy() for t in psi.tensors]
    out = apply_mpo(w, psi, method=method, cutoff=0.0)
    assert_close(out.to_dense(), w.to_dense() @ psi.to_dense())
    # the input is left alone
    assert all(np.array_equal(x, y) for x, y in zip(before, psi.tensors, strict=True))


@pytest.mark.parametrize("method", CUTOFF_METHODS)
@pytest.mark.parametrize(
    ("mpo_dtype", "mps_dtype"), [(np.float64, np.complex128), (np.complex128, np.float64)]
)
def test_mixed_dtypes(rng, method, mpo_dtype, mps_dtype):
    w = random_mpo(rng, (2,) * 4, (2,) * 4, 2, mpo_dtype)
    psi = MPS.random(4, 3, dtype=mps_dtype, seed=rng)
    out = apply_mpo(w, psi, method=method)
    assert out.dtype == np.complex128
    assert_close(out.to_dense(), w.to_dense() @ psi.to_dense())


@pytest.mark.parametrize("method", CUTOFF_METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_square_mpo(rng, method, dtype):
    out_dims, in_dims = (3, 2, 4, 2), (2, 3, 2, 2)
    w = random_mpo(rng, out_dims, in_dims, 3, dtype)
    psi = MPS.random(4, 4, phys_dim=in_dims, dtype=dtype, seed=rng)
    ref = w.to_dense() @ psi.to_dense()
    out = apply_mpo(w, psi, method=method, cutoff=0.0)
    assert out.phys_dims == out_dims
    assert_close(out.to_dense(), ref)
    trunc, report = apply_mpo(w, psi, method=method, max_bond=2, return_report=True)
    assert trunc.phys_dims == out_dims and trunc.max_bond_dim <= 2
    assert report.fidelity == pytest.approx(dense_fidelity(ref, trunc.to_dense()), abs=1e-10)


def test_front_ends_agree(rng):
    w = random_mpo(rng, (2,) * 4, (2,) * 4, 3)
    psi = MPS.random(4, 3, seed=rng)
    ref = apply_mpo(w, psi, method="fit", max_bond=3).to_dense()
    assert_close(psi.apply_mpo(w, method="fit", max_bond=3).to_dense(), ref)
    assert_close(w.apply(psi, method="fit", max_bond=3).to_dense(), ref)
    assert_close(tnkit.apply_mpo(w, psi, method="fit", max_bond=3).to_dense(), ref)


def test_default_method_is_zipup(rng):
    w = random_mpo(rng, (2,) * 5, (2,) * 5, 3)
    psi = MPS.random(5, 4, seed=rng)
    _, report = apply_mpo(w, psi, max_bond=2, return_report=True)
    assert report.method == "zipup"


# ----------------------------------------------------------------------------- truncation and reports


@pytest.mark.parametrize("method", CUTOFF_METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bond", [1, 3, 5])
def test_report_fidelity_is_exact(rng, method, dtype, max_bond):
    w = random_mpo(rng, (2,) * 6, (2,) * 6, 3, dtype)
    psi = MPS.random(6, 4, dtype=dtype, seed=rng)
    ref = w.to_dense() @ psi.to_dense()
    out, report = apply_mpo(w, psi, method=method, max_bond=max_bond, return_report=True)
    assert out.max_bond_dim <= max_bond
    assert report.bond_dims == out.bond_dims
    true_fid = dense_fidelity(ref, out.to_dense())
    assert true_fid < 1 - 1e-6  # something was truncated
    assert report.fidelity == pytest.approx(true_fid, abs=1e-10)
    assert report.error == pytest.approx(1.0 - report.fidelity, abs=1e-15)
    assert 0.0 <= report.fidelity <= 1.0
    # The methods that project (direct, dm, fit) never increase the norm.
    if method != "zipup":
        assert out.norm() <= np.linalg.norm(ref) * (1 + 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bond", [2, 4])
def test_dm_and_direct_are_the_same_svd_truncation(rng, dtype, max_bond):
    w = random_mpo(rng, (2,) * 6, (2,) * 6, 3, dtype)
    psi = MPS.random(6, 4, dtype=dtype, seed=rng)
    ref = w.to_dense() @ psi.to_dense()
    out_dm, rep_dm = apply_mpo(w, psi, method="dm", max_bond=max_bond, cutoff=0.0, return_report=True)
    out_direct, rep_direct = apply_mpo(
        w, psi, method="direct", max_bond=max_bond, cutoff=0.0, return_report=True
    )
    assert rep_dm.fidelity == pytest.approx(rep_direct.fidelity, abs=1e-10)
    assert out_dm.bond_dims == out_direct.bond_dims
    # Same state (up to gauge): the SVD truncation of W|psi> from the left is unique here.
    assert dense_fidelity(out_dm.to_dense(), out_direct.to_dense()) == pytest.approx(1.0, abs=1e-10)
    assert_close(out_dm.to_dense(), out_direct.to_dense(), rtol=1e-8)
    # The direct method's truncation error equals the dense one.
    assert rep_direct.fidelity == pytest.approx(dense_fidelity(ref, out_direct.to_dense()), abs=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bond", [1, 2, 4])
def test_fit_at_least_as_good_as_zipup(rng, dtype, max_bond):
    w = random_mpo(rng, (2,) * 7, (2,) * 7, 3, dtype)
    psi = MPS.random(7, 4, dtype=dtype, seed=rng)
    _, rep_zip = apply_mpo(w, psi, method="zipup", max_bond=max_bond, return_report=True)
    _, rep_fit = apply_mpo(w, psi, method="fit", max_bond=max_bond, return_report=True)
    assert rep_fit.fidelity >= rep_zip.fidelity - 1e-12
    assert rep_fit.sweeps >= 1


def test_fit_sweep_options(rng):
    w = random_mpo(rng, (2,) * 6, (2,) * 6, 3)
    psi = MPS.random(6, 4, seed=rng)
    _, one = apply_mpo(w, psi, method="fit", max_bond=3, max_sweeps=1, tol=0.0, return_report=True)
    _, many = apply_mpo(w, psi, method="fit", max_bond=3, max_sweeps=6, tol=0.0, return_report=True)
    assert one.sweeps == 1 and many.sweeps == 6
    assert many.fidelity >= one.fidelity - 1e-12
    with pytest.raises(ValueError, match="max_sweeps"):
        apply_mpo(w, psi, method="fit", max_bond=3, max_sweeps=0)


@pytest.mark.parametrize("method", CUTOFF_METHODS)
@pytest.mark.parametrize("cutoff", [1e-8, 1e-4])
def test_cutoff_truncation_bounded(rng, method, cutoff):
    # W = 1 + eps R: W|psi> has a dominant low-rank part and weak directions that a
    # cutoff drops. The SVD-based methods discard at most `cutoff` per bond.
    n = 6
    r = random_mpo(rng, (2,) * n, (2,) * n, 2)
    w = MPO.identity(n) + (1e-3 / np.linalg.norm(r.to_dense(), 2)) * r
    psi = MPS.random(n, 2, seed=rng)
    ref = w.to_dense() @ psi.to_dense()
    exact = apply_mpo(w, psi, method="direct", cutoff=0.0)
    out, report = apply_mpo(w, psi, method=method, cutoff=cutoff, return_report=True)
    assert report.fidelity == pytest.approx(dense_fidelity(ref, out.to_dense()), abs=1e-10)
    assert all(x <= y for x, y in zip(out.bond_dims, exact.bond_dims, strict=True))
    if method in ("direct", "dm"):
        assert 1 - report.fidelity <= (n - 1) * cutoff * (1 + 1e-8) + 1e-14
        assert all(d <= cutoff * (1 + 1e-8) for d in report.discarded)
    if cutoff == 1e-4:
        assert out.max_bond_dim < exact.max_bond_dim  # the cutoff did truncate


@pytest.mark.parametrize(
    "method",
    [
        "zipup",
        "dm",
        "direct",  # regression: the truncated 'direct' report used to say 'svd'
        "fit",
    ],
)
def test_report_method_names_the_method(rng, method):
    w = random_mpo(rng, (2,) * 5, (2,) * 5, 3)
    psi = MPS.random(5, 4, seed=rng)
    _, report = apply_mpo(w, psi, method=method, max_bond=2, return_report=True)
    assert report.method == method


def test_report_without_return_report_flag_returns_state_only(rng):
    w = random_mpo(rng, (2,) * 3, (2,) * 3, 2)
    psi = MPS.random(3, 2, seed=rng)
    for method in CUTOFF_METHODS:
        out = apply_mpo(w, psi, method=method, max_bond=2)
        assert isinstance(out, MPS)


def test_unitary_mpo_keeps_norm_and_long_chain(rng):
    # Product of single-site unitaries as an MPO on 40 sites: exact, norm preserved.
    n = 40
    us = [np.linalg.qr(rand(rng, (2, 2), np.complex128))[0] for _ in range(n)]
    w = MPO([u.reshape(1, 2, 2, 1) for u in us])
    psi = MPS.random(n, 8, dtype=np.complex128, seed=rng)
    for method in CUTOFF_METHODS:
        out, report = apply_mpo(w, psi, method=method, return_report=True)
        assert out.norm() == pytest.approx(1.0, abs=1e-10)
        assert report.fidelity == pytest.approx(1.0, abs=1e-10)
        assert out.max_bond_dim == psi.max_bond_dim


# ----------------------------------------------------------------------------- errors


def test_errors(rng):
    w = random_mpo(rng, (2,) * 3, (2,) * 3, 2)
    psi = MPS.random(3, 2, seed=rng)
    with pytest.raises(TypeError, match="MatrixProductOperator"):
        apply_mpo(w.to_dense(), psi)
    with pytest.raises(TypeError, match="MatrixProductState"):
        apply_mpo(w, psi.to_dense())
    with pytest.raises(TypeError, match="MatrixProductOperator"):
        apply_mpo(psi, w)
    with pytest.raises(ValueError, match="dims"):
        apply_mpo(w, MPS.random(4, 2, seed=rng))
    with pytest.raises(ValueError, match="dims"):
        apply_mpo(w, MPS.random(3, 2, phys_dim=3, seed=rng))
    with pytest.raises(OptionError, match="method"):
        apply_mpo(w, psi, method="svd")
    # OptionError is both a KeyError and a ValueError
    with pytest.raises(ValueError, match="zipup"):
        apply_mpo(w, psi, method="nope")
    with pytest.raises(KeyError, match="method"):
        apply_mpo(w, psi, method="ZIPUP")
    with pytest.raises(ValueError, match="max_bond"):
        apply_mpo(w, psi, max_bond=0)
    with pytest.raises(TypeError, match="max_bond"):
        apply_mpo(w, psi, max_bond=2.0)
    with pytest.raises(ValueError, match="cutoff"):
        apply_mpo(w, psi, cutoff=-1e-3)
    with pytest.raises(TypeError, match="cutoff"):
        apply_mpo(w, psi, cutoff="small")


def test_non_square_dims_mismatch(rng):
    w = random_mpo(rng, (3, 3), (2, 2), 2)
    psi3 = MPS.random(2, 2, phys_dim=3, seed=rng)
    with pytest.raises(ValueError, match="input dims"):
        apply_mpo(w, psi3)  # the state matches the output, not the input, dims


def test_report_fidelity_uses_exact_norm_on_long_chain(rng):
    # 60 sites: norms of W|psi> far from 1 are handled through logarithms.
    n = 60
    w = 1.5 * MPO.identity(n) + 0.3 * random_mpo(rng, (2,) * n, (2,) * n, 2)
    psi = MPS.random(n, 4, seed=rng)
    exact = apply_mpo(w, psi, method="direct", cutoff=0.0)
    for method in CUTOFF_METHODS:
        out, report = apply_mpo(w, psi, method=method, max_bond=4, return_report=True)
        assert 0.0 <= report.fidelity <= 1.0
        assert report.fidelity == pytest.approx(exact.fidelity(out), abs=1e-8)
        assert math.isfinite(out.log_norm())


@pytest.mark.parametrize("cutoff", [0.0, 1e-20])
def test_dm_bonds_never_exceed_exact_product(rng, cutoff):
    # Regression: eigenvalue noise of rho used to be kept as weight (cutoff below ~1e-16),
    # so 'dm' bonds grew towards min(k * d, ...) instead of the rank of W|psi>.
    n = 20
    w = random_mpo(rng, (2,) * n, (2,) * n, 2)
    psi = MPS.random(n, 4, seed=rng)
    exact = apply_mpo(w, psi, method="direct", cutoff=0.0)
    out, report = apply_mpo(w, psi, method="dm", cutoff=cutoff, return_report=True)
    assert all(x <= y for x, y in zip(out.bond_dims, exact.bond_dims, strict=True))
    assert report.fidelity == pytest.approx(1.0, abs=1e-10)
    svd, _ = exact.compress(cutoff=1e-14)
    assert out.bond_dims == svd.bond_dims


# ----------------------------------------------------------------------------- successive randomized compression


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("out_dims", "in_dims"), [((2,) * 5, (2,) * 5), ((3, 2, 4, 2), (2, 3, 2, 2))])
def test_src_exact_when_the_sketch_covers_the_rank(rng, dtype, out_dims, in_dims):
    n = len(in_dims)
    w = random_mpo(rng, out_dims, in_dims, 3, dtype)
    psi = MPS.random(n, 4, phys_dim=in_dims, dtype=dtype, seed=rng)
    ref = w.to_dense() @ psi.to_dense()
    out, report = apply_mpo(w, psi, method="src", max_bond=64, seed=1, return_report=True)
    assert_close(out.to_dense(), ref)
    assert report.method == "src" and report.fidelity == pytest.approx(1.0, abs=1e-10)
    for t in out.tensors[1:]:  # right-isometric away from the centre at site 0
        m = t.reshape(t.shape[0], -1)
        assert_close(m @ m.conj().T, np.eye(t.shape[0]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bond", [2, 4])
def test_src_truncation_close_to_optimal(rng, dtype, max_bond):
    w = random_mpo(rng, (2,) * 8, (2,) * 8, 3, dtype)
    psi = MPS.random(8, 6, dtype=dtype, seed=rng)
    ref = w.to_dense() @ psi.to_dense()
    out, report = apply_mpo(w, psi, method="src", max_bond=max_bond, seed=7, return_report=True)
    _, optimal = apply_mpo(w, psi, method="direct", max_bond=max_bond, return_report=True)
    assert out.max_bond_dim == max_bond
    assert report.fidelity == pytest.approx(dense_fidelity(ref, out.to_dense()), abs=1e-10)
    assert optimal.error <= report.error <= 10 * optimal.error
    again = apply_mpo(w, psi, method="src", max_bond=max_bond, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(out.tensors, again.tensors, strict=True))


def test_src_needs_max_bond(rng):
    w = random_mpo(rng, (2,) * 3, (2,) * 3, 2)
    psi = MPS.random(3, 2, seed=rng)
    with pytest.raises(ValueError, match="max_bond"):
        apply_mpo(w, psi, method="src")
    with pytest.raises(ValueError, match="max_bond"):
        psi.compress(method="src")


@pytest.mark.parametrize("dtype", DTYPES)
def test_mps_compress_src(rng, dtype):
    psi = MPS.random(10, 16, dtype=dtype, seed=rng)
    full, report = psi.compress(method="src", max_bond=64, seed=0)
    assert_close(full.to_dense(), psi.to_dense())
    assert report.fidelity == pytest.approx(1.0, abs=1e-10)
    small, report = psi.compress(method="src", max_bond=5, seed=0)
    _, optimal = psi.compress(method="svd", max_bond=5)
    assert small.max_bond_dim == 5
    assert report.fidelity == pytest.approx(dense_fidelity(psi.to_dense(), small.to_dense()), abs=1e-10)
    assert optimal.error <= report.error <= 10 * optimal.error


def test_a_method_is_one_registered_function(monkeypatch):
    """APPLY_METHODS maps names to functions: one entry adds a method, and the error lists it."""
    import tnkit.mps.apply as apply_module

    def exact(mpo, mps, **options):
        return apply_module.APPLY_METHODS["direct"](mpo, mps, max_bond=None, cutoff=0.0)

    monkeypatch.setitem(apply_module.APPLY_METHODS, "exact", exact)
    w, psi = tnkit.heisenberg_mpo(6), MPS.random(6, max_bond=3, seed=2)
    out, report = apply_mpo(w, psi, method="exact", return_report=True)
    np.testing.assert_allclose(out.to_dense(), w.to_dense() @ psi.to_dense(), atol=1e-12)
    assert report.fidelity == pytest.approx(1.0)
    with pytest.raises(OptionError, match="'exact'"):
        apply_mpo(w, psi, method="nope")
