"""Perfect sampling and batched amplitudes of a matrix product state.

Sampling (Ferris & Vidal 2012, "Perfect sampling with unitary tensor networks",
arXiv:1201.3974) draws site after site from the exact conditional distributions.
With the chain right-canonical (centre at site 0), the conditional probability of
``s_i`` given ``s_0 .. s_{i-1}`` is ``||v @ A_i[:, s_i, :]||**2`` normalised over
``s_i``, where ``v`` is the (normalised) left vector of the prefix. All samples are
carried at once: one ``(n, D) @ (D, d D)`` matrix product per site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.contract import contract
from ..core.rng import as_generator
from ..core.validate import check_int

if TYPE_CHECKING:  # pragma: no cover
    from .mps import MatrixProductState

__all__ = ["sample", "amplitudes", "log_amplitudes", "check_configurations"]

_PREFIX = "na,asb->nsb"  # left vectors, site tensor -> (sample, s, right bond)


def sample(
    mps: MatrixProductState, n_samples: int, *, seed: object = None, return_log_prob: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` configurations from ``p(s) = |psi(s)|**2 / <psi|psi>``.

    Returns
    -------
    samples : numpy.ndarray of int, shape (n_samples, n_sites)
    log_prob : numpy.ndarray, shape (n_samples,)
        ``log p(s)`` of each sample, if ``return_log_prob``.
    """
    n_samples = check_int("n_samples", n_samples, minimum=0)
    rng = as_generator(seed)
    mps.canonicalize_(0)
    tensors = mps.tensors
    out = np.empty((n_samples, mps.n_sites), dtype=np.intp)
    log_prob = np.zeros(n_samples)
    rows = np.arange(n_samples)
    left = np.ones((n_samples, 1), dtype=mps.dtype)
    for i, a in enumerate(tensors):
        t = contract(_PREFIX, left, a)
        weights = np.einsum("nsb,nsb->ns", t, t.conj()).real if np.iscomplexobj(t) else np.einsum(
            "nsb,nsb->ns", t, t
        )
        cumulative = np.cumsum(weights, axis=1)
        total = cumulative[:, -1:]
        u = rng.random((n_samples, 1)) * total
        s = np.minimum((cumulative < u).sum(axis=1), a.shape[1] - 1)
        p = weights[rows, s]
        out[:, i] = s
        log_prob += np.log(p) - np.log(total[:, 0])
        left = t[rows, s] / np.sqrt(p)[:, None]
    return (out, log_prob) if return_log_prob else out


def check_configurations(mps: MatrixProductState, configs: object) -> np.ndarray:
    """Validate an ``(n, n_sites)`` integer array of basis states for ``mps``."""
    arr = np.asarray(configs)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != mps.n_sites:
        raise ValueError(
            f"`configs` must have shape (n, {mps.n_sites}) (one basis state per row), got {np.shape(configs)}."
        )
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.intp)
        else:
            raise TypeError(f"`configs` must hold integers, got dtype {arr.dtype}.")
    dims = np.asarray(mps.phys_dims)
    bad = (arr < 0) | (arr >= dims)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"`configs`[{row}, {col}] = {arr[row, col]} is not a basis state of site {col} "
            f"(dimension {dims[col]})."
        )
    return arr.astype(np.intp, copy=False)


def log_amplitudes(mps: MatrixProductState, configs: object) -> tuple[np.ndarray, np.ndarray]:
    """``(phase, log|psi(s)|)`` for each row of ``configs``, safe for long chains."""
    configs = check_configurations(mps, configs)
    n = configs.shape[0]
    rows = np.arange(n)
    left = np.ones((n, 1), dtype=mps.dtype)
    log_scale = np.zeros(n)
    for i, a in enumerate(mps.tensors):
        left = contract(_PREFIX, left, a)[rows, configs[:, i]]
        peak = np.abs(left).max(axis=1)
        safe = np.where(peak > 0, peak, 1.0)
        left = left / safe[:, None]
        log_scale += np.log(safe)
    value = left[:, 0]
    magnitude = np.abs(value)
    with np.errstate(divide="ignore", invalid="ignore"):
        phase = np.where(magnitude > 0, value / np.where(magnitude > 0, magnitude, 1), 0)
        log_abs = np.where(magnitude > 0, log_scale + np.log(magnitude), -np.inf)
    return phase, log_abs


def amplitudes(mps: MatrixProductState, configs: object) -> np.ndarray:
    """Amplitudes ``psi(s)`` for each row ``s`` of ``configs`` (shape ``(n, n_sites)``)."""
    configs = check_configurations(mps, configs)
    n = configs.shape[0]
    rows = np.arange(n)
    left = np.ones((n, 1), dtype=mps.dtype)
    for i, a in enumerate(mps.tensors):
        left = contract(_PREFIX, left, a)[rows, configs[:, i]]
    return left[:, 0]
