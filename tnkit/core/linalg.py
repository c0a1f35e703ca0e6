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

Tall-skinny matrices
--------------------
Tensor networks produce very tall matrices (a tree node is ``D**2 x D``), where
numpy's Householder QR is slow (57 ms for 4096 x 64 with OpenBLAS, against 0.7 ms
for the Gram matrix). :func:`tall_qr`, :func:`tall_truncated_svd` and
:func:`gram_truncated_svd` work through the Gram matrix ``M^H M`` (Cholesky QR and
its stabilised variants) where that is accurate, and fall back to Householder QR or
the plain SVD where it is not. :func:`gram` and :func:`gram_factor` are the shared
building blocks (the Gram product runs as one BLAS ``syrk`` for real matrices).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from opt_einsum import get_symbol

from .backend import eps, eye, flip, is_meta, namespace, numel, to_numpy
from .contract import contract

__all__ = [
    "svd",
    "qr",
    "lq",
    "truncation_rank",
    "truncated_svd",
    "DEFAULT_CUTOFF",
    "TALL",
    "gram",
    "gram_factor",
    "cholesky_whitener",
    "ridge_covariance",
    "symmetrize_",
    "gram_singular_values",
    "gram_truncated_factors",
    "lean_truncated_factors",
    "apply_matrix",
    "cholesky_factor",
    "tall_qr",
    "tall_truncated_svd",
    "gram_truncated_svd",
    "peak_magnitude",
]

#: Default relative discarded weight: drops singular values below ~1e-10 of the norm.
DEFAULT_CUTOFF = 1e-20


def peak_magnitude(a: np.ndarray) -> float:
    """Largest ``|a_ij...|`` (0 for an empty array); no temporary array for real numpy dtypes.

    Any array library; one number is read back to the host. On torch's ``meta``
    device (shapes only, no values) the peak is taken to be 1.
    """
    if not isinstance(a, np.ndarray):
        if numel(a) == 0:
            return 0.0
        if is_meta(a):
            return 1.0
        return float(abs(a).max())
    if a.size == 0:
        return 0.0
    if np.iscomplexobj(a):
        return float(np.abs(a).max())
    return max(float(a.max()), -float(a.min()))


def svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD ``matrix = U @ diag(s) @ Vh`` with ``s`` descending.

    Uses LAPACK ``gesdd`` and falls back to the slower, more robust ``gesvd`` if it
    does not converge.
    """
    if not isinstance(matrix, np.ndarray):
        return _device_svd(matrix)
    try:
        return np.linalg.svd(matrix, full_matrices=False)
    except np.linalg.LinAlgError:  # pragma: no cover - rare LAPACK failure
        import scipy.linalg

        return scipy.linalg.svd(matrix, full_matrices=False, lapack_driver="gesvd")


#: Matrices whose smaller side is at most this are factorised on the CPU when they live on a
#: GPU: cuSOLVER's SVD of small matrices costs more in launches and synchronisations than LAPACK
#: (benchmarks/gpu.py times both sides of this threshold; see docs/backends.md).
SMALL_GPU_SVD = 64


def _device_svd(matrix):
    """Thin SVD of a torch or cupy matrix on its device; small GPU matrices go through the CPU."""
    xp = namespace(matrix)
    device = getattr(matrix, "device", None)
    if getattr(device, "type", None) == "cuda" and min(matrix.shape) <= SMALL_GPU_SVD:
        u, s, vh = xp.linalg.svd(matrix.cpu(), full_matrices=False)
        return u.to(device), s.to(device), vh.to(device)
    return xp.linalg.svd(matrix, full_matrices=False)


def qr(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR: ``Q`` (m, k) with orthonormal columns, ``R`` (k, n), ``k = min(m, n)``."""
    return namespace(matrix).linalg.qr(matrix, mode="reduced")


