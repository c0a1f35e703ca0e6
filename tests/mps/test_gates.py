"""Gate application against a dense ``np.einsum`` reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    CNOT,
    DTYPES,
    H,
    assert_close,
    dense_apply,
    random_array,
    random_unitary,
    rel_err2,
)

from tnkit import MPS
from tnkit.mps.gates import swap_gate

DIMS = (2, 3, 2, 2, 3, 2)
N = len(DIMS)


def _state(rng, dtype, center=2, max_bond=4):
    return MPS.random(N, max_bond, phys_dim=DIMS, dtype=dtype, seed=rng).canonicalize_(center)


# --------------------------------------------------------------------------- one site


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("site", [0, 2, 4, -1])
def test_one_site_unitary_keeps_bookkeeping(rng, dtype, site):
    psi = _state(rng, dtype)
    v = psi.to_dense()
    u = random_unitary(rng, DIMS[site], dtype)
    discarded = psi.apply_gate_(u, site)
    assert discarded == 0.0
    assert psi.canonical_range == (2, 3)
    assert psi.is_canonical(2, atol=1e-12)  # the bookkeeping is still true
    assert_close(psi.to_dense(), dense_apply(v, DIMS, u, site), dtype)
    assert psi.norm() == pytest.approx(np.linalg.norm(v))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("site, expected_range", [(0, (0, 3)), (4, (2, 5)), (2, (2, 3))])
def test_one_site_non_unitary_invalidates_bookkeeping(rng, dtype, site, expected_range):
    psi = _state(rng, dtype)
    v = psi.to_dense()
    g = random_array(rng, (DIMS[site], DIMS[site]), dtype)
    psi.apply_gate_(g, site)
    assert psi.canonical_range == expected_range  # at the centre nothing is lost
    ref = dense_apply(v, DIMS, g, site)
    assert_close(psi.to_dense(), ref, dtype)
    assert psi.norm() == pytest.approx(np.linalg.norm(ref), rel=1e-10)
    psi.canonicalize_(2)
    assert psi.is_canonical(2, atol=1e-12)
    assert psi.norm() == pytest.approx(np.linalg.norm(ref), rel=1e-10)
    assert_close(psi.to_dense(), ref, dtype)


def test_one_site_gate_can_change_dimension(rng):
    psi = _state(rng, np.float64)
    v = psi.to_dense()
    g = random_array(rng, (4, 3))  # embeds site 1 (d=3) into d=4
    psi.apply_gate_(g, 1)
    assert psi.phys_dims == (2, 4, 2, 2, 3, 2)
    assert_close(psi.to_dense(), dense_apply(v, DIMS, g, 1))


def test_apply_gate_returns_copy(rng):
    psi = _state(rng, complex)
    v = psi.to_dense()
    phi = psi.apply_gate(H, 0)
    assert_close(psi.to_dense(), v, complex)
    assert_close(phi.to_dense(), dense_apply(v, DIMS, H, 0), complex)
    phi2 = psi.apply_gate(random_unitary(rng, 6, complex), (0, 1))
    assert_close(psi.to_dense(), v, complex)
    assert psi.canonical_range == (2, 3)
    assert phi2.center is not None


# --------------------------------------------------------------------------- two sites


TWO_SITE = [(0, 1), (1, 2), (4, 5), (2, 1), (5, 4), (0, 3), (3, 0), (1, 4), (4, 1), (0, 5), (5, 0), (-1, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sites", TWO_SITE)
@pytest.mark.parametrize("kind", ["unitary", "general", "tensor"])
def test_two_site_gate(rng, dtype, sites, kind):
    psi = _state(rng, dtype)
    v = psi.to_dense()
    i, j = (s % N for s in sites)
    di, dj = DIMS[i], DIMS[j]
    if kind == "unitary":
        g = random_unitary(rng, di * dj, dtype)
    else:
        g = random_array(rng, (di * dj, di * dj), dtype)
    ref = dense_apply(v, DIMS, g, (i, j))
    arg = g.reshape(di, dj, di, dj) if kind == "tensor" else g
    discarded = psi.apply_gate_(arg, sites)
    assert discarded == pytest.approx(0.0, abs=1e-20)
    assert psi.phys_dims == DIMS
    assert_close(psi.to_dense(), ref, dtype)
    # the gate leaves the MPS in canonical form with a correct centre
    assert psi.center is not None and psi.is_canonical(atol=1e-12)
    assert psi.norm() == pytest.approx(np.linalg.norm(ref), rel=1e-10)


def test_two_site_gate_centre_moves_right(rng):
    psi = _state(rng, np.float64, center=0)
    psi.apply_gate_(random_unitary(rng, 4), (2, 3))
    assert psi.center == 3


def test_cnot_builds_bell_and_ghz():
    psi = MPS.product_state("000")
    psi.apply_gate_(H, 0)
    psi.apply_gate_(CNOT, (0, 1))
    psi.apply_gate_(CNOT, (0, 2))  # non-adjacent
    expected = np.zeros(8)
    expected[0] = expected[7] = 1 / np.sqrt(2)
    assert_close(psi.to_dense(), expected)
    # CNOT with control on the right
    phi = MPS.product_state("001")
    phi.apply_gate_(CNOT, (2, 0))
    e = np.zeros(8)
    e[0b101] = 1.0
    assert_close(phi.to_dense(), e)


def test_two_site_gate_non_square_output(rng):
    psi = _state(rng, complex)
    v = psi.to_dense()
    g = random_array(rng, (3, 2, 2, 2), complex)  # site 2: d 2 -> 3; site 3 keeps d = 2
    psi.apply_gate_(g, (2, 3))
    assert psi.phys_dims == (2, 3, 3, 2, 3, 2)
    assert_close(psi.to_dense(), dense_apply(v, DIMS, g, (2, 3)), complex)
    phi = _state(np.random.default_rng(0), complex)
    w = phi.to_dense()
    phi.apply_gate_(g, (0, 3))  # non-adjacent: the swaps use the updated dimensions
    assert phi.phys_dims == (3, 3, 2, 2, 3, 2)
    assert_close(phi.to_dense(), dense_apply(w, DIMS, g, (0, 3)), complex)


def test_swap_gate():
    s = swap_gate(2, 3)
    assert s.shape == (3, 2, 2, 3)
    v = np.arange(6.0)  # |a>|b> with a in 2, b in 3
    out = np.einsum("uvst,st->uv", s, v.reshape(2, 3))
    np.testing.assert_array_equal(out, v.reshape(2, 3).T)


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bond, cutoff", [(1, 1e-20), (2, 1e-20), (3, 1e-20), (None, 0.05), (2, 0.01)])
@pytest.mark.parametrize("sites", [(2, 3), (3, 2)])
def test_truncated_gate_discarded_weight_is_exact(rng, dtype, max_bond, cutoff, sites):
    psi = MPS.random(N, 6, phys_dim=DIMS, dtype=dtype, seed=rng).canonicalize_(2)
    v = psi.to_dense()
    g = random_unitary(rng, 4, dtype)
    exact = dense_apply(v, DIMS, g, sites)
    discarded = psi.apply_gate_(g, sites, max_bond=max_bond, cutoff=cutoff)
    w = psi.to_dense()
    assert discarded > 1e-6  # these parameters do truncate
    # in canonical form the relative discarded weight is the exact squared error
    assert discarded == pytest.approx(rel_err2(exact, w), abs=1e-12)
    assert np.linalg.norm(w) ** 2 == pytest.approx((1 - discarded) * np.linalg.norm(exact) ** 2, rel=1e-10)
    if max_bond is not None:
        assert psi.bond_dims[2] <= max_bond
    else:
        assert discarded <= cutoff


def test_truncated_non_adjacent_gate_bounds(rng):
    """Gate on (0, 3) = 5 truncated two-site steps (2 swaps, the gate, 2 swaps back).

    Each step is an orthogonal projection of a state of norm <= ||psi||, so by the
    triangle and Cauchy-Schwarz inequalities the relative squared error is at most
    ``(sum_k sqrt(w_k))**2 <= 5 * sum_k w_k`` for the relative discarded weights ``w_k``.
    """
    psi = MPS.random(N, 6, phys_dim=DIMS, seed=rng)
    v = psi.to_dense()
    untouched = psi.bond_dims[3:]
    g = random_unitary(rng, 4)
    exact = dense_apply(v, DIMS, g, (0, 3))
    discarded = psi.apply_gate_(g, (0, 3), max_bond=2)
    err = rel_err2(exact, psi.to_dense())
    assert discarded > 1e-6
    assert all(b <= 2 for b in psi.bond_dims[:3])
    assert psi.bond_dims[3:] == untouched  # bonds the swaps never touch
    assert err <= 5 * discarded + 1e-12
    assert err > 0


# --------------------------------------------------------------------------- errors


def test_gate_errors(rng):
    psi = _state(rng, np.float64)
    with pytest.raises(ValueError, match="must name one or two sites, got 3"):
        psi.apply_gate_(np.eye(8), (0, 1, 2))
    with pytest.raises(ValueError, match="must be two different sites"):
        psi.apply_gate_(np.eye(4), (1, 1))
    with pytest.raises(IndexError, match=r"`sites` must be a site in \[0, 6\)"):
        psi.apply_gate_(np.eye(2), 6)
    with pytest.raises(ValueError, match=r"`gate` for sites \(0, 1\) must be a \(6, 6\) matrix"):
        psi.apply_gate_(np.eye(4), (0, 1))
    with pytest.raises(ValueError, match=r"`gate` for site 1 must be a matrix of shape \(d_out, 3\)"):
        psi.apply_gate_(np.eye(2), 1)
    with pytest.raises(ValueError, match="`max_bond` must be an integer >= 1"):
        psi.apply_gate_(np.eye(4), (2, 3), max_bond=0)
    with pytest.raises(ValueError, match=r"`cutoff` must lie in \[0, 1\)"):
        psi.apply_gate_(np.eye(4), (2, 3), cutoff=-1)
    with pytest.raises(ValueError, match="found NaN"):
        psi.apply_gate_(np.full((2, 2), np.nan), 0)
    # failed calls leave the state intact
    assert psi.phys_dims == DIMS and psi.is_canonical(2)
