"""DMRG, TDVP and TEBD on torch tensors, compared with the same runs on numpy arrays.

Every test runs with ``torch.Tensor.__array__`` disabled (the ``no_silent_numpy``
fixture), so a tensor silently copied to numpy inside a sweep fails the test: the
state, the environments and the local tensors stay torch tensors throughout. States
are compared as dense vectors (bond gauges may differ between the libraries' LAPACKs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from algorithm_models import chiral_terms

import tnkit
from tnkit.algorithms import (
    dmrg,
    energy_variance,
    expm_krylov,
    lanczos_ground,
    nearest_neighbour_terms,
    tdvp,
    tebd,
)
from tnkit.core.backend import to_numpy
from tnkit.mps.builders import heisenberg_mpo, mpo_from_terms, pauli_operators, xxz_mpo

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("no_silent_numpy")

N = 8
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _dense(state):
    return to_numpy(state.to_dense())


def _phase_free_distance(a, b):
    """``min_phi ||a - exp(i phi) b||`` (ground states are defined up to a phase)."""
    overlap = np.vdot(b, a)
    phase = overlap / abs(overlap) if abs(overlap) > 0 else 1.0
    return float(np.linalg.norm(a - phase * b))


def _hamiltonian(kind):
    """A real (Heisenberg) or a complex (chiral) Hamiltonian as a numpy MPO."""
    return heisenberg_mpo(N) if kind == "real" else mpo_from_terms(chiral_terms(N), 2, N)


def _on_torch(network, device="cpu", dtype=None):
    return network.to("torch", device=device, dtype=dtype)


def _assert_on_torch(state, device="cpu", dtype=None):
    assert state.backend == "torch" and all(isinstance(t, torch.Tensor) for t in state.tensors)
    assert state.device.startswith(device)
    if dtype is not None:
        assert state.dtype == dtype


# --------------------------------------------------------------------------- Krylov solvers


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_krylov_solvers_on_torch_equal_numpy(dtype):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((40, 40)) + (1j * rng.standard_normal((40, 40)) if dtype == np.complex128 else 0)
    h = (a + a.conj().T).astype(dtype)
    v = rng.standard_normal(40).astype(dtype)
    ht, vt = torch.from_numpy(h), torch.from_numpy(v)
    e, x, _ = lanczos_ground(lambda y: h @ y, v, tol=1e-12, max_krylov=40)
    et, xt, _ = lanczos_ground(lambda y: ht @ y, vt, tol=1e-12, max_krylov=40)
    assert isinstance(xt, torch.Tensor) and abs(et - e) < 1e-10
    assert _phase_free_distance(to_numpy(xt), x) < 1e-8
    for factor in (-0.3j, -0.3):
        w, _ = expm_krylov(lambda y: h @ y, v, factor)
        wt, _ = expm_krylov(lambda y: ht.to(y.dtype) @ y, vt, factor)  # torch does not promote in ``@``
        assert isinstance(wt, torch.Tensor)
        np.testing.assert_allclose(to_numpy(wt), w, atol=1e-10)


# --------------------------------------------------------------------------- DMRG


@pytest.mark.parametrize("method", ["two-site", "hybrid", "one-site"])
@pytest.mark.parametrize("kind", ["real", "complex"])
def test_dmrg_on_torch_equals_numpy(method, kind):
    mpo = _hamiltonian(kind)
    ref = dmrg(mpo, max_bond=16, seed=0, method=method, progress=False)
    res = dmrg(_on_torch(mpo), max_bond=16, seed=0, method=method, progress=False)
    _assert_on_torch(res.state, dtype=torch.float64 if kind == "real" else torch.complex128)
    assert isinstance(res.energy, float) and isinstance(res.variance, float)
    assert math.isclose(res.energy, ref.energy, rel_tol=0, abs_tol=1e-10)
    assert all(math.isclose(a, b, abs_tol=1e-10) for a, b in zip(res.energies, ref.energies, strict=True))
    assert res.bond_dims == ref.bond_dims and res.n_sweeps == ref.n_sweeps
    assert _phase_free_distance(_dense(res.state), _dense(ref.state)) < 1e-10
    assert math.isclose(res.variance, ref.variance, rel_tol=1e-6, abs_tol=1e-12)


def test_dmrg_complex128_tensors_equal_the_numpy_complex_run():
    mpo = heisenberg_mpo(N).to(dtype="complex128")
    ref = dmrg(mpo, max_bond=16, seed=0, progress=False)
    res = dmrg(_on_torch(mpo), max_bond=16, seed=0, progress=False)
    _assert_on_torch(res.state, dtype=torch.complex128)
    assert abs(res.energy - ref.energy) < 1e-10
    assert _phase_free_distance(_dense(res.state), _dense(ref.state)) < 1e-10


def test_dmrg_excited_state_on_torch_equals_numpy():
    mpo = heisenberg_mpo(N)
    ground = dmrg(mpo, max_bond=16, seed=0, progress=False).state
    ref = dmrg(mpo, max_bond=16, seed=1, orthogonal_to=[ground], progress=False)
    res = dmrg(_on_torch(mpo), max_bond=16, seed=1, orthogonal_to=[ground.to("torch")], progress=False)
    _assert_on_torch(res.state)
    assert abs(res.energy - ref.energy) < 1e-10
    assert abs(res.state.inner(ground.to("torch"))) < 1e-8


def test_dmrg_in_float32_stays_single_and_is_close():
    mpo = heisenberg_mpo(N)
    ref = dmrg(mpo, max_bond=16, seed=0, progress=False)
    res = dmrg(_on_torch(mpo, dtype="float32"), max_bond=16, seed=0, progress=False)
    _assert_on_torch(res.state, dtype=torch.float32)
    assert abs(res.energy - ref.energy) < 1e-5 * abs(ref.energy)
    assert _phase_free_distance(_dense(res.state), _dense(ref.state)) < 1e-3
    assert res.converged  # the tolerances are floored at what float32 resolves


def test_energy_variance_on_torch_equals_numpy():
    mpo = heisenberg_mpo(N)
    psi = tnkit.MPS.random(N, 4, seed=2)
    ref = energy_variance(psi, mpo)
    assert math.isclose(energy_variance(psi.to("torch"), _on_torch(mpo)), ref, rel_tol=1e-10)
    assert math.isclose(energy_variance(psi.to("torch"), mpo), ref, rel_tol=1e-10)


# --------------------------------------------------------------------------- TDVP and TEBD


@pytest.mark.parametrize("method", ["two-site", "one-site", "hybrid"])
@pytest.mark.parametrize("imaginary", [False, True])
def test_tdvp_on_torch_equals_numpy(method, imaginary):
    mpo = mpo_from_terms(chiral_terms(N), 2, N)
    psi = tnkit.MPS.random(N, 4, dtype=complex, seed=3)
    kw = dict(dt=0.05, n_steps=4, max_bond=8, method=method, imaginary=imaginary, progress=False)
    ref = tdvp(psi, mpo, **kw)
    res = tdvp(psi.to("torch"), _on_torch(mpo), **kw)
    _assert_on_torch(res.state, dtype=torch.complex128)
    np.testing.assert_allclose(_dense(res.state), _dense(ref.state), atol=1e-10)
    np.testing.assert_allclose(res.truncation_errors, ref.truncation_errors, atol=1e-12)
    assert res.max_bonds == ref.max_bonds


def test_tdvp_fourth_order_schedule_on_torch_equals_numpy():
    mpo = xxz_mpo(N, delta=0.5)
    psi = tnkit.MPS.product_state("01" * (N // 2))
    kw = dict(dt=[0.05, 0.05, 0.1], order=4, method="hybrid", max_bond=8, progress=False)
    ref = tdvp(psi, mpo, **kw)
    res = tdvp(psi.to("torch"), _on_torch(mpo), **kw)
    np.testing.assert_allclose(_dense(res.state), _dense(ref.state), atol=1e-10)
    assert res.times == ref.times


def test_tdvp_real_state_becomes_complex_on_torch_and_records_observables():
    mpo = xxz_mpo(N, delta=0.5)
    psi = tnkit.MPS.product_state("01" * (N // 2))

    def energy(t, state):
        return mpo.expectation(state).real

    kw = dict(dt=0.05, n_steps=4, max_bond=8, callback=energy, progress=False)
    ref = tdvp(psi, mpo, **kw)
    res = tdvp(psi.to("torch"), mpo, **kw)
    _assert_on_torch(res.state, dtype=torch.complex128)
    np.testing.assert_allclose(_dense(res.state), _dense(ref.state), atol=1e-10)
    np.testing.assert_allclose(res.records, ref.records, atol=1e-10)


def test_tdvp_in_single_precision_is_close():
    mpo = xxz_mpo(N, delta=0.5)
    psi = tnkit.MPS.product_state("01" * (N // 2))
    kw = dict(dt=0.05, n_steps=4, max_bond=8, progress=False)
    ref = tdvp(psi, mpo, **kw)
    res = tdvp(psi.to("torch", dtype="float32"), _on_torch(mpo, dtype="float32"), **kw)
    _assert_on_torch(res.state, dtype=torch.complex64)
    np.testing.assert_allclose(_dense(res.state), _dense(ref.state), atol=1e-5)


def _bond_terms(dtype=None):
    p = pauli_operators()
    terms = [(1.0, {i: p["X"], i + 1: p["X"]}) for i in range(N - 1)]
    terms += [(0.5, {i: p["Z"], i + 1: p["Z"]}) for i in range(N - 1)]
    terms += [(0.3 * (1 + i % 2), {i: p["Z"]}) for i in range(N)]
    hs = nearest_neighbour_terms(terms, 2, n_sites=N)
    return hs if dtype is None else [h.astype(dtype) for h in hs]


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("imaginary", [False, True])
def test_tebd_on_torch_equals_numpy(order, imaginary):
    psi = tnkit.MPS.random(N, 4, seed=5)
    kw = dict(dt=0.05, n_steps=4, order=order, max_bond=8, imaginary=imaginary, progress=False)
    ref = tebd(psi, _bond_terms(), **kw)
    res = tebd(psi.to("torch"), _bond_terms(), **kw)
    _assert_on_torch(res.state, dtype=torch.float64 if imaginary else torch.complex128)
    np.testing.assert_allclose(_dense(res.state), _dense(ref.state), atol=1e-10)
    np.testing.assert_allclose(res.truncation_errors, ref.truncation_errors, atol=1e-12)


def test_tebd_in_single_precision_is_close():
    psi = tnkit.MPS.random(N, 4, seed=5)
    kw = dict(dt=0.05, n_steps=4, max_bond=8, progress=False)
    ref = tebd(psi, _bond_terms(), **kw)
    res = tebd(psi.to("torch", dtype="float32"), _bond_terms(np.float32), **kw)
    _assert_on_torch(res.state, dtype=torch.complex64)
    np.testing.assert_allclose(_dense(res.state), _dense(ref.state), atol=1e-5)


# --------------------------------------------------------------------------- mixed inputs, errors


def test_mixed_inputs_follow_the_state():
    """Operators (MPO, bond terms) move to the state's library and device; the result stays there."""
    mpo = heisenberg_mpo(N)
    start = tnkit.MPS.random(N, 4, seed=6)
    ref = dmrg(mpo, max_bond=8, initial=start, n_sweeps=4, progress=False)
    on_torch = dmrg(mpo, max_bond=8, initial=start.to("torch"), n_sweeps=4, progress=False)
    on_numpy = dmrg(_on_torch(mpo), max_bond=8, initial=start, n_sweeps=4, progress=False)
    _assert_on_torch(on_torch.state)
    assert on_numpy.state.backend == "numpy"
    assert abs(on_torch.energy - ref.energy) < 1e-10 and abs(on_numpy.energy - ref.energy) < 1e-10

    evolved = tdvp(start, _on_torch(xxz_mpo(N, delta=0.5)), dt=0.05, n_steps=2, progress=False)
    assert evolved.state.backend == "numpy"
    gates = [torch.as_tensor(h) for h in _bond_terms()]
    np.testing.assert_allclose(
        _dense(tebd(start, gates, dt=0.05, n_steps=2, progress=False).state),
        _dense(tebd(start, _bond_terms(), dt=0.05, n_steps=2, progress=False).state),
        atol=1e-12,
    )


