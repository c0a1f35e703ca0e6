"""Exact sampling from a tree tensor network, all samples at once.

The network is first brought to canonical form about the root, so every
subtree is an orthonormal basis for its parent bond. Leaves are then drawn one
after another in depth-first order (perfect sampling, Ferris & Vidal,
arXiv:1201.3974, on a tree): at node ``v`` the *environment* of the subtree
is a per-sample density matrix ``E`` on ``v``'s parent bond (everything outside
the subtree, conditioned on the leaves already drawn and traced over the rest).
Children are visited in order; before child ``j``

``rho_j = sum X[.., j, .., p] E[p, p'] conj(X[.., j', .., p'])``

over the later children (orthonormal, so traced directly) and the parent bond,
where ``X`` is ``T_v`` with the earlier children already contracted with their
drawn (collapsed) vectors. A leaf child is drawn from the diagonal of
``rho_j``; an internal child recurses with ``rho_j`` as its environment and
returns its collapsed vector. Probabilities are always ratios, so each sample
is rescaled freely and nothing underflows.

Cost: ``O(n D^4)`` per node with three bonds of dimension ``D`` (the
environment is mixed), ``O(n D^2 d)`` per node of an MPS-like chain.
The root's output axis, if any, is traced (the marginal over the leaves).

Conditionals
------------
:func:`log_marginal` and :func:`complete` condition on observed leaves (a boolean
mask per row). The *inside density* ``rho_v`` (``(n, D_v, D_v)``, unit trace, the log
trace kept apart) sums the subtree of ``v`` over its free leaves with the observed
ones fixed; at the root it is the unnormalised marginal of the observed values.
Completion walks the tree depth first like :func:`sample`, the environment of each
child built from the parent's environment, the children already completed (pure) and
the later ones (their inside densities, or the weights of leaves).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
from opt_einsum import get_symbol

from ..core.contract import contract
from ..core.rng import as_generator
from ..core.validate import check_int
from ..mps.sampling import choose, site_weights

if TYPE_CHECKING:  # pragma: no cover
    from .ttn import TreeTensorNetwork

__all__ = ["sample", "log_marginal", "complete"]


@functools.lru_cache(maxsize=1024)
def _density_equation(ndim: int, x_batched: bool, e_batched: bool) -> str:
    """``X, E, conj(X) -> rho`` over axis 0 of ``X`` (axes: child, later..., parent)."""
    n = get_symbol(0)
    ket = [get_symbol(1 + i) for i in range(ndim)]
    bra = list(ket)
    bra[0] = get_symbol(1 + ndim)
    bra[-1] = get_symbol(2 + ndim)
    bx = n if x_batched else ""
    be = n if e_batched else ""
    out = (n if (x_batched or e_batched) else "") + ket[0] + bra[0]
    return f"{bx}{''.join(ket)},{be}{ket[-1]}{bra[-1]},{bx}{''.join(bra)}->{out}"


@functools.lru_cache(maxsize=1024)
def _collapse_equation(ndim: int, x_batched: bool) -> str:
    """``c, X -> X`` contracting the per-sample vector ``c`` with axis 0 of ``X``."""
    n = get_symbol(0)
    axes = "".join(get_symbol(1 + i) for i in range(ndim))
    return f"{n}{axes[0]},{n if x_batched else ''}{axes}->{n}{axes[1:]}"


class _Sampler:
    def __init__(self, ttn: TreeTensorNetwork, n: int, rng: np.random.Generator) -> None:
        self.tree = ttn.tree
        self.tensors = ttn._tensors
        self.n = n
        self.rng = rng
        self.rows = np.arange(n)
        self.out = np.empty((n, self.tree.n_leaves), dtype=np.intp)
        self.log_prob = np.zeros(n)

    def draw_leaf(self, leaf: int, rho: np.ndarray) -> np.ndarray:
        """Draw leaf values from the diagonals of ``rho`` (n, d, d); return them and their weights."""
        weights = np.diagonal(rho, axis1=1, axis2=2).real.clip(min=0.0) if rho.ndim == 3 else None
        if weights is None:  # shared (not yet per-sample) density
            weights = np.broadcast_to(np.diagonal(rho).real.clip(min=0.0), (self.n, rho.shape[0]))
        cumulative = np.cumsum(weights, axis=1)
        total = cumulative[:, -1]
        u = self.rng.random(self.n) * total
        s = np.minimum((cumulative < u[:, None]).sum(axis=1), weights.shape[1] - 1)
        p = weights[self.rows, s]
        self.out[:, leaf] = s
        self.log_prob += np.log(p) - np.log(total)
        return s, p

    def node(self, v: int, env: np.ndarray) -> np.ndarray:
        """Draw every leaf under ``v`` given the environment ``env`` on its parent bond; return the collapsed vectors."""
        x = self.tensors[v]
        if v == self.tree.root and x.ndim == len(self.tree.children(v)):
            x = x[..., None]  # a trivial parent axis, environment [[1]]
        batched = False
        for c in self.tree.children(v):
            eq = _density_equation(x.ndim - batched, batched, env.ndim == 3)
            rho = contract(eq, x, env, x.conj())
            if c < self.tree.n_leaves:
                s, p = self.draw_leaf(c, rho)
                x = x[self.rows, s] if batched else x[s]
                x = x / np.sqrt(p).reshape((-1,) + (1,) * (x.ndim - 1))
            else:
                vec = self.node(c, rho)
                x = contract(_collapse_equation(x.ndim - batched, batched), vec, x)
            batched = True
        norm = np.linalg.norm(x, axis=1)
        return x / np.where(norm > 0, norm, 1.0)[:, None]


def sample(
    ttn: TreeTensorNetwork, n_samples: int, *, seed: object = None, return_log_prob: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` leaf configurations from ``p(s) = <psi|s><s|psi> / <psi|psi>``.

    Returns
    -------
    samples : numpy.ndarray of int, shape (n_samples, L) with L the number of leaves
        ``samples[k, l]`` is the state of leaf ``l`` in sample ``k``.
    log_prob : numpy.ndarray, shape (n_samples,)
        ``log p(s)`` of each sample, if ``return_log_prob``.
    """
    n_samples = check_int("n_samples", n_samples, minimum=0)
    rng = as_generator(seed)
    tree = ttn.tree
    ttn.canonicalize_(tree.root)
    if n_samples == 0:
        empty = np.empty((0, tree.n_leaves), dtype=np.intp)
        return (empty, np.zeros(0)) if return_log_prob else empty
    if ttn.log_norm() == -math.inf:
        raise ValueError("cannot sample from the zero state.")
    sampler = _Sampler(ttn, n_samples, rng)
    out_dim = ttn.output_dim
    env = np.eye(out_dim if out_dim is not None else 1, dtype=ttn.dtype)
    sampler.node(tree.root, env)
    return (sampler.out, sampler.log_prob) if return_log_prob else sampler.out