def lq(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced LQ: ``L`` (m, k), ``Q`` (k, n) with orthonormal rows, ``k = min(m, n)``."""
    q, r = namespace(matrix).linalg.qr(matrix.T, mode="reduced")
    return r.T, q.T


def truncation_rank(
    s: np.ndarray, *, max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[int, float]:
    """Rank kept by the truncation rule and the absolute discarded weight.

    Parameters
    ----------
    s : array, shape (r,)
        Singular values in descending order, of any array library (read back to
        the host: the rank is a Python decision). On torch's ``meta`` device,
        which holds no values, the rank is ``min(r, max_bond)`` and the
        discarded weight ``nan``.
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
    if not isinstance(s, np.ndarray):
        if is_meta(s):
            r = s.shape[0]
            return (r if max_bond is None else max(min(r, max_bond), 1)), math.nan
        s = to_numpy(s)
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


# --------------------------------------------------------------------------- tall-skinny matrices

#: A matrix with at least this many times more rows than columns takes the Gram (Cholesky-QR) route.
TALL = 4

#: Orthogonality error accepted from one Cholesky-QR pass (about cond(Gram) * eps).
_ONE_PASS_ERROR = 1e-13

#: Smallest kept eigenvalue of a Gram matrix, relative to the largest, for :func:`gram_truncated_svd`
#: in units of the machine epsilon (1e-8 in double precision; never met in single precision).
_GRAM_FLOOR = 1e8


def gram(m: np.ndarray) -> np.ndarray:
    """``m^H m`` (columns against columns), shape ``(n, n)`` for ``m`` of shape ``(rows, n)``.

    For a real ``m`` numpy evaluates ``m.T @ m`` as one ``syrk`` (half the work of a product).
    """
    return contract("ab,ac->bc", m.conj(), m)


def gram_factor(g: np.ndarray, *, damping: float = 0.0, overwrite: bool = False) -> np.ndarray:
    """An upper triangular ``F`` with ``F^H F = g + shift * I`` for a Hermitian positive semi-definite ``g``.

    ``shift = damping * mean(diag g)`` (0 by default). Cholesky when ``g + shift * I`` is
    positive definite; a positive shift too small for the rounding errors of a
    (numerically) singular ``g`` is raised tenfold, up to five times, as a Cholesky
    factorisation is much cheaper than an eigendecomposition. Otherwise the ``R`` of a QR of
    ``sqrt(max(w, 0) + shift) V^H`` with ``g = V diag(w) V^H`` (negative rounding errors
    clipped), which has the same Gram matrix up to them and is invertible when ``shift > 0``. Always triangular, so
    it can be applied with :func:`apply_matrix` ``(upper=True)``.

    Parameters
    ----------
    g : array, shape (n, n)
        Hermitian positive semi-definite; any array library.
    damping : float
        Relative diagonal shift, at least 0.
    overwrite : bool
        Allow ``g``'s storage to be reused: for a contiguous real numpy ``g`` the Cholesky
        factor is then computed in place (LAPACK ``potrf``) and returned as a view of
        ``g``, so no second ``n x n`` array is allocated; ``g`` holds the factor
        afterwards. Otherwise ``g`` is left unchanged.

    Returns
    -------
    F : array, shape (n, n)
        Upper triangular.
    """
    damping = float(damping)
    if not damping >= 0.0:
        raise ValueError(f"`damping` must be a number >= 0, got {damping}.")
    xp = namespace(g)
    shift = 0.0
    if damping > 0.0 and len(g):
        shift = damping * max(float(to_numpy(xp.mean(g.diagonal().real))), 1e-30)
    # a positive shift that is too small for rounding errors is raised tenfold, up to five times
    shifts = [shift * 10.0**i for i in range(_DAMPING_RETRIES + 1)] if shift > 0.0 else [0.0]
    if isinstance(g, np.ndarray) and g.dtype.kind == "f" and (g.flags.c_contiguous or g.flags.f_contiguous):
        a = g if overwrite else g.copy()
        for sh in shifts:
            upper = _cholesky_in_place(a, sh)  # ``a`` is left unchanged when it fails
            if upper is not None:
                return upper
    else:
        for sh in shifts:
            try:
                shifted = g + sh * eye(len(g), like=g) if sh else g
                return xp.linalg.cholesky(shifted).conj().T
            except xp.linalg.LinAlgError:
                pass
    w, vecs = xp.linalg.eigh(g)
    return qr(xp.sqrt(xp.clip(w, 0.0, None) + shift)[:, None] * vecs.conj().T)[1]


#: Tenfold raises of a positive diagonal shift that :func:`gram_factor` tries before the eigenvalue route.
_DAMPING_RETRIES = 5


def cholesky_whitener(covariance: np.ndarray, *, damping: float = 1e-6, overwrite: bool = False) -> np.ndarray:
    """Lower triangular ``S`` with ``S S^T = C + damping * mean(diag C) * I``: ``gram_factor(C)^T``.

    Whitening by ``S`` turns the output error of a truncated weight under inputs of
    second moment ``C``, ``tr(E C E^T)``, into the plain ``||E S||_F^2``. ``overwrite``
    lets the factor take ``covariance``'s storage (see :func:`gram_factor`).

    Parameters
    ----------
    covariance : numpy.ndarray, shape (n, n)
        Symmetric positive semi-definite.
    damping, overwrite
        See :func:`gram_factor`.
    """
    c = covariance if isinstance(covariance, np.ndarray) and covariance.dtype == np.float64 else np.asarray(
        covariance, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"`covariance` must be a square matrix, got shape {c.shape}.")
    return gram_factor(c, damping=damping, overwrite=overwrite or c is not covariance).T


def ridge_covariance(covariance: np.ndarray, ridge: float, *, overwrite: bool = False) -> np.ndarray:
    """``C + ridge * tr(C) / n * I``: the second moment shrunk toward its trace-scaled identity.

    A calibration set of a few thousand tokens leaves ``C`` ill-conditioned (or singular,
    when ``n`` exceeds the tokens): directions it barely excites cost nothing in the
    whitened error, so a truncation may put arbitrarily large weight errors there, and
    other text does excite them. The ridge prices every direction at least
    ``ridge * tr(C) / n``: the whitened error then bounds the plain weight error,
    ``||E||_F^2 <= tr(E C' E^T) / (ridge * tr(C) / n)``. ``ridge = 0`` returns ``C``.

    Parameters
    ----------
    covariance : numpy.ndarray, shape (n, n)
    ridge : float
        Relative ridge, at least 0 (0.01 adds 1% of the mean channel variance).
    overwrite : bool
        Add the ridge to ``covariance`` itself (a float64 array) instead of a copy.
    """
    c = np.asarray(covariance, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"`covariance` must be a square matrix, got shape {c.shape}.")
    ridge = float(ridge)
    if not ridge >= 0.0:
        raise ValueError(f"`ridge` must be a number >= 0, got {ridge}.")
    if ridge == 0.0:
        return c
    shift = ridge * max(float(np.trace(c)) / len(c), 1e-300)
    out = c if overwrite and c is covariance else c.copy()
    out[np.diag_indices(len(out))] += shift
    return out


#: Rows per block of the in-place triangle copies (:func:`symmetrize_`).
_TRIANGLE_BLOCK = 512


def symmetrize_(a: np.ndarray, *, source: str = "upper") -> np.ndarray:
    """Copy one triangle of the square numpy array ``a`` onto the other, in place; returns ``a``.

    ``source="upper"`` sets ``a[j, i] = a[i, j]`` for ``i < j`` (``"lower"`` the reverse),
    in blocks of rows, so no second ``n x n`` array is allocated.
    """
    if source not in ("upper", "lower"):
        raise ValueError(f"`source` must be 'upper' or 'lower', got {source!r}.")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"`a` must be a square matrix, got shape {a.shape}.")
    n = len(a)
    for lo in range(0, n, _TRIANGLE_BLOCK):
        hi = min(lo + _TRIANGLE_BLOCK, n)
        if source == "upper":
            a[hi:, lo:hi] = a[lo:hi, hi:].T
        else:
            a[lo:hi, hi:] = a[hi:, lo:hi].T
        diag = a[lo:hi, lo:hi]
        if source == "upper":
            diag[...] = np.triu(diag) + np.triu(diag, 1).T
        else:
            diag[...] = np.tril(diag) + np.tril(diag, -1).T
    return a


