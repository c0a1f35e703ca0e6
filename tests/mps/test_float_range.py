"""States whose entries or norms sit at the ends of the float range: right answers or clear errors.

Each case is compared with the same computation on the unscaled state, where
nothing is near the float limits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tnkit import MPO, MPS
from tnkit.errors import NormRangeError
from tnkit.ttn import TTN, Tree

LOG10 = math.log(10.0)


def scaled_sites(psi: MPS, factor: float) -> MPS:
    """``psi`` with every site tensor multiplied by ``factor`` (norm ``factor**N``), no bookkeeping."""
    return MPS([t * factor for t in psi.tensors])


def dense_direction(psi: MPS) -> np.ndarray:
    """The normalised dense vector, with the sign fixed by its largest entry."""
    v = psi.normalized().to_dense()
    k = int(np.argmax(np.abs(v)))
    return v * (abs(v[k]) / v[k])


def test_scaling_beyond_float_range_keeps_finite_entries_and_log_norm():
    psi = MPS.random(8, 4, seed=0)
    big = psi * 1e300 * 1e300
    assert all(np.isfinite(t).all() for t in big.tensors)
    assert big.log_norm() == pytest.approx(psi.log_norm() + 600 * LOG10, rel=1e-12)
    assert big.fidelity(big) == pytest.approx(1.0, rel=1e-12)
    assert big.fidelity(psi) == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(dense_direction(big), dense_direction(psi), atol=1e-12)


def test_scaling_below_float_range_keeps_the_state():
    psi = MPS.random(6, 4, seed=1)
    tiny = psi * 1e-300 * 1e-300
    assert tiny.log_norm() == pytest.approx(-600 * LOG10, rel=1e-12)
    np.testing.assert_allclose(dense_direction(tiny), dense_direction(psi), atol=1e-12)


def test_scaling_one_site_chain_beyond_range_raises_clearly():
    psi = MPS.product_state("0")
    with pytest.raises(NormRangeError, match="does not fit in 1 tensor"):
        psi * 1e300 * 1e300


def test_log_norm_of_small_tensors_is_finite():
    psi = MPS.random(8, 4, seed=2, normalize=False)
    tiny = scaled_sites(psi, 1e-200)
    assert tiny.log_norm() == pytest.approx(psi.log_norm() - 1600 * LOG10, rel=1e-12)


@pytest.mark.parametrize("method", ["svd", "dm", "fit", "src"])
def test_compress_small_tensors_matches_unscaled(method):
    psi = MPS.random(8, 4, seed=3, normalize=False)
    tiny = scaled_sites(psi, 1e-200)
    ref, ref_report = psi.compress(max_bond=2, method=method, seed=0)
    out, report = tiny.compress(max_bond=2, method=method, seed=0)
    assert report.error == pytest.approx(ref_report.error, rel=1e-8, abs=1e-12)
    assert 0.0 < report.error < 1.0
    assert out.log_norm() == pytest.approx(ref.log_norm() - 1600 * LOG10, rel=1e-10)
    np.testing.assert_allclose(dense_direction(out), dense_direction(ref), atol=1e-8)


def test_compress_huge_tensors_matches_unscaled():
    psi = MPS.random(8, 4, seed=4, normalize=False)
    big = scaled_sites(psi, 1e150)
    ref, ref_report = psi.compress(max_bond=2)
    out, report = big.compress(max_bond=2)
    assert report.error == pytest.approx(ref_report.error, rel=1e-8)
    assert out.log_norm() == pytest.approx(ref.log_norm() + 1200 * LOG10, rel=1e-10)


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_from_dense_at_extreme_scales_matches_unscaled(scale):
    v = np.random.default_rng(5).standard_normal(2**8)
    ref, ref_report = MPS.from_dense(v, max_bond=4, return_report=True)
    out, report = MPS.from_dense(v * scale, max_bond=4, return_report=True)
    assert out.bond_dims == ref.bond_dims
    assert report.error == pytest.approx(ref_report.error, rel=1e-10)
    assert math.isfinite(report.error) and report.error > 0
    assert out.log_norm() == pytest.approx(ref.log_norm() + math.log(scale), rel=1e-10)
    np.testing.assert_allclose(dense_direction(out), dense_direction(ref), atol=1e-10)


def test_from_dense_exact_at_huge_scale_keeps_full_bonds():
    v = np.random.default_rng(6).standard_normal(2**6)
    out, report = MPS.from_dense(v * 1e300, return_report=True)
    assert out.bond_dims == (2, 4, 8, 4, 2)
    assert report.error == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(out.normalized().to_dense(), v / np.linalg.norm(v), atol=1e-12)


def test_normalized_with_subnormal_entries():
    ref = MPS.product_state("0110")
    denormal = scaled_sites(ref, 1e-310)
    out = denormal.normalized()
    assert out.norm() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(out.to_dense(), ref.to_dense(), atol=1e-12)


def test_normalize_centre_with_subnormal_entries():
    psi = MPS.random(5, 3, seed=7)  # centre 0
    psi[0] = psi[0] * 1e-310
    psi.canonicalize_(0)
    psi.normalize_()
    assert psi.norm() == pytest.approx(1.0, rel=1e-10)


def test_mpo_scaling_beyond_float_range():
    w = MPO.identity(4)
    big = w * 1e300 * 1e300
    assert all(np.isfinite(t).all() for t in big.tensors)
    psi = MPS.random(4, 2, seed=8)
    phase, log_abs = big.log_expectation(psi)
    assert phase == pytest.approx(1.0)
    assert log_abs == pytest.approx(600 * LOG10, rel=1e-12)


def test_ttn_scaling_beyond_one_node_raises_clearly():
    psi = TTN.random(Tree.balanced(4), 2, 2, seed=0)
    assert (psi * 1e200).log_norm() == pytest.approx(200 * LOG10, rel=1e-12)
    with pytest.raises(NormRangeError, match="does not fit"):
        psi * 1e300 * 1e300


def test_dense_vector_beyond_float_range_is_refused():
    big = MPS.random(8, 4, seed=9) * 1e300 * 1e300
    with pytest.raises(NormRangeError, match="dense state vector overflow"):
        big.to_dense()
    tiny = MPS.random(8, 4, seed=9) * 1e-300 * 1e-300
    with pytest.raises(NormRangeError, match="dense state vector underflow"):
        tiny.to_dense()
    with pytest.raises(NormRangeError, match="dense matrix overflow"):
        (MPO.identity(4) * 1e300 * 1e300).to_dense()
    zero = MPS.random(4, 2, seed=0) * 0
    np.testing.assert_array_equal(zero.to_dense(), np.zeros(16))


def test_division_by_zero_or_tiny_is_refused_clearly():
    psi = MPS.random(4, 2, seed=0)
    with pytest.raises(ZeroDivisionError, match="cannot divide a MatrixProductState by zero"):
        psi / 0
    with pytest.raises(ValueError, match="its inverse overflows"):
        psi / 1e-320
    assert (psi / 1e-300).log_norm() == pytest.approx(300 * LOG10, rel=1e-12)
