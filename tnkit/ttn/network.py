"""Whole-network contractions of a tree tensor network, through :func:`tnkit.contract`.

* :func:`network_terms` writes the einsum terms of every node tensor: each edge
  gets one symbol, named by its child node (see :mod:`tnkit.ttn.tree`), plus one
  for the root's output axis and one for a batch index.
* :func:`to_dense` contracts the network into one array.
* :func:`product_inputs` contracts the network with a batch of product states
  (one vector per leaf and per batch entry) in **one planned contraction**:
  a single equation with a shared batch index and an explicit bottom-up path
  (each node's tensor meets its children's results in child order), planned,
  compiled and cached by the contraction layer.
* :func:`log_overlap` computes ``<a|b>`` by leaf-to-root environments, each
  rescaled, so no number overflows whatever the size of the tree.
* :func:`log_norm` computes ``||psi||`` the same way, carrying a square-root factor
  ``F`` of each environment (``E = F^H F``) instead of ``E``: a node absorbs its
  children's factors (one matrix product each) and its environment is a Gram
  matrix, 2.5 instead of 3 products of ``D**4`` for a binary node.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from opt_einsum import get_symbol

from ..core import backend
from ..core.contract import contract
from ..core.linalg import apply_matrix, gram, gram_factor, peak_magnitude
from ..core.workspace import scratch
from .tree import Tree

__all__ = ["network_terms", "to_dense", "product_inputs", "log_product_inputs", "product_path", "log_overlap",
           "log_norm"]


@functools.lru_cache(maxsize=256)
def network_terms(tree: Tree, has_output: bool) -> tuple[tuple[str, ...], str, str]:
    """Einsum terms of the internal nodes (in node order), the output symbol and the batch symbol."""
    n_nodes = tree.n_nodes
    sym = [get_symbol(v) for v in range(n_nodes)]
    out_sym = get_symbol(n_nodes)
    batch_sym = get_symbol(n_nodes + 1)
    terms = []
    for v in tree.internal_nodes:
        term = "".join(sym[c] for c in tree.children(v))
        if v != tree.root:
            term += sym[v]
        elif has_output:
            term += out_sym
        terms.append(term)
    return tuple(terms), out_sym, batch_sym


def to_dense(tree: Tree, tensors: Sequence[np.ndarray], has_output: bool) -> np.ndarray:
    """The full array ``psi[s_0, ..., s_{L-1}(, o)]`` (leaf order, then the output axis)."""
    terms, out_sym, _ = network_terms(tree, has_output)
    output = "".join(get_symbol(leaf) for leaf in range(tree.n_leaves)) + (out_sym if has_output else "")
    eq = ",".join(terms) + "->" + output
    return contract(eq, *tensors)


@functools.lru_cache(maxsize=256)
def product_path(tree: Tree, has_output: bool) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Equation and explicit bottom-up path of the batched product-input contraction.

    Operands: the internal node tensors in node order, then one ``(batch, d)``
    matrix per leaf in leaf order.
    """
    terms, out_sym, batch = network_terms(tree, has_output)
    n_leaves = tree.n_leaves
    feats = tuple(batch + get_symbol(leaf) for leaf in range(n_leaves))
    eq = ",".join(terms + feats) + "->" + batch + (out_sym if has_output else "")
    # positions of the live operands: start with nodes (by id), then leaves
    live: list[int] = [v for v in tree.internal_nodes] + list(range(n_leaves))
    path: list[tuple[int, int]] = []
    for v in tree.postorder():
        if v < n_leaves:
            continue
        acc = v
        for c in tree.children(v):
            i, j = live.index(acc), live.index(c)
            # the child's (batch, bond) result first: the layer then multiplies it into the
            # node tensor as (batch, D) @ (D, rest) and absorbs later children as batched
            # (1, D) @ (D, rest) products, all in (batch, ...) layout without a transpose
            path.append((j, i))
            for p in sorted((i, j), reverse=True):
                del live[p]
            live.append(v)  # the partial result stands for node v
            acc = v
    return eq, tuple(path)


#: Entries of the largest ``(rows, ...)`` intermediate of one chunk of a batched contraction
#: (4 MiB in double precision: it stays in cache between the two products of a node).
CHUNK_ENTRIES = 2**19


