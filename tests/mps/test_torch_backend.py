"""The MPS/MPO engine on torch tensors (CPU), compared with the same operations on numpy.

Every test runs with ``torch.Tensor.__array__`` disabled, so a silent conversion of
a tensor to numpy inside the engine fails the test instead of passing unnoticed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import DTYPES

import tnkit
from tnkit.mps import spin_operators
from tnkit.mps.builders import heisenberg_mpo

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("no_silent_numpy")


def _pair(n=8, chi=6, dtype=np.float64, seed=0, normalize=True):
    psi = tnkit.MPS.random(n, chi, dtype=dtype, seed=seed, normalize=normalize)
    return psi, psi.to("torch")


def _dense(x):
    return tnkit.core.backend.to_numpy(x)


def _tol(dtype):
    return 1e-10 if np.dtype(dtype).itemsize >= 16 or np.dtype(dtype) == np.float64 else 2e-4


def test_to_roundtrip_and_properties():
    psi, t = _pair(dtype=np.complex128)
    assert t.backend == "torch" and t.device == "cpu" and t.dtype == torch.complex128
    assert all(isinstance(a, torch.Tensor) for a in t.tensors)
    assert t.canonical_range == psi.canonical_range
    back = t.to("numpy")
    assert back.backend == "numpy"
    assert all(np.array_equal(a, b) for a, b in zip(back.tensors, psi.tensors, strict=True))
    single = t.to(dtype="complex64")
    assert single.dtype == torch.complex64 and single.backend == "torch"
    with pytest.raises(ValueError, match="dtype"):
        t.to(dtype=np.float64)
    with pytest.raises(ValueError, match="library"):
        psi.to("jax")


def test_mixed_libraries_are_refused():
    psi, t = _pair()
    tensors = list(psi.tensors)
    tensors[1] = t.tensors[1]
    with pytest.raises(TypeError, match="one library"):
        tnkit.MPS(tensors)


@pytest.mark.parametrize("dtype", DTYPES + [np.float32])
def test_canonical_norm_overlap(dtype):
    psi, t = _pair(dtype=dtype, normalize=False)
    tol = _tol(dtype)
    assert t.is_canonical() is False
    t.canonicalize_(3)
    assert t.is_canonical(3, atol=100 * tol)
    assert all(isinstance(a, torch.Tensor) for a in t.tensors)
    assert math.isclose(t.log_norm(), psi.log_norm(), rel_tol=tol, abs_tol=tol)
    phi, tphi = _pair(dtype=dtype, seed=1)
    assert abs(t.inner(tphi) - psi.inner(phi)) <= tol * max(1.0, abs(psi.inner(phi)))
    t.normalize_()
    assert math.isclose(t.norm(), 1.0, rel_tol=tol)
    np.testing.assert_allclose(_dense(t.to_dense()), psi.normalized().to_dense(), atol=10 * tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["svd", "dm", "fit", "src"])
def test_compress_matches_numpy(dtype, method):
    psi = tnkit.MPS.random(10, 4, dtype=dtype, seed=1) + 0.1 * tnkit.MPS.random(10, 12, dtype=dtype, seed=2)
    t = psi.to("torch")
    small, report = psi.compress(max_bond=4, method=method, seed=3)
    tsmall, treport = t.compress(max_bond=4, method=method, seed=3)
    assert tsmall.backend == "torch" and tsmall.bond_dims == small.bond_dims
    assert treport.method == report.method
    assert treport.error == pytest.approx(report.error, rel=1e-6, abs=1e-12)
    assert treport.fidelity == pytest.approx(report.fidelity, rel=1e-9)
    if method != "src":
        np.testing.assert_allclose(treport.discarded, report.discarded, rtol=1e-6, atol=1e-14)
    assert tsmall.fidelity(t) == pytest.approx(small.fidelity(psi), rel=1e-9)


def test_from_dense_torch_vector():
    v = np.random.default_rng(0).standard_normal(2**8)
    psi, report = tnkit.MPS.from_dense(v, 2, max_bond=6, return_report=True)
    tpsi, treport = tnkit.MPS.from_dense(torch.from_numpy(v), 2, max_bond=6, return_report=True)
    assert tpsi.backend == "torch"
    assert treport.error == pytest.approx(report.error, rel=1e-9)
    dense = psi.to_dense(little_endian=True)
    np.testing.assert_allclose(_dense(tpsi.to_dense(little_endian=True)), dense, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_measurements(dtype):
    psi, t = _pair(dtype=dtype)
    ops = spin_operators()
    sz, sx = ops["Sz"], ops["Sx"]
    assert t.local_expectation(sz, 2) == pytest.approx(psi.local_expectation(sz, 2), abs=1e-12)
    assert t.local_expectation(np.kron(sx, sz), (1, 4)) == pytest.approx(
        psi.local_expectation(np.kron(sx, sz), (1, 4)), abs=1e-12
    )
    assert t.correlation(sz, sz, 0, 5) == pytest.approx(psi.correlation(sz, sz, 0, 5), abs=1e-12)
    rho = psi.reduced_density_matrix((2, 3))
    np.testing.assert_allclose(t.reduced_density_matrix((2, 3)), rho, atol=1e-12)
    np.testing.assert_allclose(t.entanglement_entropy(), psi.entanglement_entropy(), atol=1e-10)
    h = heisenberg_mpo(psi.n_sites)
    assert t.expectation(h) == pytest.approx(psi.expectation(h), abs=1e-12)
    # the MPO itself on torch too
    assert t.expectation(h.to("torch")) == pytest.approx(psi.expectation(h), abs=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gates(dtype):
    psi, t = _pair(dtype=dtype)
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4)))
    for sites in [(2, 3), (5, 1)]:
        d1 = psi.apply_gate_(q, sites, max_bond=5)
        d2 = t.apply_gate_(torch.from_numpy(q), sites, max_bond=5)
        assert d2 == pytest.approx(d1, rel=1e-8, abs=1e-14)
    t.apply_gate_(spin_operators()["Sx"], 0)
    psi.apply_gate_(spin_operators()["Sx"], 0)
    assert t.backend == "torch"
    assert [tnkit.core.backend.numpy_dtype(a.dtype) for a in t.tensors] == [a.dtype for a in psi.tensors]
    assert t.to("numpy").fidelity(psi) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["zipup", "dm", "direct", "fit", "src"])
def test_apply_mpo(dtype, method):
    psi, t = _pair(n=8, chi=4, dtype=dtype)
    h = heisenberg_mpo(8)
    out, report = h.apply(psi, max_bond=6, method=method, return_report=True, seed=1)
    tout, treport = h.apply(t, max_bond=6, method=method, return_report=True, seed=1)
    assert tout.backend == "torch" and tout.bond_dims == out.bond_dims
    assert treport.fidelity == pytest.approx(report.fidelity, rel=1e-8)
    assert tout.to("numpy").fidelity(out) == pytest.approx(1.0, abs=1e-8)
    exact = (h @ t).to("numpy")
    assert exact.fidelity(h @ psi) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sampling_and_amplitudes(dtype):
    psi, t = _pair(dtype=dtype)
    s1, lp1 = psi.sample(300, seed=4, return_log_prob=True)
    s2, lp2 = t.sample(300, seed=4, return_log_prob=True)
    assert isinstance(s2, np.ndarray) and s2.dtype == np.intp
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(lp2, lp1, atol=1e-10)
    np.testing.assert_allclose(t.amplitudes(s1[:20]), psi.amplitudes(s1[:20]), atol=1e-12)
    np.testing.assert_allclose(t.probabilities(s1[:20]), psi.probabilities(s1[:20]), rtol=1e-9)


def test_mpo_on_torch():
    h = heisenberg_mpo(6)
    th = h.to("torch")
    np.testing.assert_allclose(_dense(th.to_dense()), h.to_dense(), atol=1e-12)
    small, report = (th + th).compress(max_bond=5)
    assert small.backend == "torch"
    np.testing.assert_allclose(_dense(small.to_dense()), 2 * h.to_dense(), atol=1e-10)
    assert th.trace() == pytest.approx(h.trace())
    np.testing.assert_allclose(_dense((th @ th).to_dense()), h.to_dense() @ h.to_dense(), atol=1e-10)


def test_float32_compress_report():
    psi = tnkit.MPS.random(10, 4, seed=1) + 0.1 * tnkit.MPS.random(10, 12, seed=2)
    t = psi.to("torch", dtype=np.float32)
    small, report = psi.compress(max_bond=4)
    tsmall, treport = t.compress(max_bond=4)
    assert tsmall.dtype == torch.float32
    assert treport.error == pytest.approx(report.error, rel=1e-3)


def test_meta_device_plans_a_bond_4096_chain():
    """Shapes of a bond-4096 chain through canonical form and compression, with no data allocated."""
    n, chi = 26, 4096
    bonds = [1] + [min(2**i, 2 ** (n - i), chi) for i in range(1, n)] + [1]
    tensors = [torch.empty((bonds[i], 2, bonds[i + 1]), device="meta") for i in range(n)]
    psi = tnkit.MPS(tensors)
    assert psi.device == "meta" and psi.max_bond_dim == chi
    assert psi.num_params * 4 > 400 * 2**20  # over 400 MiB of float32 if it were allocated
    psi.canonicalize_(n // 2)
    assert psi.canonical_range == (n // 2, n // 2 + 1) and psi.device == "meta"
    assert psi.bond_dims == tuple(bonds[1:-1])
    small, report = psi.compress(max_bond=256)
    assert small.device == "meta" and small.max_bond_dim == 256
    assert small.bond_dims == tuple(min(b, 256) for b in bonds[1:-1])
    assert math.isnan(report.error)  # a meta tensor has no values to measure
    info = tnkit.contraction_info("xb,xsy,bsc->yc", (chi, chi), psi[12], psi[12])
    assert info.largest_intermediate == chi * 2 * chi


def test_files_and_quimb(tmp_path):
    psi, t = _pair(dtype=np.complex128)
    path = t.save(tmp_path / "psi.npz")  # written as numpy arrays
    loaded = tnkit.MPS.load(path)
    assert loaded.backend == "numpy" and loaded.fidelity(psi) == pytest.approx(1.0, abs=1e-12)
    pytest.importorskip("quimb")
    q = t.to_quimb()  # quimb keeps the torch tensors
    assert isinstance(q.tensors[0].data, torch.Tensor)
    back = tnkit.MPS.from_quimb(q)
    assert back.backend == "torch" and back.to("numpy").fidelity(psi) == pytest.approx(1.0, abs=1e-12)
