"""tnkit.ml.explain against brute force on small models (12 sites or fewer)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_configurations, dense_rdm, rdm_entropy
from test_born_machine import dense_p, fitted_random

from tnkit.errors import OptionError
from tnkit.ml import MPSBornMachine
from tnkit.ml import explain as ex


def shannon(p) -> float:
    p = np.asarray(p).ravel()
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


DIMS = [(2,) * 12, (2, 3, 2, 4, 2, 3)]


@pytest.mark.parametrize("dims", DIMS)
def test_entanglement_entropies_match_dense(rng, dims):
    model = fitted_random(rng, dims)
    v = model.mps_.to_dense()
    expected = []
    for b in range(len(dims) - 1):
        s = np.linalg.svd(v.reshape(int(np.prod(dims[: b + 1])), -1), compute_uv=False)
        p = s**2 / np.sum(s**2)
        expected.append(shannon(p))
    np.testing.assert_allclose(ex.entanglement_entropies(model), expected, atol=1e-10)


@pytest.mark.parametrize("dims", DIMS)
def test_mutual_information_matches_dense(rng, dims):
    model = fitted_random(rng, dims)
    v = model.mps_.to_dense()
    p = dense_p(model)
    n = len(dims)
    quantum = ex.mutual_information_matrix(model)
    for i, j in [(0, 1), (1, n - 1), (2, 4)]:
        q = rdm_entropy(dense_rdm(v, dims, i)) + rdm_entropy(dense_rdm(v, dims, j)) - rdm_entropy(
            dense_rdm(v, dims, (i, j))
        )
        assert ex.mutual_information(model, i, j) == pytest.approx(q, abs=1e-10)
        assert quantum[i, j] == pytest.approx(q, abs=1e-10)
        rest = tuple(k for k in range(n) if k not in (i, j))
        p2 = p.sum(axis=rest)
        c = shannon(p2.sum(axis=1)) + shannon(p2.sum(axis=0)) - shannon(p2)
        assert ex.mutual_information(model, i, j, kind="classical") == pytest.approx(c, abs=1e-10)
        assert ex.mutual_information(model, j, i, kind="classical") == pytest.approx(c, abs=1e-10)
    if n <= 6:
        classical = ex.mutual_information_matrix(model, kind="classical")
        np.testing.assert_allclose(classical, classical.T)
        assert np.all(np.diag(classical) == 0) and np.all(classical >= -1e-12)


@pytest.mark.parametrize("dims", DIMS)
def test_chain_surprisal_sums_to_score(rng, dims):
    model = fitted_random(rng, dims)
    X = np.stack([rng.integers(0, d, 15) for d in dims], axis=1)
    s = ex.chain_surprisal(model, X)
    np.testing.assert_allclose(s.sum(axis=1), ex.anomaly_scores(model, X), rtol=1e-10)
    p = dense_p(model)
    for i in (0, 3):  # p(x_i | x_<i) from the dense table
        prefix = p.sum(axis=tuple(range(i + 1, len(dims))))
        joint = prefix[tuple(X[:, : i + 1].T)]
        marg = prefix.sum(axis=i)[tuple(X[:, :i].T)] if i else np.ones(len(X))
        np.testing.assert_allclose(s[:, i], -np.log(joint / marg), rtol=1e-9)


@pytest.mark.parametrize("dims", DIMS)
def test_leave_one_out_matches_dense(rng, dims):
    model = fitted_random(rng, dims)
    X = np.stack([rng.integers(0, d, 10) for d in dims], axis=1)
    got = ex.leave_one_out_probabilities(model, X)
    p = dense_p(model)
    for i in range(len(dims)):
        index = [X[:, k] for k in range(len(dims))]
        num = p[tuple(index)]
        den = sum(p[tuple(index[:i] + [np.full(len(X), s)] + index[i + 1 :])] for s in range(dims[i]))
        np.testing.assert_allclose(got[:, i], num / den, rtol=1e-9)


def test_explain_points_at_the_corrupted_pixel():
    from tnkit.datasets import bars_and_stripes

    X = bars_and_stripes(4)
    model = MPSBornMachine(max_bond=32, init_bond=16, n_sweeps=2, random_state=0).fit(X)
    bad = X[3:4].copy()
    bad[0, 6] = 1 - bad[0, 6]
    e = ex.explain(model, np.vstack([X[3:4], bad]), top_k=3)
    assert e.scores[1] > e.scores[0] + 5
    assert e.top_features[1, 0] == 6
    np.testing.assert_allclose(e.surprisal.sum(axis=1), e.scores)
    assert "ScoreExplanation(n_samples=2" in repr(e)


def test_clusters_separate_two_modes(rng):
    n = 120
    a = (rng.random((n, 10)) < 0.1).astype(int)
    b = (rng.random((n, 10)) < 0.9).astype(int)
    X = np.vstack([a, b])
    truth = np.r_[np.zeros(n), np.ones(n)]
    model = MPSBornMachine(max_bond=4, n_sweeps=4, random_state=0).fit(X)
    for kind in ("embedding", "conditionals"):
        labels = ex.cluster(model, X, 2, kind=kind, random_state=0)
        agreement = max(np.mean(labels == truth), np.mean(labels != truth))
        assert agreement > 0.95
    assert ex.model_features(model, X[:3], bond=2).shape[0] == 3


def test_bad_arguments():
    model = MPSBornMachine(max_bond=2, n_sweeps=1, random_state=0).fit(all_configurations((2,) * 4))
    with pytest.raises(OptionError, match="kind"):
        ex.mutual_information(model, 0, 1, kind="shannon")
    with pytest.raises(ValueError, match="different"):
        ex.mutual_information(model, 1, 1)
    with pytest.raises(IndexError, match="`j`"):
        ex.mutual_information(model, 0, 9)
    with pytest.raises(TypeError, match="MPSBornMachine"):
        ex.anomaly_scores("model", [[0, 1, 0, 1]])
    with pytest.raises(OptionError, match="kind"):
        ex.model_features(model, [[0, 1, 0, 1]], kind="pixels")


# --------------------------------------------------------------------------- tree Born machines


def _tree_model(rng, dims):
    from test_ttn_born_machine import fitted_random as tree_fitted_random

    from tnkit.ttn import Tree

    return tree_fitted_random(rng, Tree.balanced(len(dims)), np.asarray(dims), bond=3)


@pytest.mark.parametrize("dims", [(2,) * 6, (2, 3, 2, 3, 2)])
def test_tree_explanations_match_dense(rng, dims):
    """chain rule, leave-one-out and mutual information of a TTNBornMachine against the dense table."""
    model = _tree_model(rng, dims)
    v = model.ttn_.to_dense()
    p = (np.abs(v) ** 2 / np.sum(np.abs(v) ** 2)).reshape(dims)
    X = all_configurations(dims)[::3]
    surprisal = ex.chain_surprisal(model, X)
    np.testing.assert_allclose(surprisal.sum(axis=1), -model.log_prob(X), rtol=1e-9)
    n = len(dims)
    for i in (0, n - 1):
        prefix = p.sum(axis=tuple(range(i + 1, n))) if i < n - 1 else p
        before = prefix.sum(axis=i)
        expected = -np.log(prefix[tuple(X[:, : i + 1].T)] / before[tuple(X[:, :i].T)])
        np.testing.assert_allclose(surprisal[:, i], expected, rtol=1e-9)
    loo = ex.leave_one_out_probabilities(model, X)
    for i in range(n):
        column = np.moveaxis(p, i, -1)[tuple(np.delete(X, i, axis=1).T)]
        np.testing.assert_allclose(loo[:, i], column[np.arange(len(X)), X[:, i]] / column.sum(axis=1), rtol=1e-9)
    q = rdm_entropy(dense_rdm(v, dims, 0)) + rdm_entropy(dense_rdm(v, dims, 2)) - rdm_entropy(
        dense_rdm(v, dims, (0, 2))
    )
    assert ex.mutual_information(model, 0, 2) == pytest.approx(q, abs=1e-10)
    features = ex.model_features(model, X)
    assert features.shape[0] == len(X) and np.all(np.isfinite(features))
    assert len(ex.entanglement_entropies(model)) == len(model.tree_.edges)
