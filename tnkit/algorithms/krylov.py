"""Krylov-space solvers on matrix-free Hermitian operators.

Both routines take the operator as a function ``matvec(x) -> H @ x`` acting on arrays
of any shape (a two-site tensor ``theta``, a bond matrix, ...) and never form ``H``.
``H`` must be Hermitian: the Lanczos recursion builds an orthonormal basis ``V`` of
the Krylov space ``span{v, Hv, H^2 v, ...}`` in which ``H`` is the real symmetric
tridiagonal matrix ``T = V^H H V``::

    H V_k = V_k T_k + beta_k v_{k+1} e_k^T

Every new vector is re-orthogonalised against the whole basis (the spaces are small,
at most ``max_krylov`` vectors), so the basis stays orthonormal to machine precision.

The vectors may be numpy arrays or torch/cupy tensors: the basis lives with them (their
library, device and precision; on numpy at least double precision), and only the
tridiagonal ``T_k`` (a few dozen numbers) is solved on the host.

* :func:`lanczos_ground` returns the lowest eigenpair; it stops when the residual
  ``||H x - E x|| = beta_k |y_k|`` falls below ``tol`` and restarts from its best
  vector when the space is full.
* :func:`expm_krylov` returns ``exp(factor * H) v`` for a real or complex scalar
  ``factor`` (``-1j * dt`` for real-time, ``-dt`` for imaginary-time steps). The error
  of ``||v|| V_k exp(factor T_k) e_1`` is, to leading order, the term
  ``||v|| factor beta_k [phi_1(factor T_k) e_1]_k v_{k+1}`` with
  ``phi_1(z) = (exp(z) - 1) / z`` (Saad, Theorem 5.1); the routine adds that term (the
  "corrected" scheme, no extra operator application) and stops when its size falls
  below ``tol``, so the error of the result is of the next order. It splits the step in
  halves when the space is full.

References
----------
Y. Saad, "Analysis of some Krylov subspace approximations to the matrix exponential
operator", SIAM J. Numer. Anal. 29, 209 (1992).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..core.backend import astype, is_complex, like, norm, numel, numpy_dtype, zeros

__all__ = ["lanczos_ground", "expm_krylov", "KrylovInfo", "krylov_workspace"]

Matvec = Callable[[np.ndarray], np.ndarray]

#: Below this norm (relative to the start vector) a new Krylov vector means the space is invariant.
_BREAKDOWN = 1e-14


@dataclass(frozen=True)
class KrylovInfo:
    """What a Krylov solve did.

    Attributes
    ----------
    n_matvecs : int
        Operator applications.
    error : float
        Final residual norm (eigensolver) or error estimate (exponential).
    converged : bool
        Whether ``error <= tol``.
    """

    n_matvecs: int
    error: float
    converged: bool


class _Lanczos:
    """Lanczos basis with full re-orthogonalisation, grown one vector at a time."""

    def __init__(self, matvec: Matvec, v: np.ndarray, max_krylov: int, dtype: np.dtype) -> None:
        self.matvec = matvec
        self.shape = v.shape
        self.norm0 = norm(v)
        self.basis = _empty((max_krylov, numel(v)), np.dtype(dtype), v)
        self.basis[0] = v.reshape(-1) / self.norm0
        # complex numpy bases keep their conjugate too, so the coefficients are one product, no copy
        # (torch conjugates lazily: ``block.conj()`` is a view that the product reads as such)
        numpy_complex = isinstance(self.basis, np.ndarray) and np.iscomplexobj(self.basis)
        self.conj_basis = _empty(self.basis.shape, self.basis.dtype) if numpy_complex else None
        if self.conj_basis is not None:
            np.conjugate(self.basis[0], out=self.conj_basis[0])
        self.alphas: list[float] = []
        self.betas: list[float] = []
        self.k = 0  # index of the newest basis vector
        self.breakdown = False  # the Krylov space is invariant: the result is exact
        self.full = False  # no room for another vector

    def step(self) -> float:
        """Apply ``H`` to the newest vector; return ``beta`` (norm of the next residual).

        The new vector is orthogonalised against the whole basis by classical Gram-Schmidt
        (one product with the basis for the coefficients, one to subtract them), repeated
        once when it cancels more than half of the vector ("twice is enough"); ``alpha`` is
        the coefficient on the newest vector. Few numpy calls per step: at small bonds the
        operator is cheap and the calls are the cost.
        """
        k = self.k
        basis = self.basis
        w = self.matvec(basis[k].reshape(self.shape)).reshape(-1)
        if w.dtype != basis.dtype:
            w = astype(w, basis.dtype)
        block = basis[: k + 1]
        if self.conj_basis is not None:
            conj = self.conj_basis[: k + 1]
        else:
            conj = block if isinstance(block, np.ndarray) else block.conj()
        before = _norm(w)
        c = conj @ w
        alpha = float(c[k].real)
        w = w - c @ block  # a new array: matvec may return its input
        beta = _norm(w)
        if beta < 0.5 * before:  # cancellation: one more pass restores orthogonality
            w -= (conj @ w) @ block
            beta = _norm(w)
        self.alphas.append(alpha)
        self.breakdown = beta <= _BREAKDOWN * max(abs(alpha), 1.0)
        self.full = k + 1 == len(basis)
        self.next = None  # the normalised residual v_{k+2}, once it exists
        if not self.breakdown:
            w /= beta
            self.next = w
        if not (self.breakdown or self.full):
            self.betas.append(beta)
            basis[k + 1] = w
            if self.conj_basis is not None:
                np.conjugate(basis[k + 1], out=self.conj_basis[k + 1])
            self.k = k + 1
        return beta

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenpairs of the tridiagonal ``T`` (LAPACK ``dstev`` called directly: the numpy
        and scipy wrappers cost more than the solve at these sizes)."""
        n = len(self.alphas)
        if n == 1:
            return np.array(self.alphas), np.ones((1, 1))
        w, v, info = _dstev()(np.array(self.alphas), np.array(self.betas[: n - 1]))
        if info != 0:  # pragma: no cover - LAPACK failure: fall back to the dense solver
            t = np.diag(self.alphas) + np.diag(self.betas[: n - 1], 1) + np.diag(self.betas[: n - 1], -1)
            return np.linalg.eigh(t)
        return w, v

    def combine(self, coefficients: np.ndarray) -> np.ndarray:
        n = len(coefficients)
        if not isinstance(self.basis, np.ndarray):
            coefficients = like(coefficients, self.basis, dtype=self.basis.dtype)
        return (coefficients @ self.basis[:n]).reshape(self.shape)

    def release(self) -> None:
        """Hand the basis arrays back to the workspace (the basis is unusable afterwards)."""
        for arr in (self.basis, self.conj_basis):
            if arr is not None:
                _release(arr)
        self.basis = self.conj_basis = None  # type: ignore[assignment]


