"""Canonical forms of a chain of site tensors, by QR and LQ sweeps.

Functions here act on a Python list of site tensors ``A[i]`` of shape
``(D_left, d, D_right)`` and replace entries of the list; arrays are never written
in place. The bookkeeping is two integers:

* ``left``: sites ``0 .. left-1`` are left-isometric,
  ``sum_{a,s} conj(A[a,s,b]) A[a,s,b'] = delta(b,b')``;
* ``right``: sites ``right .. N-1`` are right-isometric,
  ``sum_{s,b} A[a,s,b] conj(A[a',s,b]) = delta(a,a')``.

The chain is in mixed canonical form with orthogonality centre ``c`` when
``left >= c`` and ``right <= c + 1``; then the whole norm sits in ``A[c]``.
"""

from __future__ import annotations

import numpy as np

from ..core.contract import contract
from ..core.linalg import lq, qr

__all__ = [
    "orthogonalize_left",
    "orthogonalize_right",
    "move_center",
    "left_isometry_error",
    "right_isometry_error",
]


def orthogonalize_left(tensors: list[np.ndarray], i: int) -> np.ndarray:
    """Make site ``i`` left-isometric by QR, pushing ``R`` into site ``i + 1``; return ``R``.

    When sites right of ``i`` are right-isometric, the singular values of ``R`` are
    the Schmidt values across bond ``i``.
    """
    a = tensors[i]
    dl, d, dr = a.shape
    q, r = qr(a.reshape(dl * d, dr))
    tensors[i] = q.reshape(dl, d, q.shape[1])
    tensors[i + 1] = contract("ab,bsc->asc", r, tensors[i + 1])
    return r


def orthogonalize_right(tensors: list[np.ndarray], i: int) -> None:
    """Make site ``i`` right-isometric by LQ, pushing ``L`` into site ``i - 1``."""
    a = tensors[i]
    dl, d, dr = a.shape
    l, q = lq(a.reshape(dl, d * dr))
    tensors[i] = q.reshape(q.shape[0], d, dr)
    tensors[i - 1] = contract("asb,bc->asc", tensors[i - 1], l)


def move_center(tensors: list[np.ndarray], left: int, right: int, center: int) -> tuple[int, int]:
    """Bring the chain to mixed canonical form about ``center``, doing only missing work.

    Parameters
    ----------
    tensors : list of numpy.ndarray
        Site tensors, modified by replacing entries.
    left, right : int
        Current bookkeeping (see module docstring).
    center : int
        New orthogonality centre.

    Returns
    -------
    (left, right) : tuple of int
        The new bookkeeping, ``(center, center + 1)``.
    """
    for i in range(left, center):
        orthogonalize_left(tensors, i)
    for i in range(right - 1, center, -1):
        orthogonalize_right(tensors, i)
    return center, center + 1


def left_isometry_error(a: np.ndarray) -> float:
    """Largest deviation of ``A^dagger A`` (over left and physical legs) from the identity."""
    g = contract("asb,asc->bc", a.conj(), a)
    return float(np.abs(g - np.eye(g.shape[0])).max())


def right_isometry_error(a: np.ndarray) -> float:
    """Largest deviation of ``A A^dagger`` (over physical and right legs) from the identity."""
    g = contract("asb,csb->ac", a, a.conj())
    return float(np.abs(g - np.eye(g.shape[0])).max())
