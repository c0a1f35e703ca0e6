"""Tree tensor networks (TTN): states on the leaves of a tree.

Index conventions
-----------------
The structure is a :class:`~tnkit.ttn.tree.Tree`: leaves ``0 .. L-1`` carry the
physical indices, internal nodes ``L ..`` carry the tensors. **Only internal
nodes hold tensors.** The tensor ``T_v`` of internal node ``v`` has one axis per
neighbour, in this order:

1. its children, in the tree's order: a **leaf child** contributes its physical
   axis (dimension ``d_leaf``), an **internal child** ``c`` the bond between
   ``c`` and ``v``;
2. then its **parent bond** (absent at the root);
3. at the root only, the optional **output axis** comes last (dimension
   ``output_dim``: the label index of a classifier).

For ``Tree.balanced(4)`` (nested ``((0, 1), (2, 3))``, internal nodes 4, 5 and
root 6)::

                 [out]                  T_6 : (D_4, D_5[, out])
                   |
                  T_6
                 /    \\
              D_4      D_5              T_4 : (d_0, d_1, D_4)
               /          \\
            T_4            T_5          T_5 : (d_2, d_3, D_5)
           /   \\          /   \\
         d_0   d_1      d_2   d_3

    psi[s0, s1, s2, s3(, o)] = sum_{a, b} T_4[s0, s1, a] T_5[s2, s3, b] T_6[a, b(, o)]

A bond is named by its child node (``bond_dim(4)`` is ``D_4``); ``bond_dims``
lists them in the order of ``tree.bonds``. Dense arrays (``to_dense``,
``from_dense``) have one axis per leaf, in leaf order, then the output axis.

Why this convention: it is the natural "children in, parent out" layout of a
tree circuit (Huggins et al., arXiv:1803.11537): every non-root tensor maps its
children to its parent bond, and in canonical form about the root it is an
isometry ``(children) -> parent``, exactly the column-orthonormal matrix
``T_v.reshape(-1, D_parent)``. A chain (``Tree.chain``) is an MPS.

Canonical forms
---------------
The network records, for every internal node, the neighbour towards which its
tensor is known to be an isometry (see :mod:`tnkit.ttn.canonical`). In
canonical form about ``c`` the norm sits in ``T_c``. ``canonicalize_(c)`` does
only the QR steps that are missing; measurements move the centre as they need.
Arrays are stored read-only and replaced, never written, so ``copy()`` is cheap.

Methods ending in ``_`` modify the network in place; the others return a new one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import DEFAULT_CUTOFF
from ..core.rng import as_generator, standard_normal
from ..core.validate import (
    DEFAULT_MAX_BYTES,
    as_array,
    check_cutoff,
    check_dtype,
    check_int,
    check_max_bond,
    check_memory,
    check_number,
    inverse_scalar,
)
from ..mps.canonical import log_frobenius_norm, scale_tensors, spread_log_scale
from ..mps.chain import check_phys_dims, converted, frozen, is_scalar, scalar_factor, site_arrays
from ..mps.truncation import TruncationReport
from ..mps.measure import log_base
from . import canonical, measure, network, sampling, truncation
from .threads import batch_product_work, node_product_work, with_gemm_threads
from .tree import Tree, subtree_log_dims

__all__ = ["TreeTensorNetwork", "TTN"]


def _own_work(self: TreeTensorNetwork, *args: Any, **kwargs: Any) -> int:
    return node_product_work(self._tensors)


def _pair_work(self: TreeTensorNetwork, other: Any, *args: Any, **kwargs: Any) -> int:
    theirs = node_product_work(other._tensors) if isinstance(other, TreeTensorNetwork) else 0
    return max(node_product_work(self._tensors), theirs)


def _batch_work(self: TreeTensorNetwork, features: Any, *args: Any, **kwargs: Any) -> int:
    try:
        batch = len(features[0]) if isinstance(features, (list, tuple)) else int(np.shape(features)[0])
    except (IndexError, TypeError, ValueError):  # malformed input: the operation itself reports it
        batch = 1
    return batch_product_work(self._tensors, batch)


class TreeTensorNetwork:
    """A tree tensor network: a state (or, with an output axis, a vector-valued map) on the leaves of a tree.

    Parameters
    ----------
    tree : Tree
        The structure.
    tensors : sequence or mapping of array_like
        One tensor per internal node: a sequence in node order (``tree.internal_nodes``)
        or a mapping ``{node: tensor}``. Axis order: see the module docstring.
    copy : bool
        Copy the arrays (by default they are shared, read-only).

    Raises
    ------
    TypeError
        If ``tree`` is not a :class:`Tree` or a tensor is not numeric.
    ValueError
        If a tensor has the wrong number of axes, bond dimensions differ between
        the two ends of an edge, or a tensor holds NaN or infinity.

    Examples
    --------
    >>> import tnkit
    >>> from tnkit.ttn import Tree
    >>> psi = tnkit.TTN.random(Tree.balanced(8), 2, max_bond=4, seed=0)
    >>> psi
    TreeTensorNetwork(n_leaves=8, phys_dims=2, max_bond=4, output_dim=None, dtype=float64, center=14)
    >>> round(psi.norm(), 12)
    1.0
    """

    __slots__ = ("_tree", "_tensors", "_iso")
    __array_ufunc__ = None

    def __init__(self, tree: Tree, tensors: Sequence[Any] | Mapping[int, Any], *, copy: bool = False) -> None:
        if not isinstance(tree, Tree):
            raise TypeError(f"`tree` must be a tnkit.ttn.Tree, got {type(tree).__name__}.")
        nodes = list(tree.internal_nodes)
        if isinstance(tensors, Mapping):
            missing = [v for v in nodes if v not in tensors]
            extra = [k for k in tensors if k not in nodes]
            if missing or extra:
                raise ValueError(
                    f"`tensors` must have one entry per internal node {nodes[0]}..{nodes[-1]}; "
                    f"missing {missing[:5]}, unexpected {extra[:5]}."
                )
            given = [tensors[v] for v in nodes]
        else:
            given = list(tensors)
            if len(given) != len(nodes):
                raise ValueError(
                    f"`tensors` must hold {len(nodes)} tensors (one per internal node), got {len(given)}."
                )
        arrays = site_arrays("tensors", given, labels=nodes, copy=copy)
        full: list = [None] * tree.n_leaves + arrays
        _check_shapes(tree, full)
        dtype = backend.result_type(*arrays)
        self._tree = tree
        self._tensors = [None if t is None else frozen(backend.astype(t, dtype)) for t in full]
        self._iso: list[int | None] = [None] * tree.n_nodes

    @classmethod
    def _trusted(cls, tree: Tree, tensors: list, iso: list | None = None) -> TreeTensorNetwork:
        """Wrap already-validated tensors (indexed by node) without checks (internal)."""
        obj = cls.__new__(cls)
        obj._tree = tree
        obj._tensors = [None if t is None else frozen(t) for t in tensors]
        obj._iso = list(iso) if iso is not None else [None] * tree.n_nodes
        return obj

    # ------------------------------------------------------------------ construction

    @classmethod
    def random(
        cls,
        tree: Tree,
        phys_dim: int | Sequence[int] = 2,
        max_bond: int = 4,
        *,
        output_dim: int | None = None,
        seed: object = None,
        dtype: Any = np.float64,
        normalize: bool = True,
        max_bytes: float = DEFAULT_MAX_BYTES,
        **renamed: Any,
    ) -> TreeTensorNetwork:
        """Random TTN with Gaussian entries.

        Parameters
        ----------
        tree : Tree
        phys_dim : int or sequence of int
            Physical dimension of every leaf, or one per leaf (the keyword of
            :meth:`MatrixProductState.random <tnkit.MatrixProductState.random>`).
        max_bond : int
            Bond dimension in the bulk; a bond is capped by the dimensions on either
            side of it (``min(max_bond, prod of d under it, the rest)``), so no bond
            is trivially rank-deficient.
        output_dim : int, optional
            Add an output axis of this dimension at the root.
        seed : None, int or numpy Generator
        dtype : numpy dtype
            ``float64``, ``complex128``, ``float32`` or ``complex64``.
        normalize : bool
            Return a unit-norm network in canonical form about the root.
        max_bytes : float
            Largest memory the tensors may take (default 8 GiB,
            ``DEFAULT_MAX_BYTES``); larger requests raise
            ``ValueError`` before anything is allocated.
        **renamed
            The former names ``phys_dims`` and ``bond_dim``, accepted with a
            ``FutureWarning`` (their value is used).
        """
        if renamed:
            phys_dim, max_bond = _renamed_random_keywords(renamed, phys_dim, max_bond)
        tree = _check_tree(tree)
        dims = _phys_dims("phys_dim", phys_dim, tree.n_leaves)
        bond_dim = check_int("max_bond", max_bond, minimum=1)
        out = None if output_dim is None else check_int("output_dim", output_dim, minimum=1)
        dtype = _float_dtype(dtype)
        rng = as_generator(seed)
        bonds = _capped_bonds(tree, dims, bond_dim, out)
        shapes = {}
        for v in tree.internal_nodes:
            shape = tuple(dims[c] if c < tree.n_leaves else bonds[c] for c in tree.children(v))
            shapes[v] = shape + ((bonds[v],) if v != tree.root else ((out,) if out is not None else ()))
        check_memory(
            sum(math.prod(shape) for shape in shapes.values()) * dtype.itemsize, max_bytes,
            what=f"the {len(shapes)} node tensors", cause=f"`max_bond`={bond_dim}, dtype {dtype}",
        )
        tensors: list = [None] * tree.n_nodes
        for v, shape in shapes.items():
            t = standard_normal(rng, shape, is_complex=dtype.kind == "c")
            fan_in = math.prod(shape[: len(tree.children(v))])
            tensors[v] = (t / math.sqrt(fan_in)).astype(dtype)
        psi = cls._trusted(tree, tensors)
        if normalize:
            psi.canonicalize_(tree.root)
            psi.normalize_()
        return psi

    @classmethod
    def product_state(
        cls, tree: Tree, states: Sequence[Any] | str, *, phys_dim: int | Sequence[int] | None = None, dtype: Any = None
    ) -> TreeTensorNetwork:
        """Product state (all bonds 1) from one local vector, or basis index, per leaf.

        Parameters
        ----------
        tree : Tree
        states : sequence of 1-d array_like or of int, or str of digits
            ``states[l]`` is leaf ``l``'s state vector, or a basis index
            (dimension ``phys_dim``, default 2); validated as by
            :meth:`tnkit.MPS.product_state`.
        phys_dim : int or sequence of int, optional
        dtype : numpy dtype, optional
        """
        from ..mps.mps import MatrixProductState

        tree = _check_tree(tree)
        n = len(states)
        if n != tree.n_leaves:
            raise ValueError(f"`states` must give one state per leaf ({tree.n_leaves}), got {n}.")
        local = [t[0, :, 0] for t in MatrixProductState.product_state(states, phys_dim=phys_dim, dtype=dtype).tensors]
        tensors: list = [None] * tree.n_nodes
        for v in tree.internal_nodes:
            t = np.ones((), dtype=local[0].dtype)
            for c in tree.children(v):
                t = np.multiply.outer(t, local[c] if c < tree.n_leaves else np.ones(1, dtype=t.dtype))
            tensors[v] = t if v == tree.root else t[..., None]
        return cls._trusted(tree, tensors)

    @classmethod
    def from_dense(
        cls,
        array: Any,
        tree: Tree,
        *,
        phys_dims: int | Sequence[int] | None = None,
        has_output: bool = False,
        max_bond: int | None = None,
        cutoff: float = DEFAULT_CUTOFF,
        return_report: bool = False,
    ) -> TreeTensorNetwork | tuple[TreeTensorNetwork, TruncationReport]:
        """TTN of a dense tensor by leaves-to-root hierarchical SVD (see :mod:`tnkit.ttn.truncation`).

        Parameters
        ----------
        array : array_like
            Shape ``(d_0, ..., d_{L-1})`` (plus ``(output_dim,)`` last if
            ``has_output``), or flat with ``phys_dims`` given.
        tree : Tree
        phys_dims : int or sequence of int, optional
            Needed only for a flat ``array``.
        has_output : bool
            The last axis of ``array`` is the root's output axis.
        max_bond, cutoff
            Truncation of every bond (see :mod:`tnkit.core.linalg`).
        return_report : bool
            Also return the :class:`~tnkit.TruncationReport`; its ``error`` is
            exactly ``||array - ttn||**2 / ||array||**2``.

        The result is in canonical form about the root.
        """
        tree = _check_tree(tree)
        a = as_array("array", array)
        max_bond = check_max_bond(max_bond)
        cutoff = check_cutoff(cutoff)
        a = _dense_shape(a, tree, phys_dims, has_output)
        tensors, discarded, norm2 = truncation.hierarchical_svd(
            a, tree, has_output=has_output, max_bond=max_bond, cutoff=cutoff
        )
        iso = [None] * tree.n_nodes
        for v in tree.bonds:
            iso[v] = tree.parent(v)
        psi = cls._trusted(tree, tensors, iso)
        if not return_report:
            return psi
        return psi, _report(discarded, norm2, psi.bond_dims)

    @classmethod
    def from_mps(cls, mps: Any) -> TreeTensorNetwork:
        """The TTN on ``Tree.chain(N)`` equal to an MPS (exact).

        Node ``k`` of the chain (children: leaf ``i`` and the node of the sites
        ``i+1..``) holds site ``i``'s tensor; the last node holds the last two sites
        contracted. An MPS in right-canonical form (centre 0) gives a TTN in
        canonical form about the root.
        """
        from ..mps.mps import MatrixProductState

        if not isinstance(mps, MatrixProductState):
            raise TypeError(f"`mps` must be a MatrixProductState, got {type(mps).__name__}.")
        n = mps.n_sites
        tree = Tree.chain(n)
        a = mps.tensors
        spine = _chain_spine(tree)
        tensors: list = [None] * tree.n_nodes
        if n == 1:
            tensors[tree.root] = a[0][0, :, 0]
            return cls._trusted(tree, tensors)
        for i, v in enumerate(spine[:-1]):
            tensors[v] = a[i][0] if i == 0 else a[i].transpose(1, 2, 0)
        last = contract("asb,bt->sta", a[n - 2], a[n - 1][..., 0])  # (d, d, D)
        tensors[spine[-1]] = last[..., 0] if n == 2 else last
        iso: list = [None] * tree.n_nodes
        if mps.center == 0:
            for v in spine[1:]:
                iso[v] = tree.parent(v)
        return cls._trusted(tree, tensors, iso)

    # ------------------------------------------------------------------ inspection

    @property
    def tree(self) -> Tree:
        """The tree structure."""
        return self._tree

    @property
    def n_leaves(self) -> int:
        """Number of leaves (physical indices)."""
        return self._tree.n_leaves

    @property
    def tensors(self) -> tuple[np.ndarray, ...]:
        """The internal nodes' tensors, in node order (read-only arrays)."""
        return tuple(self._tensors[v] for v in self._tree.internal_nodes)

    def tensor(self, node: int) -> np.ndarray:
        """The tensor of internal node ``node``."""
        node = check_int("node", node)
        if node not in self._tree.internal_nodes:
            raise IndexError(
                f"`node` must be an internal node in [{self.n_leaves}, {self._tree.n_nodes}), got {node}."
            )
        return self._tensors[node]

    @property
    def phys_dims(self) -> tuple[int, ...]:
        """Physical dimension of each leaf."""
        return _leaf_dims(self._tree, self._tensors)

    @property
    def output_dim(self) -> int | None:
        """Dimension of the root's output axis, ``None`` without one."""
        root = self._tree.root
        t = self._tensors[root]
        return t.shape[-1] if t.ndim > len(self._tree.children(root)) else None

    def bond_dim(self, node: int) -> int:
        """Dimension of the bond between internal non-root ``node`` and its parent."""
        node = measure.check_edge("node", node, self._tree)
        if node < self.n_leaves:
            raise IndexError(f"`node` must be an internal node (a leaf edge is physical), got leaf {node}.")
        return self._tensors[node].shape[-1]

    @property
    def bond_dims(self) -> tuple[int, ...]:
        """Bond dimensions, in the order of ``tree.bonds``."""
        return tuple(self._tensors[v].shape[-1] for v in self._tree.bonds)

    @property
    def max_bond_dim(self) -> int:
        """Largest bond dimension (1 for a product state)."""
        return max(self.bond_dims, default=1)

    @property
    def dtype(self) -> np.dtype:
        """Common dtype of the tensors (a torch dtype for torch tensors)."""
        return self._tensors[self._tree.root].dtype

    @property
    def backend(self) -> str:
        """The array library of the tensors: ``"numpy"``, ``"torch"`` or ``"cupy"``."""
        return backend.library_of(self._tensors[self._tree.root])

    @property
    def device(self) -> str:
        """Where the tensors live: ``"cpu"``, ``"cuda:0"``, ``"meta"``."""
        return backend.device_of(self._tensors[self._tree.root])

    def to(self, library: str | None = None, *, device: Any = None, dtype: Any = None) -> TreeTensorNetwork:
        """A copy whose tensors are arrays of ``library`` on ``device`` in ``dtype``.

        The same conversion as ``MPS.to`` (``"numpy"``, ``"torch"``,
        ``"cupy"``; torch devices ``"cpu"``, ``"cuda"``, ``"meta"``); the
        canonical bookkeeping is kept.
        """
        tensors = converted(self._tensors, type(self).__name__, library, device, dtype)
        return type(self)._trusted(self._tree, tensors, self._iso)

    @property
    def num_params(self) -> int:
        """Total number of tensor entries."""
        return sum(backend.numel(t) for t in self.tensors)

    @property
    def center(self) -> int | None:
        """The orthogonality centre if the network is in canonical form, else ``None``."""
        return canonical.centre_of(self._tree, self._iso)

    def __repr__(self) -> str:
        dims = self.phys_dims
        d = dims[0] if len(set(dims)) == 1 else dims
        c = self.center
        return (
            f"TreeTensorNetwork(n_leaves={self.n_leaves}, phys_dims={d}, max_bond={self.max_bond_dim}, "
            f"output_dim={self.output_dim}, dtype={self.dtype}, center={'none' if c is None else c})"
        )

    def copy(self) -> TreeTensorNetwork:
        """A new network sharing the (read-only) arrays."""
        return type(self)._trusted(self._tree, list(self._tensors), self._iso)

    # ------------------------------------------------------------------ canonical forms

    @with_gemm_threads(_own_work)
    def canonicalize_(self, node: int | None = None) -> TreeTensorNetwork:
        """Move the orthogonality centre to internal ``node`` (default: the root) in place.

        Only the missing QR steps are done: from centre ``a``, moving to ``b``
        factorises the nodes on the path, nothing else.
        """
        node = self._tree.root if node is None else self._internal("node", node)
        tensors = list(self._tensors)
        if canonical.move_center(tensors, self._iso, self._tree, node):
            self._tensors = [None if t is None else frozen(t) for t in tensors]
        return self

    def canonicalize(self, node: int | None = None) -> TreeTensorNetwork:
        """A copy in canonical form about ``node`` (default: the root)."""
        return self.copy().canonicalize_(node)

    @with_gemm_threads(_own_work)
    def is_canonical(self, node: int | None = None, *, atol: float = 1e-10) -> bool:
        """Check numerically that every internal node but ``node`` is an isometry towards ``node``.

        With ``node=None`` the tracked centre is checked (``False`` if there is none).
        """
        if node is None:
            node = self.center
            if node is None:
                return False
        node = self._internal("node", node)
        tree = self._tree
        return all(
            canonical.isometry_error(self._tensors[v], canonical.axis_of(tree, v, hop)) <= atol
            for v, hop in canonical.towards_order(tree, node)
        )

    # ------------------------------------------------------------------ norms and overlaps

    @with_gemm_threads(_pair_work)
    def log_inner(self, other: TreeTensorNetwork) -> tuple[complex | float, float]:
        """``<self|other>`` as ``(phase, log|value|)``; safe for any size."""
        _check_same(self, other)
        return network.log_overlap(self._tree, self._tensors, other._tensors, self.output_dim is not None)

    def inner(self, other: TreeTensorNetwork) -> complex | float:
        """``<self|other>`` (``self`` conjugated; output axes contracted together)."""
        phase, log_abs = self.log_inner(other)
        return 0.0 * phase if log_abs == -math.inf else phase * math.exp(log_abs)

    @with_gemm_threads(_own_work)
    def log_norm(self) -> float:
        """``log ||psi||``; uses the centre when there is one, else rescaled environments."""
        c = self.center
        if c is not None:
            return log_frobenius_norm(self._tensors[c])
        return network.log_norm(self._tree, self._tensors)

    def norm(self) -> float:
        """``||psi||`` (``inf`` beyond the float range; see :meth:`log_norm`)."""
        log_norm = self.log_norm()
        return math.inf if log_norm > 709.0 else math.exp(log_norm)

    def normalize_(self) -> TreeTensorNetwork:
        """Scale to unit norm in place (the factor goes to the centre, or is spread over every node).

        Safe for huge, tiny or subnormal entries: each node that changes is first
        divided by its largest entry.
        """
        log_norm = self.log_norm()
        if log_norm == -math.inf:
            raise ValueError("cannot normalise the zero state.")
        c = self.center
        nodes = [c] if c is not None else [v for v in self._tree.internal_nodes if self._iso[v] is None]
        tensors = list(self._tensors)
        spread_log_scale(tensors, nodes, 1.0, -log_norm)
        for v in nodes:
            self._tensors[v] = frozen(tensors[v])
        return self

    def normalized(self) -> TreeTensorNetwork:
        """A normalised copy."""
        return self.copy().normalize_()

    def fidelity(self, other: TreeTensorNetwork) -> float:
        """``|<self|other>|**2 / (<self|self> <other|other>)``."""
        _, log_abs = self.log_inner(other)
        if log_abs == -math.inf:
            return 0.0
        return math.exp(2 * log_abs - 2 * self.log_norm() - 2 * other.log_norm())

    def __mul__(self, scalar: complex) -> TreeTensorNetwork:
        """``scalar * psi``, scaling the centre (or the root)."""
        if not is_scalar(scalar):
            return NotImplemented
        dtype, phase, log_abs = scalar_factor(scalar, self.dtype, what="a TTN", product="scalar * psi")
        tensors = [None if t is None else backend.astype(t, dtype) for t in self._tensors]
        c = self.center
        v = c if c is not None else self._tree.root
        iso = list(self._iso)
        iso[v] = None
        # The tree's contractions gather whole subtrees at once, so the factor must fit
        # on one node: NormRangeError (clear) if its entries would leave the float range.
        scale_tensors(tensors, v, (v,), phase, log_abs)
        return type(self)._trusted(self._tree, tensors, iso)

    __rmul__ = __mul__

    def __truediv__(self, scalar: complex) -> TreeTensorNetwork:
        """Division by a nonzero scalar (its inverse must be a finite number)."""
        if not is_scalar(scalar):
            return NotImplemented
        return self * inverse_scalar(scalar, type(self).__name__)

    def conj(self) -> TreeTensorNetwork:
        """Complex conjugate network."""
        return type(self)._trusted(self._tree, [None if t is None else t.conj() for t in self._tensors], self._iso)

    # ------------------------------------------------------------------ dense, MPS and product inputs

    @with_gemm_threads(_own_work)
    def to_dense(self, *, max_size: int = 2**26) -> np.ndarray:
        """The full array, shape ``phys_dims`` (plus ``(output_dim,)``), leaf 0 the slowest axis."""
        size = math.prod(self.phys_dims) * (self.output_dim or 1)
        if size > max_size:
            raise ValueError(f"the dense array would have {size:,} entries, more than `max_size`={max_size:,}.")
        return network.to_dense(self._tree, self.tensors, self.output_dim is not None)

    def to_mps(self) -> Any:
        """The equal :class:`~tnkit.MPS` (exact), for a chain tree (``Tree.chain`` or its mirror image)."""
        from ..mps.mps import MatrixProductState

        if self.output_dim is not None:
            raise ValueError("a TTN with an output axis has no MPS equivalent; it is not a state on the leaves.")
        tree = self._tree
        n = tree.n_leaves
        if tree == Tree.chain(n):
            return MatrixProductState.from_tensors(_chain_to_sites(tree, self._tensors), validate=False)
        if n > 1 and tree.mirrored() == Tree.chain(n):  # left-deep chain: mirror, convert, reverse
            mirror = _mirror_tensors(tree, self._tensors)
            sites = _chain_to_sites(tree.mirrored(), mirror)
            return MatrixProductState.from_tensors(
                [backend.permute(s, (2, 1, 0)) for s in reversed(sites)], validate=False
            )
        raise ValueError(
            f"to_mps needs a chain tree (Tree.chain({n}) or its mirror image), got {tree.to_nested()!r}."
        )

    @with_gemm_threads(_batch_work)
    def contract_product_inputs(self, features: Any) -> np.ndarray:
        """Contract with a batch of product states: the forward pass of a tree classifier.

        Parameters
        ----------
        features : array_like, shape (batch, n_leaves, d), or sequence of ``(batch, d_l)`` arrays
            ``features[k, l]`` is the local vector fed to leaf ``l`` for input
            ``k`` (not conjugated). A sequence of one array per leaf allows
            different physical dimensions.

        Returns
        -------
        numpy.ndarray, shape (batch,) or (batch, output_dim)
            ``sum_s psi[s(, o)] prod_l features[k, l, s_l]``.

        The whole batch is one planned contraction through :func:`tnkit.contract`
        (path: bottom-up, each node meeting its children in order; cached).
        """
        feats = _features(features, self.phys_dims)
        return network.product_inputs(self._tree, self.tensors, feats, self.output_dim is not None)

    def amplitudes(self, configs: Any) -> np.ndarray:
        """``psi(s)`` for each row of integer ``configs`` ``(n, n_leaves)`` (``(n, output_dim)`` with an output).

        Plain values: they underflow on large trees; see :meth:`log_amplitudes`. A
        numpy array, whatever the array library of the network.
        """
        return backend.to_numpy(self.contract_product_inputs(self._basis_features(configs)))

    def log_amplitudes(self, configs: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(phase, log|psi(s)|)`` for each row of ``configs``; safe for any number of leaves.

        Shapes ``(n,)`` each (``(n, output_dim)`` with an output axis); the phase is
        a real sign for real networks, ``log|psi| = -inf`` where ``psi(s) = 0``.
        Node results are rescaled row by row (:func:`tnkit.ttn.network.log_product_inputs`).
        """
        return self._log_product_inputs(self._basis_features(configs))

    @with_gemm_threads(_batch_work)
    def _log_product_inputs(self, feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`log_amplitudes` of validated per-leaf features, on the threads of :meth:`contract_product_inputs`."""
        return network.log_product_inputs(self._tree, self._tensors, feats, self.output_dim is not None)

    def probabilities(self, configs: Any) -> np.ndarray:
        """``p(s) = sum_o |psi(s, o)|**2 / <psi|psi>`` for each row of ``configs`` (from the logarithms)."""
        log_norm = self.log_norm()
        if log_norm == -math.inf:
            raise ValueError("the network is the zero vector (norm 0): its probabilities are undefined.")
        _, log_abs = self.log_amplitudes(configs)
        log_p = 2 * log_abs - 2 * log_norm
        if log_p.ndim == 2:
            return np.exp(log_p).sum(axis=1)
        return np.exp(log_p)

    def _basis_features(self, configs: Any) -> list[np.ndarray]:
        """One-hot ``(n, d_leaf)`` features of integer ``configs`` (validated)."""
        configs = _configs(configs, self.phys_dims)
        dtype = backend.numpy_dtype(self.dtype)
        return [np.eye(d, dtype=dtype)[configs[:, leaf]] for leaf, d in enumerate(self.phys_dims)]

    # ------------------------------------------------------------------ truncation

    @with_gemm_threads(_own_work)
    def compress(
        self, *, max_bond: int | None = None, cutoff: float = DEFAULT_CUTOFF
    ) -> tuple[TreeTensorNetwork, TruncationReport]:
        """Compressed copy by SVD truncation of every bond, and what was discarded.

        Bonds are truncated leaves-to-root, each with the orthogonality centre
        below it (see :mod:`tnkit.ttn.truncation`); the report's ``error`` is exactly
        ``||psi - psi_t||**2 / ||psi||**2`` and ``discarded`` follows ``tree.bonds``.
        The result is in canonical form about the root and not renormalised.
        """
        max_bond = check_max_bond(max_bond)
        cutoff = check_cutoff(cutoff)
        tensors = list(self._tensors)
        iso = list(self._iso)
        norm2, discarded = truncation.svd_compress(tensors, iso, self._tree, max_bond=max_bond, cutoff=cutoff)
        out = type(self)._trusted(self._tree, tensors, iso)
        return out, _report(discarded, norm2, out.bond_dims)

    def pad_bonds(self, max_bond: int, *, noise: float = 0.0, seed: object = None) -> TreeTensorNetwork:
        """Copy with every bond enlarged to ``max_bond`` (capped as in :meth:`random`), by zero padding.

        Without noise the state is unchanged (the new bond directions carry zeros on both
        sides); bonds already larger than their target are kept. The inverse, in a sense, of
        :meth:`compress`, and the way a fit grows its bonds (the tree Born machine's
        staged growth).

        Parameters
        ----------
        max_bond : int
            Target bond dimension; each bond becomes ``max(current, min(max_bond, cap))``
            with the cap of :meth:`random` (the dimensions on either side of the bond).
        noise : float
            Gaussian noise of ``noise`` times each padded tensor's root-mean-square entry
            added to every entry (complex noise for complex tensors), so that descent can
            use the new directions (at zero padding their gradients vanish).
        seed : None, int or numpy Generator
            Of the noise.

        Returns
        -------
        TreeTensorNetwork
            Not canonical unless ``noise`` is 0 and no bond grew.
        """
        bond_dim = check_int("max_bond", max_bond, minimum=1)
        noise = check_number("noise", noise, positive=False)
        rng = as_generator(seed)
        tree = self._tree
        target = _capped_bonds(tree, self.phys_dims, bond_dim, self.output_dim)
        bonds = {v: max(self._tensors[v].shape[-1], target[v]) for v in tree.bonds}
        if all(bonds[v] == self._tensors[v].shape[-1] for v in tree.bonds) and noise == 0:
            return self.copy()
        tensors: list = [None] * tree.n_nodes
        for v in tree.internal_nodes:
            t = backend.to_numpy(self._tensors[v])
            kids = tree.children(v)
            shape = tuple(bonds[c] if c >= tree.n_leaves else t.shape[j] for j, c in enumerate(kids))
            shape += (bonds[v],) if v != tree.root else t.shape[len(kids):]
            out = np.zeros(shape, dtype=t.dtype)
            out[tuple(slice(0, s) for s in t.shape)] = t
            if noise:
                rms = float(np.linalg.norm(t)) / math.sqrt(t.size)
                draw = standard_normal(rng, shape, is_complex=t.dtype.kind == "c")
                out += (noise * rms * draw).astype(t.dtype)
            tensors[v] = backend.like(out, self._tensors[v])
        return type(self)._trusted(tree, tensors)

    # ------------------------------------------------------------------ measurements

    @with_gemm_threads(_own_work)
    def expectation(self, op: Any, leaves: int | Sequence[int]) -> complex | float:
        """``<O>`` of a one-leaf operator ``(d, d)`` or a two-leaf operator; see :func:`tnkit.ttn.measure.expectation`."""
        return measure.expectation(self, op, leaves)

    @with_gemm_threads(_own_work)
    def reduced_density_matrix(self, leaves: int | Sequence[int]) -> np.ndarray:
        """Reduced density matrix of one or two leaves (trace one; first listed leaf slower)."""
        return measure.reduced_density_matrix(self, leaves)

    @with_gemm_threads(_own_work)
    def schmidt_values(self, edge: int | None = None) -> np.ndarray | list[np.ndarray]:
        """Normalised Schmidt values across the edge above node ``edge``, or a list over ``tree.edges``."""
        if edge is None:
            return measure.schmidt_values_all(self)
        return measure.schmidt_values(self, edge)

    @with_gemm_threads(_own_work)
    def entropies(self, *, alpha: float = 1.0, base: float | None = None) -> np.ndarray:
        """Entanglement entropy (nats; ``base=2``: bits) across every edge, in the order of ``tree.edges``."""
        scale = log_base(base)
        return measure.entropies(self, alpha) / scale

    def entanglement_entropy(self, edge: int, *, alpha: float = 1.0, base: float | None = None) -> float:
        """Entanglement entropy between the leaves under ``edge`` and the rest (nats; ``base=2``: bits)."""
        scale = log_base(base)
        s = self.schmidt_values(measure.check_edge("edge", edge, self._tree))
        return measure.entropy_of_probabilities(s**2, alpha) / scale

    @with_gemm_threads(_own_work)
    def sample(
        self, n_samples: int, *, seed: object = None, return_log_prob: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Exact samples of the leaves; see :func:`tnkit.ttn.sampling.sample`.

        Tree sampling runs on numpy: a network of another array library is copied
        to the host once for it (the samples are the same for a seed).
        """
        network = self if self.backend == "numpy" else self.to("numpy")
        return sampling.sample(network, n_samples, seed=seed, return_log_prob=return_log_prob)

    # ------------------------------------------------------------------ interop and files

    def to_quimb(self) -> Any:
        """An equal ``quimb.tensor.TensorNetwork``; see :mod:`tnkit.ttn.quimb`."""
        from .quimb import ttn_to_quimb

        return ttn_to_quimb(self)

    @classmethod
    def from_quimb(cls, tn: Any, **kwargs: Any) -> TreeTensorNetwork:
        """A TTN equal to a tree-shaped ``quimb.tensor.TensorNetwork``; see :func:`tnkit.ttn.quimb.ttn_from_quimb`."""
        from .quimb import ttn_from_quimb

        return ttn_from_quimb(tn, **kwargs)

    def save(self, path: Any) -> Any:
        """Write to ``.npz`` (schema-versioned, no pickle) atomically; return the path written."""
        from ..io import save_arrays

        meta = {**self._tree.to_arrays(), "iso": self.gauge}
        return save_arrays(path, "TreeTensorNetwork", [backend.to_numpy(t) for t in self.tensors], meta)

    @classmethod
    def load(cls, path: Any) -> TreeTensorNetwork:
        """Read a network written by :meth:`save`; validated, and its gauge claims re-checked."""
        from ..errors import SchemaError
        from ..io import load_arrays

        tensors, meta = load_arrays(path, "TreeTensorNetwork")
        try:
            tree = Tree.from_arrays(meta["n_leaves"], meta["child_counts"], meta["children"])
            claims = [int(i) for i in meta["iso"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"{str(path)!r}: the tree structure is missing or malformed ({exc}).") from exc
        psi = cls(tree, tensors)
        psi.adopt_gauge(claims)
        return psi

    # ------------------------------------------------------------------ internal

    def _internal(self, name: str, node: object) -> int:
        node = check_int(name, node)
        if node not in self._tree.internal_nodes:
            raise IndexError(
                f"`{name}` must be an internal node in [{self.n_leaves}, {self._tree.n_nodes}), got {node}."
            )
        return node

    @property
    def gauge(self) -> np.ndarray:
        """Known isometries: ``gauge[v]`` is the neighbour node ``v`` is an isometry towards, ``-1`` if none.

        Shape ``(tree.n_nodes,)``, int64; ``-1`` for leaves and for the centre. Save it
        beside the tensors and hand it to :meth:`adopt_gauge` after loading to keep a
        canonical form without redoing any QR.
        """
        return np.asarray([-1 if u is None else u for u in self._iso], dtype=np.int64)

    def adopt_gauge(self, claims: Any, *, atol: float = 1e-10) -> int:
        """Adopt isometry claims (e.g. a saved :attr:`gauge`) that the tensors confirm; return how many.

        Claim ``u = claims[v]`` is kept when ``u`` is an internal neighbour of ``v`` and
        ``T_v`` is an isometry towards it within ``atol`` (checked numerically, so a
        wrong or stale claim is dropped, never trusted); ``-1`` claims nothing.
        """
        claims = np.asarray(claims).reshape(-1)
        if claims.size == 0:
            return 0
        if claims.dtype.kind not in "iu":
            raise TypeError(f"`claims` must hold integer node ids (-1 for none), got dtype {claims.dtype}.")
        tree = self._tree
        adopted = 0
        for v in tree.internal_nodes:
            u = int(claims[v]) if v < len(claims) else -1
            if u >= tree.n_leaves and u < tree.n_nodes and u in tree.neighbours(v):
                if canonical.isometry_error(self._tensors[v], canonical.axis_of(tree, v, u)) <= atol:
                    self._iso[v] = u
                    adopted += 1
        return adopted


TTN = TreeTensorNetwork


# ---------------------------------------------------------------------- helpers


def _check_tree(tree: object) -> Tree:
    if not isinstance(tree, Tree):
        raise TypeError(f"`tree` must be a tnkit.ttn.Tree, got {type(tree).__name__}.")
    return tree


def _float_dtype(dtype: Any) -> np.dtype:
    return check_dtype("dtype", dtype)


def _phys_dims(name: str, dims: Any, n_leaves: int) -> tuple[int, ...]:
    return check_phys_dims(name, dims, n_leaves, per="leaf")


def _capped_bonds(tree: Tree, dims: Sequence[int], bond_dim: int, output_dim: int | None) -> list[int]:
    """Bond above each node: ``min(bond_dim, dims under it, dims elsewhere incl. the output)``."""
    logs = subtree_log_dims(tree, dims)
    total = logs[tree.root] + (math.log(output_dim) if output_dim else 0.0)
    cap_log = math.log(bond_dim)
    bonds = [0] * tree.n_nodes
    for v in tree.bonds:
        side = min(logs[v], total - logs[v], cap_log)
        bonds[v] = max(1, min(bond_dim, int(round(math.exp(side)))))
    return bonds


def _leaf_dims(tree: Tree, tensors: Sequence[Any]) -> tuple[int, ...]:
    dims = [0] * tree.n_leaves
    for v in tree.internal_nodes:
        for axis, c in enumerate(tree.children(v)):
            if c < tree.n_leaves:
                dims[c] = tensors[v].shape[axis]
    return tuple(dims)


def _check_shapes(tree: Tree, tensors: Sequence[Any]) -> None:
    for v in tree.internal_nodes:
        t = tensors[v]
        k = len(tree.children(v))
        expected = k + (1 if v != tree.root else 0)
        allowed = (expected, expected + 1) if v == tree.root else (expected,)
        if t.ndim not in allowed:
            what = f"{k} children" + (" + parent bond" if v != tree.root else " (+ optional output axis)")
            raise ValueError(f"`tensors[{v}]` must have {' or '.join(map(str, allowed))} axes ({what}), got shape {t.shape}.")
    for v in tree.bonds:
        p = tree.parent(v)
        below, above = tensors[v].shape[-1], tensors[p].shape[tree.children(p).index(v)]
        if below != above:
            raise ValueError(
                f"bond {v}-{p} has dimension {below} on node {v} (last axis) but {above} on node {p} "
                f"(axis {tree.children(p).index(v)})."
            )


#: Former keywords of :meth:`TreeTensorNetwork.random` and their names now.
_RANDOM_RENAMED = {"phys_dims": "phys_dim", "bond_dim": "max_bond"}


def _renamed_random_keywords(renamed: dict[str, Any], phys_dim: Any, max_bond: Any) -> tuple[Any, Any]:
    """``(phys_dim, max_bond)`` with the values given under their former names, warning once each."""
    unknown = sorted(set(renamed) - set(_RANDOM_RENAMED))
    if unknown:
        raise TypeError(f"TTN.random() got unexpected keyword arguments {unknown}.")
    values = {"phys_dim": phys_dim, "max_bond": max_bond}
    for old, value in renamed.items():
        new = _RANDOM_RENAMED[old]
        warnings.warn(
            f"TTN.random's `{old}` is now called `{new}` (the vocabulary of MPS.random); "
            f"`{old}` will be removed.",
            FutureWarning,
            stacklevel=3,
        )
        values[new] = value
    return values["phys_dim"], values["max_bond"]


def _dense_shape(a: np.ndarray, tree: Tree, phys_dims: Any, has_output: bool) -> np.ndarray:
    n = tree.n_leaves
    if phys_dims is not None:
        dims = _phys_dims("phys_dims", phys_dims, n)
        size = math.prod(dims)
        if a.size % size or (not has_output and a.size != size):
            raise ValueError(f"`array` has {a.size} entries, not a multiple of prod(phys_dims) = {size}.")
        return a.reshape(dims + ((a.size // size,) if has_output else ()))
    if a.ndim != n + has_output:
        raise ValueError(
            f"`array` must have one axis per leaf ({n}){' plus the output axis' if has_output else ''}, "
            f"got shape {a.shape}; pass `phys_dims` for a flat array."
        )
    return a


def _report(discarded: Sequence[float], norm2: float, bond_dims: tuple[int, ...]) -> TruncationReport:
    rel = tuple(d / norm2 if norm2 > 0 else 0.0 for d in discarded)
    error = float(sum(rel))
    return TruncationReport("svd", error, rel, bond_dims, fidelity=1.0 - error)


def _check_same(a: TreeTensorNetwork, b: object) -> None:
    if not isinstance(b, TreeTensorNetwork):
        raise TypeError(f"expected a TreeTensorNetwork, got {type(b).__name__}.")
    if a.tree != b.tree:
        raise ValueError(f"the two networks must have the same tree, got {a.tree!r} and {b.tree!r}.")
    if a.phys_dims != b.phys_dims or a.output_dim != b.output_dim:
        raise ValueError(
            f"the two networks must have the same physical and output dimensions, got "
            f"{a.phys_dims}/{a.output_dim} and {b.phys_dims}/{b.output_dim}."
        )


def _features(features: Any, dims: tuple[int, ...]) -> list[np.ndarray]:
    n = len(dims)
    if isinstance(features, np.ndarray) or not isinstance(features, (list, tuple)):
        arr = as_array("features", features, ndim=3)
        if arr.shape[1] != n or len(set(dims)) != 1 or arr.shape[2] != dims[0]:
            want = f"(batch, {n}, {dims[0]})" if len(set(dims)) == 1 else "a list of (batch, d_leaf) arrays"
            raise ValueError(f"`features` must have shape {want}, got {arr.shape}.")
        return [arr[:, leaf] for leaf in range(n)]
    if len(features) != n:
        raise ValueError(f"`features` must hold one (batch, d) array per leaf ({n}), got {len(features)}.")
    out = [as_array(f"features[{leaf}]", f, ndim=2) for leaf, f in enumerate(features)]
    for leaf, f in enumerate(out):
        if f.shape != (out[0].shape[0], dims[leaf]):
            raise ValueError(f"`features[{leaf}]` must have shape ({out[0].shape[0]}, {dims[leaf]}), got {f.shape}.")
    return out


def _configs(configs: Any, dims: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(configs)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != len(dims):
        raise ValueError(f"`configs` must have shape (n, {len(dims)}), got {np.shape(configs)}.")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`configs` must hold integers, got dtype {arr.dtype}.")
    bad = (arr < 0) | (arr >= np.asarray(dims))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"`configs`[{row}, {col}] = {arr[row, col]} is not a basis state of leaf {col} (dimension {dims[col]}).")
    return arr


def _chain_spine(tree: Tree) -> list[int]:
    """Internal nodes of ``Tree.chain`` from the root (above leaf 0) down."""
    spine = [tree.root]
    while True:
        inner = [c for c in tree.children(spine[-1]) if c >= tree.n_leaves]
        if not inner:
            return spine
        spine.append(inner[0])


def _chain_to_sites(tree: Tree, tensors: Sequence[Any]) -> list[np.ndarray]:
    """MPS site tensors ``(D_l, d, D_r)`` of a TTN on ``Tree.chain``."""
    from ..core.linalg import qr

    n = tree.n_leaves
    spine = _chain_spine(tree)
    if n == 1:
        return [tensors[tree.root].reshape(1, -1, 1)]
    sites = []
    for i, v in enumerate(spine[:-1]):
        t = tensors[v]
        sites.append(t[None] if i == 0 else backend.permute(t, (2, 0, 1)))
    last = tensors[spine[-1]]
    if n == 2:
        last = last[..., None]
    d1, d2, dl = last.shape
    q, r = qr(backend.permute(last, (2, 0, 1)).reshape(dl * d1, d2))
    sites.append(q.reshape(dl, d1, q.shape[1]))
    sites.append(r.reshape(r.shape[0], d2, 1))
    return sites


def _mirror_tensors(tree: Tree, tensors: Sequence[Any]) -> list:
    """Tensors of ``tree.mirrored()``: children axes reversed (internal nodes renumbered by post-order)."""
    mirror = tree.mirrored()
    out: list = [None] * mirror.n_nodes
    # post-order of the mirrored tree visits the original nodes in reverse-children post-order
    order: list[int] = []
    stack: list[tuple[int, bool]] = [(tree.root, False)]
    while stack:
        v, done = stack.pop()
        if v < tree.n_leaves:
            continue
        if done:
            order.append(v)
            continue
        stack.append((v, True))
        stack.extend((c, False) for c in tree.children(v))
    for new, old in zip(mirror.internal_nodes, order):
        t = tensors[old]
        k = len(tree.children(old))
        perm = list(reversed(range(k))) + list(range(k, t.ndim))
        out[new] = backend.permute(t, perm)
    return out
