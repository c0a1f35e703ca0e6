"""Applying one- and two-site gates to a matrix product state, with truncation.

A two-site gate on neighbouring sites ``(i, i+1)`` is applied in canonical form:
the centre is moved to ``i``, the two site tensors and the gate are contracted into
``theta[a, s, t, c]``, and ``theta`` is split by a truncated SVD with the singular
values absorbed to the right (centre ends on ``i+1``). In canonical form this
truncation is optimal, and its discarded weight is the exact squared-norm loss.
Gates on distant sites are applied by moving one site next to the other with SWAP
gates and back.

Gate convention: a gate on sites ``(i, j)`` is a ``(d_i d_j, d_i d_j)`` matrix (or
``(d_i, d_j, d_i, d_j)`` tensor ``G[out_i, out_j, in_i, in_j]``) with site ``i``
the slower index, in the order the sites are listed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import peak_magnitude, truncated_svd
from ..core.validate import as_array, check_site

if TYPE_CHECKING:  # pragma: no cover
    from .mps import MatrixProductState

__all__ = ["apply_gate_", "swap_gate"]


def swap_gate(d1: int, d2: int) -> np.ndarray:
    """The SWAP tensor ``(d2, d1, d1, d2)``: ``|a>|b> -> |b>|a>``."""
    return np.einsum("ad,bc->abcd", np.eye(d2), np.eye(d1))


def apply_gate_(
    mps: MatrixProductState,
    gate: object,
    sites: int | tuple[int, ...],
    *,
    max_bond: int | None,
    cutoff: float,
) -> float:
    """Apply ``gate`` to ``mps`` in place; return the relative discarded weight."""
    n = mps.n_sites
    if np.ndim(sites) == 0:
        sites = (sites,)
    sites = tuple(check_site("sites", s, n) for s in sites)
    if len(sites) == 1:
        _apply_one_site(mps, gate, sites[0])
        return 0.0
    if len(sites) != 2:
        raise ValueError(f"`sites` must name one or two sites, got {len(sites)}: {sites}.")
    i, j = sites
    if i == j:
        raise ValueError(f"`sites` must be two different sites, got {sites}.")
    di, dj = mps.phys_dims[i], mps.phys_dims[j]
    g = as_array("gate", gate)
    if g.shape == (di * dj, di * dj):
        g = g.reshape(di, dj, di, dj)
    if g.shape[2:] != (di, dj) or g.ndim != 4:
        raise ValueError(
            f"`gate` for sites {sites} must be a ({di * dj}, {di * dj}) matrix or a tensor of "
            f"shape (out_i, out_j, {di}, {dj}), got shape {np.shape(gate)}."
        )
    if i > j:  # make the first site the left one
        i, j, g = j, i, backend.permute(g, (1, 0, 3, 2))
    discarded = 0.0
    # Bring site j next to i with swaps, apply, swap back.
    for k in range(j - 1, i, -1):
        discarded += _apply_two_site(mps, swap_gate(*mps.phys_dims[k : k + 2]), k, max_bond, cutoff)
    discarded += _apply_two_site(mps, g, i, max_bond, cutoff)
    for k in range(i + 1, j):
        discarded += _apply_two_site(mps, swap_gate(*mps.phys_dims[k : k + 2]), k, max_bond, cutoff)
    return discarded


def _apply_one_site(mps: MatrixProductState, gate: object, i: int) -> None:
    d = mps.phys_dims[i]
    g = as_array("gate", gate)
    if g.ndim != 2 or g.shape[1] != d:
        raise ValueError(f"`gate` for site {i} must be a matrix of shape (d_out, {d}), got shape {g.shape}.")
    new = contract("ts,asb->atb", g, mps.tensors[i])
    unitary = g.shape[0] == d and peak_magnitude(g.conj().T @ g - backend.eye(d, like=g)) <= 1e-12
    mps._set_site(i, new, keeps_isometry=unitary)


def _apply_two_site(mps: MatrixProductState, g4: np.ndarray, i: int, max_bond, cutoff) -> float:
    mps.canonicalize_(i)
    tensors = list(mps.tensors)
    theta = contract("asb,btc,uvst->auvc", tensors[i], tensors[i + 1], g4)
    dl, du, dv, dr = theta.shape
    u, s, vh, disc = truncated_svd(theta.reshape(dl * du, dv * dr), max_bond=max_bond, cutoff=cutoff)
    total = disc + backend.norm2(s)
    k = len(s)
    tensors[i] = u.reshape(dl, du, k)
    tensors[i + 1] = (s[:, None] * vh).reshape(k, dv, dr)
    mps._replace_tensors(tensors, left=i + 1, right=i + 2)
    return disc / total if total > 0 else 0.0
