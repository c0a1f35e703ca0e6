"""Property-based invariants of small random TTNs (hypothesis, optional extra).

hypothesis draws the tree shape, sizes and seed; numpy draws the entries, so every
failure is reproducible from the printed example.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import rel_err2  # noqa: E402

from tnkit.ttn import TTN, Tree, canonical  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def nested_trees(draw, max_leaves=7):
    """A random tree: a random nesting of a random permutation of 1..max_leaves leaves."""
    n = draw(st.integers(1, max_leaves), label="n_leaves")
    perm = draw(st.permutations(list(range(n))), label="leaf order")
    items: list = list(perm)
    while len(items) > 1 or not isinstance(items[0], tuple):
        k = draw(st.integers(1, min(3, len(items))), label="group size")
        i = draw(st.integers(0, len(items) - k), label="group start")
        items[i : i + k] = [tuple(items[i : i + k])]
    return Tree.from_nested(items[0])


@st.composite
def small_ttns(draw):
    tree = draw(nested_trees())
    dims = tuple(draw(st.lists(st.integers(2, 3), min_size=tree.n_leaves, max_size=tree.n_leaves)))
    bond = draw(st.integers(1, 5), label="bond_dim")
    out = draw(st.sampled_from([None, 2]), label="output_dim")
    dtype = draw(st.sampled_from([np.float64, np.complex128]), label="dtype")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    return TTN.random(tree, dims, bond, output_dim=out, dtype=dtype, seed=seed, normalize=False)


@SETTINGS
@given(psi=small_ttns(), data=st.data())
def test_canonical_tensors_are_isometries_and_the_state_is_kept(psi, data):
    tree = psi.tree
    v = psi.to_dense()
    node = data.draw(st.sampled_from(list(tree.internal_nodes)), label="centre")
    psi.canonicalize_(node)
    for w, hop in canonical.towards_order(tree, node):
        assert canonical.isometry_error(psi.tensor(w), canonical.axis_of(tree, w, hop)) < 1e-10
    assert np.allclose(psi.to_dense(), v, atol=1e-10 * max(1.0, np.abs(v).max()))
    assert math.isclose(psi.norm(), np.linalg.norm(v), rel_tol=1e-10)


@SETTINGS
@given(psi=small_ttns(), max_bond=st.integers(1, 4))
def test_truncation_error_is_exact_and_bounded(psi, max_bond):
    v = psi.to_dense().ravel()
    small, rep = psi.compress(max_bond=max_bond)
    w = small.to_dense().ravel()
    assert math.isclose(rep.error, rel_err2(v, w), rel_tol=1e-8, abs_tol=1e-13)
    assert 0.0 <= rep.error <= 1.0
    assert max(small.bond_dims, default=1) <= max_bond
    # the result is the projection of the input: <psi|psi_t> = ||psi_t||^2
    assert math.isclose(psi.inner(small).real, small.norm() ** 2, rel_tol=1e-8, abs_tol=1e-13)


@SETTINGS
@given(psi=small_ttns())
def test_dense_round_trip_and_mps_consistency(psi):
    tree = psi.tree
    v = psi.to_dense()
    back = TTN.from_dense(v, tree, has_output=psi.output_dim is not None)
    assert np.allclose(back.to_dense(), v, atol=1e-10 * max(1.0, np.abs(v).max()))
    if psi.output_dim is None:
        chain = TTN.from_dense(v, Tree.chain(tree.n_leaves))
        assert np.allclose(chain.to_mps().to_dense(), v.ravel(), atol=1e-10 * max(1.0, np.abs(v).max()))
