"""Overlaps and MPO sandwiches by transfer matrices, safe from under- and overflow.

``<bra|ket>`` and ``<bra|W|ket>`` are computed left to right with an environment
of shape ``(D_bra, D_ket)`` (or ``(D_bra, w, D_ket)`` with an MPO). After each site
the environment is divided by its largest magnitude and the logarithm of the factor
is accumulated, so chains of thousands of sites neither underflow nor overflow.
Results come as ``(phase, log_abs)``, like :func:`numpy.linalg.slogdet`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import peak_magnitude

__all__ = ["log_overlap", "overlap_value"]

_STEP = "xb,xsy,bsc->yc"  # E, conj(bra), ket -> E'
_STEP_MPO = "xwb,xty,wtsv,bsc->yvc"  # E, conj(bra), W, ket -> E'


def log_overlap(
    bra: Sequence[np.ndarray],
    ket: Sequence[np.ndarray],
    mpo: Sequence[np.ndarray] | None = None,
) -> tuple[complex | float, float]:
    """``<bra|ket>`` or ``<bra|W|ket>`` as ``(phase, log_abs)``.

    Parameters
    ----------
    bra, ket : sequence of numpy.ndarray
        Site tensors ``(D_left, d, D_right)``; ``bra`` is complex-conjugated.
    mpo : sequence of numpy.ndarray, optional
        Site tensors ``(w_left, d_out, d_in, w_right)`` of ``W``.

    Returns
    -------
    phase : float or complex
        ``value / |value|`` (0 when the value is zero).
    log_abs : float
        ``log|value|`` (``-inf`` when the value is zero).
    """
    if len(bra) != len(ket) or (mpo is not None and len(mpo) != len(ket)):
        raise ValueError(
            f"overlap needs chains of equal length, got {len(bra)} and {len(ket)}"
            + ("" if mpo is None else f" and an MPO of {len(mpo)} sites")
            + "."
        )
    if mpo is None:
        env, log_scale = _sweep(_STEP, backend.ones((1, 1), like=ket[0]), bra, ket)
    else:
        env, log_scale = _sweep(_STEP_MPO, backend.ones((1, 1, 1), like=ket[0]), bra, ket, mpo)
    value = backend.as_host_scalar(env)
    if value == 0:
        return 0.0, -math.inf
    magnitude = abs(value)
    return value / magnitude, log_scale + math.log(magnitude)


def overlap_value(phase: complex | float, log_abs: float) -> complex | float:
    """``phase * exp(log_abs)``, the plain value of a ``(phase, log_abs)`` pair."""
    if log_abs == -math.inf:
        return 0.0 * phase
    if log_abs > 709.0:  # beyond float range: the plain value is infinite, use the log form
        return phase * math.inf
    return phase * math.exp(log_abs)


#: Largest-entry magnitudes of a new environment accepted without a second look;
#: outside (zero, subnormal, huge or not finite) the step is redone on rescaled sites.
_SAFE_PEAK = (1e-200, 1e200)


def _sweep(
    step: str, env: np.ndarray, bra: Sequence[np.ndarray], ket: Sequence[np.ndarray],
    mpo: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """Transfer ``env`` through the sites of ``bra``/``ket`` (and ``mpo``) in the order given, rescaled.

    After each site the environment is divided by its largest magnitude. If that
    magnitude left :data:`_SAFE_PEAK` (site tensors with entries near the ends of
    the float range, e.g. ``1e-200`` or ``1e300``, under- or overflow in one step),
    the step is redone with each site tensor divided by its own largest entry,
    whose logarithms join the scale: only a truly zero overlap gives zero.

    Returns ``(env, log_scale)``.
    """
    log_scale = 0.0
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for i, (b, k) in enumerate(zip(bra, ket)):
            ops = (b.conj(), k) if mpo is None else (b.conj(), mpo[i], k)
            new = contract(step, env, *ops)
            peak = peak_magnitude(new)
            if not _SAFE_PEAK[0] <= peak <= _SAFE_PEAK[1]:
                new, log_scale = _careful_step(step, env, ops, log_scale)
                peak = peak_magnitude(new)
            if peak == 0.0:
                return new, log_scale  # the overlap is zero
            new /= peak
            env, log_scale = new, log_scale + math.log(peak)
    return env, log_scale


def _careful_step(
    step: str, env: np.ndarray, ops: tuple[np.ndarray, ...], log_scale: float
) -> tuple[np.ndarray, float]:
    """One transfer step with every site tensor scaled to unit peak (logs added to ``log_scale``)."""
    scaled = []
    for a in ops:
        peak = peak_magnitude(a)
        if peak == 0.0:
            return 0 * contract(step, env, *ops), log_scale
        scaled.append(a / peak)
        log_scale += math.log(peak)
    return contract(step, env, *scaled), log_scale
