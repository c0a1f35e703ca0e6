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

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import lq, peak_magnitude, qr
from ..errors import NormRangeError

if TYPE_CHECKING:  # pragma: no cover
    from .mps import MatrixProductState

__all__ = [
    "orthogonalize_left",
    "orthogonalize_right",
    "move_center",
    "left_isometry_error",
    "right_isometry_error",
    "log_frobenius_norm",
    "centred_state",
    "unit_peak",
    "PEAK_RANGE",
    "spread_log_scale",
    "scale_tensors",
    "ZERO_STATE_ERROR",
]

#: Largest entry magnitudes a tensor receiving the norm may take: outside, precision
#: is lost (subnormal floats) or values overflow, and the move is refused.
PEAK_RANGE = (1e-280, 1e280)
_LOG_PEAK_RANGE = (math.log(PEAK_RANGE[0]), math.log(PEAK_RANGE[1]))

#: The message of the ``ValueError`` raised when a normalised value of the zero state is asked for.
ZERO_STATE_ERROR = (
    "the state is the zero vector (norm 0): its normalised values (expectations, "
    "probabilities, samples, entropies) are undefined."
)


def orthogonalize_left(tensors: list[np.ndarray], i: int) -> np.ndarray:
    """Make site ``i`` left-isometric by QR, pushing ``R`` into site ``i + 1``; return ``R``.

    When sites right of ``i`` are right-isometric, the singular values of ``R`` are
    the Schmidt values across bond ``i``.
    """
    a = tensors[i]
    dl, d, dr = a.shape
    q, r = qr(a.reshape(dl * d, dr))
    neighbour = checked_receiver(contract("ab,bsc->asc", r, tensors[i + 1]), i + 1, r, tensors[i + 1])
    tensors[i] = q.reshape(dl, d, q.shape[1])
    tensors[i + 1] = neighbour
    return r


def orthogonalize_right(tensors: list[np.ndarray], i: int) -> None:
    """Make site ``i`` right-isometric by LQ, pushing ``L`` into site ``i - 1``."""
    a = tensors[i]
    dl, d, dr = a.shape
    l, q = lq(a.reshape(dl, d * dr))
    neighbour = checked_receiver(contract("asb,bc->asc", tensors[i - 1], l), i - 1, l, tensors[i - 1])
    tensors[i] = q.reshape(q.shape[0], d, dr)
    tensors[i - 1] = neighbour


def checked_receiver(a: np.ndarray, site: int, *factors: np.ndarray) -> np.ndarray:
    """``a``, the tensor that received the norm at ``site``, if its entries stay in :data:`PEAK_RANGE`.

    ``factors`` are the two arrays whose product is ``a``: an all-zero ``a`` is
    accepted (a zero state) unless their scales show that the product underflowed.
    Raises :class:`~tnkit.errors.NormRangeError` before anything is replaced, so a
    caller working on a copy of the list keeps its state intact.
    """
    peak = peak_magnitude(a)
    low, high = PEAK_RANGE
    if low <= peak <= high:
        return a
    if peak == 0.0:
        scales = [peak_magnitude(f) for f in factors]
        if not scales or min(scales) == 0.0 or sum(math.log(s) for s in scales) > math.log(low):
            return a
    size = "overflows" if not math.isfinite(peak) or peak > high else "underflows"
    raise NormRangeError(
        f"the norm {size} the float range when gathered on site {site} (largest entry {peak:.3g}); "
        "the state's norm is beyond what one tensor can hold: normalise it first with normalize_(), "
        "which is safe at any norm."
    )


def log_frobenius_norm(a: np.ndarray) -> float:
    """``log ||a||_F`` without overflow or underflow (``-inf`` for a zero tensor)."""
    peak = peak_magnitude(a)
    if peak == 0.0:
        return -math.inf
    scaled = a / peak
    return math.log(peak) + 0.5 * math.log(backend.norm2(scaled))


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
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # checked per site instead
        for i in range(left, center):
            orthogonalize_left(tensors, i)
        for i in range(right - 1, center, -1):
            orthogonalize_right(tensors, i)
    return center, center + 1