_POOL = threading.local()


@contextlib.contextmanager
def krylov_workspace() -> Iterator[None]:
    """Within the block, Krylov bases are kept between solves of this thread and reused.

    A sweep solves hundreds of local problems of a few sizes; each basis is tens of
    vectors of the local dimension, and a fresh array of that size is a new memory mapping
    whose pages are faulted in again. The arrays are dropped when the outermost block ends.
    """
    outer = getattr(_POOL, "free", None) is None
    if outer:
        _POOL.free = []
    try:
        yield
    finally:
        if outer:
            _POOL.free = None


def _empty(shape: tuple[int, int], dtype: np.dtype, reference: object = None) -> np.ndarray:
    """A work array: numpy from the workspace, or zeros of ``reference``'s library and device
    when ``reference`` is not a numpy array."""
    if reference is not None and not isinstance(reference, np.ndarray):
        return zeros(shape, like=reference, dtype=dtype)
    free = getattr(_POOL, "free", None)
    size = shape[0] * shape[1]
    if free:
        for i, buf in enumerate(free):
            if buf.dtype == dtype and buf.size >= size:
                return free.pop(i)[:size].reshape(shape)
    return np.empty(size, dtype).reshape(shape)  # a view of a flat array, reusable at any shape


def _release(arr: np.ndarray) -> None:
    free = getattr(_POOL, "free", None)
    if free is None or not isinstance(arr, np.ndarray):
        return
    base = arr.base
    if base is None or base.ndim != 1:
        return
    free.append(base)
    if len(free) > 4:  # keep the four largest
        free.sort(key=lambda b: b.size)
        del free[0]