def _cholesky_in_place(a: np.ndarray, shift: float) -> np.ndarray | None:
    """Upper Cholesky factor of the symmetric real ``a + shift * I`` in ``a``'s storage, or ``None``.

    LAPACK ``potrf`` writes the factor over one triangle and reads nothing else; on
    failure that triangle and the diagonal are restored from the other one, so ``a`` is
    unchanged.
    """
    from scipy.linalg import lapack

    c_order = a.flags.c_contiguous
    fview = a.T if c_order else a  # Fortran-ordered: its lower triangle is a's upper (C order)
    potrf = lapack.dpotrf if a.dtype == np.float64 else lapack.spotrf
    diagonal = a.diagonal().copy()
    a[np.diag_indices(len(a))] += shift
    factor, info = potrf(fview, lower=1, overwrite_a=1, clean=0)
    if not np.shares_memory(factor, a):  # pragma: no cover - potrf copied its input: ``a`` only lost the diagonal
        a[np.diag_indices(len(a))] = diagonal
        return np.tril(factor).T if info == 0 else None
    if info != 0:
        symmetrize_(a, source="lower" if c_order else "upper")
        a[np.diag_indices(len(a))] = diagonal
        return None
    # ``fview`` holds L (lower, L L^T = a + shift I); zero its strict upper part, then ``fview.T`` is R = L^T
    upper = fview.T
    for lo in range(0, len(a), _TRIANGLE_BLOCK):
        hi = min(lo + _TRIANGLE_BLOCK, len(a))
        upper[lo:hi, :hi] = np.triu(upper[lo:hi, :hi], lo)
    return upper


