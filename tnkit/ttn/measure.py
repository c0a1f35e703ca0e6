"""Measurements on tree tensor networks: reduced density matrices, expectation values, entanglement.

All quantities are for the normalised state. They move the orthogonality
centre (see :mod:`tnkit.ttn.canonical`): the gauge changes, never the state.

* One leaf ``l``: with the centre at ``l``'s parent ``p``, the rest of the tree
  is an orthonormal basis, so ``rho_l = T_p T_p^dagger`` over every axis of
  ``T_p`` but ``l``'s.
* Two leaves ``a, b``: with the centre at ``a``'s parent, only the nodes on the
  path to ``b``'s parent are contracted (ket and bra), everything off the path
  being isometric towards it.
* Schmidt values across the edge above node ``c``: with the centre at ``c``'s
  parent, the singular values of ``T_parent`` matricised as (everything else,
  ``c``'s axis). :func:`schmidt_values_all` visits every internal node once in
  depth-first order, so every edge costs one QR step to reach and one SVD.
* A root output axis counts as part of the state (it is traced in every
  reduced density matrix).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from opt_einsum import get_symbol

from ..core import backend
from ..core.contract import contract
from ..core.linalg import peak_magnitude, svd
from ..core.validate import as_array, check_int, check_site
from ..mps.canonical import ZERO_STATE_ERROR
from ..mps.measure import entropy_of_probabilities
from .canonical import TALL, tall_qr

if TYPE_CHECKING:  # pragma: no cover
    from .ttn import TreeTensorNetwork

__all__ = [
    "reduced_density_matrix",
    "expectation",
    "schmidt_values",
    "schmidt_values_all",
    "entropies",
    "check_leaf",
    "check_edge",
]


def check_leaf(name: str, leaf: object, n_leaves: int) -> int:
    """``leaf`` as an int in ``[0, n_leaves)``, negative values counting from the end."""
    return check_site(name, leaf, n_leaves, what="leaf")


def check_edge(name: str, edge: object, tree: Any) -> int:
    """``edge`` (named by its child node) as an int: any node but the root."""
    edge = check_int(name, edge)
    if not 0 <= edge < tree.n_nodes or edge == tree.root:
        raise IndexError(
            f"`{name}` must name an edge by its child node, a node in [0, {tree.n_nodes}) other than "
            f"the root {tree.root}, got {edge}."
        )
    return edge


def _leaves_arg(leaves: object, n_leaves: int) -> tuple[int, ...]:
    if np.ndim(leaves) == 0:
        return (check_leaf("leaves", leaves, n_leaves),)
    out = tuple(check_leaf("leaves", x, n_leaves) for x in leaves)  # type: ignore[union-attr]
    if len(out) not in (1, 2) or len(set(out)) != len(out):
        raise ValueError(f"`leaves` must be one leaf or two different leaves, got {leaves!r}.")
    return out


@functools.lru_cache(maxsize=1024)
def _sandwich_equation(ndim: int, open_axes: tuple[int, ...], in_axis: int | None, n_carry: int) -> str:
    """``[x,] T, conj(T) -> carry + (ket, bra) per open axis``; ``x`` enters on ``in_axis``."""
    ket = [get_symbol(i) for i in range(ndim)]
    bra = list(ket)
    extra = ndim
    for ax in open_axes + ((in_axis,) if in_axis is not None else ()):
        bra[ax] = get_symbol(extra)
        extra += 1
    carry = "".join(get_symbol(extra + i) for i in range(n_carry))
    out = carry + "".join(ket[ax] + bra[ax] for ax in open_axes)
    terms = ["".join(ket), "".join(bra)]
    if in_axis is not None:
        terms.insert(0, carry + ket[in_axis] + bra[in_axis])
    return ",".join(terms) + "->" + out


def _sandwich(t: np.ndarray, open_axes: tuple[int, ...], x: np.ndarray | None = None, in_axis: int | None = None):
    n_carry = 0 if x is None else x.ndim - 2
    eq = _sandwich_equation(t.ndim, open_axes, in_axis, n_carry)
    return contract(eq, *([] if x is None else [x]), t, t.conj())


def _centre_on(ttn: TreeTensorNetwork, node: int) -> None:
    """Move the centre of ``ttn`` to ``node``; ``ValueError`` if it is the zero state."""
    ttn.canonicalize_(node)
    if peak_magnitude(ttn._tensors[node]) == 0.0:
        raise ValueError(ZERO_STATE_ERROR)


def reduced_density_matrix(ttn: TreeTensorNetwork, leaves: object) -> np.ndarray:
    """Reduced density matrix of one leaf ``(d, d)`` or two ``(d_a d_b, d_a d_b)``, trace one.

    For two leaves the first listed is the slower index of the result. A numpy
    array, whatever the array library of the network.
    """
    tree = ttn.tree
    picked = _leaves_arg(leaves, tree.n_leaves)
    a = picked[0]
    pa = tree.parent(a)
    _centre_on(ttn, pa)
    t = ttn._tensors
    if len(picked) == 1:
        rho = backend.to_numpy(_sandwich(t[pa], (tree.children(pa).index(a),)))
        return rho / np.trace(rho).real
    b = picked[1]
    pb = tree.parent(b)
    if pa == pb:
        kids = tree.children(pa)
        rho4 = _sandwich(t[pa], (kids.index(a), kids.index(b)))  # (a, a', b, b')
    else:
        path = tree.path(pa, pb)
        x = _sandwich(t[pa], (tree.children(pa).index(a), tree.neighbours(pa).index(path[1])))
        for k in range(1, len(path)):
            v = path[k]
            nb = tree.neighbours(v)
            out_axis = nb.index(b) if v == pb else nb.index(path[k + 1])
            x = _sandwich(t[v], (out_axis,), x, nb.index(path[k - 1]))
        rho4 = x  # (a, a', b, b')
    da, db = rho4.shape[0], rho4.shape[2]
    rho = backend.to_numpy(backend.permute(rho4, (0, 2, 1, 3)).reshape(da * db, da * db))
    return rho / np.trace(rho).real


def expectation(ttn: TreeTensorNetwork, op: object, leaves: object) -> complex | float:
    """``<O>`` of a one-leaf operator ``(d, d)`` or a two-leaf operator on a pair of leaves.

    A two-leaf operator is a ``(d_a d_b, d_a d_b)`` matrix or ``(d_a, d_b, d_a, d_b)``
    tensor with the first listed leaf the slower index.
    """
    picked = _leaves_arg(leaves, ttn.tree.n_leaves)
    dims = [ttn.phys_dims[x] for x in picked]
    size = int(np.prod(dims))
    op = as_array("op", op)
    allowed = {(size, size)} | ({(dims[0], dims[1], dims[0], dims[1])} if len(dims) == 2 else set())
    if op.shape not in allowed:
        raise ValueError(
            f"`op` must have shape {' or '.join(map(str, sorted(allowed)))} for leaves {picked}, got {op.shape}."
        )
    rho = reduced_density_matrix(ttn, picked)
    value = complex(np.trace(op.reshape(size, size) @ rho))
    return value.real if abs(value.imag) <= 1e-13 * max(abs(value.real), 1.0) else value


def _axis_schmidt(t: np.ndarray, axis: int) -> np.ndarray:
    m = backend.namespace(t).moveaxis(t, axis, -1).reshape(-1, t.shape[axis])
    if m.shape[0] >= TALL * m.shape[1]:
        m = tall_qr(m)[1]  # same singular values, a small matrix
    s = backend.to_numpy(svd(m)[1])
    norm = np.linalg.norm(s)
    return s / norm if norm > 0 else s


def schmidt_values(ttn: TreeTensorNetwork, edge: object) -> np.ndarray:
    """Normalised Schmidt coefficients across the edge above node ``edge``."""
    tree = ttn.tree
    c = check_edge("edge", edge, tree)
    p = tree.parent(c)
    _centre_on(ttn, p)
    return _axis_schmidt(ttn._tensors[p], tree.children(p).index(c))


def schmidt_values_all(ttn: TreeTensorNetwork) -> list[np.ndarray]:
    """Schmidt values across every edge, in the order of ``tree.edges``; the centre ends at the root."""
    tree = ttn.tree
    out: list[np.ndarray | None] = [None] * tree.n_nodes
    for v in tree.preorder():
        if tree.is_leaf(v):
            continue
        _centre_on(ttn, v)
        t = ttn._tensors[v]
        for axis, c in enumerate(tree.children(v)):
            out[c] = _axis_schmidt(t, axis)
    ttn.canonicalize_(tree.root)
    return [out[c] for c, _ in tree.edges]  # type: ignore[misc]


def entropies(ttn: TreeTensorNetwork, alpha: float = 1.0) -> np.ndarray:
    """Entanglement entropy (nats) across every edge, in the order of ``tree.edges``."""
    if not np.isscalar(alpha) or not alpha >= 0:
        raise ValueError(f"`alpha` must be a non-negative number, got {alpha!r}.")
    return np.array([entropy_of_probabilities(s**2, alpha) for s in schmidt_values_all(ttn)])
