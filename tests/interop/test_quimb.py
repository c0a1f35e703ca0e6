"""Exact conversion to and from quimb, and cross-checks of tnkit against quimb's algorithms."""

from __future__ import annotations

import numpy as np
import pytest

from tnkit import MPO, MPS, heisenberg_mpo
from tnkit.mps.quimb import mpo_from_quimb, mpo_to_quimb, mps_from_quimb, mps_to_quimb
from conftest import random_array as rand
from conftest import assert_close_rtol as assert_close
from conftest import DTYPES, random_mpo
from tnkit.testing import TOL

qtn = pytest.importorskip("quimb.tensor")

RTOL = TOL[np.dtype(np.float64)]  # 1e-10, the float64/complex128 entry of the one dtype table


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1618)


def assert_same_tensors(a, b):
    assert len(a.tensors) == len(b.tensors)
    for x, y in zip(a.tensors, b.tensors, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def quimb_fidelity(a, b) -> float:
    return float(abs(a.H @ b) ** 2 / ((a.H @ a).real * (b.H @ b).real))


# ----------------------------------------------------------------------------- MPS


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [(3,), (2, 3), (2, 2, 2, 2), (2, 3, 4, 2, 3)], ids=lambda d: f"dims{len(d)}")
def test_mps_round_trip_exact(rng, dtype, dims):
    psi = MPS.random(len(dims), 4, phys_dim=dims, dtype=dtype, seed=rng)
    q = psi.to_quimb()
    assert isinstance(q, qtn.MatrixProductState)
    assert q.L == len(dims)
    back = MPS.from_quimb(q)
    assert_same_tensors(back, psi)
    assert_same_tensors(mps_from_quimb(mps_to_quimb(psi)), psi)
    # quimb's own dense vector agrees with ours (same site order)
    assert_close(np.asarray(q.to_dense()).reshape(-1), psi.to_dense())


def test_mps_to_quimb_is_a_copy(rng):
    psi = MPS.random(3, 2, seed=rng)
    q = psi.to_quimb()
    q[0].modify(data=np.zeros_like(q[0].data))
    assert psi.norm() == pytest.approx(1.0)
    assert q[1].data.flags.writeable


def test_mps_from_quimb_random_state(rng):
    q = qtn.MatrixProductState(
        [rand(rng, (3, 2), np.complex128)]
        + [rand(rng, (3, 3, 2), np.complex128)] * 3
        + [rand(rng, (3, 2), np.complex128)],
        shape="lrp",
    )
    psi = MPS.from_quimb(q)
    assert psi.phys_dims == (2,) * 5
    assert_close(psi.to_dense(), np.asarray(q.to_dense()).reshape(-1))
    assert_close(psi.to_quimb().to_dense(), q.to_dense())


@pytest.mark.parametrize("shape", ["lrp", "lpr", "rlp", "plr", "prl", "rpl"])
def test_mps_from_quimb_any_index_order(rng, shape):
    # Build the arrays in the order `shape` names; the first/last sites drop the
    # missing bond letter.
    n, d, bond = 5, 3, 4
    arrays = []
    for i in range(n):
        letters = shape if 0 < i < n - 1 else shape.replace("l" if i == 0 else "r", "")
        sizes = {"l": bond, "r": bond, "p": d}
        arrays.append(rand(rng, tuple(sizes[c] for c in letters), np.complex128))
    q = qtn.MatrixProductState(arrays, shape=shape)
    assert_close(MPS.from_quimb(q).to_dense(), np.asarray(q.to_dense()).reshape(-1))


def test_mps_from_quimb_after_transposition(rng):
    q = MPS.random(6, 4, phys_dim=(2, 3, 2, 2, 3, 2), dtype=np.complex128, seed=rng).to_quimb()
    dense = np.asarray(q.to_dense()).reshape(-1)
    for i in range(6):
        q[i].transpose_(*reversed(q[i].inds))
    assert q[2].inds[0] == q.site_ind(2)  # the physical index is now first
    assert_close(MPS.from_quimb(q).to_dense(), dense)


def test_mps_from_quimb_custom_index_and_tag_names(rng):
    arrays = [rand(rng, (2, 3))] + [rand(rng, (2, 2, 3))] * 2 + [rand(rng, (2, 3))]
    q = qtn.MatrixProductState(arrays, shape="lrp", site_ind_id="q{}", site_tag_id="SITE{}")
    assert q.site_ind(1) == "q1"
    psi = MPS.from_quimb(q)
    assert psi.phys_dims == (3,) * 4
    assert_close(psi.to_dense(), np.asarray(q.to_dense()).reshape(-1))


def test_mps_from_quimb_product_state():
    q = qtn.MPS_computational_state("0110")
    psi = MPS.from_quimb(q)
    expected = np.zeros(16)
    expected[0b0110] = 1.0
    assert_close(psi.to_dense(), expected)


def test_mps_from_quimb_keeps_dtype_float32(rng):
    arrays = [rand(rng, (2, 2)).astype(np.float32), rand(rng, (2, 2)).astype(np.float32)]
    psi = MPS.from_quimb(qtn.MatrixProductState(arrays, shape="lrp"))
    assert psi.dtype == np.float32


def test_quimb_overlap_equals_inner_long_chain():
    a = MPS.random(30, 16, dtype=np.complex128, seed=101)
    b = MPS.random(30, 16, dtype=np.complex128, seed=202)
    ours = a.inner(b)
    theirs = a.to_quimb().H @ b.to_quimb()
    assert abs(ours) > 0
    assert ours == pytest.approx(theirs, rel=1e-10)
    assert b.inner(a) == pytest.approx(np.conj(theirs), rel=1e-10)
    assert a.inner(a) == pytest.approx(1.0, rel=1e-10)