def test_errors_name_the_argument_on_torch():
    mpo = _on_torch(heisenberg_mpo(N))
    with pytest.raises(ValueError, match="`mpo` must be Hermitian"):
        dmrg(_on_torch(heisenberg_mpo(N) * 1j), progress=False)
    with pytest.raises(ValueError, match="`initial` must have physical dimensions"):
        dmrg(mpo, initial=tnkit.MPS.random(N, 2, phys_dim=3, seed=0).to("torch"), progress=False)
    meta = tnkit.MPS.random(N, 2, seed=0).to("torch", device="meta")
    with pytest.raises(ValueError, match="`initial` is on torch's meta device"):
        dmrg(mpo, initial=meta, progress=False)
    with pytest.raises(ValueError, match="`psi` is on torch's meta device"):
        tdvp(meta, mpo, dt=0.1, n_steps=1, progress=False)
    with pytest.raises(ValueError, match="`psi` is on torch's meta device"):
        tebd(meta, _bond_terms(), dt=0.1, n_steps=1, progress=False)
    with pytest.raises(ValueError, match="`mpo` is on torch's meta device"):
        dmrg(heisenberg_mpo(N).to("torch", device="meta"), progress=False)


# --------------------------------------------------------------------------- CUDA


@CUDA
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_algorithms_on_cuda_equal_numpy(dtype):
    mpo = heisenberg_mpo(N).to(dtype=dtype)
    ref = dmrg(mpo, max_bond=16, seed=0, progress=False)
    res = dmrg(_on_torch(mpo, device="cuda"), max_bond=16, seed=0, progress=False)
    _assert_on_torch(res.state, device="cuda")
    assert abs(res.energy - ref.energy) < 1e-10
    assert _phase_free_distance(_dense(res.state), _dense(ref.state)) < 1e-10

    psi = tnkit.MPS.product_state("01" * (N // 2))
    kw = dict(dt=0.05, n_steps=4, max_bond=8, progress=False)
    for method in ("two-site", "one-site", "hybrid"):
        ref_t = tdvp(psi, mpo, method=method, **kw)
        res_t = tdvp(psi.to("torch", device="cuda"), mpo, method=method, **kw)
        _assert_on_torch(res_t.state, device="cuda")
        np.testing.assert_allclose(_dense(res_t.state), _dense(ref_t.state), atol=1e-10)
    ref_e = tebd(psi, _bond_terms(), order=4, **kw)
    res_e = tebd(psi.to("torch", device="cuda"), _bond_terms(), order=4, **kw)
    _assert_on_torch(res_e.state, device="cuda")
    np.testing.assert_allclose(_dense(res_e.state), _dense(ref_e.state), atol=1e-10)