@functools.cache
def _dstev() -> Callable[..., tuple[np.ndarray, np.ndarray, int]]:
    from scipy.linalg import lapack

    return lapack.dstev


def _norm(w: np.ndarray) -> float:
    if not isinstance(w, np.ndarray):
        return norm(w)
    return float(np.sqrt(np.vdot(w, w).real))


def _work_dtype(v: np.ndarray, factor: complex = 0.0) -> np.dtype:
    """numpy: at least double precision; torch and cupy keep ``v``'s precision (complex if
    ``factor`` is)."""
    if isinstance(v, np.ndarray):
        return np.result_type(v.dtype, np.asarray(factor).dtype, np.float64)
    dtype = numpy_dtype(v.dtype)
    if np.asarray(factor).dtype.kind == "c":
        dtype = np.result_type(dtype, np.complex64)
    return dtype


def _as_vector(v: object) -> np.ndarray:
    """``v`` as it is when it is an array of any library, else ``numpy.asarray(v)``."""
    return v if hasattr(v, "reshape") and hasattr(v, "dtype") else np.asarray(v)


def _any_nonzero(x: np.ndarray) -> bool:
    return bool(np.any(x)) if isinstance(x, np.ndarray) else bool(x.any())


def lanczos_ground(
    matvec: Matvec,
    v0: np.ndarray,
    *,
    tol: float = 1e-10,
    max_krylov: int = 24,
    max_restarts: int = 4,
) -> tuple[float, np.ndarray, KrylovInfo]:
    """Lowest eigenpair of a Hermitian operator, starting from ``v0``.

    Parameters
    ----------
    matvec : callable
        ``x -> H @ x`` on arrays shaped like ``v0``.
    v0 : numpy.ndarray or torch.Tensor
        Start vector (any shape, nonzero); a good guess (the current DMRG tensor)
        makes the solve a few operator applications. A torch (or cupy) tensor keeps
        the basis on its device and in its precision.
    tol : float
        Target residual norm ``||H x - E x||`` (``x`` normalised). The eigenvalue
        error is then of order ``tol**2 / gap``.
    max_krylov : int
        Largest Krylov basis; when full, the solver restarts from its best vector.
    max_restarts : int
        Restarts allowed before returning the best vector found.

    Returns
    -------
    energy : float
    x : numpy.ndarray or torch.Tensor
        Normalised eigenvector, shaped like ``v0``, of its library and device.
    info : KrylovInfo
    """
    x = _as_vector(v0)
    if not _any_nonzero(x):
        raise ValueError("`v0` must be a nonzero vector.")
    dtype = _work_dtype(x)
    n_matvecs = 0
    max_krylov = max(2, min(max_krylov, numel(x)))
    for _ in range(max_restarts + 1):
        lz = _Lanczos(matvec, x, max_krylov, dtype)
        while True:
            beta = lz.step()
            n_matvecs += 1
            evals, evecs = lz.ritz()
            residual = beta * abs(evecs[-1, 0])
            if residual <= tol or lz.breakdown or lz.full:
                break
        x = lz.combine(evecs[:, 0])
        lz.release()
        x /= norm(x)
        if residual <= tol or lz.breakdown:
            break
    return float(evals[0]), x, KrylovInfo(n_matvecs, float(residual), bool(residual <= tol))