def test_mps_from_quimb_type_errors(rng):
    with pytest.raises(TypeError, match="quimb MatrixProductState"):
        MPS.from_quimb(np.ones((2, 2)))
    with pytest.raises(TypeError, match="quimb MatrixProductState"):
        MPS.from_quimb(qtn.MPO_identity(3))
    with pytest.raises(TypeError, match="quimb MatrixProductOperator"):
        MPO.from_quimb(MPS.random(3, 2, seed=rng).to_quimb())
    with pytest.raises(TypeError, match="quimb MatrixProductState"):
        mps_from_quimb(MPS.random(3, 2, seed=rng))


# ----------------------------------------------------------------------------- MPO


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("out_dims", "in_dims"), [((3,), (3,)), ((2, 3), (2, 3)), ((3, 2, 2), (2, 2, 4)), ((2,) * 5, (2,) * 5)]
)
def test_mpo_round_trip_exact(rng, dtype, out_dims, in_dims):
    w = random_mpo(rng, out_dims, in_dims, 3, dtype)
    q = w.to_quimb()
    assert isinstance(q, qtn.MatrixProductOperator)
    assert_same_tensors(MPO.from_quimb(q), w)
    assert_same_tensors(mpo_from_quimb(mpo_to_quimb(w)), w)
    assert_close(np.asarray(q.to_dense()), w.to_dense())  # upper = output (rows), lower = input


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_mpo_from_quimb_rand_herm(dtype):
    q = qtn.MPO_rand_herm(5, 3, dtype=dtype, seed=7)
    w = MPO.from_quimb(q)
    dense = np.asarray(q.to_dense())
    assert w.dtype == np.dtype(dtype)
    assert_close(w.to_dense(), dense)
    assert_close(w.to_dense(), w.to_dense().conj().T)
    assert_same_tensors(MPO.from_quimb(w.to_quimb()), w)


def test_mpo_from_quimb_after_transposition():
    q = qtn.MPO_rand_herm(4, 3, dtype="complex128", seed=3)
    dense = np.asarray(q.to_dense())
    for i in range(4):
        q[i].transpose_(*reversed(q[i].inds))
    assert_close(MPO.from_quimb(q).to_dense(), dense)


@pytest.mark.parametrize("n", [2, 6])
def test_mpo_from_quimb_heisenberg(n):
    q = qtn.MPO_ham_heis(n)
    w = MPO.from_quimb(q)
    assert_close(w.to_dense(), heisenberg_mpo(n).to_dense())
    assert_close(heisenberg_mpo(n).to_quimb().to_dense(), q.to_dense())


def test_mpo_application_agrees_with_quimb(rng):
    # Checks the upper/lower convention through an actual application.
    w = random_mpo(rng, (3, 2, 2, 3), (2, 2, 3, 2), 2, np.complex128)
    psi = MPS.random(4, 3, phys_dim=(2, 2, 3, 2), dtype=np.complex128, seed=rng)
    theirs = w.to_quimb().apply(psi.to_quimb())
    assert_close(np.asarray(theirs.to_dense()).reshape(-1), (w @ psi).to_dense())
    assert_close(MPS.from_quimb(theirs).to_dense(), (w @ psi).to_dense())


# ----------------------------------------------------------------------------- algorithms vs quimb


def test_heisenberg_energy_of_quimb_dmrg_ground_state():
    n = 10
    dmrg = qtn.DMRG2(qtn.MPO_ham_heis(n), bond_dims=[8, 16, 32], cutoffs=1e-12)
    assert dmrg.solve(tol=1e-10, verbosity=0)
    psi = MPS.from_quimb(dmrg.state)
    h = heisenberg_mpo(n)
    assert h.expectation(psi) == pytest.approx(dmrg.energy, abs=1e-8)
    assert psi.expectation(h, normalize=False) == pytest.approx(dmrg.energy * psi.norm() ** 2, abs=1e-8)
    # Sanity on the state: normalised, spin singlet-like (total Sz = 0).
    assert psi.norm() == pytest.approx(1.0, abs=1e-10)
    sz_total = heisenberg_mpo(n, j=0.0, h=1.0)  # sum_i Sz_i
    assert sz_total.expectation(psi) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("max_bond", [4, 8])
def test_compress_fidelity_matches_quimb(max_bond):
    # tnkit sweeps from the canonical centre towards the far end; quimb's
    # form='left' (right-canonize, then compress left to right) is the same truncation
    # for a centre-0 state, and form='right' for a centre-(N-1) state.
    n = 20
    psi = MPS.random(n, 16, dtype=np.complex128, seed=55)
    assert psi.center == 0
    q = psi.to_quimb()
    for state, form in [(psi, "left"), (psi.canonicalize(n - 1), "right")]:
        ours, report = state.compress(max_bond=max_bond, cutoff=0.0)
        theirs = q.copy()
        theirs.compress(form=form, max_bond=max_bond, cutoff=0.0)
        assert theirs.max_bond() == ours.max_bond_dim == max_bond
        f_theirs = quimb_fidelity(q, theirs)
        assert f_theirs < 0.99  # the truncation is substantial
        assert report.fidelity == pytest.approx(f_theirs, abs=1e-8)
        assert psi.fidelity(ours) == pytest.approx(f_theirs, abs=1e-8)
        # ... and the two compressed states are the same state
        assert quimb_fidelity(ours.to_quimb(), theirs) == pytest.approx(1.0, abs=1e-8)
