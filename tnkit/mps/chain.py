"""What matrix product states and operators share: a chain of site tensors.

Site tensors have the left bond first and the right bond last, with physical
indices in between; the outer bonds have dimension 1. Arrays are stored read-only
and replaced, never written in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.linalg import peak_magnitude
from ..core.validate import check_int, check_site, inverse_scalar
from ..errors import NormRangeError

__all__ = [
    "TensorChain",
    "frozen",
    "checked_dense",
    "check_chain",
    "check_phys_dims",
    "direct_sum",
    "format_dims",
]


def frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (``a`` itself if already read-only)."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def checked_dense(dense: np.ndarray, tensors: Sequence[np.ndarray], what: str) -> np.ndarray:
    """``dense``, contracted from ``tensors``, unless the contraction left the float range.

    Raises :class:`~tnkit.errors.NormRangeError` when entries overflowed (infinity
    or NaN) or all underflowed to zero although no site tensor is zero and their
    scales multiply to below ``1e-300``; a dense array cannot hold such values.
    """
    peak = peak_magnitude(dense)
    if math.isfinite(peak) and peak > 0.0:
        return dense
    if math.isfinite(peak):  # all zero: a true zero, or underflow?
        scales = [peak_magnitude(t) for t in tensors]
        if min(scales) == 0.0 or sum(math.log(x) for x in scales) > math.log(1e-300):
            return dense
    size = "overflow" if not math.isfinite(peak) else "underflow"
    raise NormRangeError(
        f"the entries of the dense {what} {size} the float range (the norm is beyond what one "
        "array can hold); normalise first, or use log_norm()/log_amplitudes()."
    )


def format_dims(dims: tuple[int, ...]) -> str:
    """``dims`` for an error message or repr: one number if all equal, else the tuple (cut after 8)."""
    if len(set(dims)) == 1:
        return f"{dims[0]}"
    return str(dims) if len(dims) <= 8 else f"({', '.join(map(str, dims[:4]))}, ...)"


def check_chain(name: str, left_bonds: list[int], right_bonds: list[int]) -> None:
    """``ValueError`` naming ``name`` unless the bonds chain (right of ``i`` = left of ``i + 1``), outer bonds 1."""
    if left_bonds[0] != 1 or right_bonds[-1] != 1:
        raise ValueError(
            f"`{name}`: the outer bonds must have dimension 1, got {left_bonds[0]} on the left "
            f"of site 0 and {right_bonds[-1]} on the right of site {len(right_bonds) - 1}."
        )
    for i in range(len(left_bonds) - 1):
        if right_bonds[i] != left_bonds[i + 1]:
            raise ValueError(
                f"`{name}`: bond {i} has dimension {right_bonds[i]} on site {i} but "
                f"{left_bonds[i + 1]} on site {i + 1}."
            )


def check_phys_dims(name: str, phys_dim: Any, n_sites: int) -> tuple[int, ...]:
    """One physical dimension per site from an int (all sites) or a sequence of ``n_sites`` ints."""
    if np.ndim(phys_dim) == 0:
        return (check_int(name, phys_dim, minimum=1),) * n_sites
    dims = tuple(check_int(f"{name}[{i}]", d, minimum=1) for i, d in enumerate(phys_dim))
    if len(dims) != n_sites:
        raise ValueError(f"`{name}` must give {n_sites} dimensions (one per site), got {len(dims)}.")
    return dims


def direct_sum(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Site tensors of ``|a> + |b>``: block-diagonal bulk, concatenated ends.

    Works for MPS tensors ``(Dl, d, Dr)`` and MPO tensors ``(Dl, d_out, d_in, Dr)``.
    """
    n = len(a)
    dtype = np.result_type(*a, *b)
    if n == 1:
        return [(a[0] + b[0]).astype(dtype)]
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        phys = x.shape[1:-1]
        if i == 0:
            out.append(np.concatenate([x, y], axis=-1).astype(dtype))
        elif i == n - 1:
            out.append(np.concatenate([x, y], axis=0).astype(dtype))
        else:
            z = np.zeros((x.shape[0] + y.shape[0], *phys, x.shape[-1] + y.shape[-1]), dtype=dtype)
            z[: x.shape[0], ..., : x.shape[-1]] = x
            z[x.shape[0] :, ..., x.shape[-1] :] = y
            out.append(z)
    return out


class TensorChain:
    """Base class of :class:`~tnkit.MatrixProductState` and :class:`~tnkit.MatrixProductOperator`."""

    __slots__ = ("_tensors",)
    _tensors: list[np.ndarray]
    #: numpy operands on the left defer to our reflected operators (``2.0 * psi``,
    #: ``array @ mpo`` raising TypeError) instead of treating the chain as a sequence.
    __array_ufunc__ = None

    @property
    def n_sites(self) -> int:
        """Number of sites ``N``."""
        return len(self._tensors)

    def __len__(self) -> int:
        """Number of sites."""
        return len(self._tensors)

    @property
    def tensors(self) -> tuple[np.ndarray, ...]:
        """The site tensors (read-only arrays)."""
        return tuple(self._tensors)

    def __getitem__(self, i: int) -> np.ndarray:
        """Site ``i``'s tensor (negative ``i`` counts from the end)."""
        return self._tensors[check_site("i", i, self.n_sites)]

    @property
    def bond_dims(self) -> tuple[int, ...]:
        """Dimension of each of the ``N - 1`` bonds (bond ``b`` joins sites ``b`` and ``b + 1``)."""
        return tuple(t.shape[-1] for t in self._tensors[:-1])

    @property
    def max_bond_dim(self) -> int:
        """Largest bond dimension (1 for a product)."""
        return max(self.bond_dims, default=1)

    @property
    def dtype(self) -> np.dtype:
        """Common dtype of the site tensors."""
        return self._tensors[0].dtype

    @property
    def num_params(self) -> int:
        """Total number of entries of the site tensors."""
        return sum(t.size for t in self._tensors)

    # Algebra shared by states and operators; subclasses define ``__mul__`` and ``__add__``.

    def __truediv__(self, scalar: complex) -> Any:
        """Division by a nonzero scalar (its inverse must be a finite number)."""
        if not np.isscalar(scalar) or isinstance(scalar, (str, bytes)):
            return NotImplemented
        return self * inverse_scalar(scalar, type(self).__name__)

    def __neg__(self) -> Any:
        """The negative."""
        return self * -1.0

    def __sub__(self, other: Any) -> Any:
        """Exact difference of two chains of the same kind; the bond dimensions add."""
        if not isinstance(other, type(self)):
            return NotImplemented
        return self + (-other)
