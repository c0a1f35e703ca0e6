"""Measurements against the dense state: expectations, correlations, RDMs, entanglement."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    DTYPES,
    X,
    Z,
    assert_close,
    dense_apply,
    dense_expectation,
    dense_rdm,
    dense_schmidt_values,
    entropy,
    random_array,
    random_hermitian,
    rdm_entropy,
)

from tnkit import MPS

MIXED = (2, 3, 2, 3, 2)
UNIFORM = (2, 2, 2, 2, 2, 2)


def _state(rng, dims, dtype, max_bond=4, scale=1.7):
    """A random unnormalised state with its centre somewhere in the middle."""
    psi = MPS.random(len(dims), max_bond, phys_dim=dims, dtype=dtype, seed=rng) * scale
    psi.canonicalize_(len(dims) // 2)
    return psi


def _op(rng, d, dtype):
    """Non-Hermitian random operator (complex when dtype is)."""
    return random_array(rng, (d, d), dtype)


PAIRS = [(0, 1), (1, 2), (3, 4), (0, 3), (1, 4), (0, 4), (2, 1), (4, 3), (3, 0), (4, 1), (-1, 0)]


# --------------------------------------------------------------------------- expectations


@pytest.mark.parametrize("dtype", DTYPES)
def test_local_expectation_one_site(rng, dtype):
    psi = _state(rng, MIXED, dtype)
    v = psi.to_dense()
    for i, d in enumerate(MIXED):
        op = _op(rng, d, dtype)
        assert_close(psi.local_expectation(op, i), dense_expectation(v, MIXED, op, i), dtype)
    assert_close(psi.to_dense(), v, dtype)  # measuring changes the gauge, not the state
    herm = random_hermitian(rng, 2, dtype)
    val = psi.local_expectation(herm, -1)
    assert isinstance(val, float)  # Hermitian operators give real numbers
    assert val == pytest.approx(dense_expectation(v, MIXED, herm, 4).real, rel=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sites", PAIRS)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_local_expectation_two_site(rng, dtype, sites, as_tensor):
    psi = _state(rng, MIXED, dtype)
    v = psi.to_dense()
    i, j = (s % len(MIXED) for s in sites)
    di, dj = MIXED[i], MIXED[j]
    op = random_array(rng, (di * dj, di * dj), dtype)
    ref = dense_expectation(v, MIXED, op, (i, j))
    arg = op.reshape(di, dj, di, dj) if as_tensor else op
    assert_close(psi.local_expectation(arg, sites), ref, dtype)


def test_local_expectation_two_site_product_operator(rng):
    psi = _state(rng, UNIFORM, complex)
    v = psi.to_dense()
    a, b = _op(rng, 2, complex), _op(rng, 2, complex)
    # a product operator equals the correlation; on reversed sites the factors swap
    assert_close(psi.local_expectation(np.kron(a, b), (1, 4)), psi.correlation(a, b, 1, 4), complex)
    assert_close(psi.local_expectation(np.kron(a, b), (4, 1)), psi.correlation(a, b, 4, 1), complex)
    ref = dense_expectation(v, UNIFORM, np.kron(b, a), (1, 4))
    assert_close(psi.local_expectation(np.kron(a, b), (4, 1)), ref, complex)


@pytest.mark.parametrize("dtype", DTYPES)
def test_local_expectations(rng, dtype):
    psi = _state(rng, UNIFORM, dtype)
    v = psi.to_dense()
    op = _op(rng, 2, dtype)
    vals = psi.local_expectations(op)
    assert vals.shape == (len(UNIFORM),)
    ref = [dense_expectation(v, UNIFORM, op, i) for i in range(len(UNIFORM))]
    assert_close(vals, ref, dtype)
    z = psi.local_expectations(Z)
    assert z.dtype == np.float64  # real for a Hermitian operator, even on a complex state
    assert_close(z, np.real([dense_expectation(v, UNIFORM, Z, i) for i in range(len(UNIFORM))]))


def test_local_expectation_errors(rng):
    psi = _state(rng, MIXED, np.float64)
    with pytest.raises(ValueError, match=r"`op` must be a \(3, 3\) matrix for this site, got shape \(2, 2\)"):
        psi.local_expectation(np.eye(2), 1)
    with pytest.raises(ValueError, match=r"`op` must be a \(6, 6\) matrix or a \(2, 3, 2, 3\) tensor"):
        psi.local_expectation(np.eye(4), (0, 1))
    with pytest.raises(ValueError, match="must be two different sites"):
        psi.local_expectation(np.eye(4), (2, 2))
    with pytest.raises(IndexError, match=r"`sites` must be a site in \[0, 5\)"):
        psi.local_expectation(np.eye(2), 5)
    with pytest.raises(ValueError, match="found NaN"):
        psi.local_expectation(np.full((2, 2), np.nan), 0)


# --------------------------------------------------------------------------- correlations


def dense_apply_two(v, a, i, b, j):
    """``A_i B_j |v>`` on the MIXED chain."""
    return dense_apply(dense_apply(v, MIXED, b, j), MIXED, a, i)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("connected", [False, True])
def test_correlation(rng, dtype, connected):
    psi = _state(rng, MIXED, dtype)
    v = psi.to_dense()
    n = len(MIXED)
    for i in range(n):
        for j in range(n):
            a, b = _op(rng, MIXED[i], dtype), _op(rng, MIXED[j], dtype)
            if i == j:
                ref = dense_expectation(v, MIXED, a @ b, i)
            else:
                ref = np.vdot(v, dense_apply_two(v, a, i, b, j)) / np.vdot(v, v)
            if connected:
                ref = ref - dense_expectation(v, MIXED, a, i) * dense_expectation(v, MIXED, b, j)
            assert_close(psi.correlation(a, b, i, j, connected=connected), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("connected", [False, True])
def test_correlation_matrix(rng, dtype, connected):
    psi = _state(rng, UNIFORM, dtype)
    v = psi.to_dense()
    a, b = _op(rng, 2, dtype), _op(rng, 2, dtype)
    n = len(UNIFORM)
    mat = psi.correlation_matrix(a, b, connected=connected)
    assert mat.shape == (n, n)
    ref = np.empty((n, n), dtype=complex)
    for i in range(n):
        for j in range(n):
            ref[i, j] = psi.correlation(a, b, i, j, connected=connected)
            if i == j:
                direct = dense_expectation(v, UNIFORM, a @ b, i)
            else:
                direct = np.vdot(v, dense_apply(dense_apply(v, UNIFORM, b, j), UNIFORM, a, i)) / np.vdot(v, v)
            if connected:
                direct -= dense_expectation(v, UNIFORM, a, i) * dense_expectation(v, UNIFORM, b, j)
            assert_close(ref[i, j], direct, dtype)
    assert_close(mat, ref, dtype)


def test_correlation_matrix_real_output(rng):
    psi = _state(rng, UNIFORM, complex)
    mat = psi.correlation_matrix(Z, Z)
    assert mat.dtype == np.float64
    np.testing.assert_allclose(mat, mat.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(mat), 1.0, atol=1e-12)  # Z^2 = 1


def test_correlation_errors(rng):
    psi = _state(rng, MIXED, np.float64)
    with pytest.raises(ValueError, match=r"`op_b` must be a \(3, 3\) matrix"):
        psi.correlation(X, X, 0, 1)
    with pytest.raises(IndexError, match=r"`j` must be a site in \[0, 5\)"):
        psi.correlation(X, X, 0, 7)
    with pytest.raises(ValueError, match=r"same physical dimension on every site, got \[2, 3\]"):
        psi.correlation_matrix(X, X)


# --------------------------------------------------------------------------- density matrices


@pytest.mark.parametrize("dtype", DTYPES)
def test_reduced_density_matrix_one_site(rng, dtype):
    psi = _state(rng, MIXED, dtype)
    v = psi.to_dense()
    for i in range(len(MIXED)):
        rho = psi.reduced_density_matrix(i)
        assert rho.shape == (MIXED[i], MIXED[i])
        assert_close(rho, dense_rdm(v, MIXED, i), dtype)
        assert np.trace(rho) == pytest.approx(1.0)
        np.testing.assert_allclose(rho, rho.conj().T, atol=1e-13)
        assert np.linalg.eigvalsh(rho).min() > -1e-13


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sites", PAIRS)
def test_reduced_density_matrix_two_site(rng, dtype, sites):
    psi = _state(rng, MIXED, dtype)
    v = psi.to_dense()
    i, j = (s % len(MIXED) for s in sites)
    rho = psi.reduced_density_matrix(sites)
    assert rho.shape == (MIXED[i] * MIXED[j],) * 2
    assert_close(rho, dense_rdm(v, MIXED, (i, j)), dtype)
    # consistent with two-site expectations: <O> = tr(rho O)
    op = random_array(rng, rho.shape, dtype)
    assert_close(np.trace(rho @ op), psi.local_expectation(op, sites), dtype)


def test_reduced_density_matrix_errors(rng):
    psi = _state(rng, MIXED, np.float64)
    with pytest.raises(ValueError, match="must be two different sites"):
        psi.reduced_density_matrix((1, 1))
    with pytest.raises(IndexError):
        psi.reduced_density_matrix((0, 9))


# --------------------------------------------------------------------------- entanglement


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", [MIXED, UNIFORM])
def test_schmidt_values_every_bond(rng, dtype, dims):
    psi = _state(rng, dims, dtype, max_bond=5)
    v = psi.to_dense()
    all_bonds = psi.schmidt_values()
    assert len(all_bonds) == len(dims) - 1
    assert_close(psi.to_dense(), v, dtype)  # the sweep regauges, the state is unchanged
    for b in range(len(dims) - 1):
        ref = dense_schmidt_values(v, dims, b)
        s = psi.schmidt_values(b)
        k = min(len(s), len(ref))
        np.testing.assert_allclose(s[:k], ref[:k], atol=1e-12)
        np.testing.assert_allclose(s[k:], 0, atol=1e-12)
        np.testing.assert_allclose(ref[k:], 0, atol=1e-12)
        np.testing.assert_allclose(all_bonds[b][:k], ref[:k], atol=1e-12)
        assert np.sum(s**2) == pytest.approx(1.0)
    np.testing.assert_allclose(psi.schmidt_values(-1)[:2], dense_schmidt_values(v, dims, len(dims) - 2)[:2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_entanglement_entropy(rng, dtype, alpha):
    psi = _state(rng, MIXED, dtype, max_bond=5)
    v = psi.to_dense()
    ref = np.array([entropy(dense_schmidt_values(v, MIXED, b) ** 2, alpha) for b in range(len(MIXED) - 1)])
    ent = psi.entanglement_entropy(alpha=alpha)
    assert ent.shape == (len(MIXED) - 1,)
    np.testing.assert_allclose(ent, ref, atol=1e-11)
    for b in range(len(MIXED) - 1):
        assert psi.entanglement_entropy(b, alpha=alpha) == pytest.approx(ref[b], abs=1e-11)
    # across bond 0 the entropy is that of the one-site reduced density matrix
    assert psi.entanglement_entropy(0) == pytest.approx(rdm_entropy(dense_rdm(v, MIXED, 0)), abs=1e-11)


def test_entanglement_known_states():
    bell = MPS.from_dense(np.array([1, 0, 0, 1]) / np.sqrt(2))
    assert bell.entanglement_entropy(0) == pytest.approx(np.log(2))
    assert bell.entanglement_entropy(0, alpha=2) == pytest.approx(np.log(2))
    assert bell.entanglement_entropy(0, alpha=np.inf) == pytest.approx(np.log(2))
    product = MPS.product_state("0110")
    np.testing.assert_allclose(product.entanglement_entropy(), 0.0, atol=1e-14)
    ghz = MPS.product_state("00000") + MPS.product_state("11111")
    np.testing.assert_allclose(ghz.entanglement_entropy(), np.log(2), atol=1e-12)
    np.testing.assert_allclose(ghz.entanglement_entropy(alpha=0), np.log(2), atol=1e-12)  # Hartley


def test_entanglement_errors():
    psi = MPS.random(4, 2, seed=0)
    with pytest.raises(ValueError, match="`alpha` must be a non-negative number"):
        psi.entanglement_entropy(alpha=-1)
    with pytest.raises(IndexError, match=r"`bond` must be a bond in \[0, 3\)"):
        psi.schmidt_values(3)
    single = MPS.product_state("0")
    with pytest.raises(IndexError, match="one-site MPS has no bonds"):
        single.schmidt_values(0)
    assert single.schmidt_values() == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_mutual_information(rng, dtype):
    psi = _state(rng, MIXED, dtype)
    v = psi.to_dense()
    n = len(MIXED)
    ref = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                ref[i, j] = (
                    rdm_entropy(dense_rdm(v, MIXED, i))
                    + rdm_entropy(dense_rdm(v, MIXED, j))
                    - rdm_entropy(dense_rdm(v, MIXED, (i, j)))
                )
                assert psi.mutual_information(i, j) == pytest.approx(ref[i, j], abs=1e-11)
    mat = psi.mutual_information_matrix()
    np.testing.assert_allclose(mat, ref, atol=1e-11)
    np.testing.assert_array_equal(np.diag(mat), 0.0)
    assert np.all(mat >= -1e-12)


def test_mutual_information_known_states():
    ghz = MPS.product_state("0000") + MPS.product_state("1111")
    mat = ghz.mutual_information_matrix()
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(mat[off], np.log(2), atol=1e-12)  # classical correlations
    bell = MPS.from_dense(np.array([0, 1, -1, 0]) / np.sqrt(2))
    assert bell.mutual_information(0, 1) == pytest.approx(2 * np.log(2))
    np.testing.assert_allclose(MPS.product_state("0101").mutual_information_matrix(), 0, atol=1e-14)


@pytest.mark.parametrize("factor", [10.0, 0.1])
def test_measurements_on_chains_whose_norm_no_tensor_can_hold(factor):
    """1000 sites, every tensor x10 (norm ~1e1000) or x0.1 (~1e-1000): values of the normalised state."""
    from tnkit.errors import NormRangeError

    base = MPS.random(1000, 2, seed=8)
    big = MPS([t * factor for t in base.tensors])
    before = [t.copy() for t in big.tensors]
    with pytest.raises(NormRangeError, match="normalise it first with normalize_"):
        big.canonicalize_(999)
    for a, b in zip(big.tensors, before):  # refused before anything was replaced
        np.testing.assert_array_equal(a, b)
    assert big.log_norm() == pytest.approx(base.log_norm() + 1000 * np.log(factor), rel=1e-12)
    assert big.local_expectation(Z, 500) == pytest.approx(base.local_expectation(Z, 500), abs=1e-10)
    assert big.correlation(Z, Z, 10, 14) == pytest.approx(base.correlation(Z, Z, 10, 14), abs=1e-10)
    np.testing.assert_allclose(big.reduced_density_matrix((3, 5)), base.reduced_density_matrix((3, 5)), atol=1e-10)
    np.testing.assert_allclose(big.entanglement_entropy(), base.entanglement_entropy(), atol=1e-10)
    assert big.entanglement_entropy(400) == pytest.approx(base.entanglement_entropy(400), abs=1e-10)
    samples, log_prob = big.sample(50, seed=3, return_log_prob=True)
    ref_samples, ref_log_prob = base.sample(50, seed=3, return_log_prob=True)
    np.testing.assert_array_equal(samples, ref_samples)
    np.testing.assert_allclose(log_prob, ref_log_prob, atol=1e-9)
    np.testing.assert_allclose(log_prob, np.log(base.probabilities(samples)), atol=1e-9)
    big.normalize_()  # safe at any norm; afterwards the state canonicalises
    assert big.canonicalize_(999).log_norm() == pytest.approx(0.0, abs=1e-10)


def test_centre_norm_beyond_squared_float_range():
    """A centre of norm 1e200 (its square overflows) still gives exact values and log-norm."""
    base = MPS.random(8, 3, seed=1).canonicalize_(4)
    big = base.copy()
    big._set_site(4, big.tensors[4] * 1e200, keeps_isometry=True)
    assert big.log_norm() == pytest.approx(base.log_norm() + 200 * np.log(10), rel=1e-13)
    assert big.local_expectation(Z, 2) == pytest.approx(base.local_expectation(Z, 2), abs=1e-12)
    np.testing.assert_allclose(big.correlation_matrix(Z, Z), base.correlation_matrix(Z, Z), atol=1e-12)
    np.testing.assert_allclose(big.mutual_information_matrix(), base.mutual_information_matrix(), atol=1e-10)
    np.testing.assert_allclose(big.sample(20, seed=0), base.sample(20, seed=0))
