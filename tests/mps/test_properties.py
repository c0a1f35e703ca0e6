"""Property-based invariants of small random MPS (hypothesis, optional extra).

Each example is a seeded random MPS: hypothesis draws the sizes and the seed, numpy
draws the entries, so every failure is reproducible from the printed example.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import dense_fidelity, rel_err2  # noqa: E402

from tnkit import MPS  # noqa: E402
from tnkit.core.linalg import truncated_svd  # noqa: E402
from tnkit.mps.canonical import left_isometry_error, right_isometry_error  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def small_mps(draw, normalize=None):
    """A random MPS: 2..7 sites, physical dims 2..3, bond 1..6, real or complex."""
    n = draw(st.integers(2, 7), label="n_sites")
    dims = tuple(draw(st.lists(st.integers(2, 3), min_size=n, max_size=n), label="phys_dims"))
    bond = draw(st.integers(1, 6), label="max_bond")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    dtype = draw(st.sampled_from([np.float64, np.complex128]), label="dtype")
    norm = draw(st.booleans(), label="normalize") if normalize is None else normalize
    psi = MPS.random(n, bond, phys_dim=dims, dtype=dtype, seed=seed, normalize=norm)
    return psi if norm else psi * 3.0


@SETTINGS
@given(psi=small_mps(), data=st.data())
def test_canonical_tensors_are_isometries_and_norm_is_kept(psi, data):
    center = data.draw(st.integers(0, psi.n_sites - 1), label="center")
    v = psi.to_dense()
    psi.canonicalize_(center)
    t = psi.tensors
    for i in range(center):
        assert left_isometry_error(t[i]) < 1e-12
    for i in range(center + 1, psi.n_sites):
        assert right_isometry_error(t[i]) < 1e-12
    assert psi.is_canonical(center)
    assert psi.norm() == pytest.approx(np.linalg.norm(v), rel=1e-12)
    assert psi.log_norm() == pytest.approx(np.log(np.linalg.norm(v)), abs=1e-12)
    np.testing.assert_allclose(psi.to_dense(), v, atol=1e-12 * np.linalg.norm(v))


@SETTINGS
@given(psi=small_mps(), max_bond=st.integers(1, 6), data=st.data())
def test_svd_truncation_error_is_discarded_weight(psi, max_bond, data):
    cutoff = data.draw(st.sampled_from([1e-20, 1e-3, 0.05]), label="cutoff")
    v = psi.to_dense()
    phi, report = psi.compress(max_bond=max_bond, cutoff=cutoff)
    w = phi.to_dense()
    assert phi.max_bond_dim <= max_bond
    assert report.error == pytest.approx(sum(report.discarded), abs=1e-14)
    assert report.error == pytest.approx(rel_err2(v, w), abs=1e-11)
    assert report.fidelity == pytest.approx(dense_fidelity(v, w), abs=1e-11)
    assert phi.norm() ** 2 == pytest.approx((1 - report.error) * psi.norm() ** 2, rel=1e-10, abs=1e-14)


@SETTINGS
@given(psi=small_mps())
def test_dense_round_trip(psi):
    v = psi.to_dense()
    back = MPS.from_dense(v, psi.phys_dims)
    np.testing.assert_allclose(back.to_dense(), v, atol=1e-12 * np.linalg.norm(v))
    # TT-SVD finds the minimal bonds, never more than the original ones
    assert all(b <= a for a, b in zip(psi.bond_dims, back.bond_dims))
    assert back.fidelity(psi) == pytest.approx(1.0, abs=1e-12)


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    seed=st.integers(0, 2**32 - 1),
    complex_=st.booleans(),
)
def test_split_then_contract_is_identity(shape, seed, complex_):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal(shape)
    if complex_:
        m = m + 1j * rng.standard_normal(shape)
    u, s, vh, discarded = truncated_svd(m)
    assert discarded == 0.0
    np.testing.assert_allclose((u * s) @ vh, m, atol=1e-12 * np.linalg.norm(m))


@SETTINGS
@given(psi=small_mps(normalize=True), data=st.data())
def test_two_site_unitary_preserves_norm_and_form(psi, data):
    i = data.draw(st.integers(0, psi.n_sites - 1), label="i")
    j = data.draw(st.integers(0, psi.n_sites - 1).filter(lambda k: k != i), label="j")
    d = psi.phys_dims[i] * psi.phys_dims[j]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="gate_seed"))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)) + 1j * rng.standard_normal((d, d)))
    psi.apply_gate_(q, (i, j))
    assert psi.norm() == pytest.approx(1.0, abs=1e-12)
    assert psi.is_canonical()
