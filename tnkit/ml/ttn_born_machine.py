"""Tree tensor network Born machines: ``p(x) = |psi(x)|**2 / Z`` with ``psi`` a TTN.

:class:`TTNBornMachine` is the tree counterpart of :class:`tnkit.ml.MPSBornMachine`
(same interface). The state ``psi`` is a real :class:`tnkit.TTN` (no output axis)
whose leaves are the features; for images the tree is :meth:`tnkit.ttn.Tree.grid`
over the pixel layout, so every subtree covers a compact patch and neighbouring
pixels, in both directions, are a few bonds apart instead of up to a row apart in an
MPS (Cheng, Wang, Xiang & Zhang, "Tree tensor networks for generative modeling",
PRB 99, 155131 (2019), arXiv:1901.02217). Index conventions are those of
:mod:`tnkit.ttn.ttn`: internal node ``v`` holds ``T_v`` with one axis per child (a
leaf child contributes its physical axis, the value of that feature), then its
parent bond; the root has no parent axis.

Exact likelihood
----------------
``psi(x)`` is one bottom-up (*inside*) pass: ``in_leaf = e_{x_leaf}`` and
``in_v[n, p] = sum T_v[c_1, .., c_m, p] prod_j in_{c_j}[n, c_j]``. The one-hot leaf
vectors are never formed: the samples of a node are grouped by the values of its
leaf children (:func:`tnkit.ml.environments.group_rows`) and each group contracts
the slice ``T_v[.., x_leaf, .., p]`` with the inside vectors of the internal
children only. Every vector is stored divided by its per-sample norm with the log
kept apart, so trees over hundreds of pixels neither under- nor overflow. ``Z`` comes
from the canonical form (``Z = ||T_c||**2`` at the orthogonality centre ``c``,
:meth:`tnkit.TTN.log_norm`).

Training
--------
``NLL = log Z - 1/|T| sum_{x in T} log psi(x)**2``. With the *outside* vectors
(top-down: ``out_root = 1``, ``out_{c_j}[n, c_j] = sum T_v[.., p] out_v[n, p]
prod_{i != j} in_{c_i}[n, c_i]``), ``psi(x) = <in_v(x), out_v(x)>`` at every node and

    dNLL/dT_v = 2 E_v / Z - 2/|T| sum_x in_{c_1}(x) (x) .. (x) in_{c_m}(x) (x) out_v(x) / psi(x),

where ``E_v = dZ/dT_v / 2`` is ``T_v`` contracted with the norm environments of the
rest of the tree (``E_v = T_v`` when ``v`` is the orthogonality centre).

* ``trainer="sweep"`` (default): node-local updates along a depth-first tour of the
  internal nodes. The tree is kept in canonical form about the visited node, so
  ``Z = ||T_v||**2`` and the update is Han et al.'s ``T_v <- T_v - eta dNLL/dT_v``,
  ``T_v <- T_v / ||T_v||``, with ``eta`` backtracked from ``learning_rate`` so that
  every step lowers the NLL; moving to the next node is one QR
  (:func:`tnkit.ttn.canonical.qr_toward`) and one new inside or outside vector. A
  sweep is the whole tour, root to root (every edge walked down and up once).
  A full-batch fit then hops out of local minima (``n_hops``: noise on every tensor,
  ``hop_sweeps`` sweeps, kept if the training NLL is lower), with the multi-start and
  hopping machinery of :class:`~tnkit.ml.born_machine.BornMachineBase` shared with the MPS.
* ``trainer="gradient"``: minibatch Adam on every tensor at once with the exact
  gradient (:func:`tree_nll_and_gradient`); after every step the tree is brought back
  to canonical form about the root with ``Z = 1`` (a gauge change, the model is
  unchanged; for small steps it is close to the identity, so Adam's moments stay
  meaningful).

A node update keeps the bond dimensions, so a fresh full-batch sweep fit grows them in
stages from ``init_bond`` to ``max_bond`` (capped where a subtree, or the rest of the tree,
has fewer configurations): :meth:`tnkit.TTN.pad_bonds` between stages, a held-out share of
the rows to choose where growth stops (``validation_fraction``; see ``growth_``).

Sampling is the engine's perfect sampler (:meth:`tnkit.TTN.sample`, top-down from the
root in canonical form).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import numpy as np
from opt_einsum import get_symbol
from sklearn.utils.validation import check_is_fitted

from ..core.contract import contract
from ..core.rng import as_generator
from ..core.threads import blas_threads
from ..io import load_arrays, save_arrays
from ..ttn import TTN, Tree
from ..ttn import sampling as tree_sampling
from ..ttn.canonical import qr_toward
from .born_machine import (BornMachineBase, bond_stages, held_out_rank, largest_within_noise, perturbed_tensors,
                           split_rows)
from .born_sweeps import sphere_descent
from .environments import TINY, group_rows, normalize_rows
from .history import TrainingHistory, converged, gradient_epochs, progress_bar, record
from .optim import Adam
from .trainers import AdamSettings
from .ttn_classifier import feature_tree
from .validation import Rule, instance, integer, number, store_params

__all__ = [
    "TTNBornMachine",
    "tree_log_amplitudes",
    "tree_nll_and_gradient",
    "tree_sweep_train",
    "tree_gradient_train",
    "sweep_tour",
    "tree_embedding",
]

_KIND = "TTNBornMachine"
#: Growth stops this many stages after the one it would keep (one worse stage can be noise).
_GROWTH_PATIENCE = 2
#: Noise of each growth stage's padding, relative to each tensor's root-mean-square entry.
_GROWTH_NOISE = 0.1
#: Columns of ``growth_`` as saved (one row per stage).
_GROWTH_FIELDS = ("start", "bond", "sweeps", "nll", "validation_nll", "kept")
#: Rows per chunk of ``log_prob`` (bounds the inside vectors held at once).
_CHUNK = 8192


# --------------------------------------------------------------------------- equations


@functools.lru_cache(maxsize=64)
def _data_equations(k: int) -> tuple[str, tuple[str, ...], str]:
    """Equations of a node slice with ``k`` internal-child axes then the parent axis.

    Returns the forward (slice, ins -> batch x parent), the outside of each internal
    child (slice, out, other ins -> batch x child) and the gradient (ins, out -> slice)
    equations; ``z`` is the batch symbol.
    """
    kids = [get_symbol(i) for i in range(k)]
    p, z = get_symbol(k), get_symbol(k + 1)
    node = "".join(kids) + p
    ins = [z + c for c in kids]
    forward = ",".join([node, *ins]) + "->" + z + p
    outside = tuple(
        ",".join([node, z + p] + [z + c for i, c in enumerate(kids) if i != j]) + "->" + z + kids[j]
        for j in range(k)
    )
    gradient = ",".join([*ins, z + p]) + "->" + node
    return forward, outside, gradient


@functools.lru_cache(maxsize=256)
def _norm_equations(leaf_mask: tuple[bool, ...]) -> tuple[str, tuple[str, ...], str]:
    """Norm-environment equations of a node whose children are leaves where ``leaf_mask``.

    Operands: ``T`` (ket), ``T`` (bra), then the parent environment ``H[p, q]`` and the
    internal children's Gram matrices ``G_c[a_c, b_c]`` in child order. Returns the
    inside Gram (``T, T, G.. -> pq``, no ``H``), the outside environment of each internal
    child (``T, T, H, other G.. -> a_j b_j``) and ``E`` (``T, H, G.. -> T's axes``; bra only).
    """
    m = len(leaf_mask)
    ket = [get_symbol(2 * j) for j in range(m)]
    bra = [ket[j] if leaf else get_symbol(2 * j + 1) for j, leaf in enumerate(leaf_mask)]
    p, q = get_symbol(2 * m), get_symbol(2 * m + 1)
    t_ket, t_bra = "".join(ket) + p, "".join(bra) + q
    grams = {j: ket[j] + bra[j] for j in range(m) if not leaf_mask[j]}
    inside = ",".join([t_ket, t_bra, *grams.values()]) + "->" + p + q
    outside = tuple(
        ",".join([t_ket, t_bra, p + q] + [g for i, g in grams.items() if i != j]) + "->" + grams[j]
        for j in grams
    )
    env = ",".join([t_bra, p + q, *grams.values()]) + "->" + t_ket
    return inside, outside, env


def _with_parent(tree: Tree, v: int, t: np.ndarray) -> np.ndarray:
    """``T_v``, with a trivial parent axis at the root (so every node has one)."""
    return t[..., None] if v == tree.root else t


# --------------------------------------------------------------------------- data environments


class _TreeData:
    """Per-sample inside and outside vectors of integer data on a tree, log-scaled.

    ``inside[v] = (vec, log)`` for every internal non-root ``v`` (shape ``(n, D_v)``,
    unit rows, ``log`` the removed log-norms); ``outside[v]`` likewise on ``v``'s parent
    bond (``(n, 1)`` ones at the root). ``groups[v]`` lists ``(index, rows)``: the slice
    of ``T_v`` at the leaf children's values and the samples holding them.
    ``weights`` (shape ``(n,)``, summing to one) weighs the rows in the NLL and its
    gradient: the frequencies of distinct rows (:meth:`distinct`), ``1/n`` each by default.
    """

    def __init__(self, tree: Tree, dims: np.ndarray, X: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.tree, self.n = tree, len(X)
        self.weights = np.full(self.n, 1.0 / max(self.n, 1)) if weights is None else weights
        n_leaves = tree.n_leaves
        self.groups: dict[int, list[tuple[tuple[Any, ...], np.ndarray | slice]]] = {}
        self.internal_kids: dict[int, list[int]] = {}
        for v in tree.internal_nodes:
            kids = tree.children(v)
            leaf_pos = [j for j, c in enumerate(kids) if c < n_leaves]
            self.internal_kids[v] = [c for c in kids if c >= n_leaves]
            if not leaf_pos:
                self.groups[v] = [((Ellipsis,), slice(None))]  # one group: views, no copies
                continue
            cols = [X[:, kids[j]] for j in leaf_pos]
            found = group_rows(*cols, dims=tuple(int(dims[kids[j]]) for j in leaf_pos))
            entries = []
            for values, rows in found:
                index: list[Any] = [slice(None)] * (len(kids) + 1)
                for j, s in zip(leaf_pos, values):
                    index[j] = s
                entries.append((tuple(index), rows))
            self.groups[v] = entries
        self.inside: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.outside = {tree.root: (np.ones((self.n, 1)), np.zeros(self.n))}

    @classmethod
    def distinct(cls, tree: Tree, dims: np.ndarray, X: np.ndarray) -> _TreeData:
        """The distinct rows of ``X`` weighted by their frequencies: the same NLL and gradient, fewer rows.

        The NLL and its gradient are sums over samples of terms that depend on the sample
        only, and data of low entropy repeat many rows.
        """
        rows, counts = np.unique(X, axis=0, return_counts=True)
        return cls(tree, dims, rows, counts / counts.sum())

    def _ins(self, v: int, rows: np.ndarray | slice, skip: int = -1) -> list[np.ndarray]:
        return [self.inside[c][0][rows] for c in self.internal_kids[v] if c != skip]

    def _in_log(self, v: int, skip: int = -1) -> np.ndarray:
        return sum((self.inside[c][1] for c in self.internal_kids[v] if c != skip), np.zeros(self.n))

    def forward(self, v: int, t: np.ndarray) -> np.ndarray:
        """Unnormalised inside vector of ``v`` from its children's (normalised) ones, ``(n, D_parent)``."""
        t = _with_parent(self.tree, v, t)
        eq = _data_equations(len(self.internal_kids[v]))[0]
        out = np.empty((self.n, t.shape[-1]), dtype=np.result_type(t, *self._ins(v, slice(0, 0))))
        for index, rows in self.groups[v]:
            sub = t[index]
            out[rows] = sub[None, :] if sub.ndim == 1 else contract(eq, sub, *self._ins(v, rows))
        return out

    def set_inside(self, v: int, t: np.ndarray) -> None:
        """Recompute ``inside[v]`` from ``T_v`` and the children's inside vectors."""
        vec, extra = normalize_rows(self.forward(v, t))
        self.inside[v] = (vec, self._in_log(v) + extra)

    def set_outside(self, c: int, t_parent: np.ndarray) -> None:
        """Recompute ``outside[c]`` from the parent's tensor, outside vector and the siblings' inside vectors."""
        v = self.tree.parent(c)
        t = _with_parent(self.tree, v, t_parent)
        kids = self.internal_kids[v]
        eq = _data_equations(len(kids))[1][kids.index(c)]
        out_v, log_v = self.outside[v]
        out = np.empty((self.n, t.shape[self.tree.children(v).index(c)]), dtype=np.result_type(t, out_v))
        for index, rows in self.groups[v]:
            out[rows] = contract(eq, t[index], out_v[rows], *self._ins(v, rows, skip=c))
        vec, extra = normalize_rows(out)
        self.outside[c] = (vec, log_v + self._in_log(v, skip=c) + extra)

    def build_inside(self, tensors: list) -> None:
        """Inside vectors of every internal non-root node, leaves to root."""
        for v in self.tree.postorder():
            if v >= self.tree.n_leaves and v != self.tree.root:
                self.set_inside(v, tensors[v])

    def amplitudes(self, v: int, t: np.ndarray) -> np.ndarray:
        """``psi(x)`` of every sample with ``t`` at node ``v``, the stored log-scales left out, ``(n,)``."""
        return np.einsum("np,np->n", self.forward(v, t), self.outside[v][0])

    def log_psi(self, v: int, t: np.ndarray, amp: np.ndarray | None = None) -> np.ndarray:
        """``log|psi(x)|`` of every sample at node ``v`` (``amp``: its :meth:`amplitudes`, if known)."""
        amp = self.amplitudes(v, t) if amp is None else amp
        with np.errstate(divide="ignore"):
            return np.log(np.abs(amp)) + self._in_log(v) + self.outside[v][1]

    def data_gradient(self, v: int, t: np.ndarray, amp: np.ndarray | None = None) -> np.ndarray:
        """``sum_x w(x) Phi_v(x) / psi(x)``: the data term of ``dNLL/dT_v`` (shape of ``T_v``).

        ``amp``: the :meth:`amplitudes` of ``t``, if known (saves one contraction per row group).
        """
        tp = _with_parent(self.tree, v, t)
        k = len(self.internal_kids[v])
        forward, _, gradient = _data_equations(k)
        grad = np.zeros_like(tp)
        out_v = self.outside[v][0]
        for index, rows in self.groups[v]:
            sub, ins, out = tp[index], self._ins(v, rows), out_v[rows]
            if amp is None:
                inside = sub[None, :] if sub.ndim == 1 else contract(forward, sub, *ins)
                group_amp = np.einsum("np,np->n", inside, out)
            else:
                group_amp = amp[rows]
            group_amp = np.where(np.abs(group_amp) < TINY, TINY, group_amp)
            grad[index] += contract(gradient, *ins, out * (self.weights[rows] / group_amp)[:, None])
        if np.iscomplexobj(grad):
            grad = grad.conj()
        return grad[..., 0] if v == self.tree.root else grad




class _NodeProblem:
    """The NLL as a function of the centre node's tensor (for :func:`tnkit.ml.born_sweeps.sphere_descent`)."""

    def __init__(self, data: _TreeData, v: int) -> None:
        self.data, self.v = data, v
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def _amplitudes(self, t: np.ndarray) -> np.ndarray:
        """``data.amplitudes`` of ``t``, kept for the same array: the descent asks for the
        gradient at the tensor whose NLL it has just accepted."""
        if self._cache is not None and self._cache[0] is t:
            return self._cache[1]
        amp = self.data.amplitudes(self.v, t)
        self._cache = (t, amp)
        return amp

    def nll(self, t: np.ndarray) -> float:
        """Exact NLL with ``t`` at the orthogonality centre ``v`` (``Z = ||t||**2``)."""
        log_psi = self.data.log_psi(self.v, t, self._amplitudes(t))
        return float(np.log(np.vdot(t, t).real)) - 2.0 * float(np.dot(self.data.weights, log_psi))

    def data_gradient(self, t: np.ndarray) -> np.ndarray:
        """``sum_x w(x) Phi_v(x) / psi(x)``."""
        return self.data.data_gradient(self.v, t, self._amplitudes(t))


# --------------------------------------------------------------------------- functional core


def tree_log_amplitudes(tree: Tree, tensors: list, X: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """``log|psi(x)|`` of each row of ``X`` (one inside pass, log-scaled; ``-inf`` where ``psi = 0``).

    Parameters
    ----------
    tree : Tree
    tensors : list
        Indexed by node (``None`` for leaves), axis order of :mod:`tnkit.ttn.ttn`.
    X : numpy.ndarray of int, shape (n, n_leaves)
    dims : numpy.ndarray of int, shape (n_leaves,)
        Values per leaf.

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    out = np.empty(len(X))
    for start in range(0, len(X), _CHUNK):
        data = _TreeData(tree, dims, X[start : start + _CHUNK])
        data.build_inside(tensors)
        out[start : start + _CHUNK] = data.log_psi(tree.root, tensors[tree.root])
    return out


def _norm_environments(tree: Tree, tensors: list) -> tuple[float, dict[int, np.ndarray]]:
    """``log Z`` and ``E_v`` (``dZ/dT_v / 2``, scaled by ``1/Z``) for every internal node, any gauge."""
    n_leaves = tree.n_leaves
    leafy = {v: tuple(c < n_leaves for c in tree.children(v)) for v in tree.internal_nodes}
    kids = {v: [c for c in tree.children(v) if c >= n_leaves] for v in tree.internal_nodes}
    grams: dict[int, np.ndarray] = {}
    log_z = 0.0
    for v in tree.postorder():
        if v < n_leaves:
            continue
        t = _with_parent(tree, v, tensors[v])
        g = contract(_norm_equations(leafy[v])[0], t, t.conj(), *(grams[c] for c in kids[v]))
        trace = float(np.trace(g).real)
        if not trace > 0:
            raise FloatingPointError("the state has zero norm.")
        log_z += math.log(trace)
        grams[v] = g / trace
    envs: dict[int, np.ndarray] = {tree.root: np.ones((1, 1))}
    out: dict[int, np.ndarray] = {}
    for v in tree.preorder():
        if v < n_leaves:
            continue
        t = _with_parent(tree, v, tensors[v])
        _, outside, env_eq = _norm_equations(leafy[v])
        g_kids = [grams[c] for c in kids[v]]
        # E[bra] = sum over ket of T H G..; the equation is written with the labels swapped,
        # which for the Hermitian H and G means their conjugates
        e = contract(env_eq, t, envs[v].conj(), *(g.conj() for g in g_kids))
        out[v] = e / float(np.vdot(t, e).real)
        out[v] = out[v][..., 0] if v == tree.root else out[v]
        for j, c in enumerate(kids[v]):
            h = contract(outside[j], t, t.conj(), envs[v], *(g for i, g in enumerate(g_kids) if i != j))
            envs[c] = h / float(np.trace(h).real)
    return log_z, out


def tree_embedding(model: TTNBornMachine, X: np.ndarray, node: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised inside and outside vectors of each row on the parent bond of ``node``.

    The inside vector describes the features under ``node``, the outside vector the
    rest (the tree counterpart of an MPS's left and right environments at a bond).

    Parameters
    ----------
    model : TTNBornMachine
        Fitted.
    X : numpy.ndarray of int, shape (n, n_features)
        Validated rows.
    node : int, optional
        An internal, non-root node; default the root's first internal child.

    Returns
    -------
    inside, outside : numpy.ndarray, shape (n, D)
    """
    tree = model.tree_
    candidates = [v for v in tree.internal_nodes if v != tree.root]
    if not candidates:
        raise ValueError("the tree has no internal bond (every child of the root is a feature).")
    if node is None:
        node = next((c for c in tree.children(tree.root) if c in candidates), candidates[0])
    elif isinstance(node, bool) or not isinstance(node, (int, np.integer)) or int(node) not in candidates:
        raise ValueError(f"`bond` must be an internal non-root node of the tree (one of {candidates}), got {node!r}.")
    tensors = [None] * tree.n_leaves + [np.array(t) for t in model.ttn_.tensors]
    data = _TreeData(tree, model.n_categories_, X)
    data.build_inside(tensors)
    for v in tree.preorder():
        if v >= tree.n_leaves:
            for c in data.internal_kids[v]:
                data.set_outside(c, tensors[v])
    return data.inside[int(node)][0], data.outside[int(node)][0]


def tree_nll_and_gradient(
    tree: Tree, tensors: list, X: np.ndarray, dims: np.ndarray
) -> tuple[float, dict[int, np.ndarray]]:
    """Exact NLL of ``X`` under the tree Born machine of ``tensors`` and its gradient, any gauge and norm.

    Parameters
    ----------
    tree : Tree
    tensors : list
        Real tensors indexed by node (``None`` for leaves).
    X : numpy.ndarray of int, shape (n, n_leaves)
    dims : numpy.ndarray of int, shape (n_leaves,)

    Returns
    -------
    nll : float
        ``log Z - mean log psi(x)**2`` in nats.
    grads : dict of int to numpy.ndarray
        ``dNLL/dT_v`` for every internal node ``v`` (same shape as ``tensors[v]``).
    """
    data = _TreeData(tree, dims, X)
    data.build_inside(tensors)
    for v in tree.preorder():
        if v >= tree.n_leaves:
            for c in data.internal_kids[v]:
                data.set_outside(c, tensors[v])
    log_psi = data.log_psi(tree.root, tensors[tree.root])
    log_z, z_envs = _norm_environments(tree, tensors)
    grads = {v: 2.0 * z_envs[v] - 2.0 * data.data_gradient(v, tensors[v]) for v in tree.internal_nodes}
    return float(log_z - 2.0 * np.mean(log_psi)), grads


def sweep_tour(tree: Tree) -> list[int]:
    """Internal nodes in the order a sweep visits them: depth-first from the root, back to the root.

    Consecutive entries are neighbours; every internal edge is walked down and up once.
    """
    tour: list[int] = []
    stack: list[tuple[int, int]] = [(tree.root, 0)]
    while stack:
        v, j = stack.pop()
        tour.append(v)
        inner = [c for c in tree.children(v) if c >= tree.n_leaves]
        if j < len(inner):
            stack.append((v, j + 1))
            stack.append((inner[j], 0))
    return tour


def _canonical_tensors(tree: Tree, tensors: list) -> list:
    """The same model in canonical form about the root with ``Z = 1`` (engine QR steps), node-indexed."""
    ttn = TTN(tree, [tensors[v] for v in tree.internal_nodes]).canonicalize_(tree.root).normalize_()
    return [None] * tree.n_leaves + [np.array(ttn.tensor(v)) for v in tree.internal_nodes]


def tree_sweep_train(
    tree: Tree,
    tensors: list,
    X: np.ndarray,
    dims: np.ndarray,
    *,
    n_sweeps: int,
    learning_rate: float,
    n_descent_steps: int,
    normalized_gradient: bool = False,
    batch_size: int | None = None,
    rng: np.random.Generator | None = None,
    progress: bool = False,
    history: TrainingHistory | None = None,
    tol: float | None = None,
) -> tuple[list, TrainingHistory]:
    """Node-local NLL sweeps with the tree canonical about the visited node (see the module docstring).

    Parameters
    ----------
    tree : Tree
    tensors : list
        Starting tensors, indexed by node; not modified.
    X : numpy.ndarray of int, shape (n, n_leaves)
    dims : numpy.ndarray of int, shape (n_leaves,)
    n_sweeps : int
        Tours of the tree (:func:`sweep_tour`).
    learning_rate, n_descent_steps, normalized_gradient
        Han et al.'s update at each visited node, as in
        :func:`tnkit.ml.born_sweeps.sphere_descent` (line-searched: the NLL never rises).
    batch_size : int, optional
        Train each sweep on a fresh random subset of this many rows (bounds memory).
    rng : numpy.random.Generator, optional
        For the subsets.
    progress : bool
        A tqdm bar over sweeps with the NLL.
    history : TrainingHistory, optional
        Appended to (warm start).
    tol : float, optional
        Stop before ``n_sweeps`` once each of the last three sweeps lowered the NLL by
        less than this (nats; full-batch sweeps only; :func:`tnkit.ml.history.converged`).

    Returns
    -------
    tensors : list
        Trained, canonical about the root, ``Z = 1``.
    history : TrainingHistory
        NLL per sweep (exact, of the sweep's rows), largest bond, seconds, learning rate.
    """
    history = TrainingHistory() if history is None else history
    n_before = len(history.nll)
    tensors = _canonical_tensors(tree, tensors)
    tour = sweep_tour(tree)
    rng = np.random.default_rng() if rng is None else rng
    batched = batch_size is not None and batch_size < len(X)
    bond = max((tensors[v].shape[-1] for v in tree.bonds), default=1)
    with progress_bar(n_sweeps, progress) as bar:
        data = None
        for _ in range(n_sweeps):
            tick = time.perf_counter()
            if data is None or batched:
                rows = np.sort(rng.choice(len(X), size=batch_size, replace=False)) if batched else slice(None)
                data = _TreeData.distinct(tree, dims, X[rows])
                data.build_inside(tensors)
            rate = learning_rate
            with blas_threads(bond):
                for step, v in enumerate(tour):
                    tensors[v], _, rate = sphere_descent(
                        tensors[v], _NodeProblem(data, v), rate, n_descent_steps, normalized_gradient,
                        learning_rate if batched or normalized_gradient else 0.5,
                    )
                    if step + 1 < len(tour):
                        _move(tree, tensors, data, v, tour[step + 1])
            nll = float(-2.0 * np.dot(data.weights, data.log_psi(tree.root, tensors[tree.root])))
            record(history, bar, nll, bond, time.perf_counter() - tick, learning_rate)
            if not batched and converged(history.nll[n_before:], tol):
                break
    return tensors, history


def _move(tree: Tree, tensors: list, data: _TreeData, v: int, u: int) -> None:
    """Move the orthogonality centre from ``v`` to its neighbour ``u`` and refresh the one stale vector."""
    qr_toward(tensors, tree, v, u)
    if u == tree.parent(v):
        data.set_inside(v, tensors[v])
    else:
        data.set_outside(u, tensors[v])


def tree_gradient_train(
    tree: Tree,
    tensors: list,
    X: np.ndarray,
    dims: np.ndarray,
    settings: AdamSettings,
    *,
    rng: np.random.Generator,
    progress: bool = False,
    history: TrainingHistory | None = None,
) -> tuple[list, TrainingHistory]:
    """Minibatch Adam on every tensor, the tree restored to canonical form about the root after each step.

    ``settings`` gives the epochs, the batch size and Adam's (constant) step size.
    Returns the trained tensors (canonical about the root, ``Z = 1``) and the history
    (NLL of the whole training set after each epoch).
    """
    history = TrainingHistory() if history is None else history
    tensors = _canonical_tensors(tree, tensors)
    nodes = list(tree.internal_nodes)
    opt = Adam(settings.learning_rate)

    def step(rows: np.ndarray) -> None:
        nonlocal tensors
        _, grads = tree_nll_and_gradient(tree, tensors, rows, dims)
        stepped = _real_step(opt, [tensors[v] for v in nodes], [grads[v] for v in nodes])
        tensors = _canonical_tensors(tree, [None] * tree.n_leaves + stepped)

    def nll() -> float:
        return float(-2.0 * np.mean(tree_log_amplitudes(tree, tensors, X, dims)))

    bond = max((tensors[v].shape[-1] for v in tree.bonds), default=1)
    history = gradient_epochs(X, settings, rng=rng, step=step, nll=nll, bond=bond, progress=progress,
                              history=history)
    return tensors, history


def _real_step(opt: Adam, params: list, grads: list) -> list:
    """One Adam step on real parameters; a complex entry counts as two reals (its real and imaginary parts)."""
    if not any(np.iscomplexobj(p) for p in params):
        return opt.step(params, grads)
    as_real = [np.ascontiguousarray(a, dtype=complex).view(np.float64) for a in params]
    steps = opt.step(as_real, [np.ascontiguousarray(g, dtype=complex).view(np.float64) for g in grads])
    return [np.ascontiguousarray(a).view(complex).reshape(p.shape) for a, p in zip(steps, params, strict=True)]


# --------------------------------------------------------------------------- estimator


class TTNBornMachine(BornMachineBase):
    """Generative model ``p(x) = |psi(x)|**2 / Z`` of discrete data with a tree tensor network ``psi``.

    Parameters
    ----------
    max_bond : int, default 8
        Bond dimension of every internal bond (capped where the subtree below, or the
        rest of the tree, has fewer configurations).
    image_shape : None or (rows, cols), default None
        Pixel layout of the features for the tree (:meth:`tnkit.ttn.Tree.grid`,
        feature ``r * cols + c`` is pixel ``(r, c)``); None reads a square number of
        features as a square image and gives any other number a balanced binary tree.
    tree : tnkit.ttn.Tree or None, default None
        An explicit tree over the features (overrides ``image_shape``).
    learning_rate : float, default 0.05
        Sweeps: the step of Han et al.'s update at each node; gradient trainer: Adam's step.
    n_sweeps : int, default 50
        Most sweeps per ``fit`` (trainer ``"sweep"``): tours of the tree, root to root;
        the fit stops earlier once three sweeps in a row gain less than ``tol`` each.
    tol : float or None, default 1e-4
        Sweeps stop when each of three in a row lowers the training NLL by less than
        this (nats); ``None`` runs all ``n_sweeps``. Full-batch sweeps only.
    n_descent_steps : int, default 10
        Gradient steps at each visited node.
    normalized_gradient : bool, default False
        Sweeps: scale small gradients up to half-norm ``size**0.25`` (as in
        :class:`~tnkit.ml.MPSBornMachine`); use with a small ``learning_rate``.
    init_bond : int, default 2
        Sweeps (full batch, fresh fit): bond of the random start. The bonds then grow in
        stages, ``b -> b + max(1, b // 4)`` up to ``max_bond``
        (:meth:`tnkit.TTN.pad_bonds`, with noise of 0.1 times each tensor's RMS entry),
        each stage swept until it converges (at most ``n_sweeps``); see
        ``validation_fraction`` for where growth stops. Growing from a small bond reaches
        better minima than sweeps at the full bond from a random start (at 16 features and
        bond 8: a held-out gap of 0.05-0.06 against 0.11-0.15; ``docs/generative.md``).
        ``init_bond >= max_bond`` starts at the full bond and does not grow.
    validation_fraction : float or None, default 0.1
        Share of the rows held out (drawn once per fit) to grow the bonds and choose the fit.
        The stage kept is the last one whose held-out NLL is within one standard error (of
        the paired per-row differences) of the lowest; growth stops two stages after it.
        The sweeps and hops that follow run on the other rows, the start with the lowest
        held-out NLL is kept (``n_starts``), and that fit is then swept on every row (no
        hops). With too much capacity for the data, the held-out NLL rises with the bond
        while the training NLL keeps falling (the extra directions fit the sample). On 5,000
        samples of 10 ternary features at bond 4, one start with sweeps and hops on every row
        gave KL 0.064-0.089 nats on three data sets, three starts chosen on held-out rows
        0.064-0.066 (``docs/generative.md``). ``None``, 0, or fewer than 50 held-out rows:
        no rows are held out, the bonds grow to ``max_bond``, and sweeps and hops run on
        every row.
    n_starts : int or "auto", default "auto"
        ``"auto"``: 3 up to 32 features, 1 above (``tnkit.ml.born_machine.search_effort``).
        Sweeps (full batch, fresh fit): complete fits (growth, sweeps, then hops) from this many
        random starts; the lowest held-out NLL wins (``validation_fraction``; without held-out
        rows, the lowest training NLL: the machinery of :class:`~tnkit.ml.MPSBornMachine`).
        On 5,000 samples fits from different starts end 0.02-0.09 nats of KL apart, and the
        held-out NLL tells them apart: one start left 14 binary features at bond 6 at KL
        0.094 and 0.131 on two data sets, three starts gave 0.119 and 0.124, within the
        finite-sample floor plus 0.02 on both (``docs/generative.md``). Each start costs a
        complete fit.
    start_sweeps : int or None, default None
        ``None``: every start gets the complete fit. An int: each start gets this many
        sweeps and only the best is continued (counted in ``n_sweeps``).
    n_hops : int or "auto", default "auto"
        ``"auto"``: 12 up to 32 features, 0 above (``tnkit.ml.born_machine.search_effort``:
        on 64 binary features three hops lowered one start's test NLL by 0.06 nats for 11%
        more time). Sweeps (full batch): after the sweeps, this many rounds of basin hopping. The
        fitted tree gets Gaussian noise of relative size ``hop_size`` on every tensor,
        ``hop_sweeps`` sweeps descend from there, and the result is kept if its training
        NLL is lower. At 16 features and bond 8 the sweeps end in poor local minima that
        more sweeps do not leave (see ``docs/generative.md``). 0 turns hopping off, and a
        fit allowed fewer ``n_sweeps`` than ``hop_sweeps`` does not hop.
    hop_size : float, default 0.3
        Norm of each tensor's noise relative to the tensor's own.
    hop_sweeps : int, default 20
        Most sweeps per hop (fewer once they converge by ``tol``).
    trainer : {"sweep", "gradient"}, default "sweep"
        Node-local sweeps with the tree canonical about the visited node, or minibatch
        Adam on every tensor (the tree restored to canonical form after each step).
    n_epochs : int, default 10
        Epochs of the gradient trainer.
    batch_size : int or None, default None
        Gradient trainer: minibatch size (``None``: 100). Sweeps: a fresh random subset
        of this many samples per sweep (``None``: all).
    n_categories : int, sequence of int or None, default None
        Number of values of each feature; ``None`` reads ``max(X[:, i]) + 1`` (at least 2).
    warm_start : bool, default False
        Continue from the fitted ``ttn_`` on the next ``fit``.
    random_state : None, int or numpy Generator
        Seed of the starting state and of the minibatches.
    verbose : bool, default False
        A tqdm progress bar with the NLL per sweep or epoch.
    dtype : {"complex128", "float64"}, default "complex128"
        Type of the amplitudes; complex by default for the reason given in
        :mod:`tnkit.ml.born_machine` (a real ``psi`` cannot move its zeros across the
        samples by descent, and its fits stall above the entropy).

    Attributes
    ----------
    ttn_ : tnkit.TTN
        The trained state, normalised, canonical about the root; leaf ``i`` is feature ``i``.
    tree_ : tnkit.ttn.Tree
    n_categories_ : numpy.ndarray of int, shape ``(n_features_in_,)``
    n_features_in_ : int
    history_ : tnkit.ml.history.TrainingHistory
        NLL (nats), largest bond, seconds and learning rate per sweep or epoch. With held-out
        rows, the final sweeps on every row; without, all sweeps and hops on every row (the
        growth stages are in ``growth_``).
    growth_ : list of dict
        One entry per growth stage of the last fresh sweep fit, in order: ``start`` (index of
        the random start), ``bond`` (the stage's largest bond), ``sweeps``, ``nll`` (training
        NLL of the rows the stage was fitted on), ``validation_nll`` (of the held-out rows;
        NaN without them) and ``kept`` (the stage whose state was carried on); empty
        without growth.

    Examples
    --------
    >>> from tnkit.datasets import bars_and_stripes
    >>> from tnkit.ml.ttn_born_machine import TTNBornMachine
    >>> X = bars_and_stripes(3)                      # 14 patterns on 3x3
    >>> model = TTNBornMachine(max_bond=16, n_sweeps=3, random_state=0).fit(X)
    >>> round(-model.score(X), 3)                    # ln 14 = 2.639
    2.639
    """

    def __init__(
        self,
        max_bond: int = 8,
        image_shape: Any = None,
        tree: Tree | None = None,
        learning_rate: float = 0.05,
        n_sweeps: int = 50,
        tol: float | None = 1e-4,
        n_descent_steps: int = 10,
        normalized_gradient: bool = False,
        init_bond: int = 2,
        validation_fraction: float | None = 0.1,
        n_starts: int | str = "auto",
        start_sweeps: int | None = None,
        n_hops: int | str = "auto",
        hop_size: float = 0.3,
        hop_sweeps: int = 20,
        trainer: str = "sweep",
        n_epochs: int = 10,
        batch_size: int | None = None,
        n_categories: Any = None,
        warm_start: bool = False,
        random_state: Any = None,
        verbose: bool = False,
        dtype: Any = "complex128",
    ) -> None:
        store_params(self, locals())

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None) -> TTNBornMachine:
        """Fit to the rows of ``X`` by minimising the NLL.

        Parameters
        ----------
        X : array_like of int, shape (n_samples, n_features)
            Discrete data, ``0 <= X[:, i] < n_categories[i]``; at least 2 features.
        y : ignored

        Returns
        -------
        self
        """
        params, warm, X, rng = self._start_fit(X, "ttn_")
        full_batch = params["batch_size"] is None or params["batch_size"] >= len(X)
        grow = params["trainer"] == "sweep" and full_batch and not warm
        if not warm:
            self.tree_ = self._tree(X.shape[1])
            self.ttn_ = self._initial_state(rng, params, grow)
            self.growth_ = []
        if params["trainer"] == "sweep":
            fit_rows, held = split_rows(X, params["validation_fraction"], rng) if grow else (X, None)
            sweep = functools.partial(self._sweep, X=fit_rows, params=params, rng=rng)
            prepare = (functools.partial(self._grown, X=fit_rows, held=held, params=params, rng=rng) if grow
                       else None)
            score = (None if held is None
                     else (lambda state, _: held_out_rank(-self._state_log_prob(state, held))))
            if grow and params["n_starts"] > 1:
                state, self.history_ = self._best_start(sweep, rng, params, self.ttn_, prepare, score=score)
            else:
                start = prepare(self.ttn_) if grow else self.ttn_
                state, self.history_ = self._sweep_fit(
                    sweep, rng, params, start, self.history_, params["n_sweeps"], hops=full_batch
                )
            if held is not None:  # the chosen fit, swept on every row
                state, self.history_ = self._sweep(state, n_sweeps=params["n_sweeps"],
                                                   history=TrainingHistory(), X=X, params=params, rng=rng)
        else:
            tree = self.tree_
            settings = AdamSettings(n_epochs=params["n_epochs"], batch_size=params["batch_size"] or 100,
                                    learning_rate=params["learning_rate"])
            tensors, self.history_ = tree_gradient_train(tree, self._node_tensors(self.ttn_), X, self.n_categories_,
                                                         settings, rng=rng, progress=self.verbose,
                                                         history=self.history_)
            state = TTN(tree, tensors[tree.n_leaves :])
        self.ttn_ = state.canonicalize_(self.tree_.root).normalize_()
        return self

    def _sweep(
        self, state: TTN, *, n_sweeps: int, history: TrainingHistory, X: np.ndarray, params: dict[str, Any],
        rng: np.random.Generator, one_site: bool = True,
    ) -> tuple[TTN, TrainingHistory]:
        """:func:`tree_sweep_train` from ``state`` (the sweep of the shared multi-start and hop machinery).

        ``one_site`` is accepted for that machinery's signature: tree sweeps are always node-local.
        """
        tree = self.tree_
        tensors, history = tree_sweep_train(
            tree, self._node_tensors(state), X, self.n_categories_, n_sweeps=n_sweeps,
            learning_rate=params["learning_rate"], n_descent_steps=params["n_descent_steps"],
            normalized_gradient=bool(self.normalized_gradient), batch_size=params["batch_size"], rng=rng,
            progress=self.verbose, history=history, tol=params["tol"],
        )
        return TTN(tree, tensors[tree.n_leaves :]), history

    def _grown(
        self, start: TTN, *, X: np.ndarray, held: np.ndarray | None, params: dict[str, Any],
        rng: np.random.Generator,
    ) -> TTN:
        """The bonds of ``start`` grown in stages to ``max_bond`` (``init_bond``, ``validation_fraction``).

        Each stage pads the bonds (:meth:`tnkit.TTN.pad_bonds`) and sweeps until convergence on
        the fitting rows. With held-out rows, the stage kept is :func:`largest_within_noise`'s,
        growth stops ``_GROWTH_PATIENCE`` stages after it, and the kept stage's state is
        returned. Without them the state of the last stage below ``max_bond`` is returned padded
        to it (the caller's sweeps are the last stage). Appends to ``growth_``.
        """
        top = start.pad_bonds(params["max_bond"]).max_bond_dim  # the largest bond the tree allows
        stages = bond_stages(start.max_bond_dim, top)
        if len(stages) == 1:
            return start
        if held is None:
            stages = stages[:-1]
        index = 1 + max((row["start"] for row in self.growth_), default=-1)
        state, best, rows, states, losses = start, 0, [], [], []
        for k, bond in enumerate(stages):
            if k:
                state = state.pad_bonds(bond, noise=_GROWTH_NOISE, seed=rng)
            state, run = self._sweep(state, n_sweeps=params["n_sweeps"], history=TrainingHistory(), X=X,
                                     params=params, rng=rng)
            rows.append(dict(start=index, bond=state.max_bond_dim, sweeps=len(run.nll), nll=run.nll[-1],
                             validation_nll=math.nan, kept=False))
            states.append(state)
            if held is None:
                continue
            losses.append(-self._state_log_prob(state, held))
            rows[-1]["validation_nll"] = float(np.mean(losses[-1]))
            best = largest_within_noise(losses)
            if k - best >= _GROWTH_PATIENCE:
                break
        if held is None:
            best = len(rows) - 1
            states[-1] = state.pad_bonds(params["max_bond"], noise=_GROWTH_NOISE, seed=rng)
        kept = states[best]
        rows[best]["kept"] = True
        self.growth_.extend(rows)
        return kept

    def _state_log_prob(self, state: TTN, X: np.ndarray) -> np.ndarray:
        """``log p(x)`` of validated rows under ``state`` (not necessarily the fitted ``ttn_``)."""
        tensors = [None] * self.tree_.n_leaves + list(state.tensors)
        with blas_threads(state.max_bond_dim):
            log_abs = tree_log_amplitudes(self.tree_, tensors, X, self.n_categories_)
        return 2.0 * log_abs - 2.0 * state.log_norm()

    def _node_tensors(self, state: TTN) -> list:
        return [None] * self.tree_.n_leaves + [np.array(t) for t in state.tensors]

    def _initial_state(self, rng: np.random.Generator, params: dict[str, Any], grow: bool = True) -> TTN:
        dims = [int(d) for d in self.n_categories_]
        bond = min(params["init_bond"], params["max_bond"]) if grow else params["max_bond"]
        return TTN.random(self.tree_, dims, bond, seed=rng, dtype=params["dtype"])

    def _perturbed(self, state: TTN, size: float, rng: np.random.Generator) -> TTN:
        return TTN(state.tree, perturbed_tensors(state.tensors, size, rng))

    def _largest_bond(self, state: TTN) -> int:
        return state.max_bond_dim

    def _hop_rate(self, params: dict[str, Any]) -> float:
        return params["learning_rate"]

    def _parameter_rules(self) -> dict[str, Rule]:
        return {**super()._parameter_rules(), "max_bond": integer(minimum=1),
                "tree": instance(Tree, optional=True), "init_bond": integer(minimum=1),
                "validation_fraction": number(positive=False, maximum=0.9, optional=True)}

    def _json_params(self) -> dict[str, Any]:
        params = super()._json_params()
        params.pop("tree")  # stored as the structure arrays of ``tree_``
        params["dtype"] = np.dtype(params["dtype"]).name
        if params["image_shape"] is not None:
            params["image_shape"] = [int(d) for d in params["image_shape"]]
        return params

    def _tree(self, n_features: int) -> Tree:
        if self.tree is None:
            return feature_tree(n_features, self.image_shape)
        if self.tree.n_leaves != n_features:
            raise ValueError(f"`tree` has {self.tree.n_leaves} leaves but X has {n_features} features.")
        return self.tree

    # ------------------------------------------------------------------ likelihood and sampling

    def _data(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "ttn_")
        return self._validated(X)

    def log_prob(self, X: Any) -> np.ndarray:
        """``log p(x)`` (nats) of each row of ``X``; exact, log-scaled (safe for hundreds of features).

        Returns
        -------
        numpy.ndarray, shape (n_samples,)
            ``-inf`` for rows of probability zero.
        """
        return self._state_log_prob(self.ttn_, self._data(X))

    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """Exact independent samples (perfect sampling top-down from the root, :meth:`tnkit.TTN.sample`).

        Returns
        -------
        numpy.ndarray of int, shape (n_samples, n_features_in_)
        """
        check_is_fitted(self, "ttn_")
        return self.ttn_.sample(n_samples, seed=as_generator(random_state))

    def _complete(self, X: np.ndarray, observed: np.ndarray, rng: np.random.Generator, greedy: bool) -> np.ndarray:
        with blas_threads(self.ttn_.max_bond_dim):
            return tree_sampling.complete(self.ttn_, X, observed, rng=rng, greedy=greedy)

    def _log_marginal(self, X: np.ndarray, observed: np.ndarray) -> np.ndarray:
        with blas_threads(self.ttn_.max_bond_dim):
            return tree_sampling.log_marginal(self.ttn_, X, observed)

    @property
    def num_params(self) -> int:
        """Number of parameters (tensor entries) of the fitted tree."""
        check_is_fitted(self, "ttn_")
        return self.ttn_.num_params

    # ------------------------------------------------------------------ persistence

    def save(self, path: Any) -> Any:
        """Write the fitted model to ``.npz`` atomically (no pickle); return the path written."""
        check_is_fitted(self, "ttn_")
        meta = {
            **self.tree_.to_arrays(),
            **self._common_meta(),
            "explicit_tree": np.array(self.tree is not None),
            "iso": self.ttn_.gauge,
            "growth": np.array([[float(row[f]) for f in _GROWTH_FIELDS] for row in getattr(self, "growth_", [])],
                               dtype=float).reshape(-1, len(_GROWTH_FIELDS)),
        }
        return save_arrays(path, _KIND, list(self.ttn_.tensors), meta)

    @classmethod
    def load(cls, path: Any) -> TTNBornMachine:
        """Read a model written by :meth:`save`; never executes code from the file."""
        from ..errors import SchemaError

        tensors, meta = load_arrays(path, _KIND)
        try:
            tree = Tree.from_arrays(meta["n_leaves"], meta["child_counts"], meta["children"])
            params, n_categories, history = cls._read_common_meta(meta)
            model = cls(**params, tree=tree if bool(meta["explicit_tree"]) else None)
            ttn = TTN(tree, tensors)
            claims = [int(i) for i in meta.get("iso", [])]
            growth = [
                {f: (bool(v) if f == "kept" else float(v) if f in ("nll", "validation_nll") else int(v))
                 for f, v in zip(_GROWTH_FIELDS, row, strict=True)}
                for row in np.asarray(meta.get("growth", np.zeros((0, len(_GROWTH_FIELDS)))), dtype=float)
            ]
        except (KeyError, ValueError, TypeError) as exc:
            raise SchemaError(f"{str(path)!r} is not a valid {_KIND} file: {exc}") from exc
        if tuple(ttn.phys_dims) != tuple(int(d) for d in n_categories):
            raise SchemaError(f"{str(path)!r}: leaf dimensions {ttn.phys_dims} disagree with n_categories.")
        ttn.adopt_gauge(claims)  # the saved canonical form, re-checked (no QR: identical numbers)
        model.ttn_ = ttn.canonicalize_(tree.root)
        model.tree_ = tree
        model.n_categories_ = n_categories
        model.n_features_in_ = tree.n_leaves
        model.history_ = history
        model.growth_ = growth
        return model
