"""Canonical forms (with bookkeeping that repeats no work) and SVD truncation of every bond."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import DTYPES, assert_close, rel_err2

from tnkit.ttn import TTN, Tree, canonical

from ._reference import TREES, random_tensors


@pytest.fixture
def count_qr(monkeypatch):
    """Count the QR steps of canonical moves."""
    calls = []
    original = canonical.qr_isometry  # every QR step, whether its R goes to a neighbour now or later

    def spy(tensors, tree, v, u):
        calls.append((v, u))
        return original(tensors, tree, v, u)

    monkeypatch.setattr(canonical, "qr_isometry", spy)
    return calls


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_canonicalize_every_node_keeps_the_state(rng, name, dtype):
    tree = TREES[name]()
    dims = tuple(int(d) for d in rng.integers(2, 4, size=tree.n_leaves))
    psi = TTN(tree, random_tensors(rng, tree, dims, 3, dtype, output_dim=2)[tree.n_leaves:])
    v = psi.to_dense()
    for node in tree.internal_nodes:
        psi.canonicalize_(node)
        assert psi.center == node
        assert psi.is_canonical(node) and psi.is_canonical()
        assert_close(psi.to_dense(), v, dtype)
        assert math.isclose(psi.norm(), np.linalg.norm(v), rel_tol=1e-10)
        assert math.isclose(np.linalg.norm(psi.tensor(node)), np.linalg.norm(v), rel_tol=1e-10)


def test_moves_do_only_the_missing_qr_steps(rng, count_qr):
    tree = Tree.balanced(16)
    psi = TTN(tree, random_tensors(rng, tree, (2,) * 16, 4)[16:])
    psi.canonicalize_()  # full sweep: every internal node but the root once
    assert len(count_qr) == len(tree.bonds)
    count_qr.clear()
    psi.canonicalize_(tree.root)
    assert count_qr == []
    leaf_parent = tree.parent(0)
    psi.canonicalize_(leaf_parent)  # down a path of depth-1 edges
    assert len(count_qr) == tree.depth(leaf_parent)
    assert all(step[0] == a for step, a in zip(count_qr, tree.path(tree.root, leaf_parent)))
    count_qr.clear()
    other = tree.parent(15)
    psi.canonicalize_(other)
    assert len(count_qr) == len(tree.path(leaf_parent, other)) - 1
    # canonicalize() returns a copy and leaves the original alone
    count_qr.clear()
    copy = psi.canonicalize(tree.root)
    assert psi.center == other and copy.center == tree.root


def test_copy_shares_read_only_arrays():
    psi = TTN.random(Tree.balanced(8), 2, 4, seed=0)
    phi = psi.copy()
    assert phi.tensor(8) is psi.tensor(8)
    phi.canonicalize_(8)
    assert psi.center == psi.tree.root and phi.center == 8
    with pytest.raises(ValueError, match="read-only"):
        psi.tensor(8)[0, 0, 0] = 1.0


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_compress_error_is_exact(rng, name, dtype):
    tree = TREES[name]()
    dims = tuple(int(d) for d in rng.integers(2, 4, size=tree.n_leaves))
    psi = TTN(tree, random_tensors(rng, tree, dims, 4, dtype)[tree.n_leaves:])
    v = psi.to_dense().ravel()
    small, rep = psi.compress(max_bond=2)
    assert max(small.bond_dims, default=1) <= 2 and rep.bond_dims == small.bond_dims
    w = small.to_dense().ravel()
    assert math.isclose(rep.error, rel_err2(v, w), rel_tol=1e-9, abs_tol=1e-14)
    assert math.isclose(small.norm() ** 2, (1 - rep.error) * np.vdot(v, v).real, rel_tol=1e-9)
    assert small.center == tree.root and small.is_canonical(tree.root)
    assert math.isclose(rep.fidelity, small.fidelity(psi), rel_tol=1e-9)
    assert len(rep.discarded) == len(tree.bonds)
    # the input is unchanged (only its gauge may move)
    assert_close(psi.to_dense().ravel(), v, dtype)


def test_compress_without_truncation_is_lossless_and_cutoff_truncates(rng):
    tree = Tree.balanced(8)
    psi = TTN(tree, random_tensors(rng, tree, (2,) * 8, 8)[8:])  # bonds 8 > what the leaves support
    same, rep = psi.compress()
    assert rep.error < 1e-20
    assert same.bond_dims == tuple(min(8, 2 ** len(tree.leaves_under(b)), 2 ** (8 - len(tree.leaves_under(b))))
                                   for b in tree.bonds)
    assert_close(same.to_dense(), psi.to_dense(), scale=psi.norm())
    cut, rep = psi.compress(cutoff=1e-2)
    assert all(d <= 1e-2 for d in rep.discarded)
    assert math.isclose(rep.error, rel_err2(psi.to_dense().ravel(), cut.to_dense().ravel()), rel_tol=1e-9)


def test_compress_equals_hierarchical_svd_of_the_dense_state(rng):
    """Network compression and the dense leaves-to-root HSVD keep the same subspaces."""
    tree = Tree.grid(2, 4)
    psi = TTN(tree, random_tensors(rng, tree, (2,) * 8, 6, np.complex128)[8:])
    small, rep = psi.compress(max_bond=3)
    dense, rep_dense = TTN.from_dense(psi.to_dense(), tree, max_bond=3, return_report=True)
    assert np.allclose(rep.discarded, rep_dense.discarded, rtol=1e-8, atol=1e-14)
    assert small.bond_dims == dense.bond_dims
    assert math.isclose(small.fidelity(dense), 1.0, rel_tol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_single_precision_canonical_form_and_compression(dtype):
    tree = Tree.balanced(16)
    psi = TTN.random(tree, 2, 16, seed=0, dtype=dtype, normalize=False)
    raw = TTN(tree, psi.tensors)
    canon = raw.canonicalize()
    assert canon.dtype == dtype and canon.is_canonical(atol=1e-5)
    assert math.isclose(canon.norm(), raw.norm(), rel_tol=1e-5)
    small, rep = raw.compress(max_bond=4)
    assert small.dtype == dtype
    v, w = raw.to_dense().astype(np.complex128).ravel(), small.to_dense().astype(np.complex128).ravel()
    assert math.isclose(rep.error, rel_err2(v, w), rel_tol=1e-3, abs_tol=1e-6)


def test_gauge_round_trip_and_stale_claims_are_dropped():
    tree = Tree.balanced(8)
    psi = TTN.random(tree, 2, 4, seed=5).canonicalize_(tree.root)
    gauge = psi.gauge
    assert gauge.dtype == np.int64 and gauge.shape == (tree.n_nodes,)
    assert gauge[tree.root] == -1 and all(gauge[leaf] == -1 for leaf in range(tree.n_leaves))
    assert all(gauge[v] == tree.parent(v) for v in tree.internal_nodes if v != tree.root)
    fresh = TTN(tree, psi.tensors)  # same tensors, no gauge information
    assert fresh.center is None
    assert fresh.adopt_gauge(gauge) == len(tree.internal_nodes) - 1
    assert fresh.center == tree.root
    # a claim the tensors do not confirm (the root is no isometry towards a child) is dropped
    stale = TTN(tree, psi.tensors)
    wrong = np.full(tree.n_nodes, -1)
    wrong[tree.root] = tree.children(tree.root)[0]
    assert stale.adopt_gauge(wrong) == 0 and stale.center is None
    with pytest.raises(TypeError, match="claims"):
        stale.adopt_gauge(np.zeros(tree.n_nodes))


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_pad_bonds_without_noise_keeps_the_state_and_reaches_the_capped_bonds(rng, name, dtype):
    tree = TREES[name]()
    dims = tuple(int(d) for d in rng.integers(2, 4, size=tree.n_leaves))
    small = TTN.random(tree, dims, 2, seed=rng, dtype=dtype)
    padded = small.pad_bonds(5)
    assert padded.bond_dims == TTN.random(tree, dims, 5, seed=0).bond_dims  # the caps of ``random``
    assert all(b >= a for a, b in zip(small.bond_dims, padded.bond_dims, strict=True))
    assert_close(padded.to_dense(), small.to_dense(), dtype)
    assert padded.pad_bonds(3).bond_dims == padded.bond_dims  # bonds never shrink


def test_pad_bonds_noise_is_relative_and_seeded(rng):
    tree = Tree.balanced(6)
    psi = TTN.random(tree, 2, 2, seed=rng, dtype=complex)
    a = psi.pad_bonds(4, noise=0.1, seed=3)
    assert a.dtype == np.complex128
    np.testing.assert_array_equal(a.to_dense(), psi.pad_bonds(4, noise=0.1, seed=3).to_dense())
    for v in tree.internal_nodes:
        t, s = np.asarray(psi.tensor(v)), np.asarray(a.tensor(v))
        grown = np.zeros_like(s)
        grown[tuple(slice(0, d) for d in t.shape)] = t
        rms = np.linalg.norm(t) / math.sqrt(t.size)
        assert 0.05 * rms < np.linalg.norm(s - grown) / math.sqrt(s.size) < 0.2 * rms
        assert np.abs((s - grown).imag).max() > 0  # complex noise for complex tensors
    assert rel_err2(a.to_dense(), psi.to_dense()) > 0


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError)])
def test_pad_bonds_rejects_bad_noise(bad, error):
    psi = TTN.random(Tree.balanced(4), 2, 2, seed=0)
    with pytest.raises(error, match="noise"):
        psi.pad_bonds(4, noise=bad)
    with pytest.raises((TypeError, ValueError), match="max_bond"):
        psi.pad_bonds(0)
