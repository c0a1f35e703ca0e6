"""DMRG against exact diagonalisation on small open chains."""

from __future__ import annotations

import numpy as np
import pytest
from algorithm_models import chiral_terms
from scipy.sparse.linalg import eigsh
from threadpoolctl import threadpool_limits

import tnkit
from tnkit.algorithms import DMRGResult, dmrg, energy_variance
from tnkit.errors import OptionError
from tnkit.mps.builders import heisenberg_mpo, mpo_from_terms, spin_operators, tfim_mpo


def _ed(mpo, k=1):
    """The ``k`` lowest eigenpairs (sparse Lanczos on the dense matrix, one BLAS thread: the
    test machine is shared and a dense ``eigh`` with spinning BLAS threads takes seconds)."""
    with threadpool_limits(1):
        e, v = eigsh(mpo.to_dense(), k=k, which="SA", tol=1e-14)
    order = np.argsort(e)
    return e[order], v[:, order]


def _overlap(state, vector):
    return abs(np.vdot(vector, state.to_dense()))


@pytest.mark.parametrize(
    "mpo",
    [heisenberg_mpo(10), tfim_mpo(10, h=0.9), heisenberg_mpo(6, spin=1.0)],
    ids=["heisenberg-1/2", "tfim", "heisenberg-spin1"],
)
def test_two_site_dmrg_matches_exact_ground_state(mpo):
    (e0,), v = _ed(mpo)
    res = dmrg(mpo, max_bond=64, seed=1, progress=False)
    assert res.converged
    assert res.energy == pytest.approx(e0, abs=1e-11 * max(1.0, abs(e0)))
    assert _overlap(res.state, v[:, 0]) == pytest.approx(1.0, abs=1e-9)
    assert res.variance < 1e-10
    assert res.state.norm() == pytest.approx(1.0, abs=1e-12)


def test_dmrg_on_a_complex_hamiltonian():
    mpo = mpo_from_terms(chiral_terms(8), 2, 8)
    assert mpo.dtype == np.complex128
    (e0,), v = _ed(mpo)
    res = dmrg(mpo, max_bond=32, seed=2, progress=False)
    assert res.state.dtype == np.complex128
    assert res.energy == pytest.approx(e0, abs=1e-11)
    assert _overlap(res.state, v[:, 0]) == pytest.approx(1.0, abs=1e-9)
    assert res.variance < 1e-10


def test_dmrg_with_mixed_physical_dimensions():
    """A ferrimagnetic chain of alternating spin 1/2 and spin 1 sites."""
    n = 6
    dims = [2 if i % 2 == 0 else 3 for i in range(n)]
    ops = [spin_operators(0.5 if d == 2 else 1.0) for d in dims]
    terms = [(1.0, {i: ops[i][a], i + 1: ops[i + 1][a]}) for i in range(n - 1) for a in ("Sz",)]
    terms += [(0.5, {i: ops[i]["Sp"], i + 1: ops[i + 1]["Sm"]}) for i in range(n - 1)]
    terms += [(0.5, {i: ops[i]["Sm"], i + 1: ops[i + 1]["Sp"]}) for i in range(n - 1)]
    terms += [(0.1, {0: ops[0]["Sx"]})]
    mpo = mpo_from_terms(terms, dims)
    (e0,), _ = _ed(mpo)
    res = dmrg(mpo, max_bond=32, seed=0, progress=False)
    assert res.state.phys_dims == tuple(dims)
    assert res.energy == pytest.approx(e0, abs=1e-10)


def test_truncated_dmrg_reports_its_discarded_weight():
    mpo = heisenberg_mpo(10)
    (e0,), _ = _ed(mpo)
    res = dmrg(mpo, max_bond=6, seed=0, progress=False)
    assert res.state.max_bond_dim == 6
    assert res.max_truncation_error > 1e-8
    assert res.energy > e0 + 1e-8  # variational: above the exact energy
    assert res.variance > 1e-8  # and visibly not an eigenstate


def test_one_site_dmrg_with_subspace_expansion_reaches_the_ground_state():
    mpo = heisenberg_mpo(10)
    (e0,), _ = _ed(mpo)
    start = tnkit.MPS.random(10, 4, seed=3)
    res = dmrg(mpo, max_bond=32, method="one-site", initial=start, seed=0, progress=False)
    assert res.state.max_bond_dim > 4  # the expansion grew the bonds
    assert res.energy == pytest.approx(e0, abs=1e-8)


def test_hybrid_dmrg_switches_to_one_site_passes_once_bonds_are_capped():
    mpo = heisenberg_mpo(12)
    (e0,), v = _ed(mpo)
    two = dmrg(mpo, max_bond=[16, 24], n_sweeps=8, energy_tol=0.0, seed=0, progress=False)
    hyb = dmrg(mpo, max_bond=[16, 24], n_sweeps=8, energy_tol=0.0, method="hybrid", seed=0, progress=False)
    assert hyb.energies[:2] == two.energies[:2]  # identical two-site passes up to the first at the cap
    assert all(e == 0.0 for e in hyb.truncation_errors[2:])  # one-site passes: no split truncates
    assert hyb.max_truncation_error == max(hyb.truncation_errors[1:])
    assert hyb.energy <= two.energies[1] + 1e-12
    assert hyb.energy == pytest.approx(e0, abs=1e-5)


