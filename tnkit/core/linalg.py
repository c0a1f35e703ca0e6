"""Factorisations with truncation: the only place tnkit calls LAPACK.

All factorisations use numpy's LAPACK (the same OpenBLAS as every contraction), so
tnkit never interleaves two BLAS libraries' thread pools; scipy's ``gesvd`` is only
a fallback when ``gesdd`` fails to converge.

Truncation semantics
--------------------
Singular values ``s`` (descending) are kept up to rank ``k``, the smallest rank with

* ``k <= max_bond`` (when given), and
* discarded weight ``sum(s[k:]**2) <= cutoff * sum(s**2)``,

with ``k >= 1``. ``cutoff`` is therefore a *relative discarded weight*: the squared
2-norm error of the truncation relative to the squared norm before it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["svd", "qr", "lq", "truncation_rank", "truncated_svd", "DEFAULT_CUTOFF"]

#: Default relative discarded weight: drops singular values below ~1e-10 of the norm.
DEFAULT_CUTOFF = 1e-20


def svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD ``matrix = U @ diag(s) @ Vh`` with ``s`` descending.

    Uses LAPACK ``gesdd`` and falls back to the slower, more robust ``gesvd`` if it
    does not converge.
    """
    try:
        return np.linalg.svd(matrix, full_matrices=False)
    except np.linalg.LinAlgError:  # pragma: no cover - rare LAPACK failure
        import scipy.linalg

        return scipy.linalg.svd(matrix, full_matrices=False, lapack_driver="gesvd")


def qr(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR: ``Q`` (m, k) with orthonormal columns, ``R`` (k, n), ``k = min(m, n)``."""
    return np.linalg.qr(matrix, mode="reduced")


def lq(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced LQ: ``L`` (m, k), ``Q`` (k, n) with orthonormal rows, ``k = min(m, n)``."""
    q, r = np.linalg.qr(matrix.T, mode="reduced")
    return r.T, q.T


def truncation_rank(
    s: np.ndarray, *, max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[int, float]:
    """Rank kept by the truncation rule and the absolute discarded weight.

    Parameters
    ----------
    s : numpy.ndarray, shape (r,)
        Singular values in descending order.
    max_bond : int, optional
        Largest rank kept.
    cutoff : float
        Largest relative discarded weight ``sum(s[k:]**2) / sum(s**2)``.

    Returns
    -------
    k : int
        Rank kept, ``1 <= k <= r``.
    discarded : float
        ``sum(s[k:]**2)``.
    """
    w = s * s
    r = len(s)
    k = r
    if cutoff > 0.0 and r > 1:
        tail = np.cumsum(w[::-1])  # tail[j]: weight of the j+1 smallest values
        n_drop = int(np.searchsorted(tail, cutoff * tail[-1], side="right"))
        k = max(r - n_drop, 1)
    if max_bond is not None:
        k = max(min(k, max_bond), 1)
    return k, float(w[k:].sum())


def truncated_svd(
    matrix: np.ndarray, *, max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """SVD of ``matrix`` truncated by :func:`truncation_rank`.

    Returns
    -------
    U : numpy.ndarray, shape (m, k)
    s : numpy.ndarray, shape (k,)
    Vh : numpy.ndarray, shape (k, n)
    discarded : float
        Absolute discarded weight ``sum`` of the dropped ``s**2``.
    """
    u, s, vh = svd(matrix)
    k, discarded = truncation_rank(s, max_bond=max_bond, cutoff=cutoff)
    if k < len(s):
        u, s, vh = u[:, :k], s[:k], vh[:k]
    return u, s, vh, discarded
