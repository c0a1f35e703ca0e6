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

import functools
from collections.abc import Sequence

import numpy as np
from opt_einsum import get_symbol

from ..core.contract import contract
from ..core.linalg import qr, truncated_svd
from .tree import Tree

__all__ = [
    "axis_of",
    "apply_matrix",
    "qr_toward",
    "move_center",
    "centre_of",
    "towards_order",
    "isometry_error",
    "tall_qr",
    "tall_truncated_svd",
    "cholesky_factor",
    "axis_gram",
]

#: A matrix with at least this many times more rows than columns takes the Cholesky-QR route.
TALL = 4


def tall_qr(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR of a matrix, fast for tall-skinny ones: ``m = Q @ R``, ``Q`` orthonormal columns.

    Tree nodes give very tall matrices (``D**2`` rows, ``D`` columns), where
    LAPACK's Householder QR in numpy's OpenBLAS is slow (57 ms for 4096 x 64 here,
    against 0.7 ms for the Gram matrix). For those, Cholesky QR (``R = chol(M^H M)^H``,
    ``Q = M R^-1``) costs two matrix products. Its orthogonality error is about
    ``cond(M^H M) * eps``, read off the Gram matrix's eigenvalues: one pass when that
    is below 1e-13 (never in single precision), two (CholeskyQR2) when its square
    root is. Otherwise the first pass factorises the Gram matrix shifted by ``11 (m n + n (n + 1)) eps ||M||_F^2`` and two plain
    passes follow (shifted CholeskyQR3, Fukaya, Kannan, Nakatsukasa, Yamamoto &
    Yanagisawa, SIAM J. Sci. Comput. 42, A477 (2020), arXiv:1809.11085): stable up to a
    condition number of ``M`` near ``1/eps``. In canonical form the columns carry the
    Schmidt values of a bond, so ill-conditioned matrices are the rule, not the
    exception. Householder QR remains the fallback (a numerically rank-deficient
    matrix, or a failed check).
    """
    rows, cols = m.shape
    if rows < TALL * cols:
        return qr(m)
    limit = _one_pass_cond(m.dtype)
    try:
        g = contract("ab,ac->bc", m.conj(), m)
        w = np.linalg.eigvalsh(g)
        if not w[-1] > 0:
            return qr(m)
        if w[0] > 0 and w[-1] <= limit * w[0]:
            return _cholesky_pass(m, g)
        well_posed = w[0] > 0 and w[-1] <= limit**2 * w[0]  # CholeskyQR2 suffices
        if not well_posed:
            eps = float(np.finfo(m.dtype).eps)
            g = g + 11.0 * (rows * cols + cols * (cols + 1)) * eps * float(np.trace(g).real) * np.eye(cols, dtype=g.dtype)
        q, r = _cholesky_pass(m, g)
        for _ in range(1 if well_posed else 2):
            q, r2 = _cholesky_pass(q, contract("ab,ac->bc", q.conj(), q))
            r = contract("ab,bc->ac", r2, r)
        if not well_posed:
            error = np.abs(contract("ab,ac->bc", q.conj(), q) - np.eye(cols)).max()
            if error > 100 * float(np.finfo(m.dtype).eps) * cols:
                return qr(m)
        return q, r
    except np.linalg.LinAlgError:
        return qr(m)


def _one_pass_cond(dtype: np.dtype) -> float:
    """Largest Gram condition number for which one Cholesky-QR pass is accurate enough (1e3 in double)."""
    return _ONE_PASS_ERROR / float(np.finfo(dtype).eps)


#: Orthogonality error accepted from one Cholesky-QR pass (about cond(Gram) * eps).
_ONE_PASS_ERROR = 1e-13


def _cholesky_pass(m: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Q = m R^-1`` with ``R = chol(gram)^H``; raises ``LinAlgError`` if ``gram`` is not positive definite."""
    upper = np.linalg.cholesky(gram).conj().T
    return contract("ab,bc->ac", m, np.linalg.inv(upper)), upper


def tall_truncated_svd(
    m: np.ndarray, *, max_bond: int | None, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """:func:`tnkit.core.linalg.truncated_svd` of a tall matrix through its Cholesky factor.

    ``m = Q R`` with ``R = chol(m^H m)^H``; the SVD of the small ``R = U_R S V^H`` gives
    ``U = m (R^-1 U_R)``, one product with the kept columns only. Falls back to
    :func:`tall_qr` (then the SVD of ``R``) when one Cholesky pass is not accurate
    enough, and to the plain SVD for matrices that are not tall.
    """
    rows, cols = m.shape
    if rows < TALL * cols:
        return truncated_svd(m, max_bond=max_bond, cutoff=cutoff)
    upper = cholesky_factor(contract("ab,ac->bc", m.conj(), m))
    if upper is not None:
        u, s, vh, disc = truncated_svd(upper, max_bond=max_bond, cutoff=cutoff)
        return contract("ab,bc->ac", m, np.linalg.solve(upper, u)), s, vh, disc
    q, r = tall_qr(m)
    u, s, vh, disc = truncated_svd(r, max_bond=max_bond, cutoff=cutoff)
    return contract("ab,bc->ac", q, u), s, vh, disc


def cholesky_factor(gram: np.ndarray) -> np.ndarray | None:
    """Upper ``R`` with ``R^H R = gram``, or ``None`` if ``gram``'s condition number exceeds ~1e3.

    Below that, ``m R^-1`` has orthonormal columns to about 1e-13 (one Cholesky-QR pass;
    in single precision one pass is never enough and ``None`` is returned).
    """
    w = np.linalg.eigvalsh(gram)
    if not (w[0] > 0 and w[-1] <= _one_pass_cond(gram.dtype) * w[0]):
        return None
    try:
        return np.linalg.cholesky(gram).conj().T
    except np.linalg.LinAlgError:  # pragma: no cover - excluded by the eigenvalues
        return None


def axis_gram(t: np.ndarray, axis: int) -> np.ndarray:
    """``G[i, j] = sum conj(t[.., i, ..]) t[.., j, ..]`` over every axis but ``axis``."""
    d = t.shape[axis]
    if axis == t.ndim - 1:
        flat = t.reshape(-1, d)
        return contract("ab,ac->bc", flat.conj(), flat)
    if axis == 0:
        flat = t.reshape(d, -1)
        return contract("ba,ca->bc", flat.conj(), flat)
    flat = np.moveaxis(t, axis, -1).reshape(-1, d)
    return contract("ab,ac->bc", flat.conj(), flat)


def axis_of(tree: Tree, v: int, u: int) -> int:
    """Axis of node ``v``'s tensor that points at neighbour ``u``."""
    return tree.neighbours(v).index(u)


@functools.lru_cache(maxsize=1024)
def _apply_equation(ndim: int, axis: int) -> str:
    t = "".join(get_symbol(i) for i in range(ndim))
    new = get_symbol(ndim)
    return f"{new}{t[axis]},{t}->{t[:axis]}{new}{t[axis + 1:]}"


def apply_matrix(t: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    """``t`` with ``m`` applied on ``axis``: ``new[.., k, ..] = sum_j m[k, j] t[.., j, ..]``.

    On a middle axis the contraction layer broadcasts ``m`` over the leading axes
    (a batched product, no transpose copy of ``t``).
    """
    return contract(_apply_equation(t.ndim, axis), m, t)


def qr_toward(tensors: list, tree: Tree, v: int, u: int) -> np.ndarray:
    """Make ``v`` an isometry towards neighbour ``u`` by QR, absorbing ``R`` into ``u``; return ``R``.

    The bond between ``v`` and ``u`` may shrink to ``min(bond, size of the rest of T_v)``.
    """
    ax = axis_of(tree, v, u)
    t = tensors[v]
    moved = np.moveaxis(t, ax, -1) if ax != t.ndim - 1 else t
    shape = moved.shape
    q, r = tall_qr(moved.reshape(-1, shape[-1]))
    q = q.reshape(shape[:-1] + (q.shape[1],))
    tensors[v] = np.moveaxis(q, -1, ax) if ax != t.ndim - 1 else q
    tensors[u] = apply_matrix(tensors[u], r, axis_of(tree, u, v))
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

    ``tensors`` and ``iso`` are updated in place (entries replaced).
    """
    steps = 0
    for v, target in towards_order(tree, center):
        if iso[v] != target:
            qr_toward(tensors, tree, v, target)
            iso[v] = target
            iso[target] = None
            steps += 1
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
    m = np.moveaxis(t, axis, -1).reshape(-1, t.shape[axis])
    g = contract("ab,ac->bc", m.conj(), m)
    return float(np.abs(g - np.eye(g.shape[0])).max())
