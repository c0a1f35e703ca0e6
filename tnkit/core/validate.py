"""Argument checks shared by every public entry point.

Each check raises with the argument's name, what was expected and what was given.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection

import numpy as np

from ..errors import OptionError
from .backend import all_finite, astype, library_of, numpy_dtype

__all__ = [
    "check_option",
    "check_int",
    "check_number",
    "check_max_bond",
    "check_cutoff",
    "check_finite",
    "check_site",
    "as_array",
    "check_dtype",
    "as_tensor",
    "check_memory",
    "format_bytes",
    "inverse_scalar",
    "ENGINE_DTYPES",
    "DEFAULT_MAX_BYTES",
]

#: The dtypes the engine computes in (those LAPACK factorises). Integers and booleans
#: given as data or as a ``dtype`` become ``float64``; anything else is refused.
ENGINE_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))

#: Largest memory (bytes) a constructor allocates unless its ``max_bytes`` allows more:
#: 8 GiB, so a typo such as ``max_bond=10**12`` fails at once instead of swapping.
DEFAULT_MAX_BYTES = 8 * 2**30


def check_option(name: str, value: object, valid: Collection[object]) -> None:
    """Raise :class:`~tnkit.errors.OptionError` unless ``value`` is one of ``valid``."""
    if value not in valid:
        raise OptionError(f"`{name}` must be one of {sorted(map(str, valid))}, got {value!r}.")


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int``; it must be an integer (not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}.")
    return value


def check_number(name: str, value: object, *, positive: bool = True) -> float:
    """Return ``value`` as a ``float``; it must be a finite real number > 0 (``>= 0`` if not ``positive``).

    ``TypeError`` for a non-number (or bool), ``ValueError`` for a value out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} of type {type(value).__name__}.")
    number = float(value)
    if not np.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"`{name}` must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}.")
    return number


def check_max_bond(max_bond: object, name: str = "max_bond") -> int | None:
    """Validate a bond-dimension cap: ``None`` (no cap) or an integer >= 1."""
    if max_bond is None:
        return None
    return check_int(name, max_bond, minimum=1)


def check_cutoff(cutoff: object, name: str = "cutoff") -> float:
    """Validate a relative discarded-weight cutoff: a real number in [0, 1)."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {cutoff!r}.")
    cutoff = float(cutoff)
    if not (0.0 <= cutoff < 1.0):
        raise ValueError(f"`{name}` must lie in [0, 1) (a relative discarded weight), got {cutoff}.")
    return cutoff


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise ``ValueError`` if ``array`` (any array library) holds NaN or infinity."""
    if not isinstance(array, np.ndarray):
        if not all_finite(array):
            raise ValueError(f"`{name}` must hold finite numbers, found NaN or infinity.")
        return
    if not np.isfinite(array).all():
        bad = "NaN" if np.isnan(array).any() else "infinity"
        raise ValueError(f"`{name}` must hold finite numbers, found {bad}.")


def check_site(name: str, site: object, n_sites: int, *, what: str = "site") -> int:
    """Return ``site`` as an int in ``[0, n_sites)``; negative values count from the end.

    ``what`` names the kind of index in the message (``"site"``, ``"bond"``, ...).
    """
    site = check_int(name, site)
    given = site
    if site < 0:
        site += n_sites
    if not 0 <= site < n_sites:
        raise IndexError(f"`{name}` must be a {what} in [0, {n_sites}), got {given} (negative values count from the end).")
    return site


def as_array(name: str, value: object, *, ndim: int | None = None) -> np.ndarray:
    """Convert ``value`` to a numeric numpy array, checking its rank and finiteness.

    torch tensors and cupy arrays are checked the same way and kept in their
    library and on their device (integer and boolean ones become float64).
    """
    if not isinstance(value, np.ndarray) and library_of(value) in ("torch", "cupy"):
        return _device_array(name, value, ndim)
    try:
        array = np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy raises various types
        raise TypeError(f"`{name}` must be array-like, got {type(value).__name__}.") from exc
    if array.dtype.kind not in "biufc":
        raise TypeError(f"`{name}` must hold numbers, got an array of dtype {array.dtype}.")
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"`{name}` must have {ndim} dimensions, got shape {array.shape}.")
    check_finite(name, array)
    return array


def _device_array(name: str, value: object, ndim: int | None) -> object:
    try:
        kind = numpy_dtype(value.dtype).kind  # type: ignore[attr-defined]
    except TypeError:
        kind = "?"
    if kind not in "biufc":
        raise TypeError(f"`{name}` must hold numbers of a numpy-compatible dtype, got {value.dtype}.")  # type: ignore[attr-defined]
    if kind in "biu":
        value = astype(value, np.float64)
    if ndim is not None and value.ndim != ndim:  # type: ignore[attr-defined]
        raise ValueError(f"`{name}` must have {ndim} dimensions, got shape {tuple(value.shape)}.")  # type: ignore[attr-defined]
    check_finite(name, value)  # type: ignore[arg-type]
    return value


def check_dtype(name: str, dtype: object) -> np.dtype:
    """Return ``dtype`` as a numpy dtype if it is one of :data:`ENGINE_DTYPES`.

    Every other dtype (integers, booleans, float16, long double, object, strings)
    raises ``TypeError`` naming ``name``. Arrays of integers or booleans given as
    data are converted to float64 by :func:`as_array` before they get here.
    """
    try:
        dt = numpy_dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"`{name}` must be a numpy dtype, got {dtype!r}.") from exc
    if dt not in ENGINE_DTYPES:
        raise TypeError(f"`{name}` must be float32, float64, complex64 or complex128, got {dt}.")
    return dt


def as_tensor(name: str, value: object, *, ndim: int | None = None) -> np.ndarray:
    """:func:`as_array` for the engine's tensors: also refuses dtypes outside :data:`ENGINE_DTYPES`."""
    array = as_array(name, value, ndim=ndim)
    check_dtype(f"{name}.dtype", array.dtype)
    return array


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in the largest binary unit that keeps it >= 1 (``"8 GiB"``, ``"3.2 TiB"``)."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} PiB"  # pragma: no cover - the loop returns


def check_memory(n_bytes: float, max_bytes: object, *, what: str, cause: str) -> None:
    """Refuse, before allocating, ``n_bytes`` of ``what`` beyond ``max_bytes``.

    ``cause`` names the arguments that set the size (e.g. ``"`max_bond`=10**12"``);
    the message says how to allow more.
    """
    limit = check_number("max_bytes", max_bytes)
    if n_bytes > limit:
        raise ValueError(
            f"{what} would take {format_bytes(n_bytes)} ({cause}), more than `max_bytes`="
            f"{format_bytes(limit)}; pass a larger `max_bytes` if that much memory is intended."
        )


def inverse_scalar(scalar: complex, what: str) -> complex:
    """``1 / scalar`` for dividing a ``what`` by ``scalar``.

    ``ZeroDivisionError`` for zero, ``ValueError`` when the inverse overflows
    (``|scalar|`` below about ``5.6e-309``).
    """
    if scalar == 0:
        raise ZeroDivisionError(f"cannot divide a {what} by zero.")
    with np.errstate(over="ignore"):
        inverse = 1.0 / scalar
    if not np.isfinite(inverse):
        raise ValueError(f"cannot divide a {what} by {scalar!r}: its inverse overflows.")
    return inverse
