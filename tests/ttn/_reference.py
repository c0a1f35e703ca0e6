"""Naive dense references for tree tensor networks (independent of tnkit's contraction code)."""

from __future__ import annotations

import numpy as np

from tnkit.ttn import Tree


def dense_of(tree: Tree, tensors: dict | list) -> np.ndarray:
    """Dense array of a TTN by recursive ``np.tensordot``: axes leaf 0..L-1, then the output axis.

    ``tensors`` is indexed by node (a list with ``None`` for leaves, or a dict).
    """

    def sub(v: int):
        """Array of the subtree of ``v``: (its leaves in order..., parent bond/output...), and the leaf list."""
        if v < tree.n_leaves:
            return None, [v]
        t = np.asarray(tensors[v])
        leaves: list[int] = []
        # contract children one at a time; keep the remaining axes of t at the end
        result = t
        pos = 0  # number of leaf axes already in front of `result`
        for c in tree.children(v):
            child, child_leaves = sub(c)
            if child is None:
                # leaf axis: move the next child axis to position `pos`
                pos += 1
            else:
                # child: (child leaves..., bond); contract its bond with result axis `pos`
                result = np.tensordot(child, result, axes=([child.ndim - 1], [pos]))
                # now: child leaves, then result axes with `pos` removed: move child leaves to position `pos`
                k = child.ndim - 1
                order = list(range(k, k + pos)) + list(range(k)) + list(range(k + pos, result.ndim))
                result = result.transpose(order)
                pos += k
            leaves += child_leaves
        return result, leaves

    arr, leaves = sub(tree.root)
    # reorder leaf axes to 0..L-1
    n = tree.n_leaves
    perm = [leaves.index(leaf) for leaf in range(n)] + list(range(n, arr.ndim))
    return arr.transpose(perm)


def random_tensors(rng, tree: Tree, dims, bond: int, dtype=np.float64, output_dim=None) -> list:
    """Gaussian tensors (indexed by node) with every bond of dimension ``bond``."""
    out: list = [None] * tree.n_nodes
    for v in tree.internal_nodes:
        shape = tuple(dims[c] if c < tree.n_leaves else bond for c in tree.children(v))
        if v != tree.root:
            shape += (bond,)
        elif output_dim is not None:
            shape += (output_dim,)
        a = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * rng.standard_normal(shape)
        out[v] = a.astype(dtype)
    return out


TREES = {
    "balanced8": lambda: Tree.balanced(8),
    "ternary7": lambda: Tree.balanced(7, arity=3),
    "grid2x3": lambda: Tree.grid(2, 3),
    "chain5": lambda: Tree.chain(5),
    "nested": lambda: Tree.from_nested(((3, (0, 5)), 1, (4, 2))),
    "unary": lambda: Tree.from_nested(((0,), (1, 2))),
}
