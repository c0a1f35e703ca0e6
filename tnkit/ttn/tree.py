"""Tree structures for tree tensor networks: an immutable, validated rooted tree.

Numbering
---------
A :class:`Tree` over ``L`` leaves has ``n_nodes`` nodes. **Leaves are nodes
``0 .. L-1``** (leaf ``i`` carries physical index ``i`` of the state) and
**internal nodes are ``L .. n_nodes-1``**. Every internal node has at least one
child; the children of a node are *ordered* (the order fixes the axis order of
the node's tensor, see :mod:`tnkit.ttn.ttn`). The root is an internal node.

``Tree.from_nested`` numbers internal nodes in post-order (children before
parents, the root last); ``Tree.from_parents`` keeps the numbering it is given.

Edges and bonds
---------------
Every node but the root has exactly one edge, to its parent, so **an edge is
named by its child node**. ``tree.edges`` lists ``(child, parent)`` for every
non-root node in increasing child order: first the ``L`` leaf (physical) edges,
then the internal edges. ``tree.bonds`` lists the internal non-root nodes: bond
``b`` is the virtual index between ``tree.bonds[b]`` and its parent.

Example: ``Tree.from_nested(((0, 1), (2, 3)))`` ::

             6            root
           /   \\
          4     5         internal nodes, bonds (4, 6) and (5, 6)
         / \\   / \\
        0   1 2   3       leaves
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.validate import check_int

__all__ = ["Tree"]


class Tree:
    """An immutable rooted tree whose leaves are ``0 .. n_leaves-1``.

    Build one with :meth:`balanced`, :meth:`chain`, :meth:`grid`,
    :meth:`from_nested` or :meth:`from_parents`; the constructor takes the
    ordered children of every node and validates them.

    Parameters
    ----------
    children : sequence of sequence of int
        ``children[v]`` lists the children of node ``v`` in order; leaves
        (nodes ``0 .. n_leaves-1``) have none, internal nodes at least one.
    n_leaves : int

    Raises
    ------
    ValueError
        If the structure is not a tree with leaves first: a node with two
        parents, a cycle, several roots, an internal node without children,
        a leaf with children.

    Examples
    --------
    >>> from tnkit.ttn import Tree
    >>> t = Tree.balanced(4)
    >>> t.root, t.children(t.root), t.to_nested()
    (6, (4, 5), ((0, 1), (2, 3)))
    >>> Tree.grid(2, 2).to_nested()
    ((0, 1), (2, 3))
    """

    __slots__ = ("_children", "_parents", "_n_leaves", "_root", "_tin", "_tout", "_depth", "_hash")

    def __init__(self, children: Sequence[Sequence[int]], n_leaves: int) -> None:
        n_leaves = check_int("n_leaves", n_leaves, minimum=1)
        kids = tuple(tuple(_node("children", c, len(children)) for c in cs) for cs in children)
        parents = _validate(kids, n_leaves)
        self._children = kids
        self._parents = parents
        self._n_leaves = n_leaves
        self._root = parents.index(-1)
        self._tin, self._tout, self._depth = _euler_tour(kids, self._root)
        self._hash = hash((kids, n_leaves))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_nested(cls, nested: Any) -> Tree:
        """Tree from nested tuples of leaf labels, e.g. ``((0, 1), (2, (3, 4)))``.

        Every integer is a leaf; every tuple (or list) is an internal node whose
        children are its entries, in order. The leaf labels must be ``0 .. L-1``,
        each exactly once. A bare integer ``0`` is a one-leaf tree (a root with
        the single child ``0``). Internal nodes are numbered in post-order.
        """
        leaves: list[int] = []
        _collect_leaves(nested, leaves, depth=0)
        n = len(leaves)
        seen = sorted(leaves)
        if seen != list(range(n)):
            repeated = sorted({x for x in leaves if leaves.count(x) > 1})
            missing = sorted(set(range(n)) - set(leaves))
            detail = []
            if repeated:
                detail.append(f"repeated {repeated}")
            if missing:
                detail.append(f"missing {missing}")
            if not detail:
                detail.append(f"labels {seen[:8]}{'...' if n > 8 else ''}")
            raise ValueError(
                f"`nested` must hold each leaf 0..{n - 1} exactly once; found {', '.join(detail)}."
            )
        if isinstance(nested, numbers.Integral):
            nested = (nested,)
        children: list[tuple[int, ...]] = [()] * n

        def build(node: Any) -> int:
            if isinstance(node, numbers.Integral):
                return int(node)
            ids = tuple(build(c) for c in node)
            children.append(ids)
            return len(children) - 1

        build(nested)
        return cls(children, n)

    @classmethod
    def from_parents(cls, parents: Any) -> Tree:
        """Tree from a parent array: ``parents[v]`` is the parent of node ``v``, ``-1`` for the root.

        Nodes without children must be exactly ``0 .. L-1`` (leaves first); the
        children of a node are ordered by increasing node number, so a tree whose
        children are in another order (``Tree.grid(1, 3)`` is ``((0, 1), 2)``) does
        not round-trip through ``tree.parents``: store :meth:`to_arrays` instead.
        """
        arr = np.asarray(parents)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise ValueError(
                f"`parents` must be a non-empty 1-d integer array, got {arr.dtype} array of shape {arr.shape}."
            )
        p = [int(x) for x in arr]
        n_nodes = len(p)
        children: list[list[int]] = [[] for _ in range(n_nodes)]
        for v, q in enumerate(p):
            if q == -1:
                continue
            if not 0 <= q < n_nodes:
                raise ValueError(f"`parents[{v}]` = {q} is not a node in [0, {n_nodes}) nor -1 (root).")
            if q == v:
                raise ValueError(f"`parents[{v}]` = {v}: a node cannot be its own parent (cycle).")
            children[q].append(v)
        n_leaves = sum(1 for c in children if not c)
        bad = [v for v in range(n_leaves) if children[v]]
        if bad:
            raise ValueError(
                f"`parents`: the nodes without children must be 0..{n_leaves - 1} (leaves first), "
                f"but node {bad[0]} has children {children[bad[0]]}."
            )
        return cls(children, n_leaves)

    @classmethod
    def from_arrays(cls, n_leaves: Any, child_counts: Any, children: Any) -> Tree:
        """Tree from the integer arrays of :meth:`to_arrays` (exact round trip, children order kept)."""
        counts = np.asarray(child_counts)
        flat = np.asarray(children)
        if counts.ndim != 1 or flat.ndim != 1 or counts.dtype.kind not in "iu" or (flat.size and flat.dtype.kind not in "iu"):
            raise ValueError(
                f"`child_counts` and `children` must be 1-d integer arrays, got shapes {counts.shape} and {flat.shape}."
            )
        if counts.sum() != flat.size or (counts < 0).any():
            raise ValueError(
                f"`child_counts` (sum {int(counts.sum())}) must count the {flat.size} entries of `children`."
            )
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return cls([flat[offsets[v] : offsets[v + 1]].tolist() for v in range(len(counts))], int(np.asarray(n_leaves)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The structure as integer arrays (for ``.npz`` files): ``Tree.from_arrays(**tree.to_arrays())``.

        Unlike the parent array, these keep the order of every node's children.
        """
        return {
            "n_leaves": np.array(self._n_leaves, dtype=np.int64),
            "child_counts": np.array([len(c) for c in self._children], dtype=np.int64),
            "children": np.array([c for cs in self._children for c in cs], dtype=np.int64),
        }

    @classmethod
    def balanced(cls, n_leaves: int, arity: int = 2) -> Tree:
        """Balanced tree: leaves ``0..L-1`` split recursively into ``arity`` near-equal contiguous groups."""
        n_leaves = check_int("n_leaves", n_leaves, minimum=1)
        arity = check_int("arity", arity, minimum=2)

        def split(lo: int, hi: int) -> Any:
            n = hi - lo
            if n == 1:
                return lo
            parts = min(arity, n)
            bounds = [lo + (n * k) // parts for k in range(parts + 1)]
            return tuple(split(bounds[k], bounds[k + 1]) for k in range(parts))

        return cls.from_nested(split(0, n_leaves))

    @classmethod
    def chain(cls, n_leaves: int) -> Tree:
        """The tree of an MPS: ``(0, (1, (2, ... (L-2, L-1))))``, root above leaf 0."""
        n_leaves = check_int("n_leaves", n_leaves, minimum=1)
        nested: Any = n_leaves - 1
        for leaf in range(n_leaves - 2, -1, -1):
            nested = (leaf, nested)
        return cls.from_nested(nested)

    @classmethod
    def grid(cls, rows: int, cols: int) -> Tree:
        """Binary tree over a ``rows x cols`` grid; leaf ``r * cols + c`` is pixel ``(r, c)``.

        Regions are halved recursively along their longer side (rows first on
        ties), so at the bottom horizontally neighbouring pixels merge, then the
        pairs merge vertically, and so on, alternating: neighbouring pixels share
        subtrees, as in the tree classifiers of Huggins et al. (arXiv:1803.11537)
        and Stoudenmire (arXiv:1801.00315). Non-power-of-two sides are split as
        evenly as possible.
        """
        rows = check_int("rows", rows, minimum=1)
        cols = check_int("cols", cols, minimum=1)

        def split(r0: int, r1: int, c0: int, c1: int) -> Any:
            h, w = r1 - r0, c1 - c0
            if h == 1 and w == 1:
                return r0 * cols + c0
            if h >= w:
                m = r0 + (h + 1) // 2
                return (split(r0, m, c0, c1), split(m, r1, c0, c1))
            m = c0 + (w + 1) // 2
            return (split(r0, r1, c0, m), split(r0, r1, m, c1))

        return cls.from_nested(split(0, rows, 0, cols))

    # ------------------------------------------------------------------ structure

    @property
    def n_leaves(self) -> int:
        """Number of leaves ``L``."""
        return self._n_leaves

    @property
    def n_nodes(self) -> int:
        """Number of nodes, leaves included."""
        return len(self._children)

    @property
    def root(self) -> int:
        """The root node (an internal node)."""
        return self._root

    @property
    def internal_nodes(self) -> range:
        """The internal nodes ``L .. n_nodes-1``."""
        return range(self._n_leaves, len(self._children))

    @property
    def parents(self) -> np.ndarray:
        """Parent of every node (``-1`` for the root), as a read-only int array."""
        a = np.array(self._parents, dtype=np.int64)
        a.flags.writeable = False
        return a

    def is_leaf(self, node: int) -> bool:
        """Whether ``node`` is a leaf."""
        return self._check(node) < self._n_leaves

    def children(self, node: int) -> tuple[int, ...]:
        """Ordered children of ``node`` (empty for a leaf)."""
        return self._children[self._check(node)]

    def parent(self, node: int) -> int | None:
        """Parent of ``node``, ``None`` for the root."""
        p = self._parents[self._check(node)]
        return None if p < 0 else p

    def depth(self, node: int) -> int:
        """Number of edges from the root to ``node``."""
        return self._depth[self._check(node)]

    def leaves_under(self, node: int) -> tuple[int, ...]:
        """Leaves of the subtree of ``node``, in left-to-right order."""
        node = self._check(node)
        out: list[int] = []
        stack = [node]
        while stack:
            v = stack.pop()
            if v < self._n_leaves:
                out.append(v)
            else:
                stack.extend(reversed(self._children[v]))
        return tuple(out)

    def is_ancestor(self, a: int, b: int) -> bool:
        """Whether ``a`` is ``b`` or an ancestor of ``b``."""
        a, b = self._check(a), self._check(b)
        return self._tin[a] <= self._tin[b] and self._tout[b] <= self._tout[a]

    def postorder(self) -> tuple[int, ...]:
        """All nodes, children before parents (left to right), the root last."""
        order: list[int] = []
        stack: list[tuple[int, bool]] = [(self._root, False)]
        while stack:
            v, done = stack.pop()
            if done:
                order.append(v)
                continue
            stack.append((v, True))
            stack.extend((c, False) for c in reversed(self._children[v]))
        return tuple(order)

    def preorder(self) -> tuple[int, ...]:
        """All nodes, parents before children (left to right), the root first."""
        order: list[int] = []
        stack = [self._root]
        while stack:
            v = stack.pop()
            order.append(v)
            stack.extend(reversed(self._children[v]))
        return tuple(order)

    def path(self, a: int, b: int) -> tuple[int, ...]:
        """Nodes on the path from ``a`` to ``b``, both included."""
        a, b = self._check(a), self._check(b)
        up_a, up_b = [a], [b]
        while not self.is_ancestor(up_a[-1], b):
            up_a.append(self._parents[up_a[-1]])
        top = up_a[-1]
        while up_b[-1] != top:
            up_b.append(self._parents[up_b[-1]])
        return tuple(up_a + up_b[-2::-1])

    def next_hop(self, a: int, b: int) -> int:
        """The neighbour of ``a`` on the path towards ``b`` (``a != b``)."""
        a, b = self._check(a), self._check(b)
        if a == b:
            raise ValueError(f"`a` and `b` must differ, got {a} twice.")
        if not self.is_ancestor(a, b):
            return self._parents[a]
        for c in self._children[a]:
            if self.is_ancestor(c, b):
                return c
        raise AssertionError("unreachable")  # pragma: no cover

    def neighbours(self, node: int) -> tuple[int, ...]:
        """Children of ``node`` in order, then its parent (if any): the axis order of its tensor."""
        node = self._check(node)
        p = self._parents[node]
        return self._children[node] + (() if p < 0 else (p,))

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """``(child, parent)`` for every non-root node, by increasing child (leaf edges first)."""
        return tuple((v, p) for v, p in enumerate(self._parents) if p >= 0)

    @property
    def bonds(self) -> tuple[int, ...]:
        """Internal non-root nodes, increasing: bond ``b`` joins ``bonds[b]`` to its parent."""
        return tuple(v for v in self.internal_nodes if v != self._root)

    def to_nested(self) -> Any:
        """Nested-tuple form (leaf labels; see :meth:`from_nested`)."""

        def nest(v: int) -> Any:
            if v < self._n_leaves:
                return v
            return tuple(nest(c) for c in self._children[v])

        return nest(self._root)

    def mirrored(self) -> Tree:
        """The tree with every node's children reversed and leaf ``i`` relabelled ``L-1-i``."""
        n = self._n_leaves

        def nest(v: int) -> Any:
            if v < n:
                return n - 1 - v
            return tuple(nest(c) for c in reversed(self._children[v]))

        return Tree.from_nested(nest(self._root))

    # ------------------------------------------------------------------ dunder

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tree):
            return NotImplemented
        return self._n_leaves == other._n_leaves and self._children == other._children

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        depth = max(self._depth)
        return f"Tree(n_leaves={self._n_leaves}, n_nodes={self.n_nodes}, root={self._root}, depth={depth})"

    def _check(self, node: object) -> int:
        node = check_int("node", node)
        if not 0 <= node < len(self._children):
            raise IndexError(f"`node` must be a node in [0, {len(self._children)}), got {node}.")
        return node