def product_inputs(
    tree: Tree, tensors: Sequence[np.ndarray], features: Sequence[np.ndarray], has_output: bool
) -> np.ndarray:
    """Contract the network with ``features[leaf]`` of shape ``(batch, d_leaf)``: ``(batch[, out])``.

    A large batch is cut into near-equal chunks of rows whose largest intermediate
    (a node tensor with its first child absorbed, ``(rows, size / D)``) holds at most
    :data:`CHUNK_ENTRIES` entries, so it is still in cache when the next child is
    absorbed (20% faster for 1,000 inputs at bond 32); every chunk is the same
    planned contraction (at most two cached plans: chunk sizes differ by one row).
    """
    eq, path = product_path(tree, has_output)
    chunks = _row_chunks(tensors, features[0].shape[0] if features else 0)
    if len(chunks) <= 1:
        return contract(eq, *tensors, *features, optimize=path)
    parts = [contract(eq, *tensors, *(f[rows] for f in features), optimize=path) for rows in chunks]
    return np.concatenate(parts, axis=0)


def _row_chunks(tensors: Sequence[np.ndarray | None], batch: int) -> list[slice]:
    """Near-equal slices of ``batch`` rows whose largest intermediate (``rows * size / D``) fits :data:`CHUNK_ENTRIES`."""
    row = max((math.prod(t.shape) // t.shape[0] for t in tensors if t is not None and t.ndim > 1), default=1)
    n_chunks = max(1, -(-batch * row // CHUNK_ENTRIES))
    bounds = np.linspace(0, batch, n_chunks + 1).round().astype(int)
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


@functools.lru_cache(maxsize=256)
def _node_input_equation(n_children: int, has_out_axis: bool) -> str:
    """``T_v, (batch, D_c) per child -> (batch[, D_parent or output])`` for one node."""
    kids = [get_symbol(k) for k in range(n_children)]
    batch, out = get_symbol(n_children), get_symbol(n_children + 1)
    node = "".join(kids) + (out if has_out_axis else "")
    return ",".join([node] + [batch + k for k in kids]) + "->" + batch + (out if has_out_axis else "")


def log_product_inputs(
    tree: Tree, tensors: Sequence[np.ndarray | None], features: Sequence[np.ndarray], has_output: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`product_inputs` as ``(phase, log|value|)``, safe from under- and overflow on any tree.

    ``tensors`` is indexed by node (``None`` for leaves), unlike :func:`product_inputs`.

    Node by node from the leaves, every row of each node's ``(batch, D)`` result is
    divided by its largest magnitude and the logarithms are summed, so trees of
    thousands of leaves give finite logarithms where the plain values would
    underflow. Rows are processed in the chunks of :func:`product_inputs`.

    Returns
    -------
    phase : numpy.ndarray, shape (batch,) or (batch, output)
        ``value / |value|`` (0 where the value is 0); real signs for real inputs.
    log_abs : numpy.ndarray, same shape
        ``log|value|`` (``-inf`` where the value is 0).
    """
    batch = features[0].shape[0] if features else 0
    parts = [_log_inputs_rows(tree, tensors, [f[rows] for f in features], has_output) for rows in
             _row_chunks(tensors, batch)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _log_inputs_rows(
    tree: Tree, tensors: Sequence[np.ndarray | None], features: list[np.ndarray], has_output: bool
) -> tuple[np.ndarray, np.ndarray]:
    n_leaves, root = tree.n_leaves, tree.root
    batch = features[0].shape[0]
    vecs: dict[int, np.ndarray] = {}
    reference = tensors[root]
    xp = backend.namespace(reference)
    log_scale = backend.zeros((batch,), like=reference, dtype=np.float64)
    value = None
    for v in tree.postorder():
        if v < n_leaves:
            continue
        kids = tree.children(v)
        has_out_axis = v != root or has_output
        eq = _node_input_equation(len(kids), has_out_axis)
        out = contract(eq, tensors[v], *(vecs.pop(c) if c >= n_leaves else features[c] for c in kids))
        if v == root:
            value = out
            break
        peak = xp.amax(abs(out), axis=1)
        peak[peak == 0] = 1.0  # a zero row stays zero (log -inf at the end)
        out /= peak[:, None]
        log_scale += xp.log(peak)
        vecs[v] = out
    value, log_scale = backend.to_numpy(value), backend.to_numpy(log_scale)  # the results, read back once
    magnitude = np.abs(value)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_abs = np.log(magnitude) + (log_scale[:, None] if value.ndim == 2 else log_scale)
        phase = np.where(magnitude > 0, value / np.where(magnitude > 0, magnitude, 1.0), 0.0)
    return phase, log_abs


@functools.lru_cache(maxsize=1024)
def _env_equation(leaf_mask: tuple[bool, ...], has_parent: bool, has_output: bool) -> str:
    """Equation ``T_v, env(child)..., conj(T_v) -> env(v)`` for one node.

    Leaf children are traced between ``T`` and ``conj(T)``; each internal child
    contributes a ``(ket, bra)`` environment; the parent bond stays open.
    """
    k = 0

    def fresh() -> str:
        nonlocal k
        k += 1
        return get_symbol(k - 1)

    ket, bra, envs = [], [], []
    for is_leaf in leaf_mask:
        if is_leaf:
            s = fresh()
            ket.append(s)
            bra.append(s)
        else:
            a, b = fresh(), fresh()
            ket.append(a)
            bra.append(b)
            envs.append(a + b)
    out = ""
    if has_parent:
        a, b = fresh(), fresh()
        ket.append(a)
        bra.append(b)
        out = a + b
    elif has_output:
        s = fresh()
        ket.append(s)
        bra.append(s)
    return ",".join(["".join(bra), *envs, "".join(ket)]) + "->" + out


def log_overlap(
    tree: Tree, bra: Sequence[np.ndarray | None], ket: Sequence[np.ndarray | None], has_output: bool
) -> tuple[complex | float, float]:
    """``<bra|ket>`` (``bra`` conjugated) as ``(phase, log|value|)``, by rescaled leaf-to-root environments.

    ``bra`` and ``ket`` are indexed by node (``None`` for leaves).
    """
    n_leaves = tree.n_leaves
    envs: dict[int, np.ndarray] = {}
    log_scale = 0.0
    value: complex | float = 0.0
    for v in tree.postorder():
        if v < n_leaves:
            continue
        kids = tree.children(v)
        is_root = v == tree.root
        eq = _env_equation(tuple(c < n_leaves for c in kids), not is_root, has_output and is_root)
        operands = [bra[v].conj(), *(envs.pop(c) for c in kids if c >= n_leaves), ket[v]]
        env = contract(eq, *operands)
        if is_root:
            value = env.item()
            break
        peak = peak_magnitude(env)
        if peak == 0.0:
            return 0.0, -math.inf
        envs[v] = env / peak
        log_scale += math.log(peak)
    magnitude = abs(value)
    if magnitude == 0.0:
        return 0.0, -math.inf
    return value / magnitude, log_scale + math.log(magnitude)


#: Largest dense subtree (entries: leaf dimensions times the bond above) whose environment factor
#: :func:`log_norm` computes from the subtree contracted at once instead of node by node.
DENSE_SUBTREE = 2**12


def log_norm(tree: Tree, tensors: Sequence[np.ndarray | None]) -> float:
    """``log ||psi||`` by rescaled leaf-to-root environment factors (any gauge, any size).

    ``tensors`` is indexed by node (``None`` for leaves); a root output axis is traced.
    Each node costs one product with a triangular factor per internal child and one
    Gram product (a ``syrk``). Small subtrees near the leaves (at most
    :data:`DENSE_SUBTREE` entries when contracted) are contracted in one planned
    contraction each and factorised once: the same numbers at a fraction of the
    per-node overhead, which dominates there (3x faster for a 64-leaf tree at bond
    16). A dense subtree whose entries leave ``[1e-100, 1e100]`` is redone node by
    node, so the result stays safe from overflow.
    """
    n_leaves = tree.n_leaves
    root = tree.root
    dense = _dense_subtrees(tree, tuple(None if t is None else t.shape for t in tensors), DENSE_SUBTREE)
    factors: dict[int, np.ndarray] = {}
    log_scale = 0.0
    for top in tree.children(root):
        if top >= n_leaves:
            log_scale += _subtree_factors(tree, tensors, dense, top, factors)
    if log_scale == -math.inf:
        return -math.inf
    m = _with_factors(tree, tensors, root, factors)
    n2 = backend.norm2(m)
    return -math.inf if n2 == 0.0 else log_scale + 0.5 * math.log(n2)


@functools.lru_cache(maxsize=1024)
def _subtree_nodes(tree: Tree, top: int) -> tuple[int, ...]:
    """Internal nodes of ``top``'s subtree, children before parents (``top`` last)."""
    n_leaves = tree.n_leaves
    order: list[int] = []
    stack: list[tuple[int, bool]] = [(top, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
        elif v >= n_leaves:
            stack.append((v, True))
            stack.extend((c, False) for c in reversed(tree.children(v)))
    return tuple(order)


def _with_factors(tree: Tree, tensors: Sequence[np.ndarray | None], v: int, factors: dict) -> np.ndarray:
    """Node ``v``'s tensor with its internal children's (upper triangular) factors applied, popped from ``factors``.

    The products are written into the two scratch slots ``ttn.norm.0/1`` in turn
    (:mod:`tnkit.core.workspace`): the result is valid until the next call.
    """
    m = tensors[v]
    n_leaves = tree.n_leaves
    k = 0
    for axis, c in enumerate(tree.children(v)):
        if c >= n_leaves:
            f = factors.pop(c)
            shape = m.shape[:axis] + (f.shape[0],) + m.shape[axis + 1:]
            out = scratch(_NORM_SLOTS[k % 2], shape, np.result_type(f, m)) if isinstance(m, np.ndarray) else None
            m = apply_matrix(m, f, axis, upper=True, out=out)
            k += 1
    return m


_NORM_SLOTS = ("ttn.norm.0", "ttn.norm.1")


def _subtree_factors(
    tree: Tree, tensors: Sequence[np.ndarray | None], dense: dict, top: int, factors: dict
) -> float:
    """Put the rescaled environment factor of ``top``'s subtree in ``factors[top]``; return its log scale.

    ``-inf`` if the subtree's state is zero.
    """
    log_scale = 0.0
    for v in _subtree_nodes(tree, top):
        if dense.get(v) == ():
            continue  # inside a dense subtree
        m = None
        if v in dense:
            m = contract(_subtree_equation(tree, dense[v], v), *(tensors[u] for u in dense[v]))
            if not 1e-100 < peak_magnitude(m) < 1e100:
                m = None  # redo node by node, rescaling at every node
                for u in dense[v][:-1]:
                    scale = _absorb(_with_factors(tree, tensors, u, factors), u, factors)
                    if scale == -math.inf:
                        return -math.inf
                    log_scale += scale
        if m is None:
            m = _with_factors(tree, tensors, v, factors)
        scale = _absorb(m, v, factors)
        if scale == -math.inf:
            return -math.inf
        log_scale += scale
    return log_scale


def _absorb(m: np.ndarray, v: int, factors: dict) -> float:
    """Store the rescaled factor of ``m``'s Gram matrix on its last axis as ``factors[v]``; return the log scale."""
    g = gram(m.reshape(-1, m.shape[-1]))
    peak = peak_magnitude(g)
    if peak == 0.0:
        return -math.inf
    factors[v] = gram_factor(g / peak)
    return 0.5 * math.log(peak)


@functools.lru_cache(maxsize=256)
def _dense_subtrees(tree: Tree, shapes: tuple, limit: int) -> dict[int, tuple[int, ...]]:
    """``{v: internal nodes of v's subtree}`` for the maximal small non-root subtrees.

    Small: at most ``limit`` (:data:`DENSE_SUBTREE`) entries when contracted (leaf dimensions
    times the bond above).

    Every other node of such a subtree maps to ``()`` (it is skipped). Subtrees of a
    single node are left out (nothing to merge).
    """
    n_leaves = tree.n_leaves
    size = [0] * tree.n_nodes  # dense entries of the subtree below v, without v's parent bond
    nodes: dict[int, tuple[int, ...]] = {}
    for v in tree.postorder():
        if v < n_leaves:
            continue
        kids = tree.children(v)
        size[v] = math.prod(shapes[v][axis] if c < n_leaves else size[c] for axis, c in enumerate(kids))
        nodes[v] = tuple(u for c in kids if c >= n_leaves for u in nodes[c]) + (v,)
    out: dict[int, tuple[int, ...]] = {}
    for v in tree.postorder():
        if v < n_leaves or v == tree.root:
            continue
        parent = tree.parent(v)
        small = size[v] * shapes[v][-1] <= limit
        parent_small = parent != tree.root and size[parent] * shapes[parent][-1] <= limit
        if small and not parent_small and len(nodes[v]) > 1:
            out[v] = nodes[v]
            for u in nodes[v][:-1]:
                out[u] = ()
    return out


@functools.lru_cache(maxsize=1024)
def _subtree_equation(tree: Tree, nodes: tuple[int, ...], top: int) -> str:
    """Equation contracting the tensors of ``nodes`` (a subtree, ``top`` last) to ``(leaves..., bond above top)``."""
    terms, _, _ = network_terms(tree, False)
    first = tree.n_leaves
    inputs = [terms[u - first] for u in nodes]
    leaves = "".join(get_symbol(leaf) for leaf in tree.leaves_under(top))
    return ",".join(inputs) + "->" + leaves + get_symbol(top)
