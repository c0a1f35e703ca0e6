"""TDVP and TEBD against exact evolution (``scipy.sparse.linalg.expm_multiply``) on small chains."""

from __future__ import annotations

import numpy as np
import pytest
from algorithm_models import chiral_terms
from scipy.sparse.linalg import expm_multiply
from threadpoolctl import threadpool_limits

import tnkit
from tnkit.algorithms import EvolutionResult, nearest_neighbour_terms, tdvp, tebd
from tnkit.errors import OptionError
from tnkit.mps.builders import mpo_from_terms, pauli_operators, spin_operators, tfim_mpo, xxz_mpo


def _exact(mpo, psi, t, imaginary=False):
    with threadpool_limits(1):
        v = expm_multiply((-t if imaginary else -1j * t) * mpo.to_dense(), psi.to_dense().astype(complex))
    return v / np.linalg.norm(v) if imaginary else v


@pytest.mark.parametrize("method", ["two-site", "one-site", "hybrid"])
def test_tdvp_is_exact_at_full_bond_dimension(method):
    """With every bond at its largest possible dimension the TDVP projection is the identity."""
    n = 8
    mpo = mpo_from_terms(chiral_terms(n), 2, n)
    psi = tnkit.MPS.random(n, 16, dtype=complex, seed=4)
    res = tdvp(psi, mpo, dt=0.1, n_steps=8, method=method, max_bond=None, cutoff=0.0, progress=False)
    np.testing.assert_allclose(res.state.to_dense(), _exact(mpo, psi, 0.8), atol=1e-9)


