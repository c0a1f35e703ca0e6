"""Feature maps: definitions, norms, shapes and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tnkit.errors import OptionError
from tnkit.ml.feature_maps import embed


def test_cos_sin_matches_paper_for_two_dims():
    x = np.array([[0.0, 0.25, 1.0]])
    phi = embed(x)
    theta = np.pi * x[0] / 2
    np.testing.assert_allclose(phi[0], np.stack([np.cos(theta), np.sin(theta)], axis=1), atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 6), vals=st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_cos_sin_vectors_have_unit_norm(d, vals):
    phi = embed(np.array([vals]), "cos-sin", local_dim=d)
    assert phi.shape == (1, len(vals), d)
    np.testing.assert_allclose(np.linalg.norm(phi, axis=-1), 1.0, rtol=1e-12)


def test_cos_sin_three_dims_is_spin_coherent():
    x = 0.3
    c, s = np.cos(np.pi * x / 2), np.sin(np.pi * x / 2)
    np.testing.assert_allclose(embed([[x]], local_dim=3)[0, 0], [c * c, np.sqrt(2) * c * s, s * s])


def test_polynomial_and_one_hot():
    np.testing.assert_allclose(embed([[2.0, 0.5]], "polynomial", local_dim=3)[0], [[1, 2, 4], [1, 0.5, 0.25]])
    np.testing.assert_array_equal(embed([[0, 2, 1]], "one-hot", local_dim=3)[0], np.eye(3)[[0, 2, 1]])


def test_bad_input():
    with pytest.raises(OptionError, match="feature_map"):
        embed([[0.1]], "fourier")
    with pytest.raises(ValueError, match="local_dim"):
        embed([[0.1]], local_dim=0)
    with pytest.raises(ValueError, match="X"):
        embed([0.1, 0.2])
    with pytest.raises(ValueError, match=r"one-hot.*\[0, local_dim=2\)"):
        embed([[0, 2]], "one-hot")
    with pytest.raises(ValueError, match="one-hot"):
        embed([[0.5]], "one-hot")
    with pytest.raises(ValueError, match="finite"):
        embed([[np.nan]])


def test_plots_write_files(tmp_path):
    from tnkit.ml.plots import plot_accuracy_vs_bond, plot_entanglement, plot_feature_importance

    assert plot_entanglement([0.1, 0.5, 0.2], tmp_path / "e.png").stat().st_size > 0
    assert plot_accuracy_vs_bond([10, 20], [0.05, 0.03], tmp_path / "a.png").stat().st_size > 0
    two = plot_accuracy_vs_bond([10, 20], [0.05, 0.03], tmp_path / "b.png", extra={"adam": ([20, 40], [0.02, 0.01])})
    assert two.stat().st_size > 0
    assert plot_feature_importance(np.arange(4.0), (2, 2), tmp_path / "f.png").stat().st_size > 0
    with pytest.raises(ValueError, match="shape"):
        plot_feature_importance(np.arange(5.0), (2, 2), tmp_path / "g.png")


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 6), vals=st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_linear_map_is_a_partition_of_unity(d, vals):
    phi = embed(np.array([vals]), "linear", local_dim=d)
    np.testing.assert_allclose(phi.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all(phi >= 0)


def test_linear_map_and_passthrough_vector():
    np.testing.assert_allclose(embed([[0.25]], "linear")[0, 0], [0.75, 0.25])
    np.testing.assert_allclose(embed([[0.5]], "linear", local_dim=3)[0, 0], [0.25, 0.5, 0.25])
    from tnkit.ml.feature_maps import passthrough_vector

    r = np.random.default_rng(0)
    np.testing.assert_allclose(passthrough_vector(embed(r.random((20, 3)), "linear", local_dim=3)), np.full(3, 3**-0.5))
    # cos-sin: the least-squares w maximises how constant w . phi(x) is; unit norm, positive
    phi = embed(r.random((200, 4)))
    w = passthrough_vector(phi)
    assert abs(np.linalg.norm(w) - 1) < 1e-12 and np.all(w > 0)
    rows = phi.reshape(-1, 2)
    best = np.linalg.lstsq(rows, np.ones(len(rows)), rcond=None)[0]
    np.testing.assert_allclose(w, best / np.linalg.norm(best), rtol=1e-8)


def test_check_feature_range_warns_outside_the_maps_interval():
    import warnings

    from tnkit.ml.feature_maps import FEATURE_RANGES, FeatureRangeWarning, check_feature_range

    assert FEATURE_RANGES["cos-sin"] == (0.0, 1.0) and FEATURE_RANGES["polynomial"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_feature_range(np.array([[0.0, 1.0, 0.5]]), "cos-sin")  # inside: silent
        check_feature_range(np.array([[-3.0, 7.0]]), "polynomial")  # any real number
    with pytest.warns(FeatureRangeWarning, match=r"Est: 50.00% .*outside \[0, 1\].*max 2.*'linear'"):
        check_feature_range(np.array([[0.5, 2.0]]), "linear", owner="Est")