def centred_state(mps: MatrixProductState, site: int) -> MatrixProductState:
    """``mps`` with its centre at ``site``, or a normalised copy if its norm overflows a tensor.

    For values of the normalised state (measurements, sampling): the copy is taken
    only when :class:`~tnkit.errors.NormRangeError` refuses the move, which leaves
    ``mps`` unchanged. Raises ``ValueError`` for the zero state, whose normalised
    values are undefined.
    """
    try:
        centred = mps.canonicalize_(site)
    except NormRangeError:
        return mps.normalized().canonicalize_(site)  # refuses the zero state itself
    if peak_magnitude(centred.tensors[site]) == 0.0:
        raise ValueError(ZERO_STATE_ERROR)
    return centred


def unit_peak(a: np.ndarray) -> np.ndarray:
    """``a`` divided by its largest magnitude, so its squared norm cannot overflow."""
    peak = peak_magnitude(a)
    return a / peak if peak > 0 else a


def left_isometry_error(a: np.ndarray) -> float:
    """Largest deviation of ``A^dagger A`` (over left and physical legs) from the identity."""
    g = contract("asb,asc->bc", a.conj(), a)
    return peak_magnitude(g - backend.eye(g.shape[0], like=g))


def right_isometry_error(a: np.ndarray) -> float:
    """Largest deviation of ``A A^dagger`` (over physical and right legs) from the identity."""
    g = contract("asb,csb->ac", a, a.conj())
    return peak_magnitude(g - backend.eye(g.shape[0], like=g))


def spread_log_scale(tensors: list, sites: Sequence[int], phase: complex | float, log_abs: float) -> None:
    """Multiply the chain by ``phase * exp(log_abs)`` spread evenly (in log) over ``sites``.

    Each of those sites is divided by its largest entry first, so subnormal or huge
    entries are handled; entries of ``tensors`` are replaced. Raises
    :class:`~tnkit.errors.NormRangeError` (and changes nothing) if the share per
    site would leave :data:`PEAK_RANGE`.
    """
    peaks = [peak_magnitude(tensors[i]) for i in sites]
    if not sites or min(peaks) == 0.0:  # the zero state stays zero
        return
    total = log_abs + sum(math.log(p) for p in peaks)
    share = total / len(sites)
    if not _LOG_PEAK_RANGE[0] <= share <= _LOG_PEAK_RANGE[1]:
        raise NormRangeError(
            f"a scale factor of exp({total:.6g}) does not fit in {len(sites)} tensor(s) "
            f"(entries must stay within {PEAK_RANGE}): the result is beyond double precision."
        )
    factor = math.exp(share)
    for k, (i, p) in enumerate(zip(sites, peaks, strict=True)):
        t = tensors[i] / p * factor
        tensors[i] = t * phase if k == 0 and phase != 1 else t


def scale_tensors(
    tensors: list, site: int, sites: Sequence[int], phase: complex | float, log_abs: float
) -> bool:
    """Multiply a network by ``phase * exp(log_abs)`` without leaving the float range.

    The factor goes on ``tensors[site]`` when its entries stay within
    :data:`PEAK_RANGE` (or the tensor is zero); otherwise it is spread over
    ``sites`` by :func:`spread_log_scale`, which raises
    :class:`~tnkit.errors.NormRangeError` if even they cannot hold it. ``phase`` 0
    gives the zero network. Entries of ``tensors`` are replaced (dtype unchanged
    unless ``phase`` is complex). Returns whether the factor was spread, which
    breaks isometries: callers drop their canonical bookkeeping then.
    """
    old = tensors[site]
    if phase == 0:
        tensors[site] = backend.namespace(old).zeros_like(old)
        return False
    if abs(log_abs) < _LOG_PEAK_RANGE[1]:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            new = old * (phase * math.exp(log_abs))
        peak = peak_magnitude(new)
        if peak_magnitude(old) == 0.0 or PEAK_RANGE[0] <= peak <= PEAK_RANGE[1]:
            tensors[site] = new
            return False
    spread_log_scale(tensors, sites, phase, log_abs)
    return True
