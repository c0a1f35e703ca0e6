"""Truncation of tree tensor networks: hierarchical SVD of dense tensors, and SVD compression.

Both follow the truncation rule of :mod:`tnkit.core.linalg` (``max_bond``,
``cutoff`` as a relative discarded weight per bond) and both report an
**exact** error, for the same reason as the MPS sweep (:mod:`tnkit.mps.truncation`).

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
  root, the centre walks down to each node (by Gram-matrix factors, no QR) and
  back up through a truncated SVD of every bond.
"""

from __future__ import annotations

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import gram_factor, gram_truncated_svd, truncated_svd
from .canonical import apply_matrix, axis_gram, move_center
from .tree import Tree

__all__ = ["hierarchical_svd", "svd_compress"]


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
    norm2 = backend.norm2(array)
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
        moved = backend.permute(w, pos + rest)
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
    tensors[tree.root] = backend.permute(w, order)
    return tensors, [discarded[b] for b in tree.bonds], norm2


def svd_compress(
    tensors: list, iso: list, tree: Tree, *, max_bond: int | None, cutoff: float
) -> tuple[float, list[float]]:
    """Truncate every bond leaves-to-root, in place; return ``||psi||**2`` and the discarded weights.

    ``tensors``/``iso`` are updated; the result is in canonical form about the
    root. Discarded weights are absolute, in the order of ``tree.bonds``.

    After one canonicalisation towards the root the centre walks the tree depth
    first, but only *virtually*: walking down from ``v`` to its child ``c`` needs
    no QR of ``v``. With ``E = F^H F`` the Gram matrix of ``v``'s centre tensor on
    the axis of ``c`` (the metric of everything outside ``c``'s subtree), ``c``'s
    centre tensor is ``X_c = C F^T`` on its parent axis, while the stored ``C``
    stays as it is. Coming back up, the truncated SVD ``X_c = U S Vh`` (from the
    small Gram matrix, :func:`tnkit.core.linalg.gram_truncated_svd`) replaces ``C``
    by ``U`` and multiplies the parent's axis by ``U^H C`` (``F`` cancels: ``S Vh
    F^-T = U^H C``), which is exactly what a QR walk would give. No factor is
    ever inverted, so ill-conditioned centres (the rule after canonicalisation:
    they carry the Schmidt values) cost no more than well-conditioned ones.
    """
    root = tree.root
    move_center(tensors, iso, tree, root)
    norm2 = backend.norm2(tensors[root])
    discarded: dict[int, float] = {}
    n_leaves = tree.n_leaves
    # centre[v]: v's centre tensor while the walk is below v; later[v]: (axis, A) products
    # that the stored tensor of v still owes its children (applied to U instead, see _walk_up)
    centre: dict[int, np.ndarray] = {root: tensors[root]}
    later: dict[int, list[tuple[int, np.ndarray]]] = {root: []}
    stack: list[tuple[int, int]] = [(root, 0)]
    while stack:
        v, k = stack.pop()
        kids = [c for c in tree.children(v) if c >= n_leaves]
        if k < len(kids):
            child = kids[k]
            stack.append((v, k + 1))
            axis = tree.children(v).index(child)
            factor = gram_factor(axis_gram(centre[v], axis))
            centre[child] = apply_matrix(tensors[child], factor, tensors[child].ndim - 1)
            later[child] = []
            stack.append((child, 0))
        elif v != root:
            discarded[v] = _walk_up(tensors, tree, v, centre, later, max_bond=max_bond, cutoff=cutoff)
    tensors[root] = centre.pop(root)
    for v in tree.internal_nodes:
        iso[v] = None if v == root else tree.parent(v)
    return norm2, [discarded[b] for b in tree.bonds]


def _walk_up(
    tensors: list, tree: Tree, v: int, centre: dict, later: dict, *, max_bond: int | None, cutoff: float
) -> float:
    """Truncate the bond above ``v`` from its centre tensor; return the discarded weight.

    ``v``'s stored tensor becomes the isometry ``U``; the parent's centre tensor
    takes ``U^H C`` on ``v``'s axis, and so (later) does its stored tensor.
    """
    x = centre.pop(v)
    shape = x.shape
    u, s, disc = gram_truncated_svd(x.reshape(-1, shape[-1]), max_bond=max_bond, cutoff=cutoff)
    u = u.reshape(shape[:-1] + (len(s),))
    # U^H C with C the stored tensor after its children's products A: (A^H U)^H C
    owed = u
    for axis, a in later.pop(v):
        owed = apply_matrix(owed, a.conj().T, axis)
    stored = tensors[v]
    step = contract("ab,ac->bc", owed.reshape(-1, len(s)).conj(), stored.reshape(-1, stored.shape[-1]))
    tensors[v] = u
    parent = tree.parent(v)
    axis = tree.children(parent).index(v)
    centre[parent] = apply_matrix(centre[parent], step, axis)
    if parent != tree.root:
        later[parent].append((axis, step))
    return disc
