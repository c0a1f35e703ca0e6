"""Matrix product operators.

Index conventions
-----------------
Site ``i`` holds ``W[i]`` of shape ``(w_i, d_out_i, d_in_i, w_{i+1})`` with
``w_0 = w_N = 1``; the dense operator is
``O[(t_0..t_{N-1}), (s_0..s_{N-1})] = W0[:, t_0, s_0, :] @ ... @ W_{N-1}[:, t_{N-1}, s_{N-1}, :]``
with site 0 the slowest index of rows and of columns. Applied to an MPS, ``d_in``
contracts with the state's physical index and ``d_out`` becomes the new one::

         t_i (out)
          |
    w_i --W-- w_{i+1}
          |
         s_i (in)

Compression treats an MPO as an MPS with fused physical index ``(t, s)``, so
truncation is in the Frobenius norm.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import DEFAULT_CUTOFF
from ..core.threads import GEMM_THREAD_BOND, with_blas_threads
from ..core.validate import (
    DEFAULT_MAX_BYTES,
    as_array,
    check_cutoff,
    check_dtype,
    check_int,
    check_max_bond,
)
from ..io import load_arrays, register_loader, save_arrays
from . import overlap
from .canonical import scale_tensors
from .chain import TensorChain, check_phys_dims, checked_dense, direct_sum, format_dims
from .chain import frozen, is_scalar, placed_like, scalar_factor
from .truncation import TruncationReport, svd_compress
from .mps import MatrixProductState

__all__ = ["MatrixProductOperator", "MPO", "balanced_factors"]


class MatrixProductOperator(TensorChain):
    """A matrix product operator on ``N`` sites.

    Parameters
    ----------
    tensors : sequence of array_like
        Site tensors of shape ``(w_i, d_out_i, d_in_i, w_{i+1})``, outer bonds 1.
    copy : bool
        Copy the arrays (by default they are shared, read-only).

    Examples
    --------
    >>> import numpy as np, tnkit
    >>> h = tnkit.mps.builders.heisenberg_mpo(6)
    >>> h.bond_dims
    (5, 5, 5, 5, 5)
    >>> np.allclose(h.to_dense(), h.to_dense().conj().T)
    True
    """

    __slots__ = ()
    _site_ndim = 4

    @classmethod
    def from_tensors(cls, tensors: Sequence[Any], *, validate: bool = True) -> MatrixProductOperator:
        """An MPO of ``tensors`` ``(w_i, d_out_i, d_in_i, w_{i+1})``.

        ``validate=True`` checks them as the constructor does. ``validate=False``
        wraps them without checks or copies, for code that built them itself: the
        caller guarantees 4-d numpy arrays with chaining bonds (outer bonds 1), one
        common dtype among float32, float64, complex64, complex128, and finite
        entries, and does not write them afterwards (they are stored read-only).
        """
        if validate:
            return cls(tensors)
        return cls._trusted(list(tensors))

    @classmethod
    def _trusted(cls, tensors: list[np.ndarray]) -> MatrixProductOperator:
        """``from_tensors(tensors, validate=False)``, kept for old callers."""
        obj = cls.__new__(cls)
        obj._tensors = [frozen(t) for t in tensors]
        return obj

    # ------------------------------------------------------------------ construction

    @classmethod
    def identity(cls, n_sites: int, phys_dim: int | Sequence[int] = 2, *, dtype: Any = np.float64) -> MatrixProductOperator:
        """The identity operator (bond dimension 1)."""
        n_sites = check_int("n_sites", n_sites, minimum=1)
        dims = check_phys_dims("phys_dim", phys_dim, n_sites)
        dtype = check_dtype("dtype", dtype)
        return cls._trusted([np.eye(d, dtype=dtype).reshape(1, d, d, 1) for d in dims])

    @classmethod
    def from_dense(
        cls,
        matrix: Any,
        *,
        n_sites: int | None = None,
        out_dims: Sequence[int] | None = None,
        in_dims: Sequence[int] | None = None,
        max_bond: int | None = None,
        cutoff: float = DEFAULT_CUTOFF,
        return_report: bool = False,
    ) -> MatrixProductOperator | tuple[MatrixProductOperator, TruncationReport]:
        """MPO of a dense ``(M, N)`` matrix by TT-SVD.

        Parameters
        ----------
        matrix : array_like, shape (M, N)
        n_sites : int, optional
            Number of sites; needed when a dimension list is not given.
        out_dims, in_dims : sequence of int, optional
            Factorisations of ``M`` and ``N`` (site 0 slowest). When omitted, the
            most balanced factorisation into ``n_sites`` factors is used
            (:func:`balanced_factors`).
        max_bond, cutoff
            Truncation, in the Frobenius norm (see :mod:`tnkit.core.linalg`).
        return_report : bool
            Also return the :class:`TruncationReport`; ``error`` is exactly
            ``||A - MPO||_F**2 / ||A||_F**2``.
        """
        a = as_array("matrix", matrix, ndim=2)
        rows, cols = a.shape
        if n_sites is None:
            known = out_dims if out_dims is not None else in_dims
            if known is None:
                raise ValueError("give `n_sites`, or `out_dims` and/or `in_dims`.")
            n_sites = len(known)
        n_sites = check_int("n_sites", n_sites, minimum=1)
        out_dims = _factor_dims("out_dims", out_dims, rows, n_sites)
        in_dims = _factor_dims("in_dims", in_dims, cols, n_sites)
        t = a.reshape(out_dims + in_dims)
        order = [k for i in range(n_sites) for k in (i, n_sites + i)]
        fused = t.transpose(order).reshape(-1)
        psi, report = MatrixProductState.from_dense(
            fused,
            [o * i for o, i in zip(out_dims, in_dims)],
            max_bond=max_bond,
            cutoff=cutoff,
            return_report=True,
        )
        mpo = cls._trusted(
            [x.reshape(x.shape[0], o, i, x.shape[2]) for x, o, i in zip(psi.tensors, out_dims, in_dims)]
        )
        return (mpo, report) if return_report else mpo

    @classmethod
    def from_terms(cls, terms: Any, phys_dims: int | Sequence[int], n_sites: int | None = None) -> MatrixProductOperator:
        """Sum of products of local operators; see :func:`tnkit.mps.builders.mpo_from_terms`."""
        from .builders import mpo_from_terms

        return mpo_from_terms(terms, phys_dims, n_sites)

    @classmethod
    def from_quimb(cls, qmpo: Any) -> MatrixProductOperator:
        """Convert a ``quimb.tensor.MatrixProductOperator`` (exact)."""
        from .quimb import mpo_from_quimb

        return mpo_from_quimb(qmpo)

    @classmethod
    def load(cls, path: Any, *, max_bytes: float = DEFAULT_MAX_BYTES) -> MatrixProductOperator:
        """Read an MPO written by :meth:`save`; never executes code from the file.

        Files whose arrays would take more than ``max_bytes`` (default 8 GiB) are refused.
        """
        tensors, _ = load_arrays(path, "MatrixProductOperator", max_bytes=max_bytes)
        return cls(tensors)

    # ------------------------------------------------------------------ inspection

    @property
    def out_dims(self) -> tuple[int, ...]:
        """Output (row) physical dimension of each site."""
        return tuple(t.shape[1] for t in self._tensors)

    @property
    def in_dims(self) -> tuple[int, ...]:
        """Input (column) physical dimension of each site."""
        return tuple(t.shape[2] for t in self._tensors)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(M, N)`` of the dense operator."""
        return math.prod(self.out_dims), math.prod(self.in_dims)

    def __repr__(self) -> str:
        return (
            f"MatrixProductOperator(n_sites={self.n_sites}, out_dims={format_dims(self.out_dims)}, "
            f"in_dims={format_dims(self.in_dims)}, max_bond={self.max_bond_dim}, dtype={self.dtype})"
        )

    def copy(self) -> MatrixProductOperator:
        """A new MPO sharing the (read-only) site arrays."""
        return type(self)._trusted(list(self._tensors))

    def _with_tensors(self, tensors: list[Any]) -> MatrixProductOperator:
        return type(self)._trusted(tensors)

    # ------------------------------------------------------------------ dense

    def to_dense(self, *, max_size: int = 2**26) -> np.ndarray:
        """The ``(M, N)`` matrix (site 0 the slowest index of rows and columns)."""
        rows, cols = self.shape
        if rows * cols > max_size:
            raise ValueError(
                f"the dense matrix would have {rows * cols:,} entries, more than `max_size`={max_size:,}."
            )
        t = self._tensors[0].reshape(self._tensors[0].shape[1:])  # (t, s, w)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # checked below
            for w in self._tensors[1:]:
                t = contract("xyw,wtsv->xtysv", t, w)
                t = t.reshape(t.shape[0] * t.shape[1], t.shape[2] * t.shape[3], t.shape[4])
        return checked_dense(t.reshape(rows, cols), self._tensors, "matrix")

    # ------------------------------------------------------------------ algebra

    def dagger(self) -> MatrixProductOperator:
        """The Hermitian adjoint."""
        return type(self)._trusted([backend.permute(t, (0, 2, 1, 3)).conj() for t in self._tensors])

    @property
    def H(self) -> MatrixProductOperator:  # noqa: N802 - numpy-style name
        """The Hermitian adjoint (alias of :meth:`dagger`)."""
        return self.dagger()

    def trace(self) -> complex | float:
        """``Tr O`` (square operators only)."""
        if self.out_dims != self.in_dims:
            raise ValueError(f"trace needs a square operator, got out_dims {self.out_dims} and in_dims {self.in_dims}.")
        env = backend.ones((1,), like=self._tensors[0])
        for w in self._tensors:
            env = contract("a,attb->b", env, w)
        return backend.as_host_scalar(env)

    def __mul__(self, scalar: complex) -> MatrixProductOperator:
        """``scalar * W``: on site 0, or spread over the sites if site 0 cannot hold it."""
        if not is_scalar(scalar):
            return NotImplemented
        dtype, phase, log_abs = scalar_factor(scalar, self.dtype, what="an MPO", product="scalar * W")
        tensors = [backend.astype(t, dtype) for t in self._tensors]
        scale_tensors(tensors, 0, range(len(tensors)), phase, log_abs)
        return type(self)._trusted(tensors)

    __rmul__ = __mul__

    def __add__(self, other: MatrixProductOperator) -> MatrixProductOperator:
        """Exact sum; bond dimensions add."""
        if not isinstance(other, MatrixProductOperator):
            return NotImplemented
        _check_same_dims(self, other)
        return type(self)._trusted(direct_sum(self._tensors, other._tensors))

    def __matmul__(self, other: Any) -> Any:
        """``self @ other``: exact product with an MPO, or exact application to an MPS."""
        from .apply import apply_mpo, mpo_product

        if isinstance(other, MatrixProductOperator):
            return mpo_product(self, other)
        if isinstance(other, MatrixProductState):
            return apply_mpo(self, other, method="direct", cutoff=0.0)
        return NotImplemented

    def apply(self, mps: MatrixProductState, **kwargs: Any) -> Any:
        """``W |psi>`` with truncation; see :func:`tnkit.mps.apply.apply_mpo`."""
        from .apply import apply_mpo

        return apply_mpo(self, mps, **kwargs)

    @with_blas_threads(lambda self, **kwargs: self.max_bond_dim)
    def compress(
        self, *, max_bond: int | None = None, cutoff: float = DEFAULT_CUTOFF
    ) -> tuple[MatrixProductOperator, TruncationReport]:
        """SVD-compressed copy (Frobenius norm) and the report of what was discarded."""
        max_bond = check_max_bond(max_bond)
        cutoff = check_cutoff(cutoff)
        fused = [t.reshape(t.shape[0], -1, t.shape[3]) for t in self._tensors]
        tensors, _, report = svd_compress(fused, 0, len(fused), max_bond=max_bond, cutoff=cutoff)
        out = [
            t.reshape(t.shape[0], o, i, t.shape[2]) for t, o, i in zip(tensors, self.out_dims, self.in_dims)
        ]
        return type(self)._trusted(out), report

    @with_blas_threads(lambda self, mps: getattr(mps, "max_bond_dim", 1), GEMM_THREAD_BOND)
    def log_expectation(self, mps: MatrixProductState) -> tuple[complex | float, float]:
        """``<psi|W|psi>`` as ``(phase, log|value|)``."""
        if not isinstance(mps, MatrixProductState):
            raise TypeError(f"`mps` must be a MatrixProductState, got {type(mps).__name__}.")
        if self.in_dims != mps.phys_dims or self.out_dims != mps.phys_dims:
            raise ValueError(
                f"the MPO acts on dims {format_dims(self.in_dims)} -> {format_dims(self.out_dims)} but the state has "
                f"dims {format_dims(mps.phys_dims)} on {mps.n_sites} sites."
            )
        return overlap.log_overlap(mps.tensors, mps.tensors, placed_like(self, mps)._tensors)

    def expectation(self, mps: MatrixProductState, *, normalize: bool = True) -> complex | float:
        """``<psi|W|psi>``, divided by ``<psi|psi>`` when ``normalize``."""
        phase, log_abs = self.log_expectation(mps)
        if normalize:
            log_norm = mps.log_norm()
            if log_norm == -math.inf:
                raise ValueError(
                    "`mps` is the zero vector (norm 0): its normalised expectation value is undefined."
                )
            log_abs -= 2 * log_norm
        value = overlap.overlap_value(phase, log_abs)
        if isinstance(value, complex) and abs(value.imag) <= 1e-13 * max(abs(value.real), 1.0):
            return value.real
        return value

    # ------------------------------------------------------------------ interop and files

    def to_quimb(self) -> Any:
        """An equal ``quimb.tensor.MatrixProductOperator``."""
        from .quimb import mpo_to_quimb

        return mpo_to_quimb(self)

    def save(self, path: Any) -> Any:
        """Write to ``.npz`` (schema-versioned, no pickle) atomically; return the path written."""
        return save_arrays(path, "MatrixProductOperator", [backend.to_numpy(t) for t in self._tensors])