def expm_krylov(
    matvec: Matvec,
    v: np.ndarray,
    factor: complex,
    *,
    tol: float = 1e-12,
    max_krylov: int = 30,
) -> tuple[np.ndarray, KrylovInfo]:
    """``exp(factor * H) @ v`` for a Hermitian ``H`` given as a matvec.

    Parameters
    ----------
    matvec : callable
        ``x -> H @ x`` on arrays shaped like ``v``.
    v : numpy.ndarray or torch.Tensor
        Vector of any shape; a torch (or cupy) tensor keeps the basis on its device
        and in its precision, made complex for a complex ``factor``: ``matvec`` then
        receives complex tensors (torch does not promote dtypes in products).
    factor : complex
        Scalar multiplying ``H`` in the exponent: ``-1j * dt`` evolves by real time
        ``dt`` under ``exp(-iHt)``, ``-tau`` by imaginary time.
    tol : float
        Target error relative to ``||v||``; when ``max_krylov`` vectors do not reach it
        the step is split into two halves (recursively).
    max_krylov : int
        Largest Krylov basis per (sub)step.

    Returns
    -------
    w : numpy.ndarray or torch.Tensor
        ``exp(factor * H) v``, shaped like ``v``, of its library and device.
    info : KrylovInfo
    """
    v = _as_vector(v)
    if norm(v) == 0.0:
        return zeros(v.shape, like=v, dtype=_work_dtype(v, factor)), KrylovInfo(0, 0.0, True)
    return _expm_steps(matvec, v, complex(factor), tol, max(2, min(max_krylov, numel(v))), depth=0)


def _expm_steps(
    matvec: Matvec, v: np.ndarray, factor: complex, tol: float, max_krylov: int, depth: int
) -> tuple[np.ndarray, KrylovInfo]:
    real_factor = factor.imag == 0.0 and not is_complex(v)
    f: complex | float = factor.real if real_factor else factor
    lz = _Lanczos(matvec, v, max_krylov, _work_dtype(v, f))
    bound = 1.0  # a-priori error bound |f|^m prod(beta_j) / m! (Saad): the small eigenproblem is
    while True:  # solved only once the bound says the exponential may have converged
        beta = lz.step()
        m = len(lz.alphas)
        bound *= abs(f) * beta / m
        if bound > _GATE * tol and not (lz.breakdown or lz.full):
            continue
        evals, evecs = lz.ritz()
        weights = evecs[0].conj()
        c = evecs @ (np.exp(f * evals) * weights)
        # the leading error term of V exp(f T) e_1: f beta [phi_1(f T) e_1]_m v_{m+1} (Saad, Thm 5.1)
        correction = 0.0 if lz.breakdown else f * beta * (evecs[-1] @ (_phi1(f * evals) * weights))
        error = abs(correction)
        if error <= tol or lz.breakdown or lz.full:
            break
    if error > tol and lz.full and depth < 12:
        half = factor / 2
        w, a = _expm_steps(matvec, v, half, tol / 2, max_krylov, depth + 1)
        w, b = _expm_steps(matvec, w, half, tol / 2, max_krylov, depth + 1)
        return w, KrylovInfo(a.n_matvecs + b.n_matvecs, a.error + b.error, a.converged and b.converged)
    w = lz.combine(c)
    lz.release()
    if lz.next is not None:  # the corrected scheme: add the leading error term (its own size is `error`)
        if isinstance(w, np.ndarray):
            w += correction * lz.next.reshape(w.shape)
        else:
            w += lz.next.reshape(w.shape) * (complex(correction) if is_complex(w) else float(correction))
    return lz.norm0 * w, KrylovInfo(len(lz.alphas), float(error), bool(error <= tol))


#: The small eigenproblem is solved once Saad's a-priori bound is below ``_GATE * tol``: the
#: bound overestimates the a-posteriori error by orders of magnitude once ``|f| ||H||`` is large.
_GATE = 1e4


def _phi1(z: np.ndarray) -> np.ndarray:
    """``(exp(z) - 1) / z`` elementwise (``1 + z/2`` near zero)."""
    small = np.abs(z) < 1e-8
    safe = np.where(small, 1.0, z)
    return np.where(small, 1.0 + z / 2, np.expm1(safe) / safe)
