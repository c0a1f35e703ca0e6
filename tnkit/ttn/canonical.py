"""Canonical forms of a tree tensor network, by QR steps along the tree.

Functions here act on a list ``tensors`` indexed by node (``None`` for leaves)
and replace its entries; arrays are never written in place. Axis order follows
:mod:`tnkit.ttn.ttn`: a node's children in order, then its parent; the root's
optional output axis comes last.

Bookkeeping
-----------
``iso[v]`` is the neighbouring *internal* node towards which the tensor of
internal node ``v`` is an isometry, or ``None`` when nothing is known. A tensor
``T`` is an isometry towards neighbour ``u`` (the axis ``x`` pointing at ``u``)
when contracting ``T`` with ``conj(T)`` over every other axis gives the identity
on ``x``::

    sum_{all axes but x} conj(T[..., x, ...]) T[..., x', ...] = delta(x, x')

The network is in canonical form with **orthogonality centre** ``c`` when every
internal ``v != c`` is an isometry towards its neighbour on the path to ``c``.
Then the subtrees hanging off ``c`` are orthonormal bases, the whole norm sits
in ``T_c``, and a local quantity at ``c`` needs only ``T_c``.

:func:`move_center` brings the network to canonical form about ``c`` doing only
the QR steps that are missing: a node is factorised only if it is not already
an isometry towards ``c`` or if a factor ``R`` was absorbed into it. Moving the
centre from ``a`` to a neighbouring ``b`` costs one QR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import (
    TALL,
    apply_matrix,
    cholesky_factor,
    gram,
    peak_magnitude,
    tall_qr,
    tall_truncated_svd,
)
from ..core.threads import map_on_threads
from .threads import thread_groups
from .tree import Tree

__all__ = [
    "axis_of",
    "apply_matrix",
    "qr_toward",
    "qr_isometry",
    "move_center",
    "centre_of",
    "towards_order",
    "isometry_error",
    "axis_gram",
    "TALL",  # re-exported from tnkit.core.linalg (they lived here first)
    "tall_qr",
    "tall_truncated_svd",
    "cholesky_factor",
]

def axis_gram(t: np.ndarray, axis: int) -> np.ndarray:
    """``G[i, j] = sum conj(t[.., i, ..]) t[.., j, ..]`` over every axis but ``axis``."""
    d = t.shape[axis]
    if axis == t.ndim - 1:
        return gram(t.reshape(-1, d))
    if axis == 0:
        flat = t.reshape(d, -1)
        return contract("ba,ca->bc", flat.conj(), flat)
    return gram(backend.namespace(t).moveaxis(t, axis, -1).reshape(-1, d))


def axis_of(tree: Tree, v: int, u: int) -> int:
    """Axis of node ``v``'s tensor that points at neighbour ``u``."""
    return tree.neighbours(v).index(u)


def qr_toward(tensors: list, tree: Tree, v: int, u: int) -> np.ndarray:
    """Make ``v`` an isometry towards neighbour ``u`` by QR, absorbing ``R`` into ``u``; return ``R``.

    The bond between ``v`` and ``u`` may shrink to ``min(bond, size of the rest of T_v)``.
    """
    r = qr_isometry(tensors, tree, v, u)
    tensors[u] = apply_matrix(tensors[u], r, axis_of(tree, u, v), upper=True)
    return r


def qr_isometry(tensors: list, tree: Tree, v: int, u: int) -> np.ndarray:
    """Replace ``T_v`` by the ``Q`` of its QR towards neighbour ``u`` and return ``R`` (upper triangular), unabsorbed."""
    ax = axis_of(tree, v, u)
    t = tensors[v]
    xp = backend.namespace(t)
    moved = xp.moveaxis(t, ax, -1) if ax != t.ndim - 1 else t
    shape = moved.shape
    q, r = tall_qr(moved.reshape(-1, shape[-1]))
    q = q.reshape(shape[:-1] + (q.shape[1],))
    tensors[v] = xp.moveaxis(q, -1, ax) if ax != t.ndim - 1 else q
    return r


def towards_order(tree: Tree, center: int) -> list[tuple[int, int]]:
    """``(v, hop)`` for every internal ``v != center``: farthest first, ``hop`` its neighbour towards ``center``."""
    n_leaves = tree.n_leaves
    hop: dict[int, int] = {center: -1}
    order = [center]
    k = 0
    while k < len(order):  # breadth-first from the centre over internal nodes
        v = order[k]
        k += 1
        for u in tree.neighbours(v):
            if u >= n_leaves and u not in hop:
                hop[u] = v
                order.append(u)
    return [(v, hop[v]) for v in reversed(order[1:])]


def move_center(tensors: list, iso: list, tree: Tree, center: int) -> int:
    """Bring the network to canonical form about internal node ``center``; return the number of QR steps.

    ``tensors`` and ``iso`` are updated in place (entries replaced). The branches
    hanging from ``center`` are independent until their ``R`` factors reach it: with
    more than one thread available and enough work in each branch
    (:func:`tnkit.ttn.threads.thread_groups`), they are swept on Python threads with
    one BLAS thread each and the factors are absorbed into ``center`` afterwards.
    """
    order = towards_order(tree, center)
    branches: dict[int, list[tuple[int, int]]] = {}
    top_of: dict[int, int] = {}
    for v, target in reversed(order):  # closest to the centre first
        top = v if target == center else top_of[target]
        top_of[v] = top
        branches.setdefault(top, []).append((v, target))
    work = {  # QR steps known to be due (more follow above any of them): an estimate that is 0 when all is done
        top: sum(backend.numel(tensors[v]) * max(tensors[v].shape) for v, target in steps if iso[v] != target)
        for top, steps in branches.items()
    }
    groups = thread_groups(work)

    def sweep(group: tuple[int, ...]) -> tuple[int, list[tuple[int, np.ndarray]]]:
        steps, owed = 0, []
        for top in group:
            for v, target in reversed(branches[top]):  # farthest first
                if iso[v] == target:
                    continue
                if target == center:
                    owed.append((v, qr_isometry(tensors, tree, v, target)))
                else:
                    qr_toward(tensors, tree, v, target)
                    iso[target] = None
                iso[v] = target
                steps += 1
        return steps, owed

    steps = 0
    for done, owed in map_on_threads(sweep, groups, len(groups)):
        steps += done
        for v, r in owed:  # absorbed in the centre one at a time, after the threads
            tensors[center] = apply_matrix(tensors[center], r, axis_of(tree, center, v), upper=True)
    iso[center] = None
    return steps


def centre_of(tree: Tree, iso: Sequence[int | None]) -> int | None:
    """The orthogonality centre implied by ``iso``, or ``None`` if not canonical."""
    free = [v for v in tree.internal_nodes if iso[v] is None]
    if len(free) > 1:
        return None
    if not free:  # every node claims an isometry: two must point at each other
        candidates = [v for v in tree.internal_nodes if iso[iso[v]] == v]  # type: ignore[index]
        if not candidates:
            return None
        free = candidates[:1]
    c = free[0]
    for v in tree.internal_nodes:
        if v != c and iso[v] != tree.next_hop(v, c):
            return None
    return c


def isometry_error(t: np.ndarray, axis: int) -> float:
    """Largest deviation from the identity of ``T^dagger T`` contracted over every axis but ``axis``."""
    g = axis_gram(t, axis)
    return peak_magnitude(g - backend.eye(g.shape[0], like=g))
