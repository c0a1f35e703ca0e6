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
        env, log_scale = _sweep(_STEP, np.ones((1, 1)), bra, ket)
    else:
        env, log_scale = _sweep(_STEP_MPO, np.ones((1, 1, 1)), bra, ket, mpo)
    value = env.reshape(-1)[0]
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


def _rescale(env: np.ndarray, log_scale: float) -> tuple[np.ndarray, float]:
    """``env`` divided in place by its largest magnitude, whose log joins ``log_scale``.

    ``env`` must be a fresh array (a contraction's output), never a caller's.
    """
    peak = peak_magnitude(env)
    if peak == 0.0 or not math.isfinite(peak):
        return env, log_scale
    env /= peak
    return env, log_scale + math.log(peak)


def _sweep(
    step: str, env: np.ndarray, bra: Sequence[np.ndarray], ket: Sequence[np.ndarray],
    mpo: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """Transfer ``env`` through the sites of ``bra``/``ket`` (and ``mpo``) in the order given, rescaled.

    Returns ``(env, log_scale)``.
    """
    log_scale = 0.0
    for i, (b, k) in enumerate(zip(bra, ket)):
        if mpo is None:
            env = contract(step, env, b.conj(), k)
        else:
            env = contract(step, env, b.conj(), mpo[i], k)
        env, log_scale = _rescale(env, log_scale)
    return env, log_scale