# --------------------------------------------------------------------------- conditionals



@functools.lru_cache(maxsize=1024)
def _conditional_density_equation(kinds: tuple[str, ...], batched: bool) -> str:
    """``X, conj X, E, weights/densities.. -> rho`` over the first axis of ``X``.

    ``X`` has axes (first, later children.., parent), batched over samples if
    ``batched``; ``kinds`` names each later child ``"leaf"`` (operand ``w[n, s]``, the
    same index on ket and bra) or ``"node"`` (operand ``rho[n, a, b]``). ``E[n, p, q]``
    is the environment of the parent bond. With ``kinds`` empty of a first axis
    (``first=False``) see :func:`_inside_equation`.
    """
    n = get_symbol(0)
    m = len(kinds)
    ket = [get_symbol(1 + 2 * i) for i in range(m + 2)]
    bra = [ket[i] if 1 <= i <= m and kinds[i - 1] == "leaf" else get_symbol(2 + 2 * i) for i in range(m + 2)]
    b = n if batched else ""
    ops = [b + "".join(ket), b + "".join(bra), n + ket[-1] + bra[-1]]
    ops += [n + ket[i + 1] + ("" if k == "leaf" else bra[i + 1]) for i, k in enumerate(kinds)]
    return ",".join(ops) + "->" + n + ket[0] + bra[0]


@functools.lru_cache(maxsize=1024)
def _inside_equation(kinds: tuple[str, ...]) -> str:
    """``T, T, weights/densities.. -> rho[n, p, q]``: a node's inside density, leaves weighted, subtrees mixed."""
    n = get_symbol(0)
    m = len(kinds)
    ket = [get_symbol(1 + 2 * i) for i in range(m + 1)]
    bra = [ket[i] if i < m and kinds[i] == "leaf" else get_symbol(2 + 2 * i) for i in range(m + 1)]
    ops = ["".join(ket), "".join(bra)] + [n + ket[i] + ("" if k == "leaf" else bra[i]) for i, k in enumerate(kinds)]
    return ",".join(ops) + "->" + n + ket[-1] + bra[-1]


