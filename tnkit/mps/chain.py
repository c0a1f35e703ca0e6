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

from ..core import backend
from ..core.linalg import peak_magnitude
from ..core.validate import as_tensor, check_dtype, check_int, check_option, check_site, inverse_scalar
from ..errors import NormRangeError

__all__ = [
    "TensorChain",
    "frozen",
    "checked_dense",
    "check_chain",
    "check_phys_dims",
    "direct_sum",
    "format_dims",
    "check_same_library",
    "site_arrays",
    "is_scalar",
    "scalar_factor",
    "scalar_dtype",
    "placed_like",
    "converted",
]


def frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view of a numpy ``a`` (``a`` itself if already read-only, or not numpy)."""
    if isinstance(a, np.ndarray) and a.flags.writeable:
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


def check_same_library(name: str, arrays: Sequence[Any]) -> None:
    """``TypeError`` naming ``name`` unless all ``arrays`` are of one array library and on one device."""
    places = {(backend.library_of(a), backend.device_of(a)) for a in arrays}
    if len(places) > 1:
        listed = ", ".join(f"{lib} on {dev}" for lib, dev in sorted(places))
        raise TypeError(
            f"`{name}` must all be arrays of one library on one device, got {listed}; convert them "
            "first (or convert the network with .to(...))."
        )


def site_arrays(
    name: str,
    tensors: Any,
    *,
    ndim: int | None = None,
    labels: Sequence[Any] | None = None,
    copy: bool = False,
) -> list[Any]:
    """``tensors`` checked by :func:`~tnkit.core.validate.as_tensor`, of one library and device.

    Each is named ``name[label]`` in errors (``labels`` default to the positions);
    ``copy`` copies the arrays after the checks.
    """
    items = enumerate(tensors) if labels is None else zip(labels, tensors, strict=True)
    arrays = [as_tensor(f"{name}[{k}]", t, ndim=ndim) for k, t in items]
    check_same_library(name, arrays)
    if copy:
        arrays = [backend.copy(a) for a in arrays]
    return arrays


def converted(tensors: Sequence[Any], what: str, library: str | None, device: Any, dtype: Any) -> list[Any]:
    """``tensors`` (``None`` entries kept) converted by :func:`tnkit.core.backend.convert`, arguments checked first.

    ``library`` defaults to the tensors' own; a complex ``what`` cannot become real.
    """
    arrays = [t for t in tensors if t is not None]
    library = backend.library_of(arrays[0]) if library is None else library
    check_option("library", library, backend.LIBRARIES)
    if dtype is not None:
        dtype = check_dtype("dtype", dtype)
        if backend.is_complex(arrays[0].dtype) and dtype.kind != "c":
            raise ValueError(
                f"`dtype`: a complex {what} cannot become {dtype} (the imaginary parts would be dropped); "
                "convert a real one, or take real parts of the tensors yourself."
            )
    return [None if t is None else backend.convert(t, library, device=device, dtype=dtype) for t in tensors]


def placed_like(chain: Any, reference: Any) -> Any:
    """``chain`` (an operator) with arrays of ``reference``'s library and device, converted once if needed.

    An MPO of numpy arrays applied to a state on a GPU moves there before the
    sweep, not one site per contraction.
    """
    lib, dev = reference.backend, reference.device
    if chain.backend == lib and chain.device == dev:
        return chain
    return chain.to(lib, device=None if lib == "numpy" else dev)


def scalar_dtype(dtype: Any, scalar: Any) -> np.dtype:
    """The numpy dtype of ``scalar * tensors`` for tensors of ``dtype`` (any library's spelling)."""
    return np.result_type(backend.numpy_dtype(dtype), np.asarray(scalar).dtype)


def is_scalar(value: Any) -> bool:
    """Whether ``value`` is a numeric scalar that a network may be multiplied or divided by."""
    return np.isscalar(value) and not isinstance(value, (str, bytes))


def scalar_factor(scalar: complex, dtype: Any, *, what: str, product: str) -> tuple[np.dtype, complex, float]:
    """The dtype of ``scalar * network`` and ``scalar`` as ``(phase, log |scalar|)``.

    ``what`` names the network (``"an MPS"``) and ``product`` the expression
    (``"scalar * psi"``) in errors: ``ValueError`` for an infinite or NaN
    ``scalar``, ``TypeError`` when the product's dtype is not supported. Zero gives
    ``(0, 0)``: a zero phase. Check :func:`is_scalar` first.
    """
    if not np.isfinite(scalar):
        raise ValueError(f"cannot scale {what} by {scalar!r}.")
    dtype = check_dtype(f"the dtype of {product}", scalar_dtype(dtype, scalar))
    if scalar == 0:
        return dtype, 0.0, 0.0
    return dtype, scalar / abs(scalar), math.log(abs(scalar))


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


def check_phys_dims(name: str, phys_dim: Any, n_sites: int, *, per: str = "site") -> tuple[int, ...]:
    """One physical dimension per site from an int (all sites) or a sequence of ``n_sites`` ints.

    ``per`` names what carries a dimension in the error message (``"leaf"`` for trees).
    """
    if np.ndim(phys_dim) == 0:
        return (check_int(name, phys_dim, minimum=1),) * n_sites
    dims = tuple(check_int(f"{name}[{i}]", d, minimum=1) for i, d in enumerate(phys_dim))
    if len(dims) != n_sites:
        raise ValueError(f"`{name}` must give {n_sites} dimensions (one per {per}), got {len(dims)}.")
    return dims


def direct_sum(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Site tensors of ``|a> + |b>``: block-diagonal bulk, concatenated ends.

    Works for MPS tensors ``(Dl, d, Dr)`` and MPO tensors ``(Dl, d_out, d_in, Dr)``.
    """
    n = len(a)
    dtype = backend.result_type(*a, *b)
    if n == 1:
        return [backend.astype(a[0] + b[0], dtype)]
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        phys = x.shape[1:-1]
        x, y = backend.astype(x, dtype), backend.astype(y, dtype)
        if i == 0:
            out.append(backend.concatenate([x, y], axis=x.ndim - 1))
        elif i == n - 1:
            out.append(backend.concatenate([x, y], axis=0))
        else:
            z = backend.zeros((x.shape[0] + y.shape[0], *phys, x.shape[-1] + y.shape[-1]), like=x)
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
    #: Dimensions of a site tensor: 3 for states ``(D, d, D)``, 4 for operators ``(w, d_out, d_in, w)``.
    _site_ndim: int

    def __init__(self, tensors: Sequence[Any], *, copy: bool = False) -> None:
        arrays = site_arrays("tensors", tensors, ndim=self._site_ndim, copy=copy)
        if not arrays:
            raise ValueError("`tensors` must hold at least one site tensor, got none.")
        check_chain("tensors", [a.shape[0] for a in arrays], [a.shape[-1] for a in arrays])
        dtype = backend.result_type(*arrays)
        self._tensors = [frozen(backend.astype(a, dtype)) for a in arrays]

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
        """Common dtype of the site tensors (a torch dtype for torch tensors)."""
        return self._tensors[0].dtype

    @property
    def backend(self) -> str:
        """The array library of the site tensors: ``"numpy"``, ``"torch"`` or ``"cupy"``."""
        return backend.library_of(self._tensors[0])

    @property
    def device(self) -> str:
        """Where the site tensors live: ``"cpu"``, ``"cuda:0"``, ``"meta"``."""
        return backend.device_of(self._tensors[0])

    @property
    def num_params(self) -> int:
        """Total number of entries of the site tensors."""
        return sum(backend.numel(t) for t in self._tensors)

    def to(self, library: str | None = None, *, device: Any = None, dtype: Any = None) -> Any:
        """A copy whose site tensors are arrays of ``library`` on ``device`` in ``dtype``.

        Parameters
        ----------
        library : {"numpy", "torch", "cupy"}, optional
            Array library; by default the current one (to change only the device
            or dtype). The work of every engine operation then runs there.
        device : str or torch.device, optional
            torch: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"meta"`` (shapes only);
            cupy: a device number. numpy arrays live on the CPU.
        dtype : dtype or str, optional
            float32, float64, complex64 or complex128 (numpy or torch spelling);
            by default the current one. A complex network cannot become real.

        Returns
        -------
        A network of the same type and canonical bookkeeping; tensors already in
        place are shared, not copied.

        Raises
        ------
        ImportError
            If the library is not installed (torch comes with the ``llm`` extra).
        """
        return self._with_tensors(converted(self._tensors, type(self).__name__, library, device, dtype))

    def _with_tensors(self, tensors: list[Any]) -> Any:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    # Algebra shared by states and operators; subclasses define ``__mul__`` and ``__add__``.

    def __truediv__(self, scalar: complex) -> Any:
        """Division by a nonzero scalar (its inverse must be a finite number)."""
        if not is_scalar(scalar):
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
