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

if TYPE_CHECKING:  # pragma: no cover
    from .ttn import TreeTensorNetwork

__all__ = ["sample"]


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
    samples : numpy.ndarray of int, shape (n_samples, n_leaves)
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