def test_tdvp_quench_from_neel_converges_with_bond_dimension():
    n = 10
    mpo = xxz_mpo(n, delta=0.5)
    psi = tnkit.MPS.product_state("01" * (n // 2))
    exact = _exact(mpo, psi, 1.0)
    errors = [
        np.linalg.norm(
            tdvp(psi, mpo, dt=0.05, n_steps=20, max_bond=chi, progress=False).state.to_dense() - exact
        )
        for chi in (4, 32)
    ]
    assert errors[1] < 1e-3 < errors[0]


def test_tdvp_conserves_norm_and_energy_to_the_truncation_error():
    n = 12
    mpo = xxz_mpo(n, delta=0.5, h=0.2)
    psi = tnkit.MPS.product_state("01" * (n // 2))
    e0 = mpo.expectation(psi)
    res = tdvp(
        psi,
        mpo,
        dt=0.05,
        n_steps=30,
        max_bond=8,
        progress=False,
        callback=lambda t, s: (s.norm(), mpo.expectation(s, normalize=False).real),
    )
    norms, energies = np.array(res.records).T
    assert res.times == pytest.approx(np.arange(31) * 0.05)
    assert res.state.max_bond_dim == 8 and res.total_truncation_error > 1e-8  # truncation did happen
    # the norm drift and energy drift are bounded by the discarded weight (relative, per split)
    assert np.max(np.abs(norms - 1)) < 1e-10  # splits rescale to the norm
    assert np.max(np.abs(energies - e0)) < 50 * res.total_truncation_error + 1e-9
    # one-site TDVP conserves both to the Krylov tolerance
    one = tdvp(
        res.state,
        mpo,
        dt=0.05,
        n_steps=10,
        method="one-site",
        progress=False,
        callback=lambda t, s: mpo.expectation(s).real,
    )
    assert np.ptp(one.records) < 1e-9
    assert one.state.bond_dims == res.state.bond_dims


@pytest.mark.parametrize("method", ["two-site", "one-site", "hybrid"])
def test_imaginary_time_tdvp_reaches_the_ground_state(method):
    n = 8
    mpo = tfim_mpo(n, h=2.0)  # gapped (gap about 2): imaginary time 6 suffices
    e0 = np.linalg.eigvalsh(mpo.to_dense())[0]
    psi = tnkit.MPS.random(n, 16, seed=0)
    res = tdvp(psi, mpo, dt=0.25, n_steps=24, method=method, imaginary=True, max_bond=16, progress=False)
    assert res.state.norm() == pytest.approx(1.0, abs=1e-12)
    assert res.state.dtype == np.float64
    assert mpo.expectation(res.state) == pytest.approx(e0, abs=1e-7)


@pytest.mark.parametrize("method", ["two-site", "one-site", "hybrid"])
def test_imaginary_time_tdvp_follows_exact_imaginary_evolution(method):
    n = 8
    mpo = xxz_mpo(n, delta=0.7)
    psi = tnkit.MPS.random(n, 16, seed=6)
    assert psi.bond_dims == (2, 4, 8, 16, 8, 4, 2)  # full: one-site TDVP is exact too
    res = tdvp(
        psi,
        mpo,
        dt=0.05,
        n_steps=10,
        method=method,
        imaginary=True,
        max_bond=None,
        cutoff=0.0,
        progress=False,
    )
    np.testing.assert_allclose(res.state.to_dense(), _exact(mpo, psi, 0.5, imaginary=True), atol=1e-9)


def test_one_site_tdvp_is_a_second_order_integrator():
    """At a fixed small bond the projected flow is the limit; the symmetric sweep's error at fixed
    final time falls as dt**2."""
    n = 8
    mpo = mpo_from_terms(chiral_terms(n), 2, n)
    psi = tnkit.MPS.random(n, 3, dtype=complex, seed=2)

    def run(k):
        return tdvp(psi, mpo, dt=1.0 / k, n_steps=k, method="one-site", progress=False).state.to_dense()

    limit = run(64)
    errors = [np.linalg.norm(run(k) - limit) for k in (4, 8)]
    assert np.log2(errors[0] / errors[1]) == pytest.approx(2.0, abs=0.25)


def test_fourth_order_tdvp_is_a_fourth_order_integrator():
    """The triple jump of the symmetric sweep: at a fixed small bond, halving dt cuts the error
    against the projected flow about 16 times, and it is far below the second order's."""
    n = 8
    mpo = mpo_from_terms(chiral_terms(n), 2, n)
    psi = tnkit.MPS.random(n, 3, dtype=complex, seed=2)

    def run(k, order):
        return tdvp(psi, mpo, dt=1.0 / k, n_steps=k, method="one-site", order=order, progress=False)

    limit = run(24, 4).state.to_dense()
    errors = [np.linalg.norm(run(k, 4).state.to_dense() - limit) for k in (4, 8)]
    assert np.log2(errors[0] / errors[1]) == pytest.approx(4.0, abs=0.4)
    assert errors[1] < 0.2 * np.linalg.norm(run(8, 2).state.to_dense() - limit)


@pytest.mark.parametrize("method", ["two-site", "one-site"])
def test_fourth_order_tdvp_is_exact_at_full_bond_dimension(method):
    """The backward middle sub-step of the composition is exact too (no truncation at full bond)."""
    n = 8
    mpo = mpo_from_terms(chiral_terms(n), 2, n)
    psi = tnkit.MPS.random(n, 16, dtype=complex, seed=4)
    res = tdvp(psi, mpo, dt=0.2, n_steps=4, order=4, method=method, max_bond=None, cutoff=0.0, progress=False)
    np.testing.assert_allclose(res.state.to_dense(), _exact(mpo, psi, 0.8), atol=1e-9)


def test_a_step_schedule_is_the_same_as_consecutive_calls():
    n = 10
    mpo = xxz_mpo(n, delta=0.5)
    psi = tnkit.MPS.product_state("01" * (n // 2))
    schedule = [0.05] * 6 + [0.2] * 3
    res = tdvp(psi, mpo, dt=schedule, method="hybrid", max_bond=8, progress=False, record_every=3)
    early = tdvp(psi, mpo, dt=0.05, n_steps=6, method="hybrid", max_bond=8, progress=False)
    late = tdvp(early.state, mpo, dt=0.2, n_steps=3, method="hybrid", max_bond=8, progress=False)
    np.testing.assert_allclose(res.state.to_dense(), late.state.to_dense(), atol=1e-12)
    assert res.times == pytest.approx((0.0, 0.15, 0.3, 0.9), abs=1e-15)  # the sums of the steps
    assert res.max_bonds == early.max_bonds + late.max_bonds
    # TEBD takes a schedule the same way
    bonds = nearest_neighbour_terms(chiral_terms(n), 2, n)
    by_schedule = tebd(psi, bonds, dt=schedule, max_bond=8, progress=False).state
    first = tebd(psi, bonds, dt=0.05, n_steps=6, max_bond=8, progress=False).state
    np.testing.assert_allclose(
        by_schedule.to_dense(), tebd(first, bonds, dt=0.2, n_steps=3, max_bond=8, progress=False).state.to_dense(),
        atol=1e-12,
    )


def test_hybrid_tdvp_matches_two_site_and_conserves_energy_once_bonds_are_capped():
    n = 10
    mpo = xxz_mpo(n, delta=0.5)
    psi = tnkit.MPS.product_state("01" * (n // 2))
    exact = _exact(mpo, psi, 2.0)
    e0 = mpo.expectation(psi).real
    runs = {
        m: tdvp(psi, mpo, dt=0.05, n_steps=40, method=m, max_bond=6, progress=False)
        for m in ("two-site", "hybrid")
    }
    infidelity = {m: 1 - abs(np.vdot(exact, r.state.to_dense())) ** 2 for m, r in runs.items()}
    assert 1e-4 < infidelity["two-site"] < 1e-1  # the cap truncates
    assert infidelity["hybrid"] < 1.5 * infidelity["two-site"]
    assert runs["hybrid"].state.max_bond_dim == 6
    # once capped, hybrid steps are one-site: the energy stays put (two-site truncation moves it)
    drift = {m: abs(mpo.expectation(r.state).real - e0) for m, r in runs.items()}
    assert drift["hybrid"] < 1e-9 and drift["two-site"] > 1e-6


def _chain(n):
    terms = chiral_terms(n)
    return terms, mpo_from_terms(terms, 2, n)


def test_nearest_neighbour_terms_sum_to_the_hamiltonian():
    n = 6
    terms, mpo = _chain(n)
    hs = nearest_neighbour_terms(terms, 2, n)
    total = sum(np.kron(np.kron(np.eye(2**b), h), np.eye(2 ** (n - b - 2))) for b, h in enumerate(hs))
    np.testing.assert_allclose(total, mpo.to_dense(), atol=1e-13)


@pytest.mark.parametrize("imaginary", [False, True])
@pytest.mark.parametrize("order", [2, 4])
def test_tebd_error_scales_with_the_order(order, imaginary):
    n = 8
    terms, mpo = _chain(n)
    hs = nearest_neighbour_terms(terms, 2, n)
    psi = tnkit.MPS.product_state("01" * (n // 2))
    exact = _exact(mpo, psi, 1.0, imaginary=imaginary)
    errors = [
        np.linalg.norm(
            tebd(
                psi,
                hs,
                dt=1.0 / k,
                n_steps=k,
                order=order,
                imaginary=imaginary,
                max_bond=None,
                cutoff=0.0,
                progress=False,
            ).state.to_dense()
            - exact
        )
        for k in (8, 16, 32)
    ]
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert slopes == pytest.approx([order, order], abs=0.1)


def test_tebd_records_observables_and_truncation():
    n = 10
    mpo = xxz_mpo(n, delta=0.5)
    s = spin_operators(0.5)
    terms = [
        (c, {i: s[a], i + 1: s[a]}) for i in range(n - 1) for a, c in (("Sx", 1), ("Sy", 1), ("Sz", 0.5))
    ]
    hs = nearest_neighbour_terms(terms, 2, n)
    psi = tnkit.MPS.product_state("01" * (n // 2))
    res = tebd(
        psi,
        hs,
        dt=0.05,
        n_steps=20,
        max_bond=6,
        record_every=5,
        progress=False,
        callback=lambda t, st: st.local_expectations(s["Sz"]).real,
    )
    assert isinstance(res, EvolutionResult)
    assert res.times == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert len(res.records) == 5 and res.records[0] == pytest.approx([0.5, -0.5] * (n // 2))
    assert res.state.max_bond_dim == 6 and len(res.truncation_errors) == 20
    assert res.state.norm() == pytest.approx(1.0, abs=1e-12)
    exact = _exact(mpo, psi, 1.0)
    assert abs(np.vdot(exact, res.state.to_dense())) ** 2 > 1 - 20 * res.total_truncation_error - 1e-3


def test_imaginary_time_tebd_reaches_the_ground_state():
    n = 8
    p = pauli_operators()
    terms = [(-1.0, {i: p["Z"], i + 1: p["Z"]}) for i in range(n - 1)] + [
        (-2.0, {i: p["X"]}) for i in range(n)
    ]
    mpo = mpo_from_terms(terms, 2, n)
    e0 = np.linalg.eigvalsh(mpo.to_dense())[0]
    res = tebd(
        tnkit.MPS.product_state("0" * n),
        nearest_neighbour_terms(terms, 2, n),
        dt=0.1,
        n_steps=50,
        order=4,
        imaginary=True,
        max_bond=16,
        progress=False,
    )
    assert mpo.expectation(res.state) == pytest.approx(e0, abs=1e-7)


def test_evolution_rejects_bad_arguments():
    mpo = xxz_mpo(4, delta=0.5)
    psi = tnkit.MPS.product_state("0101")
    with pytest.raises(ValueError, match="dt"):
        tdvp(psi, mpo, dt=0.0, n_steps=1)
    with pytest.raises(OptionError, match="method"):
        tdvp(psi, mpo, dt=0.1, n_steps=1, method="zero-site")
    with pytest.raises(ValueError, match="physical dimensions"):
        tdvp(tnkit.MPS.product_state("0101", phys_dim=3), mpo, dt=0.1, n_steps=1)
    with pytest.raises(TypeError, match="callback"):
        tdvp(psi, mpo, dt=0.1, n_steps=1, callback=3)
    with pytest.raises(ValueError, match="one matrix per bond"):
        tebd(psi, [np.eye(4)] * 2, dt=0.1, n_steps=1)
    with pytest.raises(ValueError, match="Hermitian"):
        tebd(psi, [np.triu(np.ones((4, 4)))] * 3, dt=0.1, n_steps=1)
    with pytest.raises(OptionError, match="order"):
        tebd(psi, [np.eye(4)] * 3, dt=0.1, n_steps=1, order=3)
    with pytest.raises(OptionError, match="order"):
        tdvp(psi, mpo, dt=0.1, n_steps=1, order=3)


@pytest.mark.parametrize(
    "dt, n_steps, error, match",
    [
        (0.1, None, TypeError, "n_steps"),
        ([], None, ValueError, "at least one step"),
        ([0.1, -0.1], None, ValueError, r"dt\[1\]"),
        ([0.1, float("nan")], None, ValueError, r"dt\[1\]"),
        ([[0.1, 0.2]], None, ValueError, "one-dimensional"),
        ([0.1, 0.2], 3, ValueError, "length of the schedule"),
        ("0.1", 2, TypeError, "dt"),
        ([0.1, "x"], None, TypeError, r"dt\[1\]"),
        (0.1, 2.5, TypeError, "n_steps"),
    ],
)
def test_step_schedules_are_validated_before_any_work(dt, n_steps, error, match):
    mpo = xxz_mpo(4, delta=0.5)
    psi = tnkit.MPS.product_state("0101")
    with pytest.raises(error, match=match):
        tdvp(psi, mpo, dt=dt, n_steps=n_steps)
    with pytest.raises(error, match=match):
        tebd(psi, [np.eye(4)] * 3, dt=dt, n_steps=n_steps)
    with pytest.raises(ValueError, match="neighbours"):
        nearest_neighbour_terms([(1.0, {0: np.eye(2), 2: np.eye(2)})], 2, 4)
