"""Canonical forms: isometries, unchanged states and the bookkeeping that avoids work."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, assert_close, random_array

import tnkit.mps.canonical as canonical
from tnkit import MPS
from tnkit.mps.canonical import (
    left_isometry_error,
    move_center,
    orthogonalize_left,
    orthogonalize_right,
    right_isometry_error,
)

DIMS = (2, 3, 2, 2, 3, 2, 2, 2)


def _unnormalized(rng, dtype=np.float64, dims=DIMS, max_bond=4):
    """A random state with no canonical structure at all (fresh bookkeeping (0, N))."""
    psi = MPS.random(len(dims), max_bond, phys_dim=dims, dtype=dtype, seed=rng, normalize=False)
    assert psi.canonical_range == (0, len(dims))
    return psi


@pytest.fixture
def counters(monkeypatch):
    """Count the QR (left) and LQ (right) steps done by canonicalisation."""
    calls = {"qr": 0, "lq": 0}
    real_left, real_right = canonical.orthogonalize_left, canonical.orthogonalize_right

    def counting_left(tensors, i):
        calls["qr"] += 1
        real_left(tensors, i)

    def counting_right(tensors, i):
        calls["lq"] += 1
        real_right(tensors, i)

    monkeypatch.setattr(canonical, "orthogonalize_left", counting_left)
    monkeypatch.setattr(canonical, "orthogonalize_right", counting_right)

    def take():
        out = dict(calls)
        calls.update(qr=0, lq=0)
        return out

    return take


def _assert_isometries(psi, center, atol=1e-12):
    t = psi.tensors
    for i in range(center):
        assert left_isometry_error(t[i]) < atol, f"site {i} is not left-isometric"
    for i in range(center + 1, psi.n_sites):
        assert right_isometry_error(t[i]) < atol, f"site {i} is not right-isometric"


# --------------------------------------------------------------------------- forms


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", range(len(DIMS)))
def test_canonicalize_every_centre(rng, dtype, center):
    psi = _unnormalized(rng, dtype)
    v = psi.to_dense()
    out = psi.canonicalize_(center)
    assert out is psi
    assert psi.center == center and psi.canonical_range == (center, center + 1)
    assert psi.is_canonical(center) and psi.is_canonical()
    _assert_isometries(psi, center)
    assert_close(psi.to_dense(), v, dtype)
    assert psi.norm() == pytest.approx(np.linalg.norm(v), rel=1e-12)
    assert psi.dtype == dtype
    for c2 in range(len(DIMS)):
        if c2 != center:
            assert not psi.is_canonical(c2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_canonicalize_walks_the_chain(rng, dtype):
    psi = _unnormalized(rng, dtype)
    v = psi.to_dense()
    for c in [3, 7, 0, 5, 5, 1, 6, 2]:
        psi.canonicalize_(c)
        _assert_isometries(psi, c)
        assert_close(psi.to_dense(), v, dtype)


def test_canonicalize_copy_and_aliases(rng):
    psi = _unnormalized(rng)
    before = psi.tensors
    phi = psi.canonicalize(4)
    assert psi.tensors == before and psi.canonical_range == (0, len(DIMS))
    assert phi.center == 4
    assert psi.copy().left_canonicalize_().center == len(DIMS) - 1
    assert psi.copy().right_canonicalize_().center == 0
    assert psi.copy().canonicalize_(-1).center == len(DIMS) - 1
    with pytest.raises(IndexError, match=r"`center` must be a site in \[0, 8\)"):
        psi.canonicalize_(8)
    with pytest.raises(TypeError, match="`center` must be an integer"):
        psi.canonicalize_(1.0)


def test_is_canonical_without_centre(rng):
    psi = _unnormalized(rng)
    assert psi.center is None
    assert not psi.is_canonical()
    assert not psi.is_canonical(3)
    assert "center=none" in repr(psi)
    psi.canonicalize_(3)
    assert "center=3" in repr(psi)


def test_single_site(rng):
    psi = MPS([random_array(rng, (1, 3, 1), complex)])
    assert psi.center == 0 and psi.is_canonical(0)
    v = psi.to_dense()
    psi.canonicalize_(0)
    assert_close(psi.to_dense(), v, complex)
    assert psi.norm() == pytest.approx(np.linalg.norm(v))


def test_from_dense_is_left_canonical(rng):
    psi = MPS.from_dense(random_array(rng, 2**6, complex))
    assert psi.center == 5
    _assert_isometries(psi, 5)


# --------------------------------------------------------------------------- bookkeeping


def test_moving_centre_does_only_missing_steps(rng, counters):
    psi = _unnormalized(rng)
    psi.canonicalize_(3)
    assert counters() == {"qr": 3, "lq": 4}  # sites 0-2 by QR, sites 7-4 by LQ
    psi.canonicalize_(5)
    assert counters() == {"qr": 2, "lq": 0}  # sites 3 and 4
    psi.canonicalize_(5)
    assert counters() == {"qr": 0, "lq": 0}
    psi.canonicalize_(3)
    assert counters() == {"qr": 0, "lq": 2}  # sites 5 and 4
    psi.canonicalize_(0)
    assert counters() == {"qr": 0, "lq": 3}
    _assert_isometries(psi, 0)


def test_measurements_reuse_canonical_form(rng, counters):
    psi = MPS.random(6, 3, seed=rng)  # centre 0
    counters()
    psi.norm()
    psi.log_norm()
    assert counters() == {"qr": 0, "lq": 0}
    psi.local_expectation(np.diag([1.0, -1.0]), 2)
    assert counters() == {"qr": 2, "lq": 0}
    psi.local_expectation(np.diag([1.0, -1.0]), 2)
    assert counters() == {"qr": 0, "lq": 0}


@pytest.mark.parametrize(
    "site, expected_range, expected_work",
    [
        (5, (3, 6), {"qr": 0, "lq": 2}),  # right of the centre: LQ sites 5, 4
        (1, (1, 4), {"qr": 2, "lq": 0}),  # left of the centre: QR sites 1, 2
        (3, (3, 4), {"qr": 0, "lq": 0}),  # the centre itself: nothing to redo
        (7, (3, 8), {"qr": 0, "lq": 4}),
        (0, (0, 4), {"qr": 3, "lq": 0}),
    ],
)
def test_setitem_invalidates_bookkeeping(rng, counters, site, expected_range, expected_work):
    psi = MPS.random(8, 4, seed=rng).canonicalize_(3)
    new = random_array(rng, psi[site].shape)
    psi[site] = new
    assert psi.canonical_range == expected_range
    assert (psi.center == 3) == (expected_range == (3, 4))
    assert psi.is_canonical() == (expected_range == (3, 4))
    tensors = list(psi.tensors)
    counters()
    v = psi.to_dense()
    psi.canonicalize_(3)
    assert counters() == expected_work
    _assert_isometries(psi, 3)
    ref = MPS(tensors).to_dense()
    assert_close(psi.to_dense(), ref)
    assert_close(v, ref)


def test_two_setitems_widen_the_range(rng, counters):
    psi = MPS.random(8, 4, seed=rng).canonicalize_(4)
    psi[1] = random_array(rng, psi[1].shape)
    psi[6] = random_array(rng, psi[6].shape)
    assert psi.canonical_range == (1, 7)
    v = psi.to_dense()
    counters()
    psi.canonicalize_(4)
    assert counters() == {"qr": 3, "lq": 2}
    assert_close(psi.to_dense(), v)
    _assert_isometries(psi, 4)


def test_log_norm_uses_centre_correctly(rng):
    psi = _unnormalized(rng, complex)
    v = psi.to_dense()
    for c in (0, 4, 7):
        psi.canonicalize_(c)
        assert psi.log_norm() == pytest.approx(np.log(np.linalg.norm(v)), abs=1e-12)


# --------------------------------------------------------------------------- free functions


@pytest.mark.parametrize("dtype", DTYPES)
def test_orthogonalize_left_right(rng, dtype):
    tensors = list(_unnormalized(rng, dtype).tensors)
    v = MPS(tensors).to_dense()
    orthogonalize_left(tensors, 2)
    assert left_isometry_error(tensors[2]) < 1e-12
    orthogonalize_right(tensors, 6)
    assert right_isometry_error(tensors[6]) < 1e-12
    assert_close(MPS(tensors).to_dense(), v, dtype)


def test_move_center_function(rng):
    tensors = list(_unnormalized(rng).tensors)
    v = MPS(tensors).to_dense()
    assert move_center(tensors, 0, len(tensors), 2) == (2, 3)
    _assert_isometries(MPS(tensors), 2)
    assert_close(MPS(tensors).to_dense(), v)


def test_isometry_errors_detect_non_isometries(rng):
    a = random_array(rng, (2, 2, 3))
    assert left_isometry_error(a) > 1e-3
    assert right_isometry_error(a) > 1e-3
    q = np.linalg.qr(random_array(rng, (4, 3)))[0].reshape(2, 2, 3)
    assert left_isometry_error(q) < 1e-14
