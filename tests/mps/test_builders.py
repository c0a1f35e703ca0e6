"""MPO builders against dense sums of Kronecker products (and quimb's Heisenberg MPO)."""

from __future__ import annotations

import doctest
import itertools
from functools import reduce

import numpy as np
import pytest

import tnkit
from tnkit import MPO
from tnkit.mps import builders
from tnkit.mps.builders import (
    heisenberg_mpo,
    mpo_from_terms,
    pauli_operators,
    spin_operators,
    tfim_mpo,
    xxz_mpo,
)
from tnkit.testing import TOL

RTOL = TOL[np.dtype(np.float64)]  # 1e-10, the float64/complex128 entry of the one dtype table
P = pauli_operators()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(31415)


def rand(rng, shape, dtype=np.float64):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def assert_close(actual, desired, rtol=RTOL):
    desired = np.asarray(desired)
    scale = max(float(np.abs(desired).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


def dense_product(dims, ops: dict) -> np.ndarray:
    """``prod_i ops[i]`` on the full space (identity where no operator), site 0 slowest."""
    return reduce(np.kron, [np.asarray(ops.get(i, np.eye(d))) for i, d in enumerate(dims)])


def dense_sum(dims, terms) -> np.ndarray:
    size = int(np.prod(dims))
    out = np.zeros((size, size), dtype=complex)
    for coef, ops in terms:
        out += coef * dense_product(dims, dict(ops))
    return out


def dense_chain(n, couplings, fields, ops_dim=2) -> np.ndarray:
    """``sum_i sum_(c, A, B) c A_i B_{i+1} + sum_i sum_(c, O) c O_i``."""
    terms = []
    for i in range(n - 1):
        terms += [(c, {i: a, i + 1: b}) for c, a, b in couplings]
    for i in range(n):
        terms += [(c, {i: o}) for c, o in fields]
    return dense_sum((ops_dim,) * n, terms)


# ----------------------------------------------------------------------------- mpo_from_terms


def test_docstring_examples():
    result = doctest.testmod(builders)
    assert result.attempted >= 2
    assert result.failed == 0


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_random_terms_uniform_dims(rng, dtype):
    n, d = 5, 2
    terms = []
    for sites in [
        (0,),
        (3,),
        (0, 1),
        (1, 2),
        (0, 4),
        (1, 3),
        (0, 2, 4),
        (1, 2, 3, 4),
        (2, 4),
        (0, 1, 2, 3, 4),
    ]:
        coef = (
            complex(rng.standard_normal(), rng.standard_normal())
            if dtype == np.complex128
            else rng.standard_normal()
        )
        terms.append((coef, {s: rand(rng, (d, d), dtype) for s in sites}))
    h = mpo_from_terms(terms, d, n_sites=n)
    assert h.dtype == np.dtype(dtype)
    assert_close(h.to_dense(), dense_sum((d,) * n, terms))


def test_long_range_terms_with_identity_gaps(rng):
    n = 6
    a, b = rand(rng, (2, 2)), rand(rng, (2, 2))
    terms = [(0.7, {0: a, 5: b}), (-1.3, {1: b, 4: a}), (2.0, {0: P["Z"], 3: P["Z"]})]
    h = mpo_from_terms(terms, 2, n_sites=6)
    ref = dense_sum((2,) * n, terms)
    assert_close(h.to_dense(), ref)
    # The explicit check of one gap: Z (x) 1 (x) 1 (x) Z (x) 1 (x) 1.
    zz = reduce(np.kron, [P["Z"], np.eye(2), np.eye(2), P["Z"], np.eye(2), np.eye(2)])
    assert_close(mpo_from_terms([(1.0, {0: P["Z"], 3: P["Z"]})], 2, n_sites=6).to_dense(), zz)


def test_site_dependent_dims_and_complex_coefficients(rng):
    dims = (2, 3, 4, 2)
    terms = [
        (1.5 - 0.5j, {0: rand(rng, (2, 2)), 2: rand(rng, (4, 4))}),
        (0.25j, {1: rand(rng, (3, 3), np.complex128)}),
        (-2.0, [(3, rand(rng, (2, 2))), (1, rand(rng, (3, 3)))]),  # pairs, given out of order
        (3, {0: np.eye(2), 1: np.eye(3), 2: np.eye(4), 3: np.eye(2)}),  # int coefficient
        (1e-3 + 2j, {2: rand(rng, (4, 4)), 3: rand(rng, (2, 2))}),
    ]
    h = mpo_from_terms(terms, dims)
    assert h.out_dims == dims and h.in_dims == dims
    assert h.dtype == np.complex128
    assert_close(h.to_dense(), dense_sum(dims, terms))


def test_from_terms_classmethod(rng):
    terms = [(1.0, {0: P["X"], 1: P["X"]}), (0.5, {2: P["Z"]})]
    assert_close(MPO.from_terms(terms, 2, 3).to_dense(), mpo_from_terms(terms, 2, n_sites=3).to_dense())
    assert_close(MPO.from_terms(terms, [2, 2, 2]).to_dense(), dense_sum((2, 2, 2), terms))


def test_real_operators_give_real_dtype():
    h = mpo_from_terms([(1.0, {0: P["X"], 1: P["X"]}), (2, {1: P["Z"]})], 2, n_sites=2)
    assert h.dtype == np.float64
    h = mpo_from_terms([(1.0, {0: P["Y"], 1: P["Y"]})], 2, n_sites=2)
    assert h.dtype == np.complex128
    assert_close(h.to_dense(), np.kron(P["Y"], P["Y"]))


def test_one_site_chain_and_empty_sum():
    h = mpo_from_terms([(2.0, {0: P["X"]}), (-1.0, {0: P["Z"]})], 2, n_sites=1)
    assert_close(h.to_dense(), 2 * P["X"] - P["Z"])
    zero = mpo_from_terms([], 3, n_sites=3)
    assert_close(zero.to_dense(), np.zeros((27, 27)))


def test_bond_dimension_counts_crossing_terms():
    # 2 + number of terms whose support crosses each bond.
    terms = [(1.0, {0: P["X"], 3: P["X"]}), (1.0, {1: P["Z"], 2: P["Z"]}), (1.0, {0: P["Z"]})]
    h = mpo_from_terms(terms, 2, n_sites=4)
    assert h.bond_dims == (3, 4, 3)


def test_terms_are_not_compressed_large_coefficients():
    # No SVD: a huge and a tiny coefficient are both exact.
    terms = [(1e12, {0: P["Z"], 1: P["Z"]}), (1e-12, {0: P["X"], 1: P["X"]})]
    h = mpo_from_terms(terms, 2, n_sites=2)
    d = h.to_dense()
    np.testing.assert_allclose(
        d, 1e12 * np.kron(P["Z"], P["Z"]) + 1e-12 * np.kron(P["X"], P["X"]), rtol=1e-15, atol=0
    )


def test_terms_iterable_generator(rng):
    ops = [rand(rng, (2, 2)) for _ in range(4)]
    gen = ((float(i + 1), {i: ops[i], i + 1: ops[i + 1]}) for i in range(3))
    h = mpo_from_terms(gen, 2, n_sites=4)
    terms = [(float(i + 1), {i: ops[i], i + 1: ops[i + 1]}) for i in range(3)]
    assert_close(h.to_dense(), dense_sum((2,) * 4, terms))


# ----------------------------------------------------------------------------- model Hamiltonians


@pytest.mark.parametrize("n", [1, 2, 3, 6])
@pytest.mark.parametrize(("j", "h"), [(1.0, 0.0), ((0.3, -1.2, 0.8), 0.45), (-0.5, -1.0)])
def test_heisenberg_spin_half_vs_dense(n, j, h):
    s = spin_operators(0.5)
    jx, jy, jz = (j, j, j) if np.ndim(j) == 0 else j
    ref = dense_chain(
        n, [(jx, s["Sx"], s["Sx"]), (jy, s["Sy"], s["Sy"]), (jz, s["Sz"], s["Sz"])], [(h, s["Sz"])]
    )
    mpo = heisenberg_mpo(n, j=j, h=h)
    assert mpo.dtype == np.float64  # the Sy Sy term is kept real
    assert_close(mpo.to_dense(), ref)


@pytest.mark.parametrize("spin", [1.0, 1.5])
def test_heisenberg_higher_spin_vs_dense(spin):
    n = 3
    s = spin_operators(spin)
    d = int(2 * spin + 1)
    ref = dense_chain(
        n,
        [(1.0, s["Sx"], s["Sx"]), (0.5, s["Sy"], s["Sy"]), (2.0, s["Sz"], s["Sz"])],
        [(0.3, s["Sz"])],
        ops_dim=d,
    )
    mpo = heisenberg_mpo(n, j=(1.0, 0.5, 2.0), h=0.3, spin=spin)
    assert mpo.out_dims == (d,) * n
    assert_close(mpo.to_dense(), ref)


def test_heisenberg_pauli_vs_dense():
    n = 4
    ref = dense_chain(
        n, [(1.0, P["X"], P["X"]), (2.0, P["Y"], P["Y"]), (3.0, P["Z"], P["Z"])], [(0.5, P["Z"])]
    )
    assert_close(heisenberg_mpo(n, j=(1.0, 2.0, 3.0), h=0.5, spin=None).to_dense(), ref)


@pytest.mark.parametrize("spin", [0.5, None])
def test_xxz_vs_dense(spin):
    n = 5
    ops = spin_operators(0.5) if spin else {"Sx": P["X"], "Sy": P["Y"], "Sz": P["Z"]}
    j, delta, h = 0.8, -1.7, 0.2
    ref = dense_chain(
        n,
        [(j, ops["Sx"], ops["Sx"]), (j, ops["Sy"], ops["Sy"]), (j * delta, ops["Sz"], ops["Sz"])],
        [(h, ops["Sz"])],
    )
    assert_close(xxz_mpo(n, delta=delta, j=j, h=h, spin=spin).to_dense(), ref)
    assert_close(tnkit.xxz_mpo(n, delta=delta, j=j, h=h, spin=spin).to_dense(), ref)


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize(("j", "h"), [(1.0, 1.0), (0.7, -0.3), (-1.0, 2.5)])
def test_tfim_vs_dense(n, j, h):
    ref = dense_chain(n, [(-j, P["Z"], P["Z"])], [(-h, P["X"])])
    mpo = tfim_mpo(n, j=j, h=h)
    assert mpo.dtype == np.float64
    assert_close(mpo.to_dense(), ref)


def test_tfim_known_ground_state_energy():
    # Critical TFIM (j = h = 1), open chain of 8: E0 = 1 - 1/sin(pi / (2 (2N + 1))).
    n = 8
    e0 = np.linalg.eigvalsh(tfim_mpo(n).to_dense())[0]
    assert e0 == pytest.approx(1 - 1 / np.sin(np.pi / (2 * (2 * n + 1))), rel=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7])
def test_heisenberg_equals_quimb_exactly(n):
    qtn = pytest.importorskip("quimb.tensor")
    np.testing.assert_array_equal(heisenberg_mpo(n).to_dense(), qtn.MPO_ham_heis(n).to_dense())


def test_heisenberg_matches_quimb_anisotropic_field_and_spin_one():
    qtn = pytest.importorskip("quimb.tensor")
    # quimb's field enters as -bz Sz.
    assert_close(
        heisenberg_mpo(4, j=(1.0, 2.0, 3.0), h=0.7).to_dense(),
        qtn.MPO_ham_heis(4, j=(1.0, 2.0, 3.0), bz=-0.7).to_dense(),
    )
    assert_close(heisenberg_mpo(4, spin=1).to_dense(), qtn.MPO_ham_heis(4, S=1).to_dense())


def test_bond_dimensions():
    assert heisenberg_mpo(6).bond_dims == (5,) * 5
    assert heisenberg_mpo(6, h=1.0, spin=1).bond_dims == (5,) * 5
    assert xxz_mpo(4, delta=0.5).bond_dims == (5,) * 3
    assert tfim_mpo(6).bond_dims == (3,) * 5
    assert heisenberg_mpo(4, j=(1.0, 0.0, 1.0)).bond_dims == (4,) * 3  # zero couplings are skipped
    assert xxz_mpo(4, delta=0.0).bond_dims == (4,) * 3
    assert heisenberg_mpo(1).bond_dims == ()


def test_hamiltonians_are_hermitian():
    for h in [heisenberg_mpo(4, j=(1, 2, 3), h=0.1), tfim_mpo(4, h=0.3), heisenberg_mpo(3, spin=1.5)]:
        d = h.to_dense()
        assert_close(d, d.conj().T)
        assert_close(h.H.to_dense(), d)


def test_builder_errors():
    with pytest.raises(ValueError, match="n_sites"):
        heisenberg_mpo(0)
    with pytest.raises(TypeError, match="n_sites"):
        tfim_mpo(2.0)
    with pytest.raises(ValueError, match="spin"):
        heisenberg_mpo(3, spin=0.3)


# ----------------------------------------------------------------------------- spin operators


def commutator(a, b):
    return a @ b - b @ a


@pytest.mark.parametrize("spin", [0.5, 1, 1.5, 2])
def test_spin_operator_algebra(spin):
    s = spin_operators(spin)
    d = int(round(2 * spin)) + 1
    sx, sy, sz, sp, sm = s["Sx"], s["Sy"], s["Sz"], s["Sp"], s["Sm"]
    for m in (sx, sy, sz, sp, sm, s["I"]):
        assert m.shape == (d, d)
    assert_close(s["I"], np.eye(d))
    # su(2) commutation relations
    assert_close(commutator(sx, sy), 1j * sz)
    assert_close(commutator(sy, sz), 1j * sx)
    assert_close(commutator(sz, sx), 1j * sy)
    assert_close(commutator(sz, sp), sp)
    assert_close(commutator(sz, sm), -sm)
    assert_close(commutator(sp, sm), 2 * sz)
    # Casimir, ladder operators, Hermiticity, basis order m = S, ..., -S
    assert_close(sx @ sx + sy @ sy + sz @ sz, spin * (spin + 1) * np.eye(d))
    assert_close(sp, sx + 1j * sy)
    assert_close(sm, sp.conj().T)
    for m in (sx, sy, sz):
        assert_close(m, m.conj().T)
    assert_close(np.diag(sz), spin - np.arange(d))
    assert_close(np.linalg.eigvalsh(sx)[::-1], spin - np.arange(d))


def test_spin_half_is_half_pauli():
    s = spin_operators(0.5)
    assert_close(s["Sx"], P["X"] / 2)
    assert_close(s["Sy"], P["Y"] / 2)
    assert_close(s["Sz"], P["Z"] / 2)
    assert_close(s["Sp"], np.array([[0, 1], [0, 0]]))


def test_pauli_operators():
    x, y, z, i = P["X"], P["Y"], P["Z"], P["I"]
    assert_close(x @ y, 1j * z)
    for m in (x, y, z):
        assert_close(m @ m, i)
    # each call returns fresh arrays
    a = pauli_operators()
    a["X"][0, 0] = 5.0
    assert pauli_operators()["X"][0, 0] == 0.0


@pytest.mark.parametrize("spin", [0, -0.5, 0.25, 1.2])
def test_spin_operators_bad_spin(spin):
    with pytest.raises(ValueError, match="spin"):
        spin_operators(spin)


# ----------------------------------------------------------------------------- bad terms


def test_bad_terms():
    x = P["X"]
    with pytest.raises(TypeError, match=r"terms\[0\]"):
        mpo_from_terms([(1.0,)], 2, n_sites=2)
    with pytest.raises(TypeError, match=r"terms\[1\]"):
        mpo_from_terms([(1.0, {0: x}), 5], 2, n_sites=2)
    with pytest.raises(TypeError, match="coefficient"):
        mpo_from_terms([("a", {0: x})], 2, n_sites=2)
    with pytest.raises(TypeError, match="coefficient"):
        mpo_from_terms([(np.ones(2), {0: x})], 2, n_sites=2)
    with pytest.raises(IndexError, match="site"):
        mpo_from_terms([(1.0, {2: x})], 2, n_sites=2)
    with pytest.raises(TypeError, match="site"):
        mpo_from_terms([(1.0, {0.5: x})], 2, n_sites=2)
    with pytest.raises(ValueError, match="twice"):
        mpo_from_terms([(1.0, [(0, x), (0, x)])], 2, n_sites=2)
    with pytest.raises(ValueError, match="twice"):
        mpo_from_terms([(1.0, [(1, x), (-1, x)])], 2, n_sites=2)  # -1 is site 1
    with pytest.raises(ValueError, match="no site"):
        mpo_from_terms([(1.0, {})], 2, n_sites=2)
    with pytest.raises(ValueError, match="shape"):
        mpo_from_terms([(1.0, {0: np.eye(3)})], 2, n_sites=2)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        mpo_from_terms([(1.0, {1: x})], (2, 3), n_sites=2)
    with pytest.raises(ValueError, match="2 dimensions"):
        mpo_from_terms([(1.0, {0: np.ones(2)})], 2, n_sites=2)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mpo_from_terms([(1.0, {0: bad})], 2, n_sites=2)


def test_non_finite_coefficient_rejected():
    with pytest.raises((TypeError, ValueError), match="finite"):
        mpo_from_terms([(np.nan, {0: P["X"]})], 2, n_sites=2)
    with pytest.raises((TypeError, ValueError), match="finite"):
        mpo_from_terms([(complex(np.inf, 0), {0: P["X"]})], 2, n_sites=2)


def test_non_finite_coefficient_is_value_error():
    with pytest.raises(ValueError, match="finite"):
        mpo_from_terms([(np.nan, {0: P["X"]})], 2, n_sites=2)


def test_bad_phys_dims():
    with pytest.raises(ValueError, match="n_sites"):
        mpo_from_terms([], 2)
    with pytest.raises(ValueError, match="phys_dims"):
        mpo_from_terms([], (2, 2), n_sites=3)
    with pytest.raises(ValueError, match="phys_dims"):
        mpo_from_terms([], ())
    with pytest.raises(ValueError, match="phys_dims"):
        mpo_from_terms([], 0, n_sites=2)
    with pytest.raises(TypeError, match="phys_dims"):
        mpo_from_terms([], (2, 2.5))


def test_all_terms_checked_before_building():
    # every term is validated, whatever its position
    terms = [(1.0, {i: P["X"], i + 1: P["X"]}) for i in range(3)] + [(1.0, {1: np.eye(3)})]
    with pytest.raises(ValueError, match=r"terms\[3\]"):
        mpo_from_terms(terms, 2, n_sites=4)


def test_identity_terms_sum():
    # sum of identities on every site = n * 1
    n = 4
    terms = [(1.0, {i: np.eye(2)}) for i in range(n)]
    assert_close(mpo_from_terms(terms, 2, n_sites=n).to_dense(), n * np.eye(2**n))
    # all subsets of two sites, to exercise many crossing states at once
    pair_terms = [(1.0, {i: P["Z"], j: P["Z"]}) for i, j in itertools.combinations(range(n), 2)]
    h = mpo_from_terms(pair_terms, 2, n_sites=n)
    assert_close(h.to_dense(), dense_sum((2,) * n, pair_terms))