#: Smallest output dimension of an upper triangular factor that :func:`apply_matrix` splits into
#: row blocks (below it the skipped zeros are not worth a second product).
TRIANGLE_MIN_ROWS = 32


@functools.lru_cache(maxsize=1024)
def _apply_equation(ndim: int, axis: int) -> str:
    t = "".join(get_symbol(i) for i in range(ndim))
    new = get_symbol(ndim)
    return f"{new}{t[axis]},{t}->{t[:axis]}{new}{t[axis + 1:]}"


def apply_matrix(
    t: np.ndarray, m: np.ndarray, axis: int, *, upper: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """``t`` with ``m`` applied on ``axis``: ``new[.., k, ..] = sum_j m[k, j] t[.., j, ..]``.

    Parameters
    ----------
    t : numpy.ndarray
        Any shape; ``t.shape[axis]`` equals ``m.shape[1]``.
    m : numpy.ndarray, shape (k, t.shape[axis])
    axis : int
        Axis of ``t`` the matrix acts on (the result has ``k`` entries there).
    upper : bool
        Promise that ``m`` is upper triangular or trapezoidal (``m[k, j] = 0`` for
        ``j < k``), as Cholesky and QR factors are. On any axis but the last the
        product then runs in row blocks of ``m`` that skip its zero lower part:
        four blocks do 62% of the multiply-adds (measured 7-18% faster for a
        ``64 x 64`` factor on a ``64**3`` node at one thread).
    out : numpy.ndarray, optional
        C-contiguous array of the result's shape and dtype to write into (e.g. a
        :func:`tnkit.core.workspace.scratch` buffer); returned.

    Notes
    -----
    On a middle axis the contraction layer broadcasts ``m`` over the leading axes
    (a batched product, no transpose copy of ``t``).
    """
    k_out = m.shape[0]
    shape = t.shape[:axis] + (k_out,) + t.shape[axis + 1:]
    if out is not None:
        t = np.asarray(t)
        _check_out(out, shape, np.result_type(m, t))
    triangle = upper and k_out >= TRIANGLE_MIN_ROWS
    if axis != t.ndim - 1 and isinstance(t, np.ndarray) and (triangle or out is not None):
        blocks = (4 if k_out >= 2 * TRIANGLE_MIN_ROWS else 2) if triangle else 1
        if out is None:
            out = np.empty(shape, dtype=np.result_type(m, t))
        return _apply_in_row_blocks(t, m, axis, blocks, out)
    if out is not None:  # last axis: one product of the flattened leading axes with m^T
        np.matmul(t.reshape(-1, t.shape[-1]), m.T, out=out.reshape(-1, k_out))
        return out
    return contract(_apply_equation(t.ndim, axis), m, t)


def _check_out(out: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"out: expected a C-contiguous {np.dtype(dtype)} array of shape {shape}, got "
            f"{type(out).__name__} {getattr(out, 'dtype', '')} of shape {getattr(out, 'shape', None)}."
        )


def _apply_in_row_blocks(t: np.ndarray, m: np.ndarray, axis: int, blocks: int, out: np.ndarray) -> np.ndarray:
    """:func:`apply_matrix` on a non-last axis in ``blocks`` row blocks of ``m``, written into ``out``.

    With ``blocks > 1``, ``m`` is upper triangular: output rows ``[lo, hi)`` need only
    ``t``'s rows ``>= lo``.
    """
    k_out = m.shape[0]
    lead = int(np.prod(t.shape[:axis], dtype=np.int64))
    trail = int(np.prod(t.shape[axis + 1:], dtype=np.int64))
    t3 = t.reshape(lead, t.shape[axis], trail)
    out3 = out.reshape(lead, k_out, trail)
    edges = np.linspace(0, k_out, blocks + 1).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lead == 1:  # one plain product
            np.matmul(m[lo:hi, lo:], t3[0, lo:], out=out3[0, lo:hi])
        else:
            np.matmul(m[lo:hi, lo:], t3[:, lo:], out=out3[:, lo:hi])
    return out


def _one_pass_cond(dtype: np.dtype) -> float:
    """Largest Gram condition number for which one Cholesky-QR pass is accurate enough (1e3 in double)."""
    return _ONE_PASS_ERROR / eps(dtype)


def _cholesky_pass(m: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Q = m R^-1`` with ``R = chol(g)^H``; raises ``LinAlgError`` if ``g`` is not positive definite."""
    xp = namespace(g)
    upper = xp.linalg.cholesky(g).conj().T
    return contract("ab,bc->ac", m, xp.linalg.inv(upper)), upper


def cholesky_factor(g: np.ndarray) -> np.ndarray | None:
    """Upper ``R`` with ``R^H R = g``, or ``None`` if ``g``'s condition number exceeds ~1e3.

    Below that, ``m R^-1`` has orthonormal columns to about 1e-13 when ``g = m^H m``
    (one Cholesky-QR pass; in single precision one pass is never enough and ``None``
    is returned).
    """
    xp = namespace(g)
    w = to_numpy(xp.linalg.eigvalsh(g))
    if not (w[0] > 0 and w[-1] <= _one_pass_cond(g.dtype) * w[0]):
        return None
    try:
        return xp.linalg.cholesky(g).conj().T
    except xp.linalg.LinAlgError:  # pragma: no cover - excluded by the eigenvalues
        return None


def tall_qr(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR of a matrix, fast for tall-skinny ones: ``m = Q @ R``, ``Q`` orthonormal columns.

    For matrices with at least :data:`TALL` times more rows than columns, Cholesky
    QR (``R = chol(M^H M)^H``, ``Q = M R^-1``) costs two matrix products. Its
    orthogonality error is about ``cond(M^H M) * eps``, read off the Gram matrix's
    eigenvalues: one pass when that is below 1e-13 (never in single precision), two
    (CholeskyQR2) when its square root is. Otherwise the first pass factorises the
    Gram matrix shifted by ``11 (m n + n (n + 1)) eps ||M||_F^2`` and two plain passes
    follow (shifted CholeskyQR3, Fukaya, Kannan, Nakatsukasa, Yamamoto & Yanagisawa,
    SIAM J. Sci. Comput. 42, A477 (2020), arXiv:1809.11085): stable up to a condition
    number of ``M`` near ``1/eps``. Householder QR (:func:`qr`) remains the route for
    other shapes and the fallback (a numerically rank-deficient matrix, or a failed
    check). ``R`` is upper triangular, but its diagonal may be negative on the
    Householder route.

    Parameters
    ----------
    m : numpy.ndarray, shape (rows, n)

    Returns
    -------
    Q : numpy.ndarray, shape (rows, k)
    R : numpy.ndarray, shape (k, n)
        ``k = n`` on the Cholesky route, ``min(rows, n)`` on the Householder route.
    """
    rows, cols = m.shape
    if rows < TALL * cols:
        return qr(m)
    limit = _one_pass_cond(m.dtype)
    xp = namespace(m)
    try:
        g = gram(m)
        w = to_numpy(xp.linalg.eigvalsh(g))
        if not w[-1] > 0:
            return qr(m)
        if w[0] > 0 and w[-1] <= limit * w[0]:
            return _cholesky_pass(m, g)
        well_posed = w[0] > 0 and w[-1] <= limit**2 * w[0]  # CholeskyQR2 suffices
        if not well_posed:
            shift = 11.0 * (rows * cols + cols * (cols + 1)) * eps(m.dtype) * float(g.diagonal().sum().real)
            g = g + shift * eye(cols, like=g)
        q, r = _cholesky_pass(m, g)
        for _ in range(1 if well_posed else 2):
            q, r2 = _cholesky_pass(q, gram(q))
            r = contract("ab,bc->ac", r2, r)
        if not well_posed:
            error = peak_magnitude(gram(q) - eye(cols, like=q))
            if error > 100 * eps(m.dtype) * cols:
                return qr(m)
        return q, r
    except xp.linalg.LinAlgError:
        return qr(m)


def tall_truncated_svd(
    m: np.ndarray, *, max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """:func:`truncated_svd` of a tall matrix through its Cholesky factor.

    ``m = Q R`` with ``R = chol(m^H m)^H``; the SVD of the small ``R = U_R S V^H`` gives
    ``U = m (R^-1 U_R)``, one product with the kept columns only. Falls back to
    :func:`tall_qr` (then the SVD of ``R``) when one Cholesky pass is not accurate
    enough, and to the plain SVD for matrices that are not tall. Same returns and
    truncation rule as :func:`truncated_svd`.
    """
    rows, cols = m.shape
    if rows < TALL * cols:
        return truncated_svd(m, max_bond=max_bond, cutoff=cutoff)
    upper = cholesky_factor(gram(m))
    if upper is not None:
        u, s, vh, disc = truncated_svd(upper, max_bond=max_bond, cutoff=cutoff)
        return contract("ab,bc->ac", m, namespace(m).linalg.solve(upper, u)), s, vh, disc
    q, r = tall_qr(m)
    u, s, vh, disc = truncated_svd(r, max_bond=max_bond, cutoff=cutoff)
    return contract("ab,bc->ac", q, u), s, vh, disc


def gram_truncated_svd(
    m: np.ndarray, *, max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Left singular vectors and values of ``m`` truncated by :func:`truncation_rank`, from ``m^H m``.

    The eigenvalues of the Gram matrix are the squared singular values, to an
    absolute accuracy of about ``eps * s_max**2``. That decides the rank reliably
    and gives ``U = m V S^-1`` with orthonormal columns to about
    ``eps * (s_max / s_k)**2`` (one more Cholesky-QR pass makes it exact) as long
    as every *kept* squared singular value is at least ``1e8 * eps`` times the
    largest (1e-8 in double precision). Otherwise, or in single precision, or for
    a matrix that is not tall, :func:`tall_truncated_svd` or :func:`truncated_svd`
    computes the result. Costs a Gram product, an ``n x n`` eigensolver and a
    product with the kept columns (``Vh`` is not formed: ``U^H m`` is ``S Vh``).

    Parameters
    ----------
    m : numpy.ndarray, shape (rows, n)
    max_bond, cutoff
        The truncation rule of :func:`truncation_rank`.

    Returns
    -------
    U : numpy.ndarray, shape (rows, k)
        Orthonormal columns.
    s : numpy.ndarray, shape (k,)
        Singular values, descending.
    discarded : float
        ``sum`` of the dropped ``s**2`` (absolute).
    """
    rows, cols = m.shape
    if rows >= TALL * cols:
        xp = namespace(m)
        w, v = _gram_eigh(m, side="right")
        s = xp.sqrt(w)
        k, discarded = truncation_rank(s, max_bond=max_bond, cutoff=cutoff)
        w_host = w if isinstance(w, np.ndarray) else to_numpy(w[: max(k, 1)])
        if w_host[0] > 0 and w_host[k - 1] >= _GRAM_FLOOR * eps(m.dtype) * w_host[0]:
            u = contract("ab,bc->ac", m, v[:, :k] / s[:k])
            try:
                u, _ = _cholesky_pass(u, gram(u))  # restores orthogonality lost to cond(m[:, kept])**2
                return u, s[:k], discarded
            except xp.linalg.LinAlgError:  # pragma: no cover - excluded by the eigenvalue floor
                pass
    u, s, _, discarded = tall_truncated_svd(m, max_bond=max_bond, cutoff=cutoff)
    return u, s, discarded


def _gram_eigh(m: np.ndarray, *, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors of ``m^H m`` (``side="right"``) or ``m m^H``."""
    xp = namespace(m)
    w, v = xp.linalg.eigh(gram(m) if side == "right" else gram(m.conj().T))
    return xp.clip(flip(w), 0.0, None), flip(v, 1)


def gram_singular_values(m: np.ndarray) -> np.ndarray:
    """Singular values of ``m`` (descending, ``min(rows, n)`` of them) from its smaller Gram matrix.

    ``s**2`` are the eigenvalues of ``m^H m`` (or ``m m^H``), clipped at 0: exact up to
    ``eps * ||m||^2`` in ``s**2``, which is all a truncation-error curve needs, and
    several times cheaper than an SVD for a tall or wide matrix.

    Parameters
    ----------
    m : array, shape (rows, n)

    Returns
    -------
    s : array, shape (min(rows, n),)
    """
    xp = namespace(m)
    g = gram(m) if m.shape[1] <= m.shape[0] else gram(m.conj().T)
    return xp.sqrt(xp.clip(flip(xp.linalg.eigvalsh(g)), 0.0, None))


def gram_truncated_factors(
    m: np.ndarray, *, max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Best low-rank factors ``left @ right`` of ``m`` through its smaller Gram matrix.

    With ``V`` the top ``k`` eigenvectors of ``m^H m`` (``n <= rows``) the factors are
    ``left = m V`` (``U diag(s)`` of the truncated SVD) and ``right = V^H``; for a wide
    matrix the roles swap (``left = U``, ``right = U^H m``). ``k`` follows
    :func:`truncation_rank`. The product is the truncated SVD's (Eckart-Young optimal)
    and stays exact at full rank even where small singular values are inaccurate,
    because ``m V V^H = m`` for unitary ``V``; unlike :func:`gram_truncated_svd` no
    orthonormal ``U`` is promised for a tall ``m`` (``left`` carries the singular values).
    On a 1536 x 576 float64 weight this is about 5x faster than LAPACK's ``gesdd``.

    Parameters
    ----------
    m : array, shape (rows, n)
    max_bond, cutoff
        The truncation rule of :func:`truncation_rank`.

    Returns
    -------
    left : array, shape (rows, k)
    right : array, shape (k, n)
    discarded : float
        ``sum`` of the dropped ``s**2`` (absolute).
    """
    tall = m.shape[1] <= m.shape[0]
    w, v = _gram_eigh(m, side="right" if tall else "left")
    k, discarded = truncation_rank(namespace(m).sqrt(w), max_bond=max_bond, cutoff=cutoff)
    basis = v[:, :k]
    if isinstance(basis, np.ndarray):
        basis = np.ascontiguousarray(basis)
    if tall:
        return contract("ab,bc->ac", m, basis), basis.conj().T, discarded
    return basis, contract("ba,bc->ac", basis.conj(), m), discarded


def lean_truncated_factors(m: np.ndarray, *, max_bond: int) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`gram_truncated_factors` with a rank cap only, computing only the kept eigenvectors.

    The Gram matrix of the smaller side is formed once and handed to LAPACK ``syevr``
    (``scipy.linalg.eigh`` with ``subset_by_index`` and ``overwrite_a``), which returns the
    top ``k`` eigenpairs in ``O(n)`` workspace: no second ``n x n`` array besides the Gram
    matrix, where the full divide-and-conquer eigensolver holds about three more (for a
    2048 x 5632 float64 matrix, 32 MiB here against about 130 MiB). The product
    ``left @ right`` equals :func:`gram_truncated_factors`' to rounding; each pair of
    factor columns and rows may come out with the opposite sign. The discarded weight is
    ``||m||_F^2`` less the kept eigenvalues (exact to ``eps * ||m||_F^2``).

    Parameters
    ----------
    m : numpy.ndarray, shape (rows, n)
        Real or complex.
    max_bond : int
        Rank kept, ``k = min(max_bond, rows, n)`` (at least 1).

    Returns
    -------
    left : numpy.ndarray, shape (rows, k)
    right : numpy.ndarray, shape (k, n)
    discarded : float
        ``sum`` of the dropped squared singular values (absolute).
    """
    from scipy.linalg import eigh

    if not isinstance(m, np.ndarray) or m.ndim != 2:
        raise TypeError(f"`m` must be a 2-d numpy array, got {type(m).__name__} of shape {np.shape(m)}.")
    tall = m.shape[1] <= m.shape[0]
    n = min(m.shape)
    k = max(min(int(max_bond), n), 1)
    g = gram(m) if tall else gram(m.conj().T)
    total = float(np.trace(g).real)
    w, v = eigh(g, subset_by_index=(n - k, n - 1), overwrite_a=True, check_finite=False, driver="evr")
    del g
    discarded = 0.0 if k == n else max(total - float(np.clip(w, 0.0, None).sum()), 0.0)
    basis = np.ascontiguousarray(v[:, ::-1])
    del v
    if tall:
        return contract("ab,bc->ac", m, basis), basis.conj().T, discarded
    return basis, contract("ba,bc->ac", basis.conj(), m), discarded