class _Conditional:
    """Inside densities of a tree Born machine given observed leaves, and completion top-down.

    ``rho[v]`` (``(n, D_v, D_v)``, unit trace, log-trace in ``log[v]``) sums the subtree
    of ``v`` over its free leaves with the observed ones fixed; at the root it is the
    unnormalised marginal of the observed values. Completion walks the tree depth first
    like the engine's sampler (:mod:`tnkit.ttn.sampling`), with the environment of each
    child built from the parent's environment, the children already completed (pure)
    and the later ones (their densities ``rho``, or the weights of leaves).
    """

    def __init__(self, ttn: TreeTensorNetwork, X: np.ndarray, observed: np.ndarray) -> None:
        tree = ttn.tree
        self.tree, self.X, self.observed = tree, X, observed
        self.tensors = [None] * tree.n_leaves + list(ttn.tensors)
        self.n = len(X)
        self.rho: dict[int, np.ndarray] = {}
        self.log = np.zeros(self.n)
        for v in tree.postorder():
            if v >= tree.n_leaves:
                self._inside(v)

    def _with_parent(self, v: int) -> np.ndarray:
        """``T_v``, with a trivial parent axis at the root (so every node has one)."""
        t = self.tensors[v]
        return t[..., None] if v == self.tree.root else t

    def _operand(self, c: int, d: int) -> np.ndarray:
        if c < self.tree.n_leaves:
            return site_weights(self.X[:, c], self.observed[:, c], d)
        return self.rho[c]

    def _inside(self, v: int) -> None:
        t = self._with_parent(v)
        kids = self.tree.children(v)
        kinds = tuple("leaf" if c < self.tree.n_leaves else "node" for c in kids)
        ops = [self._operand(c, t.shape[j]) for j, c in enumerate(kids)]
        rho = contract(_inside_equation(kinds), t, t.conj(), *ops)
        trace = np.einsum("naa->n", rho).real
        safe = np.where(trace > 0, trace, 1.0)
        with np.errstate(divide="ignore"):
            self.log += np.log(np.maximum(trace, 0.0))
        self.rho[v] = rho / safe[:, None, None]

    def log_marginal(self) -> np.ndarray:
        """``log`` of the unnormalised marginal of the observed values (``-inf`` where zero)."""
        return self.log

    def complete(self, rng: np.random.Generator, greedy: bool) -> np.ndarray:
        """Fill the free leaves from ``p(x_free | x_observed)`` (or greedily); returns the completed rows."""
        self.out = np.array(self.X, dtype=np.intp, copy=True)
        self.rng, self.greedy = rng, greedy
        self.rows = np.arange(self.n)
        self._node(self.tree.root, np.ones((self.n, 1, 1), dtype=self.tensors[self.tree.root].dtype))
        return self.out

    def _node(self, v: int, env: np.ndarray) -> np.ndarray:
        """Complete the leaves under ``v`` given ``env`` on its parent bond; return its collapsed vector."""
        x = self._with_parent(v)
        kids = self.tree.children(v)
        batched = False
        for j, c in enumerate(kids):
            later = kids[j + 1 :]
            kinds = tuple("leaf" if k < self.tree.n_leaves else "node" for k in later)
            ops = [self._operand(k, x.shape[(1 if batched else 0) + 1 + i]) for i, k in enumerate(later)]
            rho = contract(_conditional_density_equation(kinds, batched), x, x.conj(), env, *ops)
            if c < self.tree.n_leaves:
                s = self._draw(c, np.diagonal(rho, axis1=1, axis2=2).real.clip(min=0.0))
                x = x[self.rows, s] if batched else x[s]
            else:
                vec = self._node(c, rho / _trace(rho)[:, None, None])
                x = contract(_collapse_equation(x.ndim - batched, batched), vec, x)
            batched = True
            scale = np.linalg.norm(x.reshape(self.n, -1), axis=1)
            x = x / np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
        return x

    def _draw(self, leaf: int, weights: np.ndarray) -> np.ndarray:
        observed = self.observed[:, leaf]
        total = weights.sum(axis=1)
        if np.any(~observed & (total <= 0)):
            raise ValueError("the observed values have probability zero under the model; nothing to complete.")
        s = self.X[:, leaf].copy()
        free = ~observed
        if free.any():
            s[free] = choose(weights[free] / total[free, None], self.rng, self.greedy)
        self.out[:, leaf] = s
        return s


def _trace(rho: np.ndarray) -> np.ndarray:
    t = np.einsum("naa->n", rho).real
    return np.where(t > 0, t, 1.0)


def log_marginal(ttn: TreeTensorNetwork, X: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``log p(x_observed)`` per row under ``p(s) = |<s|psi>|**2 / <psi|psi>`` (any gauge, real or complex).

    Parameters
    ----------
    ttn : TreeTensorNetwork
        No output axis.
    X : numpy.ndarray of int, shape (n, L) with L the number of leaves
        Values; entries where ``observed`` is False are ignored.
    observed : numpy.ndarray of bool, shape (n, L)

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``-inf`` where the observed values have probability zero.
    """
    return _Conditional(ttn, X, observed).log_marginal() - 2.0 * ttn.log_norm()


def complete(
    ttn: TreeTensorNetwork, X: np.ndarray, observed: np.ndarray, *, rng: np.random.Generator, greedy: bool = False
) -> np.ndarray:
    """Fill the unobserved leaves of each row from ``p(x_free | x_observed)`` (exact conditional sampling).

    Leaves are completed in depth-first order, each from its exact conditional given
    the observed leaves and the ones completed before it.

    Parameters
    ----------
    ttn : TreeTensorNetwork
        No output axis.
    X : numpy.ndarray of int, shape (n, L) with L the number of leaves
        Observed values (other entries ignored).
    observed : numpy.ndarray of bool, shape (n, L)
    rng : numpy.random.Generator
    greedy : bool
        Take the most likely value of each free leaf instead of drawing it.

    Returns
    -------
    numpy.ndarray of int, shape (n, n_leaves)
        Observed entries unchanged.

    Raises
    ------
    ValueError
        If the observed values have probability zero.
    """
    return _Conditional(ttn, X, observed).complete(rng, greedy)