def test_excited_states_by_orthogonal_projection():
    mpo = tfim_mpo(8, h=1.3)
    e, v = _ed(mpo, 3)
    states = []
    for k in range(3):
        res = dmrg(mpo, max_bond=32, orthogonal_to=states, seed=k, progress=False)
        assert res.energy == pytest.approx(e[k], abs=1e-9)
        assert _overlap(res.state, v[:, k]) == pytest.approx(1.0, abs=1e-7)
        states.append(res.state)
    assert abs(states[0].inner(states[2])) < 1e-8


def test_result_records_the_schedule_and_sweeps():
    res = dmrg(
        heisenberg_mpo(8),
        max_bond=[4, 8, 16],
        n_sweeps=6,
        energy_tol=0.0,
        discarded_tol=0.0,
        seed=0,
        progress=False,
    )
    assert isinstance(res, DMRGResult)
    assert res.max_bonds == (4, 8, 16, 16, 16, 16)
    assert res.n_sweeps == len(res.energies) == len(res.truncation_errors) == len(res.sweep_times) == 6
    assert not res.converged  # zero tolerances are never met
    assert res.energies[-1] == res.energy
    assert res.energies[0] >= res.energies[-1] - 1e-12
    assert res.bond_dims == res.state.bond_dims
    assert "DMRGResult(energy=" in repr(res)
    assert res.n_matvecs > 0


def test_default_schedule_ramps_up_to_max_bond():
    res = dmrg(heisenberg_mpo(16), max_bond=64, n_sweeps=3, energy_tol=0.0, seed=0, progress=False)
    assert res.max_bonds == (16, 32, 64)


def test_energy_variance_matches_dense():
    mpo = heisenberg_mpo(8, h=0.3)
    psi = tnkit.MPS.random(8, 4, dtype=complex, seed=5)
    h = mpo.to_dense()
    v = psi.to_dense() / psi.norm()
    e = np.vdot(v, h @ v).real
    expected = np.vdot(h @ v, h @ v).real - e**2
    assert energy_variance(psi, mpo) == pytest.approx(expected, rel=1e-10)


def test_progress_bar_runs(capsys):
    res = dmrg(heisenberg_mpo(6), max_bond=8, seed=0, progress=True)
    assert res.n_sweeps >= 2
    assert "DMRG" in capsys.readouterr().err


def test_bad_arguments_are_rejected_before_work():
    h = heisenberg_mpo(6)
    with pytest.raises(TypeError, match="MatrixProductOperator"):
        dmrg(h.to_dense())
    with pytest.raises(ValueError, match="Hermitian"):
        dmrg(tnkit.MPO([np.random.default_rng(0).standard_normal((1, 2, 2, 1)) for _ in range(4)]))
    with pytest.raises(ValueError, match="physical dimensions"):
        dmrg(h, initial=tnkit.MPS.random(6, 2, phys_dim=3, seed=0))
    with pytest.raises(OptionError, match="method"):
        dmrg(h, method="three-site")
    with pytest.raises(ValueError, match="max_bond"):
        dmrg(h, max_bond=0)
    with pytest.raises(ValueError, match="cutoff"):
        dmrg(h, cutoff=2.0)
    with pytest.raises(TypeError, match="orthogonal_to"):
        dmrg(h, orthogonal_to=[np.ones(4)])


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("center_right", [True, False])
def test_density_matrix_split_matches_the_svd(dtype, center_right):
    from tnkit.algorithms._common import DENSITY_MATRIX_MIN, split_two_site

    rng = np.random.default_rng(3)
    dl, dr = DENSITY_MATRIX_MIN, DENSITY_MATRIX_MIN + 8
    theta = rng.standard_normal((dl, 2, 2, dr)) * np.exp(-0.1 * np.arange(dr))
    if dtype == np.complex128:
        theta = theta + 1j * rng.standard_normal(theta.shape) * np.exp(-0.1 * np.arange(dr))
    m = theta.reshape(2 * dl, 2 * dr)
    u, s, vh = np.linalg.svd(m, full_matrices=False)
    k = 40
    a, b, discarded = split_two_site(
        theta, max_bond=k, cutoff=0.0, center_right=center_right, normalize=False
    )
    assert a.shape == (dl, 2, k) and b.shape == (k, 2, dr)
    best = (u[:, :k] * s[:k]) @ vh[:k]
    np.testing.assert_allclose(np.tensordot(a, b, axes=(2, 0)).reshape(m.shape), best, atol=1e-12)
    assert discarded == pytest.approx(float(s[k:] @ s[k:]) / float(s @ s), rel=1e-10)
    iso = a.reshape(-1, k) if center_right else b.reshape(k, -1).conj().T
    np.testing.assert_allclose(iso.conj().T @ iso, np.eye(k), atol=1e-13)
    a, b, _ = split_two_site(theta, max_bond=k, cutoff=0.0, center_right=center_right)  # normalised
    assert np.linalg.norm(np.tensordot(a, b, axes=(2, 0))) == pytest.approx(np.linalg.norm(theta), rel=1e-12)


def test_local_tolerance_follows_the_energy_change_and_gates_convergence():
    from tnkit.algorithms.dmrg import LOOSE_EIG_TOL, local_tolerance

    assert local_tolerance(1e-6, []) == LOOSE_EIG_TOL
    assert local_tolerance(1e-6, [-1.0]) == LOOSE_EIG_TOL
    assert local_tolerance(1e-6, [-1.0, -1.0 - 1e-4]) == pytest.approx(3e-5)
    assert local_tolerance(1e-6, [-1.0, -1.0 - 1e-12]) == 1e-6
    # loose local solves stall (energy unchanged), which must not count as convergence
    res = dmrg(heisenberg_mpo(12), max_bond=32, eig_tol=1e-3, n_sweeps=6, seed=0, progress=False)
    assert not res.converged
