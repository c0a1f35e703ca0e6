"""Reduced density matrices, expectation values, entropies and exact sampling against dense references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import DTYPES, X, Z, all_configurations, assert_close, dense_rdm, entropy, random_hermitian

from tnkit.ttn import TTN, Tree

from ._reference import TREES, random_tensors


def _network(rng, name, dtype, output_dim=None, bond=3):
    tree = TREES[name]()
    dims = tuple(int(d) for d in rng.integers(2, 4, size=tree.n_leaves))
    return TTN(tree, random_tensors(rng, tree, dims, bond, dtype, output_dim)[tree.n_leaves:])


def _dense_state(psi):
    """Dense vector and dims, the output axis (if any) treated as one more site."""
    v = psi.to_dense()
    return v.ravel(), v.shape


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_dim", [None, 2])
def test_reduced_density_matrices(rng, name, dtype, output_dim):
    psi = _network(rng, name, dtype, output_dim)
    v, dims = _dense_state(psi)
    n = psi.n_leaves
    for leaf in range(n):
        assert_close(psi.reduced_density_matrix(leaf), dense_rdm(v, dims, leaf), dtype)
    pairs = [(0, n - 1), (n - 1, 0), (1, 2)] if n > 2 else [(0, 1), (1, 0)]
    for pair in pairs:
        assert_close(psi.reduced_density_matrix(pair), dense_rdm(v, dims, pair), dtype)
    assert_close(psi.to_dense().ravel(), v, dtype)  # the centre moved, the state did not


@pytest.mark.parametrize("dtype", DTYPES)
def test_expectation_values(rng, dtype):
    psi = _network(rng, "grid2x3", dtype)
    v, dims = _dense_state(psi)
    for leaf in range(psi.n_leaves):
        d = dims[leaf]
        op = random_hermitian(rng, d, dtype)
        rho = dense_rdm(v, dims, leaf)
        assert psi.expectation(op, leaf) == pytest.approx(np.trace(op @ rho).real, rel=1e-10, abs=1e-12)
    da, db = dims[0], dims[5]
    op2 = random_hermitian(rng, da * db, dtype)
    ref = np.trace(op2 @ dense_rdm(v, dims, (0, 5)))
    assert psi.expectation(op2, (0, 5)) == pytest.approx(ref.real, rel=1e-10, abs=1e-12)
    assert psi.expectation(op2.reshape(da, db, da, db), (0, 5)) == pytest.approx(ref.real, rel=1e-10)
    with pytest.raises(ValueError, match="shape"):
        psi.expectation(np.eye(7), 0)
    with pytest.raises(ValueError, match="two different leaves"):
        psi.expectation(np.eye(da * da), (0, 0))
    with pytest.raises(IndexError, match="leaf"):
        psi.expectation(np.eye(2), 9)


def test_ghz_expectations_on_a_tree():
    tree = Tree.balanced(6)
    v = np.zeros(2**6)
    v[0] = v[-1] = 1 / math.sqrt(2)
    psi = TTN.from_dense(v, tree, phys_dims=2)
    assert psi.max_bond_dim == 2
    assert psi.expectation(Z, 3) == pytest.approx(0.0, abs=1e-12)
    assert psi.expectation(np.kron(Z, Z), (0, 5)) == pytest.approx(1.0)
    assert psi.expectation(np.kron(X, X), (1, 4)) == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(psi.entropies(), math.log(2))


def _bipartition_entropy(v, dims, leaves):
    rest = [k for k in range(len(dims)) if k not in leaves]
    m = v.reshape(dims).transpose(list(leaves) + rest).reshape(int(np.prod([dims[k] for k in leaves])), -1)
    s = np.linalg.svd(m, compute_uv=False)
    return entropy(s**2 / np.sum(s**2)), s / np.linalg.norm(s)


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("output_dim", [None, 2])
def test_entropies_and_schmidt_values_across_every_edge(rng, name, output_dim):
    psi = _network(rng, name, np.complex128, output_dim)
    v, dims = _dense_state(psi)
    tree = psi.tree
    ent = psi.entropies()
    svals = psi.schmidt_values()
    assert len(ent) == len(svals) == len(tree.edges)
    for k, (child, _) in enumerate(tree.edges):
        s_ref, vals_ref = _bipartition_entropy(v, dims, tree.leaves_under(child))
        assert ent[k] == pytest.approx(s_ref, abs=1e-10)
        got = svals[k][svals[k] > 1e-12]
        assert np.allclose(got, vals_ref[: len(got)], atol=1e-10)
        assert psi.entanglement_entropy(child) == pytest.approx(s_ref, abs=1e-10)
    renyi = psi.entropies(alpha=2)
    child = tree.bonds[0] if tree.bonds else 0
    s2 = _bipartition_entropy(v, dims, tree.leaves_under(child))[1] ** 2
    assert renyi[[c for c, _ in tree.edges].index(child)] == pytest.approx(-math.log(np.sum(s2**2)), abs=1e-10)
    with pytest.raises(IndexError, match="edge"):
        psi.schmidt_values(tree.root)


@pytest.mark.parametrize("name", ["balanced8", "nested", "unary", "ternary7"])
@pytest.mark.parametrize("output_dim", [None, 3])
def test_sample_log_probs_are_exact(rng, name, output_dim):
    psi = _network(rng, name, np.complex128, output_dim)
    samples, log_p = psi.sample(300, seed=1, return_log_prob=True)
    assert samples.shape == (300, psi.n_leaves) and samples.dtype == np.intp
    assert np.all(samples < np.array(psi.phys_dims))
    assert np.allclose(np.exp(log_p), psi.probabilities(samples), rtol=1e-9)


def test_sample_frequencies_follow_the_born_rule(rng):
    psi = _network(rng, "grid2x3", np.float64, bond=2)
    dims = psi.phys_dims
    configs = all_configurations(dims)
    p = psi.probabilities(configs)
    n = 40_000
    samples = psi.sample(n, seed=7)
    index = np.ravel_multi_index(samples.T, dims)
    counts = np.bincount(index, minlength=len(p))
    # chi-square over configurations with an expected count >= 5 (well-calibrated threshold)
    keep = n * p >= 5
    chi2 = np.sum((counts[keep] - n * p[keep]) ** 2 / (n * p[keep]))
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)
    assert np.array_equal(psi.sample(50, seed=3), psi.sample(50, seed=3))


def test_sample_edge_cases():
    psi = TTN.product_state(Tree.balanced(5), "10110")
    assert np.array_equal(psi.sample(4, seed=0), np.tile([1, 0, 1, 1, 0], (4, 1)))
    assert psi.sample(0).shape == (0, 5)
    zero = TTN(psi.tree, [t * 0 for t in psi.tensors])
    with pytest.raises(ValueError, match="zero state"):
        zero.sample(3)
    with pytest.raises(TypeError, match="seed"):
        psi.sample(3, seed="x")


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_dim", [None, 3])
def test_log_amplitudes_match_the_plain_ones(rng, name, dtype, output_dim):
    psi = _network(rng, name, dtype, output_dim)
    configs = all_configurations(psi.phys_dims)
    amps = psi.amplitudes(configs)
    phase, log_abs = psi.log_amplitudes(configs)
    assert phase.shape == log_abs.shape == amps.shape
    assert_close(phase * np.exp(log_abs), amps, dtype, scale=np.abs(amps).max())
    if output_dim is None:
        dense = psi.to_dense().reshape(-1)
        np.testing.assert_allclose(psi.probabilities(configs), np.abs(dense) ** 2 / np.vdot(dense, dense).real,
                                   rtol=1e-10, atol=1e-14)


def test_log_amplitudes_where_plain_values_underflow():
    """1,024 leaves: every amplitude of this product state is below 1e-300, its logarithm is exact."""
    tree = Tree.balanced(1024)
    local = np.array([0.6, 0.8])
    psi = TTN.product_state(tree, [local * 1e-1] * 1024)  # amplitude = prod of 0.06 or 0.08: ~1e-1200
    configs = np.random.default_rng(0).integers(0, 2, size=(5, 1024))
    phase, log_abs = psi.log_amplitudes(configs)
    expected = np.log(local[configs] * 1e-1).sum(axis=1)
    np.testing.assert_allclose(log_abs, expected, rtol=1e-12)
    np.testing.assert_array_equal(phase, 1.0)
    assert np.all(psi.amplitudes(configs) == 0.0)  # what the plain values give


def test_log_amplitudes_of_zero_amplitudes():
    tree = Tree.balanced(4)
    psi = TTN.product_state(tree, "0101")
    phase, log_abs = psi.log_amplitudes([[0, 1, 0, 1], [1, 1, 0, 1]])
    np.testing.assert_array_equal(log_abs, [0.0, -np.inf])
    np.testing.assert_array_equal(phase, [1.0, 0.0])
    with pytest.raises(ValueError, match="configs"):
        psi.log_amplitudes([[0, 2, 0, 1]])