# ---------------------------------------------------------------------- helpers


def _node(name: str, value: object, n_nodes: int) -> int:
    v = check_int(name, value)
    if not 0 <= v < n_nodes:
        raise ValueError(f"`{name}` names node {v}, outside [0, {n_nodes}).")
    return v


def _collect_leaves(node: Any, out: list[int], depth: int) -> None:
    if depth > 10_000:
        raise ValueError("`nested` is nested too deeply (more than 10,000 levels).")
    if isinstance(node, bool):
        raise TypeError(f"`nested` must hold integers and tuples, got {node!r}.")
    if isinstance(node, numbers.Integral):
        out.append(int(node))
        return
    if not isinstance(node, (tuple, list)):
        raise TypeError(f"`nested` must hold integers and tuples, got {type(node).__name__}.")
    if len(node) == 0:
        raise ValueError("`nested` has an empty tuple: every internal node needs at least one child.")
    for child in node:
        _collect_leaves(child, out, depth + 1)


def _validate(children: tuple[tuple[int, ...], ...], n_leaves: int) -> list[int]:
    """Return the parent array of a valid tree, else raise ``ValueError`` naming the fault."""
    n_nodes = len(children)
    if n_nodes <= n_leaves:
        raise ValueError(
            f"a tree over {n_leaves} leaves needs at least one internal node, got {n_nodes} nodes in all."
        )
    parents = [-1] * n_nodes
    for v, cs in enumerate(children):
        if v < n_leaves and cs:
            raise ValueError(f"node {v} is a leaf (leaves are 0..{n_leaves - 1}) but has children {list(cs)}.")
        if v >= n_leaves and not cs:
            raise ValueError(
                f"internal node {v} has no children; nodes without children must be the leaves 0..{n_leaves - 1}."
            )
        for c in cs:
            if c == v:
                raise ValueError(f"node {v} lists itself as a child (cycle).")
            if parents[c] != -1:
                raise ValueError(f"node {c} has two parents, {parents[c]} and {v} (leaf repeated or cycle).")
            parents[c] = v
    roots = [v for v in range(n_nodes) if parents[v] == -1]
    if len(roots) != 1:
        raise ValueError(
            f"a tree has exactly one root (node without parent); found {len(roots)}: {roots[:8]} "
            "(disconnected pieces, or a cycle through the root)."
        )
    root = roots[0]
    if root < n_leaves:
        raise ValueError(f"the root must be an internal node, got leaf {root}.")
    seen = 0
    stack = [root]
    while stack:  # every node reachable from the root, else a cycle elsewhere
        v = stack.pop()
        seen += 1
        if seen > n_nodes:
            raise ValueError("the structure has a cycle.")  # pragma: no cover - caught by two parents
        stack.extend(children[v])
    if seen != n_nodes:
        raise ValueError(f"the structure has a cycle: only {seen} of {n_nodes} nodes hang from root {root}.")
    return parents


def _euler_tour(children: tuple[tuple[int, ...], ...], root: int) -> tuple[list[int], list[int], list[int]]:
    n = len(children)
    tin, tout, depth = [0] * n, [0] * n, [0] * n
    clock = 0
    stack: list[tuple[int, bool]] = [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            tout[v] = clock
            clock += 1
            continue
        tin[v] = clock
        clock += 1
        stack.append((v, True))
        for c in reversed(children[v]):
            depth[c] = depth[v] + 1
            stack.append((c, False))
    return tin, tout, depth


def subtree_log_dims(tree: Tree, phys_dims: Sequence[int]) -> list[float]:
    """``log`` of the product of physical dimensions under every node (internal helper)."""
    out = [0.0] * tree.n_nodes
    for v in tree.postorder():
        if v < tree.n_leaves:
            out[v] = math.log(phys_dims[v])
        else:
            out[v] = sum(out[c] for c in tree.children(v))
    return out
