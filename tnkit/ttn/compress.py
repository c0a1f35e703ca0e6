"""Truncation of tree tensor networks: hierarchical SVD of dense tensors, and SVD compression.

Both follow the truncation rule of :mod:`tnkit.core.linalg` (``max_bond``,
``cutoff`` as a relative discarded weight per bond) and both report an
**exact** error, for the same reason as the MPS sweep (:mod:`tnkit.mps.compress`).

Leaves-to-root truncation
-------------------------
Every truncation of the bond above node ``v`` is carried out with the
orthogonality centre at ``v`` and keeps the ``k`` leading left singular
vectors of ``T_v`` (children axes against the parent bond). It is therefore an
orthogonal projection ``P_v`` acting only on the leaves under ``v``. Bonds are
truncated in post-order (children before parents), and a node's kept space is
spanned by its children's *already truncated* bases, so ``P_parent P_v =
P_parent``: the projections commute and their product is a projection. Hence

``||psi - psi_t||**2 / ||psi||**2 == sum(discarded) / ||psi||**2``

exactly, and the result is the projection of the input (not renormalised).
This is the leaves-to-root hierarchical SVD of Grasedyck (SIAM J. Matrix Anal.
Appl. 31, 2029 (2010)); quimb's ``compress_all_tree`` visits the bonds in the
same inward order.

* :func:`hierarchical_svd` applies it to a dense tensor: at node ``v`` the dense
  remainder is matricised with ``v``'s children against everything else.
* :func:`svd_compress` applies it to a network: from canonical form about the
  root, the centre walks down to each node by QR and back up through a
  truncated SVD of every bond.
"""

from __future__ import annotations

import numpy as np

from ..core.contract import contract
from ..core.linalg import truncated_svd
from .canonical import TALL, apply_matrix, axis_gram, cholesky_factor, move_center, qr_toward, tall_truncated_svd
from .tree import Tree

__all__ = ["hierarchical_svd", "svd_compress", "truncate_toward_parent"]


def hierarchical_svd(
    array: np.ndarray, tree: Tree, *, has_output: bool, max_bond: int | None, cutoff: float
) -> tuple[list, list[float], float]:
    """Leaves-to-root truncated HSVD of ``array`` (axes: leaves in order, then the output axis).

    Returns
    -------
    tensors : list
        Indexed by node (``None`` for leaves); every non-root node an isometry
        towards its parent.
    discarded : list of float
        Absolute discarded weight at each bond, in the order of ``tree.bonds``.
    norm2 : float
        ``||array||**2``.
    """
    n_leaves = tree.n_leaves
    norm2 = float(np.vdot(array, array).real)
    # `labels` names the axes of the dense remainder `w` by the node they stand for
    labels: list[object] = list(range(n_leaves)) + (["out"] if has_output else [])
    w = array
    tensors: list = [None] * tree.n_nodes
    discarded: dict[int, float] = {}
    for v in tree.postorder():
        if v < n_leaves or v == tree.root:
            continue
        kids = tree.children(v)
        pos = [labels.index(c) for c in kids]
        rest = [i for i in range(len(labels)) if i not in pos]
        moved = w.transpose(pos + rest)
        row_shape = moved.shape[: len(pos)]
        u, s, vh, disc = truncated_svd(
            moved.reshape(int(np.prod(row_shape)), -1), max_bond=max_bond, cutoff=cutoff
        )
        k = len(s)
        tensors[v] = u.reshape(row_shape + (k,))
        w = (s[:, None] * vh).reshape((k,) + moved.shape[len(pos):])
        labels = [v] + [labels[i] for i in rest]
        discarded[v] = disc
    order = [labels.index(c) for c in tree.children(tree.root)]
    if has_output:
        order.append(labels.index("out"))
    tensors[tree.root] = w.transpose(order)
    return tensors, [discarded[b] for b in tree.bonds], norm2


def truncate_toward_parent(
    tensors: list, tree: Tree, v: int, *, max_bond: int | None, cutoff: float, pending: dict | None = None
) -> float:
    """Truncated SVD of ``T_v`` (everything against its parent bond); ``S Vh`` goes to the parent.

    ``v`` must hold the orthogonality centre; afterwards ``v`` is an isometry
    towards its parent and the centre is at the parent. Returns the absolute
    discarded weight. ``pending`` maps a node to ``(axis, R^-1)`` still to be
    applied on that axis (see :func:`svd_compress`).
    """
    t = tensors[v]
    parent = tree.parent(v)
    shape = t.shape
    u, s, vh, disc = tall_truncated_svd(t.reshape(-1, shape[-1]), max_bond=max_bond, cutoff=cutoff)
    tensors[v] = u.reshape(shape[:-1] + (len(s),))
    x = s[:, None] * vh
    axis = tree.children(parent).index(v)
    if pending and parent in pending:
        pending_axis, inverse = pending.pop(parent)
        if pending_axis != axis:  # pragma: no cover - the walk always returns along the same edge
            raise AssertionError("pending factor on another axis")
        x = contract("ab,cb->ac", x, inverse)  # X R^-T: applied as one matrix
    tensors[parent] = apply_matrix(tensors[parent], x, axis)
    return disc


def svd_compress(
    tensors: list, iso: list, tree: Tree, *, max_bond: int | None, cutoff: float
) -> tuple[float, list[float]]:
    """Truncate every bond leaves-to-root, in place; return ``||psi||**2`` and the discarded weights.

    ``tensors``/``iso`` are updated; the result is in canonical form about the
    root. Discarded weights are absolute, in the order of ``tree.bonds``.
    """
    root = tree.root
    move_center(tensors, iso, tree, root)
    norm2 = float(np.vdot(tensors[root], tensors[root]).real)
    discarded: dict[int, float] = {}
    n_leaves = tree.n_leaves
    # Depth-first: walk down to a child, compress its subtree, come back by truncated SVD.
    # Walking down from v makes v an isometry towards the child, v = Q R. When one
    # Cholesky pass is accurate, Q is never formed: the child absorbs R, and v keeps
    # its tensor M with R^-1 pending on that axis, applied together with what comes
    # back up (Q X^T = M (R^-1 X^T)): one matrix product instead of two.
    pending: dict[int, tuple[int, np.ndarray]] = {}
    stack: list[tuple[int, int]] = [(root, 0)]
    while stack:
        v, k = stack.pop()
        kids = [c for c in tree.children(v) if c >= n_leaves]
        if k < len(kids):
            child = kids[k]
            stack.append((v, k + 1))
            _walk_down(tensors, tree, v, child, pending)
            iso[v], iso[child] = child, None
            stack.append((child, 0))
        elif v != root:
            discarded[v] = truncate_toward_parent(tensors, tree, v, max_bond=max_bond, cutoff=cutoff, pending=pending)
            parent = tree.parent(v)
            iso[v], iso[parent] = parent, None
    return norm2, [discarded[b] for b in tree.bonds]


def _walk_down(tensors: list, tree: Tree, v: int, child: int, pending: dict) -> None:
    """Move the centre from ``v`` to ``child``: ``R`` into the child, ``R^-1`` pending on ``v`` (or a QR)."""
    axis = tree.children(v).index(child)
    upper = cholesky_factor(axis_gram(tensors[v], axis)) if tensors[v].size >= TALL * tensors[v].shape[axis] ** 2 else None
    if upper is None:
        qr_toward(tensors, tree, v, child)
        return
    tensors[child] = apply_matrix(tensors[child], upper, tensors[child].ndim - 1)
    pending[v] = (axis, np.linalg.inv(upper))
