"""Tree structures: constructors, traversal, validation errors."""

from __future__ import annotations

import numpy as np
import pytest

from tnkit.ttn import Tree


def test_balanced_binary_numbering_and_traversals():
    t = Tree.balanced(4)
    assert (t.n_leaves, t.n_nodes, t.root) == (4, 7, 6)
    assert t.children(6) == (4, 5) and t.children(4) == (0, 1) and t.children(0) == ()
    assert t.parent(0) == 4 and t.parent(6) is None
    assert t.postorder() == (0, 1, 4, 2, 3, 5, 6)
    assert t.preorder() == (6, 4, 0, 1, 5, 2, 3)
    assert t.edges == ((0, 4), (1, 4), (2, 5), (3, 5), (4, 6), (5, 6))
    assert t.bonds == (4, 5)
    assert t.path(0, 3) == (0, 4, 6, 5, 3)
    assert t.path(4, 4) == (4,)
    assert t.next_hop(4, 3) == 6 and t.next_hop(6, 1) == 4
    assert t.leaves_under(5) == (2, 3)
    assert t.depth(2) == 2
    assert list(t.parents) == [4, 4, 5, 5, 6, 6, -1]


@pytest.mark.parametrize("n, arity", [(1, 2), (2, 2), (5, 2), (64, 2), (7, 3), (10, 4)])
def test_balanced_shapes(n, arity):
    t = Tree.balanced(n, arity)
    assert t.n_leaves == n
    assert sorted(t.leaves_under(t.root)) == list(range(n))
    assert all(1 <= len(t.children(v)) <= arity for v in t.internal_nodes)
    depths = [t.depth(leaf) for leaf in range(n)]
    assert max(depths) - min(depths) <= 1
    assert max(depths) == max(1, int(np.ceil(np.log(n) / np.log(arity) - 1e-9)))


def test_nested_round_trip_and_from_parents():
    nested = ((3, (0, 5)), 1, (4, 2))
    t = Tree.from_nested(nested)
    assert t.to_nested() == nested
    back = Tree.from_parents(t.parents)
    # from_parents orders children by node number, so compare structures through leaf sets
    assert {frozenset(back.leaves_under(v)) for v in back.internal_nodes} == {
        frozenset(t.leaves_under(v)) for v in t.internal_nodes
    }
    same = Tree.from_parents([4, 4, 5, 5, 6, 6, -1])
    assert same == Tree.balanced(4) and hash(same) == hash(Tree.balanced(4))


def test_grid_merges_neighbouring_pixels_first():
    t = Tree.grid(4, 4)
    assert t.to_nested() == (
        (((0, 1), (4, 5)), ((2, 3), (6, 7))),
        (((8, 9), (12, 13)), ((10, 11), (14, 15))),
    )
    # every 2x2 block of pixels is one subtree
    blocks = {frozenset(t.leaves_under(v)) for v in t.internal_nodes}
    for r in (0, 2):
        for c in (0, 2):
            assert frozenset({r * 4 + c, r * 4 + c + 1, (r + 1) * 4 + c, (r + 1) * 4 + c + 1}) in blocks
    odd = Tree.grid(3, 5)
    assert sorted(odd.leaves_under(odd.root)) == list(range(15))
    assert all(len(odd.children(v)) == 2 for v in odd.internal_nodes)
    assert Tree.grid(28, 28).n_leaves == 784


def test_chain_and_mirror():
    assert Tree.chain(4).to_nested() == (0, (1, (2, 3)))
    assert Tree.chain(1).to_nested() == (0,)
    assert Tree.chain(4).mirrored().to_nested() == (((0, 1), 2), 3)


@pytest.mark.parametrize(
    "nested, match",
    [
        (((0, 1), (1, 2)), r"repeated \[1\]"),
        (((0, 2), 3), r"missing \[1\]"),
        (((0, 1), ()), "empty tuple"),
        (((0, 1.5),), "integers and tuples"),
    ],
)
def test_from_nested_errors(nested, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Tree.from_nested(nested)


@pytest.mark.parametrize(
    "parents, match",
    [
        ([2, 2, 3, 2], "cycle|root"),  # 2 -> 3 -> 2
        ([4, 4, 5, 5, -1, -1], "exactly one root"),
        ([3, 3, 3, 3], "own parent"),
        ([-1, 0, 0], "leaves first"),
        ([2, 2, 7, -1], "not a node"),
        ([[2, 2, -1]], "1-d integer"),
    ],
)
def test_from_parents_errors(parents, match):
    with pytest.raises(ValueError, match=match):
        Tree.from_parents(parents)


def test_constructor_errors_and_index_checks():
    with pytest.raises(ValueError, match="two parents"):
        Tree([(), (), (0, 1), (1,)], 2)
    with pytest.raises(ValueError, match="leaf"):
        Tree([(1,), (), (0,)], 2)
    with pytest.raises(IndexError, match="node"):
        Tree.balanced(4).children(9)
    with pytest.raises(TypeError, match="integer"):
        Tree.balanced(4).parent("a")
    with pytest.raises(ValueError, match="differ"):
        Tree.balanced(4).next_hop(4, 4)


@pytest.mark.parametrize("tree", [Tree.grid(3, 5), Tree.grid(1, 3), Tree.from_nested(((3, (0, 5)), 1, (4, 2))), Tree.balanced(9, 3)])
def test_arrays_round_trip_keeps_children_order(tree):
    back = Tree.from_arrays(**tree.to_arrays())
    assert back == tree and back.to_nested() == tree.to_nested()
    assert all(a.dtype == np.int64 for a in tree.to_arrays().values())


def test_parents_do_not_keep_children_order():
    tree = Tree.grid(1, 3)
    assert tree.to_nested() == ((0, 1), 2)
    assert Tree.from_parents(tree.parents).to_nested() == (2, (0, 1))


def test_from_arrays_errors():
    with pytest.raises(ValueError, match="must count"):
        Tree.from_arrays(2, [0, 0, 3], [0, 1])
    with pytest.raises(ValueError, match="1-d integer"):
        Tree.from_arrays(2, [[0, 0, 2]], [0, 1])
