"""Clear errors before any work: the zero state, unsupported dtypes, oversized requests.

Also the public engine contract the products build on: trusted construction and
adopting a verified canonical range.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tnkit import MPO, MPS
from tnkit.core.validate import DEFAULT_MAX_BYTES
from tnkit.mps.builders import heisenberg_mpo
from tnkit.ttn import TTN, Tree

X = np.array([[0.0, 1.0], [1.0, 0.0]])


# ----------------------------------------------------------------------------- the zero state


@pytest.fixture
def zero() -> MPS:
    return MPS([np.zeros((1, 2, 1))] * 4)


ZERO_CALLS = {
    "expectation": lambda z: z.expectation(heisenberg_mpo(4)),
    "sample": lambda z: z.sample(3, seed=0),
    "probabilities": lambda z: z.probabilities([[0, 0, 0, 0]]),
    "local_expectation": lambda z: z.local_expectation(X, 1),
    "local_expectations": lambda z: z.local_expectations(X),
    "correlation": lambda z: z.correlation(X, X, 0, 2),
    "correlation_matrix": lambda z: z.correlation_matrix(X, X),
    "reduced_density_matrix": lambda z: z.reduced_density_matrix((0, 1)),
    "schmidt_values": lambda z: z.schmidt_values(1),
    "entanglement_entropy": lambda z: z.entanglement_entropy(),
    "mutual_information": lambda z: z.mutual_information(0, 2),
    "normalize_": lambda z: z.normalize_(),
}


@pytest.mark.parametrize("call", list(ZERO_CALLS.values()), ids=list(ZERO_CALLS))
def test_zero_state_is_refused_clearly(zero, call):
    with pytest.raises(ValueError, match="zero"):
        call(zero)


def test_zero_state_from_scaling_by_zero_is_refused():
    psi = MPS.random(5, 3, seed=0) * 0
    assert psi.log_norm() == -math.inf
    with pytest.raises(ValueError, match="zero vector"):
        psi.sample(2, seed=0)


def test_zero_ttn_is_refused_clearly():
    z = TTN.random(Tree.balanced(4), 2, 2, seed=0) * 0
    for call in (
        lambda: z.sample(2, seed=0),
        lambda: z.probabilities([[0, 0, 0, 0]]),
        lambda: z.expectation(X, 1),
        lambda: z.entropies(),
        lambda: z.schmidt_values(4),
    ):
        with pytest.raises(ValueError, match="zero"):
            call()


def test_unnormalised_expectation_of_zero_state_is_zero(zero):
    assert zero.expectation(heisenberg_mpo(4), normalize=False) == 0.0


# ----------------------------------------------------------------------------- dtypes

BAD_DTYPES = [np.float16, np.longdouble, np.clongdouble, object, str]


@pytest.mark.parametrize("dtype", BAD_DTYPES + [int, bool], ids=str)
def test_dtype_argument_outside_engine_types_is_refused(dtype):
    match = "`dtype` must be float32, float64, complex64 or complex128"
    with pytest.raises(TypeError, match=match):
        MPS.product_state("01", dtype=dtype)
    with pytest.raises(TypeError, match=match):
        MPS.random(3, 2, dtype=dtype)
    with pytest.raises(TypeError, match=match):
        MPO.identity(3, dtype=dtype)
    with pytest.raises(TypeError, match=match):
        TTN.random(Tree.balanced(4), 2, 2, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.clongdouble], ids=str)
def test_tensor_arrays_of_unsupported_float_types_are_refused(dtype):
    with pytest.raises(TypeError, match=r"`tensors\[0\]\.dtype` must be float32"):
        MPS([np.ones((1, 2, 1), dtype=dtype)])
    with pytest.raises(TypeError, match=r"`tensors\[0\]\.dtype` must be float32"):
        MPO([np.ones((1, 2, 2, 1), dtype=dtype)])
    psi = MPS.random(3, 2, seed=0)
    with pytest.raises(TypeError, match="`tensor.dtype` must be float32"):
        psi[0] = np.ones(psi[0].shape, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, bool], ids=str)
def test_integer_and_boolean_arrays_become_float64(dtype):
    psi = MPS([np.ones((1, 2, 1), dtype=dtype)] * 3)
    assert psi.dtype == np.float64
    assert psi.norm() == pytest.approx(math.sqrt(8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128], ids=str)
def test_engine_dtypes_are_kept(dtype):
    assert MPS.product_state("01", dtype=dtype).dtype == dtype
    assert MPS.random(3, 2, dtype=dtype, seed=0).dtype == dtype


def test_object_dtype_state_cannot_reach_a_file(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        MPS.product_state("01", dtype=object).save(tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_scaling_by_long_double_is_refused():
    with pytest.raises(TypeError, match="must be float32"):
        MPS.random(3, 2, seed=0) * np.longdouble(2)


# ----------------------------------------------------------------------------- sizes


def test_random_with_huge_bond_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"`max_bond`=1000000000000.*more than `max_bytes`=8 GiB"):
        MPS.random(100, 10**12)


def test_random_memory_limit_is_overridable():
    # 10 sites at bond 4, float64: (4 + 16 + 6 * 32 + 16 + 4) entries * 8 = 1,856 bytes
    with pytest.raises(ValueError, match="max_bytes"):
        MPS.random(10, 4, max_bytes=1000)
    assert MPS.random(10, 4, max_bytes=10_000, seed=0).max_bond_dim == 4
    assert DEFAULT_MAX_BYTES == 8 * 2**30


def test_ttn_random_with_huge_bond_is_refused():
    with pytest.raises(ValueError, match="`max_bond`=1000000000.*max_bytes"):
        TTN.random(Tree.balanced(64), 2, 10**9)


# ----------------------------------------------------------------------------- public engine contract


def test_from_tensors_validates_and_verifies_the_canonical_range():
    psi = MPS.random(6, 3, seed=1)  # right-canonical, centre 0
    out = MPS.from_tensors(psi.tensors, canonical_range=(0, 1))
    assert out.center == 0
    with pytest.raises(ValueError, match=r"`canonical_range`=\(5, 6\) does not hold"):
        MPS.from_tensors(psi.tensors, canonical_range=(5, 6))
    with pytest.raises(ValueError, match="NaN"):
        MPS.from_tensors([np.full((1, 2, 1), np.nan)])


def test_from_tensors_without_validation_trusts_the_caller():
    psi = MPS.random(6, 3, seed=2)
    out = MPS.from_tensors(list(psi.tensors), canonical_range=(0, 1), validate=False)
    assert out.center == 0
    assert out.fidelity(psi) == pytest.approx(1.0)
    assert not out[0].flags.writeable


def test_adopt_canonical_range_and_old_names():
    psi = MPS.random(5, 3, seed=3)
    plain = MPS(psi.tensors)
    assert plain.center is None
    assert not plain.adopt_canonical_range(5, 5)
    assert plain.adopt_canonical_range(0, 1)
    assert plain.center == 0
    assert MPS._adopt_verified_canonical_range is MPS.adopt_canonical_range
    assert MPS._trusted(list(psi.tensors), 0, 1).center == 0


def test_entropy_base_two_gives_bits():
    psi = MPS.random(6, 4, seed=4)
    nats = psi.entanglement_entropy()
    np.testing.assert_allclose(psi.entanglement_entropy(base=2), nats / math.log(2), rtol=1e-12)
    assert psi.mutual_information(0, 3, base=2) == pytest.approx(psi.mutual_information(0, 3) / math.log(2))
    with pytest.raises(ValueError, match="`base` must be a finite number > 0 other than 1"):
        psi.entanglement_entropy(base=1)
    t = TTN.random(Tree.balanced(4), 2, 2, seed=0)
    np.testing.assert_allclose(t.entropies(base=2), t.entropies() / math.log(2), rtol=1e-12)


def test_mpo_from_tensors():
    w = MPO.identity(3)
    assert MPO.from_tensors(w.tensors).shape == (8, 8)
    trusted = MPO.from_tensors(list(w.tensors), validate=False)
    np.testing.assert_array_equal(trusted.to_dense(), np.eye(8))
    with pytest.raises(ValueError, match="bond"):
        MPO.from_tensors([np.ones((1, 2, 2, 3)), np.ones((2, 2, 2, 1))])


def test_random_with_absurd_length_is_refused_at_once():
    with pytest.raises(ValueError, match="`n_sites`"):
        MPS.random(10**12, 2)
