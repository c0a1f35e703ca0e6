"""MatrixProductState: construction, dense round trips, algebra, norms, log-norms, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import (
    DTYPES,
    TOL,
    assert_close,
    dense_fidelity,
    random_array,
    rel_err2,
)

import tnkit
from tnkit import MPS, MatrixProductState, TruncationReport

MIXED_DIMS = (2, 3, 2, 4)


def _random_tensors(rng, dims, bonds, dtype=np.float64):
    """Arbitrary (non-canonical, unnormalised) site tensors with the given bonds."""
    full = (1, *bonds, 1)
    return [random_array(rng, (full[i], d, full[i + 1]), dtype) for i, d in enumerate(dims)]


def _dense_of_tensors(tensors):
    v = np.ones((1, 1))
    for t in tensors:
        v = np.einsum("xa,asb->xsb", v, t).reshape(-1, t.shape[2])
    return v.reshape(-1)


# --------------------------------------------------------------------------- package


def test_public_api():
    assert tnkit.MPS is MatrixProductState
    assert set(tnkit.__all__) >= {"MPS", "MatrixProductState", "TruncationReport", "contract"}
    for name in tnkit.__all__:
        assert hasattr(tnkit, name)
    assert isinstance(tnkit.__version__, str)


# --------------------------------------------------------------------------- constructor


@pytest.mark.parametrize("dtype", DTYPES)
def test_constructor_and_to_dense(rng, dtype):
    tensors = _random_tensors(rng, MIXED_DIMS, (2, 3, 2), dtype)
    psi = MPS(tensors)
    assert psi.n_sites == len(psi) == 4
    assert psi.phys_dims == MIXED_DIMS
    assert psi.bond_dims == (2, 3, 2)
    assert psi.max_bond_dim == 3
    assert psi.dtype == dtype
    assert psi.num_params == sum(t.size for t in tensors)
    assert psi.center is None and psi.canonical_range == (0, 4)
    assert "n_sites=4" in repr(psi) and "center=none" in repr(psi)
    v = psi.to_dense()
    assert v.shape == (np.prod(MIXED_DIMS),)
    assert_close(v, _dense_of_tensors(tensors), dtype)


def test_constructor_shares_read_only_arrays(rng):
    tensors = _random_tensors(rng, (2, 2, 2), (2, 2))
    psi = MPS(tensors)
    assert np.shares_memory(psi[0], tensors[0])
    with pytest.raises(ValueError, match="read-only"):
        psi[0][0, 0, 0] = 1.0
    copied = MPS(tensors, copy=True)
    assert not np.shares_memory(copied[0], tensors[0])
    tensors[0][0, 0, 0] = 123.0  # the user's array stays writeable
    assert copied[0][0, 0, 0] != 123.0


def test_constructor_promotes_dtypes_and_ints(rng):
    t = _random_tensors(rng, (2, 2), (2,))
    psi = MPS([t[0], t[1].astype(complex)])
    assert psi.dtype == np.complex128 and all(a.dtype == np.complex128 for a in psi.tensors)
    ints = MPS([np.ones((1, 2, 1), dtype=int)] * 2)
    assert ints.dtype == np.float64


def test_constructor_rejects_non_3d():
    with pytest.raises(ValueError, match=r"`tensors\[1\]` must have 3 dimensions, got shape \(2, 2\)"):
        MPS([np.ones((1, 2, 2)), np.ones((2, 2))])


def test_constructor_rejects_mismatched_bonds():
    with pytest.raises(ValueError, match="bond 0 has dimension 2 on site 0 but 3 on site 1"):
        MPS([np.ones((1, 2, 2)), np.ones((3, 2, 1))])


@pytest.mark.parametrize(
    "shapes, where",
    [([(2, 2, 1), (1, 2, 1)], "got 2 on the left"), ([(1, 2, 1), (1, 2, 3)], "and 3 on the right of site 1")],
)
def test_constructor_rejects_boundary_bonds(shapes, where):
    with pytest.raises(ValueError, match=f"outer bonds must have dimension 1, .*{where}"):
        MPS([np.ones(s) for s in shapes])


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_constructor_rejects_non_finite(bad, word):
    t = np.ones((1, 2, 1))
    t[0, 1, 0] = bad
    with pytest.raises(ValueError, match=rf"`tensors\[1\]` must hold finite numbers, found {word}"):
        MPS([np.ones((1, 2, 1)), t])


def test_constructor_rejects_empty_and_non_numeric():
    with pytest.raises(ValueError, match="at least one site tensor"):
        MPS([])
    with pytest.raises(TypeError, match="must hold numbers"):
        MPS([np.array([[["a"]]])])


# --------------------------------------------------------------------------- random


def test_random_bond_profile():
    assert MPS.random(10, max_bond=8, seed=0).bond_dims == (2, 4, 8, 8, 8, 8, 8, 4, 2)
    assert MPS.random(4, max_bond=100, seed=0).bond_dims == (2, 4, 2)
    assert MPS.random(5, max_bond=1, seed=0).bond_dims == (1, 1, 1, 1)
    assert MPS.random(4, max_bond=5, phys_dim=MIXED_DIMS, seed=0).bond_dims == (2, 5, 4)
    assert MPS.random(3, max_bond=4, phys_dim=3, seed=0).bond_dims == (3, 3)
    assert MPS.random(1, max_bond=4, seed=0).bond_dims == ()


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32, np.complex64])
def test_random_is_normalized_and_canonical(dtype):
    psi = MPS.random(6, max_bond=4, phys_dim=(2, 3, 2, 2, 3, 2), dtype=dtype, seed=11)
    assert psi.dtype == dtype and all(t.dtype == dtype for t in psi.tensors)
    assert psi.center == 0 and psi.canonical_range == (0, 1)
    atol = 10 * TOL[np.dtype(dtype)]
    assert psi.is_canonical(0, atol=atol)
    assert psi.norm() == pytest.approx(1.0, abs=atol)
    assert np.linalg.norm(psi.to_dense()) == pytest.approx(1.0, abs=atol)


def test_random_seeds_are_reproducible():
    a = MPS.random(5, 3, dtype=complex, seed=42)
    b = MPS.random(5, 3, dtype=complex, seed=42)
    c = MPS.random(5, 3, dtype=complex, seed=43)
    for x, y in zip(a.tensors, b.tensors):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a.to_dense(), c.to_dense())
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(MPS.random(4, 2, seed=g1).to_dense(), MPS.random(4, 2, seed=g2).to_dense())
    # a generator keeps advancing: two draws differ
    assert not np.allclose(MPS.random(4, 2, seed=g1).to_dense(), MPS.random(4, 2, seed=g1).to_dense())


def test_random_unnormalized():
    psi = MPS.random(5, 3, seed=3, normalize=False)
    assert psi.center is None
    assert psi.norm() == pytest.approx(np.linalg.norm(psi.to_dense()), rel=1e-12)


def test_random_errors():
    with pytest.raises(ValueError, match="`n_sites` must be an integer >= 1"):
        MPS.random(0, 2)
    with pytest.raises(ValueError, match="`max_bond` must be an integer >= 1"):
        MPS.random(3, 0)
    with pytest.raises(TypeError, match="`dtype` must be float32, float64, complex64 or complex128"):
        MPS.random(3, 2, dtype=int)
    with pytest.raises(ValueError, match="must give 3 dimensions"):
        MPS.random(3, 2, phys_dim=(2, 2))
    with pytest.raises(ValueError, match=r"`phys_dim\[1\]` must be an integer >= 1"):
        MPS.random(3, 2, phys_dim=(2, 0, 2))


# --------------------------------------------------------------------------- product states


@pytest.mark.parametrize("states", ["0101", [0, 1, 0, 1], (0, 1, 0, 1), np.array([0, 1, 0, 1])])
def test_product_state_basis(states):
    psi = MPS.product_state(states)
    expected = np.zeros(16)
    expected[0b0101] = 1.0
    np.testing.assert_array_equal(psi.to_dense(), expected)
    assert psi.bond_dims == (1, 1, 1) and psi.max_bond_dim == 1


def test_product_state_qudits_and_dtype():
    psi = MPS.product_state("0210", phys_dim=3, dtype=np.complex128)
    assert psi.dtype == np.complex128 and psi.phys_dims == (3, 3, 3, 3)
    assert psi.to_dense()[np.ravel_multi_index((0, 2, 1, 0), (3,) * 4)] == 1.0
    mixed = MPS.product_state([1, 2, 0], phys_dim=(2, 3, 2))
    v = np.zeros(12)
    v[np.ravel_multi_index((1, 2, 0), (2, 3, 2))] = 1.0
    np.testing.assert_array_equal(mixed.to_dense(), v)


def test_product_state_vectors(rng):
    vecs = [random_array(rng, 2, complex), random_array(rng, 3), np.array([0.6, 0.8])]
    psi = MPS.product_state(vecs)
    assert psi.phys_dims == (2, 3, 2) and psi.dtype == np.complex128
    expected = np.einsum("a,b,c->abc", *vecs).reshape(-1)
    assert_close(psi.to_dense(), expected, np.complex128)


@pytest.mark.parametrize(
    "states, kwargs, exc, match",
    [
        ("0102", {}, ValueError, r"`states\[3\]` = 2 is not a basis state of dimension 2"),
        ([0, 3], {"phys_dim": 3}, ValueError, "is not a basis state of dimension 3"),
        ([0, -1], {}, ValueError, r"`states\[1\]` must be an integer >= 0"),
        ("01a", {}, ValueError, "must be digits"),
        ("", {}, ValueError, "must be digits"),
        ([], {}, ValueError, "at least one site"),
        ([0, 1.5], {}, TypeError, "must be an integer"),
        ([0, [1.0, np.nan]], {}, ValueError, "found NaN"),
    ],
)
def test_product_state_errors(states, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MPS.product_state(states, **kwargs)


# --------------------------------------------------------------------------- from_dense


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [MIXED_DIMS, (2,) * 6, (3, 3, 3), (5,), (4, 2)])
def test_from_dense_exact(rng, dims, dtype):
    v = random_array(rng, int(np.prod(dims)), dtype)
    psi, report = MPS.from_dense(v, dims, return_report=True)
    assert psi.phys_dims == dims and psi.dtype == dtype
    assert_close(psi.to_dense(), v, dtype)
    # TT-SVD of a generic vector gives the maximal bonds min(prod left, prod right)
    for b, bond in enumerate(psi.bond_dims):
        assert bond == min(np.prod(dims[: b + 1]), np.prod(dims[b + 1 :]))
    assert psi.center == len(dims) - 1
    assert psi.is_canonical(len(dims) - 1, atol=1e-12)
    assert report.error == pytest.approx(0.0, abs=1e-20)
    assert report.fidelity == pytest.approx(1.0, abs=1e-20)


def test_from_dense_int_phys_dims_and_tensor_input(rng):
    v = random_array(rng, 2**5)
    psi = MPS.from_dense(v)
    assert psi.phys_dims == (2,) * 5
    assert_close(psi.to_dense(), v)
    psi3 = MPS.from_dense(random_array(rng, 27), 3)
    assert psi3.phys_dims == (3, 3, 3)
    tensor = v.reshape((2,) * 5)
    assert_close(MPS.from_dense(tensor, (2,) * 5).to_dense(), v)


def test_from_dense_low_rank_gives_small_bonds():
    ghz = np.zeros(2**6)
    ghz[0] = ghz[-1] = 1 / np.sqrt(2)
    psi = MPS.from_dense(ghz)
    assert psi.bond_dims == (2,) * 5
    product = np.einsum("a,b,c,d->abcd", *[np.array([0.6, 0.8])] * 4).reshape(-1)
    assert MPS.from_dense(product).bond_dims == (1, 1, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_dense_little_endian_uniform(rng, dtype):
    v = random_array(rng, 2**5, dtype)
    psi = MPS.from_dense(v, 2, little_endian=True)
    big = v.reshape((2,) * 5).transpose(4, 3, 2, 1, 0).reshape(-1)
    assert_close(psi.to_dense(), big, dtype)
    assert_close(psi.to_dense(little_endian=True), v, dtype)
    # qiskit convention: basis index k has site 0 as its lowest bit
    k = 0b00110
    assert psi.amplitude([0, 1, 1, 0, 0]) == pytest.approx(v[k], abs=1e-12)


def test_to_dense_little_endian_mixed_dims(rng):
    psi = MPS.random(4, 3, phys_dim=MIXED_DIMS, seed=rng)
    v = psi.to_dense()
    le = psi.to_dense(little_endian=True)
    assert_close(le, v.reshape(MIXED_DIMS).transpose(3, 2, 1, 0).reshape(-1))


def test_from_dense_little_endian_mixed_dims_round_trip(rng):
    psi = MPS.random(4, 3, phys_dim=MIXED_DIMS, seed=rng)
    back = MPS.from_dense(psi.to_dense(little_endian=True), MIXED_DIMS, little_endian=True)
    assert back.phys_dims == MIXED_DIMS
    assert_close(back.to_dense(), psi.to_dense())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "max_bond, cutoff", [(1, 1e-20), (2, 1e-20), (3, 1e-20), (None, 0.05), (None, 0.2), (4, 1e-2)]
)
def test_from_dense_truncated_report(rng, dtype, max_bond, cutoff):
    dims = (2, 3, 2, 4, 2)
    v = random_array(rng, int(np.prod(dims)), dtype)
    v = v / np.linalg.norm(v) * 3.0  # not normalised
    psi, report = MPS.from_dense(v, dims, max_bond=max_bond, cutoff=cutoff, return_report=True)
    w = psi.to_dense()
    assert isinstance(report, TruncationReport) and report.method == "svd"
    assert report.error == pytest.approx(rel_err2(v, w), abs=1e-12)
    assert report.error == pytest.approx(sum(report.discarded), abs=1e-15)
    assert report.fidelity == pytest.approx(1 - report.error, abs=1e-15)
    assert report.fidelity == pytest.approx(dense_fidelity(v, w), abs=1e-12)
    assert report.bond_dims == psi.bond_dims
    assert len(report.discarded) == len(dims) - 1
    if max_bond is not None:
        assert psi.max_bond_dim <= max_bond
    else:
        assert all(d <= cutoff * (1 + 1e-12) for d in report.discarded)
    assert report.error > 0
    assert psi.max_bond_dim < 8  # something was truncated


def test_from_dense_errors(rng):
    with pytest.raises(ValueError, match="not a power of `phys_dims`=2"):
        MPS.from_dense(np.ones(12))
    msg = r"`vector` has 12 entries but `phys_dims` \(2, 2, 2\) multiply to 8"
    with pytest.raises(ValueError, match=msg):
        MPS.from_dense(np.ones(12), (2, 2, 2))
    with pytest.raises(ValueError, match="`max_bond` must be an integer >= 1"):
        MPS.from_dense(np.ones(8), max_bond=0)
    with pytest.raises(ValueError, match=r"`cutoff` must lie in \[0, 1\)"):
        MPS.from_dense(np.ones(8), cutoff=1.5)
    with pytest.raises(ValueError, match="found NaN"):
        MPS.from_dense(np.full(8, np.nan))
    with pytest.raises(ValueError, match="`phys_dims` must be an integer >= 2"):
        MPS.from_dense(np.ones(8), 1)


def test_to_dense_max_size():
    psi = MPS.product_state("0" * 12)
    with pytest.raises(ValueError, match="4,096 entries, more than `max_size`=1,000"):
        psi.to_dense(max_size=1000)


# --------------------------------------------------------------------------- indexing


def test_getitem_setitem(rng):
    psi = MPS.random(4, 2, seed=rng)
    np.testing.assert_array_equal(psi[-1], psi.tensors[3])
    with pytest.raises(IndexError, match=r"`i` must be a site in \[0, 4\), got 4"):
        psi[4]
    new = random_array(rng, psi[1].shape)
    psi[1] = new
    np.testing.assert_array_equal(psi[1], new)
    assert not psi[1].flags.writeable
    with pytest.raises(ValueError, match=r"must keep the bonds \(2, ·, 2\), got shape \(2, 2, 3\)"):
        psi[1] = np.ones((2, 2, 3))
    with pytest.raises(ValueError, match="found NaN"):
        psi[1] = np.full(psi[1].shape, np.nan)
    psi[2] = random_array(rng, (2, 3, 2))  # the physical dimension may change
    assert psi.phys_dims == (2, 2, 3, 2)


def test_setitem_promotes_dtype(rng):
    psi = MPS.random(4, 2, seed=rng)
    original = psi.copy()
    ref = list(psi.tensors)
    site = random_array(rng, psi[2].shape, complex)
    psi[2] = site
    assert psi.dtype == np.complex128 and all(t.dtype == np.complex128 for t in psi.tensors)
    assert original.dtype == np.float64  # a copy taken before is unaffected
    ref[2] = site
    assert_close(psi.to_dense(), _dense_of_tensors(ref), np.complex128)


def test_copy_is_independent(rng):
    psi = MPS.random(5, 3, seed=rng)
    phi = psi.copy()
    assert phi[0] is psi[0]  # shared read-only arrays
    phi.canonicalize_(4)
    assert psi.center == 0 and phi.center == 4
    assert_close(phi.to_dense(), psi.to_dense())
    phi[1] = np.zeros_like(phi[1])
    assert np.linalg.norm(psi.to_dense()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- norms and overlaps


@pytest.mark.parametrize("dtype", DTYPES)
def test_inner_matches_vdot(rng, dtype):
    a = MPS(_random_tensors(rng, MIXED_DIMS, (2, 3, 2), dtype))
    b = MPS(_random_tensors(rng, MIXED_DIMS, (1, 4, 3), dtype))
    va, vb = a.to_dense(), b.to_dense()
    assert_close(a.inner(b), np.vdot(va, vb), dtype)
    assert_close(b.inner(a), np.vdot(vb, va), dtype)
    phase, log_abs = a.log_inner(b)
    ref = np.vdot(va, vb)
    assert log_abs == pytest.approx(np.log(abs(ref)), abs=1e-12)
    assert_close(phase, ref / abs(ref), dtype)
    assert abs(phase) == pytest.approx(1.0)
    assert_close(a.inner(a), np.vdot(va, va).real, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_norm_fidelity_normalize(rng, dtype):
    a = MPS(_random_tensors(rng, MIXED_DIMS, (2, 3, 2), dtype))
    b = MPS(_random_tensors(rng, MIXED_DIMS, (2, 2, 2), dtype))
    va, vb = a.to_dense(), b.to_dense()
    assert a.norm() == pytest.approx(np.linalg.norm(va), rel=1e-12)
    assert a.log_norm() == pytest.approx(np.log(np.linalg.norm(va)), abs=1e-12)
    assert a.fidelity(b) == pytest.approx(dense_fidelity(va, vb), rel=1e-10)
    assert a.fidelity(a) == pytest.approx(1.0, abs=1e-12)
    n = a.normalized()
    assert n.norm() == pytest.approx(1.0, abs=1e-12)
    assert a.norm() == pytest.approx(np.linalg.norm(va))  # unchanged
    assert_close(n.to_dense(), va / np.linalg.norm(va), dtype)
    a.canonicalize_(2).normalize_()
    assert a.norm() == pytest.approx(1.0, abs=1e-12) and a.is_canonical(2)
    assert_close(a.to_dense(), va / np.linalg.norm(va), dtype)


def test_zero_state():
    z = MPS([np.zeros((1, 2, 1)), np.zeros((1, 2, 1))])
    assert z.log_norm() == -math.inf
    assert z.norm() == 0.0
    assert z.inner(MPS.product_state("01")) == 0.0
    assert z.fidelity(MPS.product_state("01")) == 0.0
    with pytest.raises(ValueError, match="cannot normalise the zero state"):
        z.normalize_()
    zc = z.canonicalize(1)
    assert zc.log_norm() == -math.inf


def test_orthogonal_overlap():
    a, b = MPS.product_state("0101"), MPS.product_state("0111")
    assert a.inner(b) == 0.0
    assert a.log_inner(b) == (0.0, -math.inf)
    assert a.fidelity(b) == 0.0


def test_overlap_shape_errors():
    with pytest.raises(ValueError, match="same physical dimensions"):
        MPS.product_state("01").inner(MPS.product_state("010"))
    with pytest.raises(ValueError, match="same physical dimensions"):
        MPS.product_state("01").inner(MPS.product_state([0, 1], phys_dim=3))
    with pytest.raises(TypeError, match="expected a MatrixProductState"):
        MPS.product_state("01").inner(np.ones(4))


N_LONG = 1000


@pytest.fixture(scope="module")
def long_state():
    """A normalised random bond-2 state of 1000 sites."""
    return MPS.random(N_LONG, 2, seed=2024, dtype=complex)


@pytest.mark.parametrize("scale", [10.0, 0.1])
def test_log_norm_long_chain(long_state, scale):
    scaled = MPS([t * scale for t in long_state.tensors])  # fresh bookkeeping: not canonical
    assert scaled.center is None
    expected = N_LONG * math.log(scale)  # +-2302.6: exp() would over-/underflow float64
    assert scaled.log_norm() == pytest.approx(expected, rel=1e-12)
    phase, log_abs = scaled.log_inner(scaled)
    assert phase == pytest.approx(1.0) and log_abs == pytest.approx(2 * expected, rel=1e-12)
    other = MPS([t / scale for t in long_state.tensors])
    phase, log_abs = scaled.log_inner(other)  # <psi|psi> = 1 up to the cancelling scales
    assert log_abs == pytest.approx(0.0, abs=1e-9) and phase == pytest.approx(1.0, abs=1e-9)
    assert scaled.fidelity(other) == pytest.approx(1.0, abs=1e-9)
    assert scaled.fidelity(long_state) == pytest.approx(1.0, abs=1e-9)
    scaled.normalize_()
    assert scaled.log_norm() == pytest.approx(0.0, abs=1e-9)
    assert long_state.inner(scaled) == pytest.approx(1.0, abs=1e-9)


def test_random_long_complex_chain_is_normalized():
    psi = MPS.random(2200, 2, dtype=complex, seed=0)
    assert psi.log_norm() == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(psi[0]).all()


def test_log_norm_long_product_state():
    psi = MPS.product_state([np.array([3.0, 4.0])] * N_LONG)
    assert psi.log_norm() == pytest.approx(N_LONG * math.log(5.0), rel=1e-13)
    small = MPS.product_state([np.array([0.06, 0.08])] * N_LONG)
    assert small.log_norm() == pytest.approx(N_LONG * math.log(0.1), rel=1e-13)
    phase, log_abs = psi.log_inner(small)
    assert phase == pytest.approx(1.0) and log_abs == pytest.approx(N_LONG * math.log(0.5), rel=1e-13)
    assert small.norm() == 0.0  # the plain value underflows; the log does not


# --------------------------------------------------------------------------- algebra


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_sub_scale(rng, dtype):
    a = MPS(_random_tensors(rng, MIXED_DIMS, (2, 3, 2), dtype))
    b = MPS.random(4, 3, phys_dim=MIXED_DIMS, dtype=dtype, seed=rng).canonicalize_(2)
    va, vb = a.to_dense(), b.to_dense()
    s = a + b
    assert s.bond_dims == tuple(x + y for x, y in zip(a.bond_dims, b.bond_dims))
    assert_close(s.to_dense(), va + vb, dtype)
    assert_close((a - b).to_dense(), va - vb, dtype)
    assert_close((b - a).to_dense(), vb - va, dtype)
    assert_close((a * 2.5).to_dense(), 2.5 * va, dtype)
    assert_close((2.5 * b).to_dense(), 2.5 * vb, dtype)
    assert_close((b / 4).to_dense(), vb / 4, dtype)
    assert_close((-b).to_dense(), -vb, dtype)
    assert_close((a * np.float64(0.5)).to_dense(), 0.5 * va, dtype)
    scaled = 3.0 * b
    assert scaled.center == 2 and scaled.is_canonical(2)  # scaling the centre keeps the form
    assert scaled.norm() == pytest.approx(3.0 * b.norm())
    assert (a - a).norm() == pytest.approx(0.0, abs=1e-12 * a.norm())


def test_complex_scalar_of_complex_state(rng):
    b = MPS.random(4, 3, dtype=complex, seed=rng).canonicalize_(2)
    assert_close((1j * b).to_dense(), 1j * b.to_dense(), complex)
    assert_close((b * (2 - 1j)).to_dense(), (2 - 1j) * b.to_dense(), complex)


def test_complex_scalar_of_real_state_centre_zero(rng):
    a = MPS.random(4, 3, seed=rng)  # centre 0: the scaled site is the first one
    c = (1 + 2j) * a
    assert c.dtype == np.complex128
    assert_close(c.to_dense(), (1 + 2j) * a.to_dense(), complex)


def test_complex_scalar_of_real_state_reports_complex_dtype(rng):
    a = MPS.random(4, 3, seed=rng).canonicalize_(2)
    c = 1j * a
    assert c.dtype == np.complex128
    assert all(t.dtype == np.complex128 for t in c.tensors)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
def test_sum_with_complex_scaled_real_state(rng):
    a = MPS.random(4, 3, seed=rng)
    b = MPS.random(4, 3, seed=rng).canonicalize_(2)
    assert_close((a + 1j * b).to_dense(), a.to_dense() + 1j * b.to_dense(), complex)


def test_scale_keeps_bookkeeping_valid(rng):
    psi = MPS.random(5, 3, seed=rng).canonicalize_(2)
    psi[4] = np.array(psi[4])  # centre lost: canonical_range == (2, 5)
    assert psi.canonical_range == (2, 5) and psi.center is None
    phi = psi * 2.0
    phi.canonicalize_(4)
    assert phi.norm() == pytest.approx(2.0)
    assert phi.is_canonical(4)


def test_normalize_keeps_bookkeeping_valid(rng):
    psi = MPS.random(5, 3, seed=rng, normalize=False).canonicalize_(2)
    psi[4] = np.array(psi[4]) * 3.0
    assert psi.canonical_range == (2, 5)
    psi.normalize_()
    assert np.linalg.norm(psi.to_dense()) == pytest.approx(1.0)
    psi.canonicalize_(4)
    assert psi.norm() == pytest.approx(1.0)


@pytest.mark.parametrize("scalar", [np.float64(0.5), np.complex128(1j)])
def test_numpy_scalar_times_mps(rng, scalar):
    a = MPS.random(3, 2, dtype=complex, seed=rng)
    assert_close((scalar * a).to_dense(), scalar * a.to_dense(), complex)


def test_add_single_site(rng):
    a = MPS([random_array(rng, (1, 3, 1))])
    b = MPS([random_array(rng, (1, 3, 1), complex)])
    assert_close((a + b).to_dense(), a.to_dense() + b.to_dense(), complex)


def test_algebra_errors(rng):
    a = MPS.random(3, 2, seed=rng)
    with pytest.raises(ValueError, match="same physical dimensions"):
        a + MPS.random(4, 2, seed=rng)
    with pytest.raises(TypeError):
        a + 1.0
    with pytest.raises(TypeError):
        a - "x"
    with pytest.raises(TypeError):
        a * "x"
    with pytest.raises(ValueError, match="cannot scale an MPS by inf"):
        a * np.inf
    with pytest.raises(ValueError, match="cannot scale an MPS"):
        a * np.nan


@pytest.mark.parametrize("dtype", DTYPES)
def test_conj(rng, dtype):
    a = MPS.random(5, 3, dtype=dtype, seed=rng).canonicalize_(3)
    c = a.conj()
    assert_close(c.to_dense(), a.to_dense().conj(), dtype)
    assert c.canonical_range == a.canonical_range and c.is_canonical(3)
    assert_close(c.inner(a), np.vdot(a.to_dense().conj(), a.to_dense()), dtype)

