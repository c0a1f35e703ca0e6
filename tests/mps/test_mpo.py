"""MatrixProductOperator against dense numpy matrices.

Every property is checked on small operators whose dense matrix is built directly;
dense indices follow tnkit's order (site 0 the slowest index of rows and columns).
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import tnkit
from tnkit import MPO, MPS
from tnkit.mps import mpo as mpo_module
from tnkit.mps.apply import mpo_product
from tnkit.mps.mpo import balanced_factors
from conftest import random_array as rand
from conftest import assert_close_rtol as assert_close
from conftest import DTYPES, random_mpo
from tnkit.testing import TOL

RTOL = TOL[np.dtype(np.float64)]  # 1e-10, the float64/complex128 entry of the one dtype table


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def rel_frob2(a, b):
    return float(np.linalg.norm(a - b) ** 2 / np.linalg.norm(a) ** 2)


# ----------------------------------------------------------------------------- from_dense


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("out_dims", "in_dims"),
    [
        ((2, 2, 2), (2, 2, 2)),  # square, qubits
        ((3, 2, 4), (3, 2, 4)),  # square, mixed dims
        ((3, 2, 2), (2, 2, 2)),  # rectangular, tall
        ((2, 1, 3), (4, 3, 2)),  # rectangular, a size-1 output leg
        ((5,), (3,)),  # one site
    ],
)
def test_from_dense_exact_given_dims(rng, dtype, out_dims, in_dims):
    a = rand(rng, (math.prod(out_dims), math.prod(in_dims)), dtype)
    w = MPO.from_dense(a, out_dims=out_dims, in_dims=in_dims)
    assert w.out_dims == out_dims and w.in_dims == in_dims
    assert w.n_sites == len(out_dims) == len(w)
    assert w.shape == a.shape
    assert w.dtype == np.dtype(dtype)
    assert_close(w.to_dense(), a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_dense_exact_automatic_balanced_dims(rng, dtype):
    a = rand(rng, (24, 12), dtype)
    w = MPO.from_dense(a, n_sites=3)
    assert w.out_dims == balanced_factors(24, 3) == (4, 3, 2)
    assert w.in_dims == balanced_factors(12, 3) == (3, 2, 2)
    assert_close(w.to_dense(), a)


def test_from_dense_one_dims_list_gives_sites_other_balanced(rng):
    a = rand(rng, (12, 8))
    w = MPO.from_dense(a, out_dims=(3, 2, 2))
    assert w.n_sites == 3 and w.in_dims == (2, 2, 2)
    assert_close(w.to_dense(), a)
    w = MPO.from_dense(a, in_dims=(2, 4))
    assert w.n_sites == 2 and w.out_dims == balanced_factors(12, 2)
    assert_close(w.to_dense(), a)


def test_from_dense_exact_bonds_are_ranks(rng):
    # A Kronecker product has operator Schmidt rank 1 at every bond.
    mats = [rand(rng, (2, 3)), rand(rng, (3, 2)), rand(rng, (2, 2))]
    a = np.kron(np.kron(mats[0], mats[1]), mats[2])
    w = MPO.from_dense(a, out_dims=(2, 3, 2), in_dims=(3, 2, 2))
    assert w.bond_dims == (1, 1)
    assert_close(w.to_dense(), a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bond", [1, 3, 7])
def test_from_dense_truncated_report_is_relative_frobenius_error(rng, dtype, max_bond):
    a = rand(rng, (32, 32), dtype)
    w, report = MPO.from_dense(a, n_sites=5, max_bond=max_bond, return_report=True)
    assert w.max_bond_dim <= max_bond
    err = rel_frob2(a, w.to_dense())
    assert err > 1e-6  # the test truncates something
    assert report.error == pytest.approx(err, rel=1e-9, abs=1e-12)
    assert report.fidelity == pytest.approx(1.0 - report.error)
    assert len(report.discarded) == 4
    assert report.bond_dims == w.bond_dims


def test_from_dense_cutoff_truncates_low_rank_noise(rng):
    exact = MPO.from_dense(rand(rng, (16, 16)), n_sites=4, max_bond=2)
    a = exact.to_dense()
    noisy = a + 1e-9 * rand(rng, a.shape)
    w, report = MPO.from_dense(noisy, n_sites=4, cutoff=1e-12, return_report=True)
    assert w.max_bond_dim == 2
    assert report.error == pytest.approx(rel_frob2(noisy, w.to_dense()), rel=1e-6, abs=1e-20)
    assert report.error <= 3 * 1e-12


def test_from_dense_report_exact_is_zero(rng):
    a = rand(rng, (8, 8))
    w, report = MPO.from_dense(a, n_sites=3, cutoff=0.0, return_report=True)
    assert report.error == pytest.approx(0.0, abs=1e-14)
    assert_close(w.to_dense(), a)


# ----------------------------------------------------------------------------- basics


@pytest.mark.parametrize("dims", [2, (2, 3, 4)])
def test_identity(dims):
    w = MPO.identity(3, dims)
    size = 8 if dims == 2 else 24
    assert w.bond_dims == (1, 1)
    assert_close(w.to_dense(), np.eye(size))
    assert w.trace() == pytest.approx(size)


def test_identity_dtype_and_one_site():
    w = MPO.identity(1, 3, dtype=np.complex128)
    assert w.dtype == np.complex128 and w.bond_dims == ()
    assert_close(w.to_dense(), np.eye(3))


def test_identity_errors():
    with pytest.raises(ValueError, match="n_sites"):
        MPO.identity(0)
    with pytest.raises(ValueError, match="phys_dim"):
        MPO.identity(3, [2, 2])
    with pytest.raises(ValueError, match="phys_dim"):
        MPO.identity(2, 0)


def test_tensors_are_read_only_and_copy_shares(rng):
    w = random_mpo(rng, (2, 2), (2, 2), 3)
    with pytest.raises(ValueError, match="read-only"):
        w.tensors[0][0, 0, 0, 0] = 1.0
    c = w.copy()
    assert all(x is y or np.shares_memory(x, y) for x, y in zip(c.tensors, w.tensors, strict=True))
    assert_close(c.to_dense(), w.to_dense())


def test_constructor_copy_flag(rng):
    arrays = [rand(rng, (1, 2, 2, 3)), rand(rng, (3, 2, 2, 1))]
    w = MPO(arrays, copy=True)
    before = w.to_dense()
    arrays[0][...] = 0.0
    assert_close(w.to_dense(), before)


def test_properties_and_repr(rng):
    w = random_mpo(rng, (3, 2, 4), (2, 2, 2), 5)
    assert w.shape == (24, 8)
    assert w.bond_dims == (5, 5)
    assert w.max_bond_dim == 5
    assert w.num_params == sum(t.size for t in w.tensors)
    assert w[0].shape == (1, 3, 2, 5)
    assert w[-1].shape == (5, 4, 2, 1)
    r = repr(w)
    assert "MatrixProductOperator" in r and "n_sites=3" in r


def test_constructor_promotes_dtype(rng):
    w = MPO([rand(rng, (1, 2, 2, 2)), rand(rng, (2, 2, 2, 1), np.complex128)])
    assert w.dtype == np.complex128
    assert all(t.dtype == np.complex128 for t in w.tensors)


def test_to_dense_max_size(rng):
    w = MPO.identity(4)
    with pytest.raises(ValueError, match="max_size"):
        w.to_dense(max_size=100)


# ----------------------------------------------------------------------------- algebra


@pytest.mark.parametrize("dtype", DTYPES)
def test_dagger_and_h(rng, dtype):
    w = random_mpo(rng, (3, 2, 2), (2, 2, 3), 3, dtype)
    a = w.to_dense()
    assert_close(w.dagger().to_dense(), a.conj().T)
    assert_close(w.H.to_dense(), a.conj().T)
    assert w.H.out_dims == w.in_dims and w.H.in_dims == w.out_dims


@pytest.mark.parametrize("dtype", DTYPES)
def test_trace(rng, dtype):
    w = random_mpo(rng, (2, 3, 2), (2, 3, 2), 4, dtype)
    assert w.trace() == pytest.approx(np.trace(w.to_dense()), rel=RTOL, abs=RTOL)


def test_trace_non_square_raises(rng):
    w = random_mpo(rng, (2, 3), (3, 2), 2)
    with pytest.raises(ValueError, match="square"):
        w.trace()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_sites", [1, 2, 4])
def test_add_sub_scalar(rng, dtype, n_sites):
    dims = (2, 3, 2, 2)[:n_sites]
    a = random_mpo(rng, dims, dims, 3, dtype)
    b = random_mpo(rng, dims, dims, 2, dtype)
    da, db = a.to_dense(), b.to_dense()
    assert_close((a + b).to_dense(), da + db)
    assert_close((a - b).to_dense(), da - db)
    assert_close((-a).to_dense(), -da)
    assert_close((2.5 * a).to_dense(), 2.5 * da)
    assert_close((a * (1 - 2j)).to_dense(), (1 - 2j) * da)
    assert_close((a / 4).to_dense(), da / 4)
    assert_close((a * np.float64(3.0)).to_dense(), 3.0 * da)
    if n_sites > 1:
        assert (a + b).bond_dims == tuple(x + y for x, y in zip(a.bond_dims, b.bond_dims, strict=True))


def test_add_rectangular(rng):
    a = random_mpo(rng, (3, 2), (2, 4), 2)
    b = random_mpo(rng, (3, 2), (2, 4), 3)
    assert_close((a + b).to_dense(), a.to_dense() + b.to_dense())


def test_algebra_errors(rng):
    a = random_mpo(rng, (2, 2), (2, 2), 2)
    b = random_mpo(rng, (2, 3), (2, 3), 2)
    with pytest.raises(ValueError, match="equal dimensions"):
        a + b
    with pytest.raises(ValueError, match="equal dimensions"):
        a - b
    with pytest.raises(TypeError, match="unsupported operand"):
        a + 1.0
    with pytest.raises(TypeError, match="multiply|unsupported operand"):
        a * "x"
    with pytest.raises(ValueError, match="cannot scale"):
        a * np.nan
    with pytest.raises(ValueError, match="cannot scale"):
        a * np.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_mpo_product_exact(rng, dtype):
    a = random_mpo(rng, (2, 3, 2), (3, 2, 2), 3, dtype)  # 12 x 12
    b = random_mpo(rng, (3, 2, 2), (2, 2, 4), 2, dtype)  # 12 x 16
    ref = a.to_dense() @ b.to_dense()
    assert_close((a @ b).to_dense(), ref)
    assert_close(mpo_product(a, b).to_dense(), ref)
    assert (a @ b).bond_dims == (6, 6)
    assert (a @ b).out_dims == a.out_dims and (a @ b).in_dims == b.in_dims


def test_mpo_product_truncated_is_compressed_product(rng):
    a = random_mpo(rng, (2,) * 5, (2,) * 5, 3)
    b = random_mpo(rng, (2,) * 5, (2,) * 5, 3)
    p = mpo_product(a, b, max_bond=4)
    assert p.max_bond_dim <= 4
    ref, _ = mpo_product(a, b).compress(max_bond=4, cutoff=0.0)
    assert_close(p.to_dense(), ref.to_dense())


def test_mpo_product_errors(rng):
    a = random_mpo(rng, (2, 2), (2, 3), 2)
    b = random_mpo(rng, (2, 2), (2, 2), 2)
    with pytest.raises(ValueError, match="cannot multiply"):
        a @ b
    with pytest.raises(TypeError, match="must be MatrixProductOperators"):
        mpo_product(a, np.eye(4))


def test_mpo_with_ndarray_operands_raises_type_error(rng):
    # numpy must defer to the MPO (no elementwise broadcasting over a "sequence").
    a = random_mpo(rng, (2, 2), (2, 2), 2)
    with pytest.raises(TypeError, match="unsupported operand|does not support ufuncs"):
        a @ np.ones(4)
    with pytest.raises(TypeError, match="unsupported operand|does not support ufuncs"):
        np.ones(4) @ a
    with pytest.raises(TypeError, match="unsupported operand|does not support ufuncs"):
        a * np.ones(2)
    with pytest.raises(TypeError, match="unsupported operand|does not support ufuncs"):
        np.ones(2) * a
    assert_close((np.float64(2.0) * a).to_dense(), 2.0 * a.to_dense())
    assert_close((np.complex128(1j) * a).to_dense(), 1j * a.to_dense())


@pytest.mark.parametrize("dtype", DTYPES)
def test_mpo_matmul_mps_exact(rng, dtype):
    w = random_mpo(rng, (3, 2, 2, 2), (2, 2, 3, 2), 3, dtype)
    psi = MPS.random(4, 4, phys_dim=(2, 2, 3, 2), dtype=dtype, seed=rng)
    phi = w @ psi
    assert isinstance(phi, MPS)
    assert phi.phys_dims == w.out_dims
    assert_close(phi.to_dense(), w.to_dense() @ psi.to_dense())
    assert phi.bond_dims == tuple(x * y for x, y in zip(psi.bond_dims, w.bond_dims, strict=True))


def test_mpo_apply_method_matches_apply_mpo(rng):
    w = random_mpo(rng, (2,) * 4, (2,) * 4, 3)
    psi = MPS.random(4, 3, seed=rng)
    a = w.apply(psi, method="dm", max_bond=3)
    b = tnkit.apply_mpo(w, psi, method="dm", max_bond=3)
    assert_close(a.to_dense(), b.to_dense())


# ----------------------------------------------------------------------------- compress


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_bond", [1, 2, 5])
def test_compress_error_is_relative_frobenius_error(rng, dtype, max_bond):
    w = random_mpo(rng, (2, 3, 2, 2, 2), (2, 2, 3, 2, 2), 6, dtype)
    a = w.to_dense()
    c, report = w.compress(max_bond=max_bond, cutoff=0.0)
    assert c.max_bond_dim <= max_bond
    assert c.out_dims == w.out_dims and c.in_dims == w.in_dims
    err = rel_frob2(a, c.to_dense())
    assert err > 1e-8
    assert report.error == pytest.approx(err, rel=1e-8, abs=1e-12)
    assert report.bond_dims == c.bond_dims


def test_compress_sum_is_lossless(rng):
    a = random_mpo(rng, (2,) * 4, (2,) * 4, 2)
    s = a + a + a  # bonds 6, rank 2
    c, report = s.compress()
    assert c.bond_dims == a.bond_dims
    assert report.error == pytest.approx(0.0, abs=1e-14)
    assert_close(c.to_dense(), 3 * a.to_dense())


def test_compress_rejects_bad_options(rng):
    w = random_mpo(rng, (2, 2), (2, 2), 2)
    with pytest.raises(ValueError, match="max_bond"):
        w.compress(max_bond=0)
    with pytest.raises(ValueError, match="cutoff"):
        w.compress(cutoff=1.5)


# ----------------------------------------------------------------------------- expectation


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalize", [True, False])
def test_expectation_vs_dense(rng, dtype, normalize):
    dims = (2, 3, 2, 2)
    w = random_mpo(rng, dims, dims, 3, dtype)
    psi = MPS.random(4, 3, phys_dim=dims, dtype=dtype, seed=rng, normalize=False) * 1.7
    v = psi.to_dense()
    ref = np.vdot(v, w.to_dense() @ v)
    if normalize:
        ref = ref / np.vdot(v, v)
    got = w.expectation(psi, normalize=normalize)
    assert got == pytest.approx(ref, rel=RTOL, abs=RTOL)
    assert psi.expectation(w, normalize=normalize) == pytest.approx(ref, rel=RTOL, abs=RTOL)


def test_expectation_of_hermitian_is_real(rng):
    w = random_mpo(rng, (2,) * 4, (2,) * 4, 2, np.complex128)
    h = w + w.H
    psi = MPS.random(4, 4, dtype=np.complex128, seed=rng)
    e = h.expectation(psi)
    assert isinstance(e, float)
    v = psi.to_dense()
    assert e == pytest.approx(np.vdot(v, h.to_dense() @ v).real, rel=RTOL, abs=RTOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_expectation_matches_dense(rng, dtype):
    w = random_mpo(rng, (2,) * 5, (2,) * 5, 3, dtype)
    psi = MPS.random(5, 3, dtype=dtype, seed=rng, normalize=False)
    v = psi.to_dense()
    ref = np.vdot(v, w.to_dense() @ v)
    phase, log_abs = w.log_expectation(psi)
    assert abs(phase) == pytest.approx(1.0)
    assert log_abs == pytest.approx(math.log(abs(ref)), rel=1e-10, abs=1e-10)
    assert phase * math.exp(log_abs) == pytest.approx(ref, rel=RTOL)


def test_log_expectation_no_overflow_long_chain():
    # <psi|2^N I|psi> with ||psi||^2 = 10^(2N): both far outside float range for N = 400.
    n = 400
    psi = MPS([np.full((1, 2, 1), 10.0 / math.sqrt(2))] * n)
    w = MPO([2.0 * np.eye(2).reshape(1, 2, 2, 1)] * n)
    phase, log_abs = w.log_expectation(psi)
    assert phase == pytest.approx(1.0)
    assert log_abs == pytest.approx(n * math.log(2.0) + 2 * n * math.log(10.0), rel=1e-12)
    assert w.expectation(psi) == pytest.approx(2.0**n, rel=1e-10)


def test_expectation_errors(rng):
    w = random_mpo(rng, (2, 2), (2, 2), 2)
    with pytest.raises(TypeError, match="MatrixProductState"):
        w.expectation(np.ones(4))
    with pytest.raises(ValueError, match="dims"):
        w.expectation(MPS.random(3, 2, seed=rng))
    with pytest.raises(ValueError, match="dims"):
        w.expectation(MPS.random(2, 2, phys_dim=3, seed=rng))
    rect = random_mpo(rng, (3, 2), (2, 2), 2)
    with pytest.raises(ValueError, match="dims"):
        rect.expectation(MPS.random(2, 2, seed=rng))
    with pytest.raises(TypeError, match="MatrixProductOperator"):
        MPS.random(2, 2, seed=rng).expectation(np.eye(4))


# ----------------------------------------------------------------------------- balanced_factors


def test_balanced_factors_doctest_examples():
    # Regression: a greedy prime-dealing rule gave (12, 8, 6) and (12, 6).
    assert balanced_factors(576, 3) == (9, 8, 8)
    assert balanced_factors(72, 2) == (9, 8)


@pytest.mark.parametrize(
    ("n", "k"),
    [(1, 1), (1, 3), (7, 2), (12, 2), (64, 3), (576, 3), (1024, 5), (30, 4), (2 * 3 * 5 * 7 * 11, 3)],
)
def test_balanced_factors_properties(n, k):
    f = balanced_factors(n, k)
    assert len(f) == k
    assert math.prod(f) == n
    assert list(f) == sorted(f, reverse=True)
    assert all(isinstance(x, int) and x >= 1 for x in f)


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        (64, 3, (4, 4, 4)),
        (1024, 5, (4, 4, 4, 4, 4)),
        (7, 3, (7, 1, 1)),
        (36, 2, (6, 6)),
        (256, 4, (4, 4, 4, 4)),
        (24, 3, (4, 3, 2)),
        (12, 2, (4, 3)),
    ],
)
def test_balanced_factors_balance(n, k, expected):
    assert balanced_factors(n, k) == expected


def _most_balanced_max_factor(n: int, k: int) -> int:
    """Smallest possible largest factor over all factorisations of ``n`` into ``k`` factors (brute force)."""
    if k == 1:
        return n
    return min(max(d, _most_balanced_max_factor(n // d, k - 1)) for d in range(1, n + 1) if n % d == 0)


def _all_factorisations(n: int, k: int, largest: int | None = None):
    """Every descending factorisation of ``n`` into ``k`` factors (brute force)."""
    largest = n if largest is None else largest
    if k == 1:
        if n <= largest:
            yield (n,)
        return
    for d in range(min(n, largest), 0, -1):
        if n % d == 0:
            for rest in _all_factorisations(n // d, k - 1, d):
                yield (d, *rest)


@pytest.mark.parametrize(
    ("n", "k"), [(72, 2), (576, 3), (360, 3), (64, 3), (100, 2), (210, 3), (48, 4), (97, 2), (180, 2), (1, 2)]
)
def test_balanced_factors_is_lexicographically_smallest(n, k):
    f = balanced_factors(n, k)
    assert f == min(_all_factorisations(n, k))
    assert max(f) == _most_balanced_max_factor(n, k)


def test_balanced_factors_exhaustive_small():
    for n in range(1, 200):
        for k in range(1, 4):
            assert balanced_factors(n, k) == min(_all_factorisations(n, k)), (n, k)


def test_balanced_factors_errors():
    with pytest.raises(ValueError, match="`n`"):
        balanced_factors(0, 2)
    with pytest.raises(ValueError, match="n_factors"):
        balanced_factors(4, 0)
    with pytest.raises(TypeError, match="integer"):
        balanced_factors(4.0, 2)


def test_module_doctests():
    result = doctest.testmod(mpo_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4
    assert result.failed == 0


# ----------------------------------------------------------------------------- input errors


def test_constructor_errors(rng):
    with pytest.raises(ValueError, match="at least one"):
        MPO([])
    with pytest.raises(ValueError, match="4 dimensions"):
        MPO([np.ones((1, 2, 1))])
    with pytest.raises(ValueError, match="bond 0"):
        MPO([rand(rng, (1, 2, 2, 3)), rand(rng, (2, 2, 2, 1))])
    with pytest.raises(ValueError, match="outer bonds"):
        MPO([rand(rng, (2, 2, 2, 2)), rand(rng, (2, 2, 2, 1))])
    with pytest.raises(ValueError, match="outer bonds"):
        MPO([rand(rng, (1, 2, 2, 2)), rand(rng, (2, 2, 2, 2))])
    bad = rand(rng, (1, 2, 2, 1))
    bad[0, 1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MPO([bad])
    with pytest.raises(TypeError, match="numbers"):
        MPO([np.array([[[["a"]]]])])


def test_from_dense_errors(rng):
    a = rand(rng, (8, 4))
    with pytest.raises(ValueError, match="n_sites"):
        MPO.from_dense(a)
    with pytest.raises(ValueError, match="2 dimensions"):
        MPO.from_dense(a.reshape(-1), n_sites=2)
    with pytest.raises(ValueError, match="out_dims"):
        MPO.from_dense(a, out_dims=(2, 2), in_dims=(2, 2))  # product 4 != 8
    with pytest.raises(ValueError, match="in_dims"):
        MPO.from_dense(a, out_dims=(2, 2, 2), in_dims=(2, 2))  # wrong length
    with pytest.raises(ValueError, match="in_dims"):
        MPO.from_dense(a, n_sites=3, in_dims=(4, 1))
    with pytest.raises(ValueError, match="out_dims"):
        MPO.from_dense(a, out_dims=(8, 0, 1), in_dims=(4, 1, 1))
    with pytest.raises(TypeError, match="out_dims"):
        MPO.from_dense(a, out_dims=(2.0, 4), in_dims=(2, 2))
    with pytest.raises(ValueError, match="n_sites"):
        MPO.from_dense(a, n_sites=0)
    nan = a.copy()
    nan[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MPO.from_dense(nan, n_sites=2)
    with pytest.raises(ValueError, match="max_bond"):
        MPO.from_dense(a, n_sites=2, max_bond=0)


def test_apply_dims_mismatch(rng):
    w = random_mpo(rng, (2, 2, 2), (2, 3, 2), 2)
    with pytest.raises(ValueError, match="dims"):
        w @ MPS.random(3, 2, seed=rng)
    with pytest.raises(ValueError, match="dims"):
        w @ MPS.random(2, 2, phys_dim=(2, 3), seed=rng)
