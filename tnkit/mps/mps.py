"""Matrix product states.

Index conventions
-----------------
Site ``i`` holds a tensor ``A[i]`` of shape ``(D_i, d_i, D_{i+1})``: left bond,
physical index, right bond, with ``D_0 = D_N = 1``::

        d_0       d_1             d_{N-1}
         |         |                 |
    1 --A0-- D_1 --A1-- D_2 ... --A_{N-1}-- 1

``psi[s_0, ..., s_{N-1}] = A0[:, s_0, :] @ A1[:, s_1, :] @ ... @ A_{N-1}[:, s_{N-1}, :]``,
and dense vectors are ordered with site 0 the slowest index (big-endian), unless a
method's ``little_endian=True`` asks for Qiskit's order. Bond ``b`` joins sites ``b``
and ``b + 1``.

Canonical forms
---------------
The MPS keeps track of which sites are left- or right-isometric (see
:mod:`tnkit.mps.canonical`). ``canonicalize_(c)`` moves the orthogonality centre to
``c`` doing only the QR/LQ steps that are missing; measurements move it as they
need, which changes the gauge but never the state. Site arrays are stored
read-only and replaced, never written, so a copy of an MPS is cheap and safe.

Methods ending in ``_`` modify the MPS in place; the others return a new one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import DEFAULT_CUTOFF, peak_magnitude
from ..core.rng import as_generator, standard_normal
from ..core.threads import GEMM_THREAD_BOND, with_blas_threads
from ..core.validate import (
    DEFAULT_MAX_BYTES,
    as_tensor,
    check_cutoff,
    check_dtype,
    check_int,
    check_max_bond,
    check_memory,
    check_option,
    check_site,
)
from ..errors import NormRangeError
from ..io import load_arrays, register_loader, save_arrays
from . import canonical, gates, measure, overlap, sampling, truncation
from .chain import TensorChain, check_phys_dims, checked_dense, direct_sum, format_dims
from .chain import check_same_library, frozen, is_scalar, scalar_factor

__all__ = ["MatrixProductState", "MPS"]

def _own_bond(self: MatrixProductState, *args: Any, **kwargs: Any) -> int:
    return self.max_bond_dim


def _pair_bond(self: MatrixProductState, other: Any, *args: Any, **kwargs: Any) -> int:
    return max(self.max_bond_dim, getattr(other, "max_bond_dim", 1))


class MatrixProductState(TensorChain):
    """A matrix product state (tensor train) of ``N`` sites.

    Parameters
    ----------
    tensors : sequence of array_like
        Site tensors of shape ``(D_i, d_i, D_{i+1})`` with ``D_0 = D_N = 1``, of
        dtype float32, float64, complex64 or complex128 (integer and boolean arrays
        become float64); all sites are promoted to one common dtype.
    copy : bool
        Copy the arrays (by default they are shared, read-only).

    Raises
    ------
    ValueError
        If a tensor is not 3-dimensional, bond dimensions do not match, boundary
        bonds are not 1, or a tensor holds NaN or infinity.
    TypeError
        If a tensor's dtype is not numeric or is float16, long double or another
        dtype outside the four above.

    Notes
    -----
    Invariants every instance keeps (and :meth:`from_tensors` with
    ``validate=False`` relies on the caller for): at least one site; every site a
    read-only 3-d numpy array; bonds that chain, with outer bonds 1; one common
    dtype among float32, float64, complex64, complex128; finite entries; and a
    truthful canonical bookkeeping ``(left, right)`` (see :attr:`canonical_range`).

    Examples
    --------
    >>> import tnkit
    >>> psi = tnkit.MPS.random(10, max_bond=8, seed=0)
    >>> psi.bond_dims
    (2, 4, 8, 8, 8, 8, 8, 4, 2)
    >>> round(psi.norm(), 12)
    1.0
    """

    __slots__ = ("_left", "_right")
    _site_ndim = 3

    def __init__(self, tensors: Sequence[Any], *, copy: bool = False) -> None:
        super().__init__(tensors, copy=copy)
        self._left, self._right = 0, len(self._tensors)

    @classmethod
    def from_tensors(
        cls,
        tensors: Sequence[Any],
        *,
        canonical_range: tuple[int, int] | None = None,
        validate: bool = True,
    ) -> MatrixProductState:
        """An MPS of ``tensors``, optionally with known canonical bookkeeping.

        Parameters
        ----------
        tensors : sequence of array_like
            Site tensors ``(D_i, d_i, D_{i+1})``.
        canonical_range : (int, int), optional
            ``(left, right)``: sites ``< left`` are left-isometric and sites
            ``>= right`` right-isometric (see :attr:`canonical_range`). By default
            nothing is claimed, ``(0, N)``.
        validate : bool
            ``True`` (default): the tensors are checked as by the constructor and a
            given ``canonical_range`` is verified numerically (to 1e-10), raising
            ``ValueError`` if a site does not confirm it. ``False``: no check and
            no copy, for code that built the tensors itself (algorithms, products);
            the caller guarantees the invariants listed in the class notes, and
            ``tensors`` must be numpy arrays that are not written afterwards (they
            are stored as read-only views).

        Returns
        -------
        MatrixProductState
        """
        if not validate:
            left, right = (0, None) if canonical_range is None else canonical_range
            return cls._trusted(list(tensors), left, right)
        psi = cls(tensors)
        if canonical_range is not None:
            if len(canonical_range) != 2:
                raise ValueError(f"`canonical_range` must be a pair (left, right), got {canonical_range!r}.")
            left = check_int("canonical_range[0]", canonical_range[0], minimum=0)
            right = check_int("canonical_range[1]", canonical_range[1], minimum=1)
            if not psi.adopt_canonical_range(left, right):
                raise ValueError(
                    f"`canonical_range`=({left}, {right}) does not hold for these tensors: sites "
                    f"< {left} must be left- and sites >= {right} right-isometric (to 1e-10), "
                    f"with 0 <= left < {psi.n_sites} and 1 <= right <= {psi.n_sites}."
                )
        return psi

    @classmethod
    def _trusted(
        cls, tensors: list[np.ndarray], left: int = 0, right: int | None = None
    ) -> MatrixProductState:
        """Wrap tensors without checks: ``from_tensors(..., validate=False)``, kept for old callers."""
        obj = cls.__new__(cls)
        obj._tensors = [frozen(t) for t in tensors]
        obj._left = left
        obj._right = len(tensors) if right is None else right
        return obj

    # ------------------------------------------------------------------ construction

    @classmethod
    def random(
        cls,
        n_sites: int,
        max_bond: int,
        *,
        phys_dim: int | Sequence[int] = 2,
        dtype: Any = np.float64,
        seed: object = None,
        normalize: bool = True,
        max_bytes: float = DEFAULT_MAX_BYTES,
    ) -> MatrixProductState:
        """Random MPS with Gaussian entries and bonds ``min(max_bond, dims to either end)``.

        Parameters
        ----------
        n_sites : int
        max_bond : int
            Bond dimension in the bulk.
        phys_dim : int or sequence of int
            Physical dimension of every site, or one per site.
        dtype : numpy dtype
            ``float64``, ``complex128``, ``float32`` or ``complex64``.
        seed : None, int or numpy Generator
        normalize : bool
            Return a normalised state, in right-canonical form (centre at site 0).
        max_bytes : float
            Largest memory the site tensors may take (default
            ``DEFAULT_MAX_BYTES``, 8 GiB); larger requests
            raise ``ValueError`` before anything is allocated.
        """
        n_sites = check_int("n_sites", n_sites, minimum=1)
        max_bond = check_int("max_bond", max_bond, minimum=1)
        dtype = check_dtype("dtype", dtype)
        # every site holds at least one entry: refuse absurd lengths before listing the sites
        check_memory(n_sites * dtype.itemsize, max_bytes, what=f"{n_sites:,} site tensors", cause="`n_sites`")
        dims = check_phys_dims("phys_dim", phys_dim, n_sites)
        bonds = _max_bond_profile(dims, max_bond)
        n_entries = sum(bonds[i] * d * bonds[i + 1] for i, d in enumerate(dims))
        check_memory(
            n_entries * dtype.itemsize, max_bytes, what=f"the {n_sites} site tensors",
            cause=f"`max_bond`={max_bond}, `phys_dim`={format_dims(dims)}, dtype {dtype}",
        )
        rng = as_generator(seed)
        tensors = []
        for i, d in enumerate(dims):
            shape = (bonds[i], d, bonds[i + 1])
            t = standard_normal(rng, shape, is_complex=dtype.kind == "c")
            tensors.append((t / math.sqrt(bonds[i] * d)).astype(dtype))
        psi = cls._trusted(tensors)
        if normalize:
            psi.canonicalize_(0)
            psi.normalize_()
        return psi

    @classmethod
    def product_state(
        cls, states: Sequence[Any], *, phys_dim: int | Sequence[int] | None = None, dtype: Any = None
    ) -> MatrixProductState:
        """Product state from basis indices or local vectors.

        Parameters
        ----------
        states : sequence of int or of 1-d array_like, or str of digits
            ``states[i]`` is a basis index (needs ``phys_dim``, default 2) or the
            local state vector of site ``i``. A string such as ``"0110"`` gives
            basis indices.
        phys_dim : int or sequence of int, optional
            Physical dimensions for basis indices.
        dtype : numpy dtype, optional
            float32, float64, complex64 or complex128; by default that of the local
            vectors (float64 for basis indices).
        """
        if dtype is not None:
            dtype = check_dtype("dtype", dtype)
        if isinstance(states, str):
            if not states.isdigit():
                raise ValueError(f"`states` as a string must be digits, got {states!r}.")
            states = [int(c) for c in states]
        states = list(states)
        if not states:
            raise ValueError("`states` must name at least one site.")
        dims = check_phys_dims("phys_dim", 2 if phys_dim is None else phys_dim, len(states))
        tensors = []
        for i, (s, d) in enumerate(zip(states, dims)):
            if np.ndim(s) == 0:
                k = check_int(f"states[{i}]", s, minimum=0)
                if k >= d:
                    raise ValueError(f"`states[{i}]` = {k} is not a basis state of dimension {d}.")
                v = np.zeros(d)
                v[k] = 1.0
            else:
                v = as_tensor(f"states[{i}]", s, ndim=1)
                if phys_dim is not None and len(v) != d:
                    raise ValueError(f"`states[{i}]` has {len(v)} entries but `phys_dim` gives {d} for site {i}.")
            tensors.append(v.reshape(1, -1, 1))
        dtype = np.result_type(*tensors) if dtype is None else np.dtype(dtype)
        return cls._trusted([t.astype(dtype) for t in tensors])

    @classmethod
    def from_dense(
        cls,
        vector: Any,
        phys_dims: int | Sequence[int] = 2,
        *,
        max_bond: int | None = None,
        cutoff: float = DEFAULT_CUTOFF,
        little_endian: bool = False,
        return_report: bool = False,
    ) -> MatrixProductState | tuple[MatrixProductState, truncation.TruncationReport]:
        """MPS of a dense vector by sequential truncated SVD (TT-SVD).

        Parameters
        ----------
        vector : array_like, shape (prod(phys_dims),) or phys_dims
        phys_dims : int or sequence of int
            One dimension per site; an int ``d`` means ``log_d(len(vector))`` sites.
        max_bond, cutoff
            Truncation (see :mod:`tnkit.core.linalg`).
        little_endian : bool
            Site 0 is the fastest index of ``vector`` (Qiskit's order).
        return_report : bool
            Also return the :class:`TruncationReport`; its ``error`` is exactly
            ``||v - psi||**2 / ||v||**2``.

        The result is left-canonical (centre at the last site), unless its norm is
        too large or small for one tensor (entries beyond ``1e280`` or below
        ``1e-280``): then the norm is spread over every site, without canonical
        bookkeeping. The decomposition itself runs on ``vector`` scaled to unit
        peak, so the report is exact at any magnitude.
        """
        v = as_tensor("vector", vector)
        dims = _dims_for_dense(v, phys_dims)
        max_bond = check_max_bond(max_bond)
        cutoff = check_cutoff(cutoff)
        if little_endian:  # site 0 is the fastest index: read the axes in reverse
            v = backend.permute(v.reshape(tuple(reversed(dims))), tuple(reversed(range(len(dims)))))
        v = v.reshape(1, -1)
        peak = peak_magnitude(v)
        if peak > 0:  # work at unit peak: squares of entries near the float limits stay finite
            v = v / peak
        norm2 = backend.norm2(v)
        n = len(dims)
        tensors = []
        discarded = []
        for i in range(n - 1):
            rest = v.shape[1] // dims[i]
            u, s, vh, disc = truncation.truncated_svd(
                v.reshape(v.shape[0] * dims[i], rest), max_bond=max_bond, cutoff=cutoff
            )
            tensors.append(u.reshape(v.shape[0], dims[i], len(s)))
            discarded.append(disc / norm2 if norm2 > 0 else 0.0)
            v = s[:, None] * vh
        tensors.append(v.reshape(v.shape[0], dims[-1], 1))
        psi = cls._trusted(tensors, left=n - 1, right=n)
        if peak > 0 and peak != 1.0:
            psi = _scaled(psi, 1.0, math.log(peak))
        if not return_report:
            return psi
        error = float(sum(discarded))
        report = truncation.TruncationReport(
            "svd", error, tuple(discarded), psi.bond_dims, fidelity=1.0 - error
        )
        return psi, report

    @classmethod
    def from_quimb(cls, qmps: Any) -> MatrixProductState:
        """Convert a ``quimb.tensor.MatrixProductState`` (exact)."""
        from .quimb import mps_from_quimb

        return mps_from_quimb(qmps)

    @classmethod
    def from_qiskit(cls, circuit: Any, **kwargs: Any) -> MatrixProductState:
        """Simulate a Qiskit circuit from ``|0...0>``; see :func:`tnkit.mps.qiskit.from_qiskit`."""
        from .qiskit import from_qiskit

        return from_qiskit(circuit, **kwargs)

    @classmethod
    def load(cls, path: Any, *, max_bytes: float = DEFAULT_MAX_BYTES) -> MatrixProductState:
        """Read an MPS written by :meth:`save`; never executes code from the file.

        Files whose arrays would take more than ``max_bytes`` (default 8 GiB, read
        from the file's headers first) are refused; see :func:`tnkit.io.read_tnkit_file`.
        """
        tensors, meta = load_arrays(path, "MatrixProductState", max_bytes=max_bytes)
        psi = cls(tensors)
        claimed = meta.get("canonical_range")
        if claimed is not None and claimed.shape == (2,) and claimed.dtype.kind in "iu":
            psi.adopt_canonical_range(int(claimed[0]), int(claimed[1]))  # re-checked, never trusted
        return psi

    # ------------------------------------------------------------------ inspection

    def __setitem__(self, i: int, tensor: Any) -> None:
        """Replace site ``i``'s tensor (same bonds); the canonical bookkeeping is updated."""
        i = check_site("i", i, self.n_sites)
        new = as_tensor("tensor", tensor, ndim=3)
        old = self._tensors[i]
        if new.shape[0] != old.shape[0] or new.shape[2] != old.shape[2]:
            raise ValueError(
                f"a tensor for site {i} must keep the bonds ({old.shape[0]}, ·, {old.shape[2]}), "
                f"got shape {new.shape}."
            )
        check_same_library("tensor", [self._tensors[0], new])
        dtype = check_dtype("tensor.dtype", backend.result_type(self._tensors[0], new))
        if dtype != backend.numpy_dtype(self.dtype):
            self._tensors = [frozen(backend.astype(t, dtype)) for t in self._tensors]
        self._set_site(i, backend.astype(new, dtype), keeps_isometry=False)

    @property
    def phys_dims(self) -> tuple[int, ...]:
        """Physical dimension of each site."""
        return tuple(t.shape[1] for t in self._tensors)

    @property
    def center(self) -> int | None:
        """The orthogonality centre if the MPS is in mixed canonical form, else ``None``."""
        if self._left >= self._right - 1:
            return max(self._right - 1, 0)
        return None

    @property
    def canonical_range(self) -> tuple[int, int]:
        """``(left, right)``: sites ``< left`` are left-, sites ``>= right`` right-isometric."""
        return self._left, self._right

    def __repr__(self) -> str:
        centre = self.center
        return (
            f"MatrixProductState(n_sites={self.n_sites}, phys_dims={format_dims(self.phys_dims)}, "
            f"max_bond={self.max_bond_dim}, dtype={self.dtype}, "
            f"center={'none' if centre is None else centre})"
        )

    def copy(self) -> MatrixProductState:
        """A new MPS sharing the (read-only) site arrays."""
        return type(self)._trusted(list(self._tensors), self._left, self._right)

    def _with_tensors(self, tensors: list[Any]) -> MatrixProductState:
        return type(self)._trusted(tensors, self._left, self._right)

    # ------------------------------------------------------------------ internal mutation

    def _set_site(self, i: int, tensor: np.ndarray, *, keeps_isometry: bool) -> None:
        self._tensors[i] = frozen(tensor)
        if not keeps_isometry:
            self._left = min(self._left, i)
            self._right = max(self._right, i + 1)

    def _replace_tensors(self, tensors: list[np.ndarray], *, left: int, right: int) -> None:
        self._tensors = [frozen(t) for t in tensors]
        self._left, self._right = left, right

    def adopt_canonical_range(self, left: int, right: int, atol: float = 1e-10) -> bool:
        """Adopt the bookkeeping ``(left, right)`` (e.g. read from a file) if the sites confirm it.

        Each site claimed isometric is checked numerically (deviation of its Gram
        matrix from the identity at most ``atol``); the claim is adopted and
        ``True`` returned only if all are, else nothing changes and ``False`` is
        returned. Used to restore a saved canonical form without redoing the QRs.
        """
        n = self.n_sites
        if not (0 <= left <= n - 1 and 1 <= right <= n):
            return False
        t = self._tensors
        ok = all(canonical.left_isometry_error(t[i]) <= atol for i in range(left)) and all(
            canonical.right_isometry_error(t[i]) <= atol for i in range(right, n)
        )
        if ok:
            self._left, self._right = left, right
        return ok

    _adopt_verified_canonical_range = adopt_canonical_range  # the former private name

    # ------------------------------------------------------------------ canonical forms

    @with_blas_threads(_own_bond)
    def canonicalize_(self, center: int) -> MatrixProductState:
        """Move the orthogonality centre to ``center`` in place (QR/LQ, only missing steps)."""
        center = check_site("center", center, self.n_sites)
        if self._left >= center and self._right <= center + 1:
            return self
        tensors = list(self._tensors)
        left, right = canonical.move_center(tensors, self._left, self._right, center)
        self._replace_tensors(tensors, left=left, right=right)
        return self

    def canonicalize(self, center: int) -> MatrixProductState:
        """A copy in mixed canonical form about ``center``."""
        return self.copy().canonicalize_(center)

    def left_canonicalize_(self) -> MatrixProductState:
        """In place: every site but the last left-isometric (centre ``N - 1``)."""
        return self.canonicalize_(self.n_sites - 1)

    def right_canonicalize_(self) -> MatrixProductState:
        """In place: every site but the first right-isometric (centre 0)."""
        return self.canonicalize_(0)

    @with_blas_threads(_own_bond)
    def is_canonical(self, center: int | None = None, *, atol: float = 1e-10) -> bool:
        """Check numerically that sites left of ``center`` are left- and right of it right-isometric.

        With ``center=None`` the tracked centre is checked (``False`` if there is none).
        """
        if center is None:
            center = self.center
            if center is None:
                return False
        center = check_site("center", center, self.n_sites)
        t = self._tensors
        return all(canonical.left_isometry_error(t[i]) <= atol for i in range(center)) and all(
            canonical.right_isometry_error(t[i]) <= atol for i in range(center + 1, self.n_sites)
        )

    # ------------------------------------------------------------------ norms and overlaps

    @with_blas_threads(_pair_bond, GEMM_THREAD_BOND)
    def log_inner(self, other: MatrixProductState) -> tuple[complex | float, float]:
        """``<self|other>`` as ``(phase, log|value|)``; safe for any number of sites."""
        _check_same_sites(self, other)
        return overlap.log_overlap(self._tensors, other._tensors)

    def inner(self, other: MatrixProductState) -> complex | float:
        """``<self|other>`` (``self`` conjugated)."""
        return overlap.overlap_value(*self.log_inner(other))

    @with_blas_threads(_own_bond)
    def log_norm(self) -> float:
        """``log ||psi||``; safe for any number of sites."""
        centre = self.center
        if centre is not None:
            return canonical.log_frobenius_norm(self._tensors[centre])
        return 0.5 * overlap.log_overlap(self._tensors, self._tensors)[1]

    def norm(self) -> float:
        """``||psi|| = sqrt(<psi|psi>)`` (``inf`` beyond the float range; see :meth:`log_norm`)."""
        log_norm = self.log_norm()
        return math.inf if log_norm > 709.0 else math.exp(log_norm)

    def normalize_(self) -> MatrixProductState:
        """Scale to unit norm in place.

        Safe for norms beyond the float range and for subnormal entries: each site
        that changes is first divided by its largest entry; without a centre the
        remaining factor is spread over the non-isometric sites (over all sites,
        dropping the canonical bookkeeping, if those few cannot hold it).

        Raises
        ------
        ValueError
            For the zero state.
        """
        log_norm = self.log_norm()
        if log_norm == -math.inf:
            raise ValueError("cannot normalise the zero state.")
        centre = self.center
        if centre is not None:
            t = self._tensors[centre]
            t = t / peak_magnitude(t)
            self._set_site(centre, t / math.sqrt(backend.norm2(t)), keeps_isometry=True)
            return self
        tensors = list(self._tensors)
        try:  # keep the isometries: spread over the sites not tracked as such
            canonical.spread_log_scale(tensors, range(self._left, self._right), 1.0, -log_norm)
            self._replace_tensors(tensors, left=self._left, right=self._right)
        except NormRangeError:
            tensors = list(self._tensors)
            canonical.spread_log_scale(tensors, range(self.n_sites), 1.0, -log_norm)
            self._replace_tensors(tensors, left=0, right=self.n_sites)
        return self

    def normalized(self) -> MatrixProductState:
        """A normalised copy."""
        return self.copy().normalize_()

    def fidelity(self, other: MatrixProductState) -> float:
        """``|<self|other>|**2 / (<self|self> <other|other>)``."""
        _, log_abs = self.log_inner(other)
        return math.exp(2 * log_abs - 2 * self.log_norm() - 2 * other.log_norm()) if log_abs > -math.inf else 0.0

    # ------------------------------------------------------------------ algebra

    def __mul__(self, scalar: complex) -> MatrixProductState:
        """``scalar * |psi>``, scaling one non-isometric site (dtype promoted if needed).

        If that site's entries would leave ``[1e-280, 1e280]`` (overflow, or
        subnormal numbers that lose precision), the factor is spread over every
        site instead and the canonical bookkeeping is dropped; a factor that even
        ``N`` sites cannot hold raises :class:`~tnkit.errors.NormRangeError`.
        """
        if not is_scalar(scalar):
            return NotImplemented
        dtype, phase, log_abs = scalar_factor(scalar, self.dtype, what="an MPS", product="scalar * psi")
        out = self if dtype == backend.numpy_dtype(self.dtype) else type(self)._trusted(
            [backend.astype(t, dtype) for t in self._tensors], self._left, self._right
        )
        return _scaled(out, phase, log_abs)

    __rmul__ = __mul__

    def __add__(self, other: MatrixProductState) -> MatrixProductState:
        """Exact sum; the bond dimensions add (compress afterwards if needed)."""
        if not isinstance(other, MatrixProductState):
            return NotImplemented
        _check_same_sites(self, other)
        return type(self)._trusted(direct_sum(self._tensors, other._tensors))

    def conj(self) -> MatrixProductState:
        """Complex conjugate state."""
        return type(self)._trusted([t.conj() for t in self._tensors], self._left, self._right)

    # ------------------------------------------------------------------ dense and amplitudes

    @with_blas_threads(_own_bond)
    def to_dense(self, *, little_endian: bool = False, max_size: int = 2**26) -> np.ndarray:
        """The state vector, of length ``prod(phys_dims)`` (site 0 slowest unless ``little_endian``)."""
        size = math.prod(self.phys_dims)
        if size > max_size:
            raise ValueError(
                f"the dense vector would have {size:,} entries, more than `max_size`={max_size:,}."
            )
        v = self._tensors[0].reshape(-1, self._tensors[0].shape[2])
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # checked below
            for t in self._tensors[1:]:
                v = contract("xa,asb->xsb", v, t).reshape(-1, t.shape[2])
        v = checked_dense(v.reshape(-1), self._tensors, "state vector")
        if little_endian:
            v = backend.permute(v.reshape(self.phys_dims), tuple(reversed(range(self.n_sites)))).reshape(-1)
        return v

    @with_blas_threads(_own_bond)
    def amplitudes(self, configs: Any) -> np.ndarray:
        """``psi(s)`` for each row of an integer array ``configs`` of shape ``(n, N)``."""
        return sampling.amplitudes(self, configs)

    def amplitude(self, config: Sequence[int]) -> complex | float:
        """``psi(s)`` of one basis state ``s`` (a sequence of ``N`` integers)."""
        return self.amplitudes(np.asarray(config)[None, :])[0].item()

    @with_blas_threads(_own_bond)
    def log_amplitudes(self, configs: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(phase, log|psi(s)|)`` per row of ``configs``; safe for long chains."""
        return sampling.log_amplitudes(self, configs)

    def probabilities(self, configs: Any) -> np.ndarray:
        """``|psi(s)|**2 / <psi|psi>`` per row of ``configs`` (``ValueError`` for the zero state)."""
        log_norm = self.log_norm()
        if log_norm == -math.inf:
            raise ValueError("the state is the zero vector (norm 0): its probabilities are undefined.")
        _, log_abs = self.log_amplitudes(configs)
        return np.exp(2 * log_abs - 2 * log_norm)

    def sample(
        self, n_samples: int, *, seed: object = None, return_log_prob: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Exact samples from ``|psi(s)|**2``; see :func:`tnkit.mps.sampling.sample`."""
        return sampling.sample(self, n_samples, seed=seed, return_log_prob=return_log_prob)

    # ------------------------------------------------------------------ truncation

    @with_blas_threads(_own_bond)
    def compress(
        self,
        *,
        max_bond: int | None = None,
        cutoff: float = DEFAULT_CUTOFF,
        method: str = "svd",
        max_sweeps: int = 8,
        tol: float = 1e-10,
        seed: Any = None,
    ) -> tuple[MatrixProductState, truncation.TruncationReport]:
        """Compressed copy and what was discarded.

        Parameters
        ----------
        max_bond : int, optional
            Largest bond dimension kept.
        cutoff : float
            Largest relative discarded weight per bond (see :mod:`tnkit.core.linalg`).
        method : {"svd", "dm", "src", "fit"}
            ``"svd"``: one canonicalisation plus one truncated-SVD sweep; its
            ``error`` is exact. ``"dm"``: the same truncation chosen from reduced
            density matrices built in the current gauge, with no canonicalisation at
            the full bond: several times faster when the bond shrinks a lot, exact
            error, but weights below 1e-14 of the norm are treated as noise.
            ``"fit"``: start from the SVD result and improve it by two-site
            variational sweeps (``max_sweeps``, ``tol``); the report carries the
            exact fidelity. ``"src"``: successive randomized compression
            (:func:`tnkit.mps.truncation.randomized_truncation`) to exactly
            ``max_bond`` (required; ``cutoff`` unused), GEMMs and small QRs only:
            fastest for large reductions, error a little above ``"svd"``'s. The
            result is the orthogonal projection of the input onto a subspace, so the
            report's exact fidelity is ``||out||**2 / ||self||**2``: free when the
            input has a canonical centre, one transfer sweep otherwise.
        seed : None, int or numpy.random.Generator
            Randomness of the ``"src"`` method.

        Returns
        -------
        (MatrixProductState, TruncationReport)

        Notes
        -----
        Any norm is handled: a state whose norm no single tensor can hold (say
        ``1e-1600`` from a long chain of small tensors) is compressed normalised and
        the norm put back spread over the sites, so that result has no canonical
        bookkeeping. The zero state compresses to itself with ``error`` 0.
        """
        max_bond = check_max_bond(max_bond)
        cutoff = check_cutoff(cutoff)
        check_option("method", method, _COMPRESS_METHODS)
        if method == "src" and max_bond is None:
            raise ValueError("method 'src' compresses to a fixed bond: give `max_bond`.")
        max_sweeps = check_int("max_sweeps", max_sweeps, minimum=1)
        options = dict(
            max_bond=max_bond, cutoff=cutoff, method=method, max_sweeps=max_sweeps, tol=tol, seed=seed
        )
        if method == "svd" or _norm_fits_one_tensor(self):
            try:
                return self._compress(**options)
            except NormRangeError:  # the norm left the float range when gathered on one site
                pass
        # Compress the normalised state (safe: each site rescaled alone) and put the norm back.
        log_norm = self.log_norm()
        if log_norm == -math.inf:
            return self._compress(**options)
        out, report = self.normalized()._compress(**options)
        return _scaled(out, 1.0, log_norm), report

    def _compress(
        self, *, max_bond: int | None, cutoff: float, method: str, max_sweeps: int, tol: float, seed: Any
    ) -> tuple[MatrixProductState, truncation.TruncationReport]:
        """:meth:`compress` on checked arguments, for a norm that one site tensor can hold."""
        options = dict(max_bond=max_bond, cutoff=cutoff, max_sweeps=max_sweeps, tol=tol, seed=seed)
        return _COMPRESS_METHODS[method](self, **options)

    # ------------------------------------------------------------------ measurements

    @with_blas_threads(_own_bond)
    def local_expectation(self, op: Any, sites: int | tuple[int, int]) -> complex | float:
        """``<O>`` of a one- or two-site operator; see :func:`tnkit.mps.measure.local_expectation`."""
        return measure.local_expectation(self, op, sites)

    @with_blas_threads(_own_bond)
    def local_expectations(self, op: Any) -> np.ndarray:
        """``<O_i>`` of a one-site operator at every site (one sweep of the centre)."""
        return np.real_if_close(
            np.array([measure.local_expectation(self, op, i) for i in range(self.n_sites)]), tol=1000
        )

    def expectation(self, mpo: Any, *, normalize: bool = True) -> complex | float:
        """``<psi|W|psi>`` of an MPO, divided by ``<psi|psi>`` when ``normalize``."""
        from .mpo import MatrixProductOperator

        if not isinstance(mpo, MatrixProductOperator):
            raise TypeError(f"`mpo` must be a MatrixProductOperator, got {type(mpo).__name__}.")
        return mpo.expectation(self, normalize=normalize)

    @with_blas_threads(_own_bond)
    def correlation(self, op_a: Any, op_b: Any, i: int, j: int, *, connected: bool = False) -> complex | float:
        """``<A_i B_j>``; see :func:`tnkit.mps.measure.correlation`."""
        return measure.correlation(self, op_a, op_b, i, j, connected=connected)

    @with_blas_threads(_own_bond)
    def correlation_matrix(self, op_a: Any, op_b: Any, *, connected: bool = False) -> np.ndarray:
        """``C[i, j] = <A_i B_j>`` for all pairs; see :func:`tnkit.mps.measure.correlation_matrix`."""
        return measure.correlation_matrix(self, op_a, op_b, connected=connected)

    @with_blas_threads(_own_bond)
    def reduced_density_matrix(self, sites: int | tuple[int, int]) -> np.ndarray:
        """One- or two-site reduced density matrix of the normalised state."""
        return measure.reduced_density_matrix(self, sites)

    @with_blas_threads(_own_bond)
    def schmidt_values(self, bond: int | None = None) -> np.ndarray | list[np.ndarray]:
        """Normalised Schmidt coefficients across ``bond`` (or all bonds)."""
        return measure.schmidt_values(self, bond)

    @with_blas_threads(_own_bond)
    def entanglement_entropy(
        self, bond: int | None = None, *, alpha: float = 1.0, base: float | None = None
    ) -> float | np.ndarray:
        """Von Neumann (``alpha=1``) or Rényi entropy across ``bond``, or at every bond.

        In nats (natural logarithm) by default; ``base=2`` gives bits, the unit
        quimb's ``entropy`` reports (any ``base`` > 0 other than 1 is accepted).
        """
        scale = measure.log_base(base)
        return measure.entanglement_entropy(self, bond, alpha=alpha) / scale

    @with_blas_threads(_own_bond)
    def mutual_information(self, i: int, j: int, *, base: float | None = None) -> float:
        """Mutual information ``I(i:j)``, in nats by default (``base=2``: bits)."""
        scale = measure.log_base(base)
        return measure.mutual_information(self, i, j) / scale

    @with_blas_threads(_own_bond)
    def mutual_information_matrix(self, *, base: float | None = None) -> np.ndarray:
        """``I(i:j)`` for all pairs of sites, in nats by default (``base=2``: bits)."""
        scale = measure.log_base(base)
        return measure.mutual_information_matrix(self) / scale

    # ------------------------------------------------------------------ gates and operators

    @with_blas_threads(_own_bond)
    def apply_gate_(
        self,
        gate: Any,
        sites: int | Sequence[int],
        *,
        max_bond: int | None = None,
        cutoff: float = DEFAULT_CUTOFF,
    ) -> float:
        """Apply a one- or two-site gate in place; return the relative discarded weight.

        See :mod:`tnkit.mps.gates` for conventions; distant sites are joined by swaps.
        """
        return gates.apply_gate_(
            self, gate, sites, max_bond=check_max_bond(max_bond), cutoff=check_cutoff(cutoff)
        )

    def apply_gate(
        self,
        gate: Any,
        sites: int | Sequence[int],
        *,
        max_bond: int | None = None,
        cutoff: float = DEFAULT_CUTOFF,
    ) -> MatrixProductState:
        """A copy with ``gate`` applied; see :meth:`apply_gate_`."""
        out = self.copy()
        out.apply_gate_(gate, sites, max_bond=max_bond, cutoff=cutoff)
        return out

    def apply_mpo(self, mpo: Any, **kwargs: Any) -> Any:
        """``W |psi>``; see :func:`tnkit.mps.apply.apply_mpo` for methods and options."""
        from .apply import apply_mpo

        return apply_mpo(mpo, self, **kwargs)

    # ------------------------------------------------------------------ interop and files

    def to_quimb(self) -> Any:
        """An equal ``quimb.tensor.MatrixProductState``."""
        from .quimb import mps_to_quimb

        return mps_to_quimb(self)

    def save(self, path: Any) -> Any:
        """Write to ``.npz`` (schema-versioned, no pickle) atomically; return the path written.

        Tensors of another array library are copied to numpy for the file.
        """
        left, right = self.canonical_range
        arrays = [backend.to_numpy(t) for t in self._tensors]
        return save_arrays(path, "MatrixProductState", arrays, {"canonical_range": [left, right]})


MPS = MatrixProductState
register_loader("MatrixProductState", MatrixProductState.load)


# ---------------------------------------------------------------------- compression methods


def _compress_svd(psi: MatrixProductState, *, max_bond: int | None, cutoff: float, **_: Any):
    tensors, (left, right), report = truncation.svd_compress(
        psi._tensors, psi._left, psi._right, max_bond=max_bond, cutoff=cutoff
    )
    return type(psi)._trusted(tensors, left, right), report


def _compress_dm(psi: MatrixProductState, *, max_bond: int | None, cutoff: float, **_: Any):
    tensors, discarded = truncation.density_matrix_truncation(psi._tensors, max_bond=max_bond, cutoff=cutoff)
    error = float(sum(discarded))
    out = type(psi)._trusted(tensors, psi.n_sites - 1, psi.n_sites)
    return out, truncation.TruncationReport("dm", error, tuple(discarded), out.bond_dims, 1.0 - error)


def _compress_src(psi: MatrixProductState, *, max_bond: int, seed: Any, **_: Any):
    tensors = truncation.randomized_truncation(psi._tensors, max_bond=max_bond, rng=as_generator(seed))
    out = type(psi)._trusted(tensors, 0, 1)
    # The result is the orthogonal projection of psi onto the span of its right
    # isometries, so fidelity = ||out||^2 / ||psi||^2 (free when psi has a centre).
    log_ratio = 2 * (out.log_norm() - psi.log_norm())
    fidelity = min(math.exp(log_ratio), 1.0) if log_ratio > -math.inf else 0.0
    bonds = out.bond_dims
    return out, truncation.TruncationReport("src", 1.0 - fidelity, (math.nan,) * len(bonds), bonds, fidelity)


def _compress_fit(
    psi: MatrixProductState, *, max_bond: int | None, cutoff: float, max_sweeps: int, tol: float, **_: Any
):
    guess, _report = _compress_svd(psi, max_bond=max_bond, cutoff=cutoff)
    guess.canonicalize_(0)
    fitted, report = truncation.fit_compress(
        psi._tensors,
        list(guess._tensors),
        max_bond=max_bond,
        cutoff=cutoff,
        max_sweeps=max_sweeps,
        tol=tol,
        target_norm2=math.exp(2 * psi.log_norm()),
    )
    return type(psi)._trusted(fitted, 0, 1), report


#: The methods of :meth:`MatrixProductState.compress`: ``(psi, **options) -> (MPS, TruncationReport)``.
_COMPRESS_METHODS = {"svd": _compress_svd, "dm": _compress_dm, "src": _compress_src, "fit": _compress_fit}


# ---------------------------------------------------------------------- helpers


def _norm_fits_one_tensor(psi: MatrixProductState) -> bool:
    """Whether the norm of ``psi`` can safely be gathered on one site: a cheap bound.

    Isometric sites have entries of order 1, so the product of the largest entries
    of the other sites bounds the norm's scale; ``False`` sends the caller to the
    normalised route (also for a zero site, which that route handles).
    """
    log_scale = 0.0
    for t in psi._tensors[psi._left : psi._right]:
        peak = peak_magnitude(t)
        if peak == 0.0:
            return False
        log_scale += math.log(peak)
    return _LOG_SAFE[0] < log_scale < _LOG_SAFE[1]


#: Scales of the gathered norm that are safe for every method (squares stay finite).
_LOG_SAFE = (-300.0, 300.0)


def _scaled(psi: MatrixProductState, phase: complex | float, log_abs: float) -> MatrixProductState:
    """``psi`` times ``phase * exp(log_abs)``, every entry kept in the float range.

    See :func:`tnkit.mps.canonical.scale_tensors`; the canonical bookkeeping is
    dropped when the factor had to be spread over the sites.
    """
    tensors = list(psi._tensors)
    site = psi.center if psi.center is not None else psi._left
    if canonical.scale_tensors(tensors, site, range(len(tensors)), phase, log_abs):
        return type(psi)._trusted(tensors, 0, len(tensors))
    return type(psi)._trusted(tensors, psi._left, psi._right)


def _dims_for_dense(v: np.ndarray, phys_dims: Any) -> tuple[int, ...]:
    size = backend.numel(v)
    if np.ndim(phys_dims) == 0:
        d = check_int("phys_dims", phys_dims, minimum=2)
        n = round(math.log(size) / math.log(d)) if size > 1 else 1
        if d**n != size:
            raise ValueError(f"`vector` has {size} entries, which is not a power of `phys_dims`={d}.")
        return (d,) * max(n, 1)
    dims = tuple(check_int(f"phys_dims[{i}]", d, minimum=1) for i, d in enumerate(phys_dims))
    if math.prod(dims) != size:
        raise ValueError(
            f"`vector` has {size} entries but `phys_dims` {dims} multiply to {math.prod(dims)}."
        )
    return dims


def _max_bond_profile(dims: Sequence[int], max_bond: int) -> list[int]:
    """Bonds ``min(max_bond, prod of dims to the left, prod to the right)``, with 1 at the ends."""
    n = len(dims)
    bonds = [1] * (n + 1)
    left = 1
    for i in range(1, n):
        left = min(left * dims[i - 1], max_bond)
        bonds[i] = left
    right = 1
    for i in range(n - 1, 0, -1):
        right = min(right * dims[i], max_bond)
        bonds[i] = min(bonds[i], right)
    return bonds


def _check_same_sites(a: MatrixProductState, b: MatrixProductState) -> None:
    if not isinstance(b, MatrixProductState):
        raise TypeError(f"expected a MatrixProductState, got {type(b).__name__}.")
    if a.phys_dims != b.phys_dims:
        raise ValueError(
            f"the two states must have the same physical dimensions, got {format_dims(a.phys_dims)} "
            f"on {a.n_sites} sites and {format_dims(b.phys_dims)} on {b.n_sites} sites."
        )


