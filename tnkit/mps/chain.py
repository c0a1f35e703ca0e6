"""What matrix product states and operators share: a chain of site tensors.

Site tensors have the left bond first and the right bond last, with physical
indices in between; the outer bonds have dimension 1. Arrays are stored read-only
and replaced, never written in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.validate import check_site

__all__ = ["TensorChain", "frozen"]


def frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (``a`` itself if already read-only)."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


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
        """Division by a scalar."""
        return self * (1.0 / scalar)

    def __neg__(self) -> Any:
        """The negative."""
        return self * -1.0

    def __sub__(self, other: Any) -> Any:
        """Exact difference of two chains of the same kind; the bond dimensions add."""
        if not isinstance(other, type(self)):
            return NotImplemented
        return self + (-other)
