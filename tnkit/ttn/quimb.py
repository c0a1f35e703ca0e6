"""Exact conversion between tnkit tree tensor networks and ``quimb.tensor.TensorNetwork``.

quimb has no tree class, so a TTN becomes a plain ``TensorNetwork`` with the
tree's structure and these names (quimb is imported only when converting):

* tensor of internal node ``v``: tags ``"TTN_NODE{v}"`` (and ``"TTN_ROOT"`` on the root);
* physical index of leaf ``l``: ``site_ind_id.format(l)`` (default ``"k{l}"``);
* bond above internal node ``v``: ``"ttn_b{v}"``; the root's output axis: ``output_ind``
  (default ``"out"``).

Every tensor keeps tnkit's axis order (children, parent, output), so
``ttn_from_quimb(ttn_to_quimb(psi))`` returns the same tree and tensors (internal
nodes numbered in post-order, as ``Tree.from_nested`` and ``Tree.balanced`` do).
:func:`ttn_from_quimb` also reads networks built elsewhere: any tree-shaped
network whose open indices are the physical ones (plus an optional output
index); the tree is rooted at the tensor tagged ``"TTN_ROOT"``, else at the one
holding the output index, else at the first tensor, and children follow each
tensor's index order.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["ttn_to_quimb", "ttn_from_quimb"]


def _quimb_tensor() -> Any:
    try:
        import quimb.tensor as qtn
    except ImportError as exc:  # pragma: no cover - quimb is a core dependency
        raise ImportError("quimb interop needs quimb: pip install quimb") from exc
    return qtn


def _index_names(tree: Any, site_ind_id: str) -> list[str]:
    names = [site_ind_id.format(leaf) for leaf in range(tree.n_leaves)]
    names += [f"ttn_b{v}" for v in tree.internal_nodes]
    return names


def ttn_to_quimb(ttn: Any, *, site_ind_id: str = "k{}", output_ind: str = "out") -> Any:
    """A ``quimb.tensor.TensorNetwork`` equal to ``ttn`` (one tensor per internal node)."""
    qtn = _quimb_tensor()
    tree = ttn.tree
    name = _index_names(tree, site_ind_id)
    tensors = []
    for v in tree.internal_nodes:
        inds = [name[c] for c in tree.children(v)]
        tags = {f"TTN_NODE{v}"}
        if v != tree.root:
            inds.append(name[v])
        else:
            tags.add("TTN_ROOT")
            if ttn.output_dim is not None:
                inds.append(output_ind)
        tensors.append(qtn.Tensor(np.array(ttn.tensor(v)), inds=tuple(inds), tags=tags))
    return qtn.TensorNetwork(tensors)


def ttn_from_quimb(tn: Any, *, site_ind_id: str = "k{}", output_ind: str | None = "out") -> Any:
    """A :class:`~tnkit.TTN` equal to a tree-shaped quimb ``TensorNetwork``.

    Parameters
    ----------
    tn : quimb.tensor.TensorNetwork
        Tensors joined by bonds in a tree; every open index is a physical
        index named by ``site_ind_id`` (leaves ``0 .. L-1``), or ``output_ind``.
    site_ind_id : str
        Format of the physical index names.
    output_ind : str or None
        Name of the output index, if any.

    Raises
    ------
    TypeError
        If ``tn`` is not a quimb ``TensorNetwork``.
    ValueError
        If the network is not a tree, an index joins more than two tensors, or
        the open indices are not exactly the leaves ``0 .. L-1`` (plus the output).
    """
    from ..ttn.tree import Tree
    from ..ttn.ttn import TreeTensorNetwork

    qtn = _quimb_tensor()
    if not isinstance(tn, qtn.TensorNetwork):
        raise TypeError(f"`tn` must be a quimb TensorNetwork, got {type(tn).__name__}.")
    tensors = list(tn.tensors)
    if not tensors:
        raise ValueError("`tn` has no tensors.")
    where: dict[str, list[int]] = {}
    for k, t in enumerate(tensors):
        for ind in t.inds:
            where.setdefault(ind, []).append(k)
    pattern = re.compile("^" + re.escape(site_ind_id).replace(r"\{\}", r"(\d+)") + "$")
    leaf_of: dict[str, int] = {}
    for ind, ks in where.items():
        if len(ks) > 2:
            raise ValueError(f"index {ind!r} joins {len(ks)} tensors; a tree network has no hyperedges.")
        if len(ks) == 1 and ind != output_ind:
            m = pattern.match(ind)
            if m is None:
                raise ValueError(f"open index {ind!r} is neither a physical index ({site_ind_id!r}) nor the output.")
            leaf_of[ind] = int(m.group(1))
    n_leaves = len(leaf_of)
    if sorted(leaf_of.values()) != list(range(n_leaves)):
        raise ValueError(f"the physical indices must be leaves 0..{n_leaves - 1}, got {sorted(leaf_of.values())[:10]}.")
    root_k = _root_tensor(tensors, output_ind)
    children: list[list[int]] = [[] for _ in range(n_leaves)]
    node_of = {}
    arrays: list[np.ndarray] = []
    # depth-first from the root, numbering internal nodes in post-order as Tree.from_nested does
    seen = {root_k}

    def visit(k: int, parent_ind: str | None) -> int:
        kids, axes = [], []
        t = tensors[k]
        for axis, ind in enumerate(t.inds):
            if ind == parent_ind or ind == output_ind:
                continue
            if ind in leaf_of:
                kids.append(leaf_of[ind])
            else:
                (other,) = [j for j in where[ind] if j != k]
                if other in seen:
                    raise ValueError("`tn` has a cycle: it is not a tree.")
                seen.add(other)
                kids.append(visit(other, ind))
            axes.append(axis)
        if parent_ind is not None:
            axes.append(t.inds.index(parent_ind))
        elif output_ind in t.inds:
            axes.append(t.inds.index(output_ind))
        children.append(kids)
        arrays.append(np.asarray(t.data).transpose(axes))
        node_of[k] = len(children) - 1
        return len(children) - 1

    visit(root_k, None)
    if len(seen) != len(tensors):
        raise ValueError(f"`tn` is not connected: {len(tensors) - len(seen)} tensors hang apart from the root.")
    tree = Tree(children, n_leaves)
    return TreeTensorNetwork(tree, arrays)


def _root_tensor(tensors: list, output_ind: str | None) -> int:
    for k, t in enumerate(tensors):
        if "TTN_ROOT" in t.tags:
            return k
    if output_ind is not None:
        for k, t in enumerate(tensors):
            if output_ind in t.inds:
                return k
    return 0