MPO = MatrixProductOperator
register_loader("MatrixProductOperator", MatrixProductOperator.load)


def balanced_factors(n: int, n_factors: int) -> tuple[int, ...]:
    """Factor ``n`` into ``n_factors`` integers, the most balanced way (descending).

    Of all factorisations, the one whose descending tuple of factors is smallest
    lexicographically: the largest factor as small as possible, then the second,
    and so on. Factors of 1 appear when ``n`` has too few prime factors.

    Examples
    --------
    >>> balanced_factors(576, 3)
    (9, 8, 8)
    >>> balanced_factors(72, 2)
    (9, 8)
    """
    n = check_int("n", n, minimum=1)
    n_factors = check_int("n_factors", n_factors, minimum=1)
    return _most_balanced(n, n_factors)


@functools.lru_cache(maxsize=1024)
def _most_balanced(n: int, k: int) -> tuple[int, ...]:
    if k == 1:
        return (n,)
    best: tuple[int, ...] | None = None
    for d in _divisors(n):
        if d**k < n:  # the largest factor is at least the k-th root
            continue
        rest = _most_balanced(n // d, k - 1)
        if rest[0] > d:
            continue
        candidate = (d, *rest)
        if best is None or candidate < best:
            best = candidate
    assert best is not None  # d = n always qualifies
    return best


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _factor_dims(name: str, dims: Sequence[int] | None, total: int, n_sites: int) -> tuple[int, ...]:
    if dims is None:
        return balanced_factors(total, n_sites)
    dims = tuple(check_int(f"{name}[{i}]", d, minimum=1) for i, d in enumerate(dims))
    if len(dims) != n_sites or math.prod(dims) != total:
        raise ValueError(
            f"`{name}` must be {n_sites} integers whose product is {total}, got {dims}."
        )
    return dims


def _check_same_dims(a: MatrixProductOperator, b: MatrixProductOperator) -> None:
    if a.out_dims != b.out_dims or a.in_dims != b.in_dims:
        raise ValueError(
            f"the two operators must have equal dimensions, got {format_dims(a.out_dims)}x{format_dims(a.in_dims)} "
            f"and {format_dims(b.out_dims)}x{format_dims(b.in_dims)}."
        )
