"""Perfect sampling and batched amplitudes of a matrix product state.

Sampling (Ferris & Vidal 2012, "Perfect sampling with unitary tensor networks",
arXiv:1201.3974) draws site after site from the exact conditional distributions.
With the chain right-canonical (centre at site 0), the conditional probability of
``s_i`` given ``s_0 .. s_{i-1}`` is ``||v @ A_i[:, s_i, :]||**2`` normalised over
``s_i``, where ``v`` is the (normalised) left vector of the prefix. All samples are
carried at once: one ``(n, D) @ (D, d D)`` matrix product per site, in independent
blocks that run on parallel threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from ..core.contract import contract
from ..core.threads import available_threads, blas_threads
from ..core.rng import as_generator
from ..core.validate import check_int
from .canonical import centred_state, unit_peak

if TYPE_CHECKING:  # pragma: no cover
    from .mps import MatrixProductState

__all__ = ["sample", "amplitudes", "log_amplitudes", "check_configurations"]

_PREFIX = "na,asb->nsb"  # left vectors, site tensor -> (sample, s, right bond)


#: Samples are drawn in at most this many independent blocks (one random stream each).
MAX_SAMPLE_BLOCKS = 8

#: Smallest block worth a worker of its own.
MIN_BLOCK_ROWS = 256


def sample(
    mps: MatrixProductState, n_samples: int, *, seed: object = None, return_log_prob: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` configurations from ``p(s) = |psi(s)|**2 / <psi|psi>``.

    The samples are split into up to :data:`MAX_SAMPLE_BLOCKS` blocks of at least
    :data:`MIN_BLOCK_ROWS` rows, each with its own random stream derived from
    ``seed``; the blocks run on :func:`tnkit.core.threads.available_threads` Python
    threads with one BLAS thread each. The split depends only on ``n_samples``, so
    a seed gives the same samples whatever the thread count.

    Returns
    -------
    samples : numpy.ndarray of int, shape (n_samples, n_sites)
    log_prob : numpy.ndarray, shape (n_samples,)
        ``log p(s)`` of each sample, if ``return_log_prob``.
    """
    n_samples = check_int("n_samples", n_samples, minimum=0)
    rng = as_generator(seed)
    tensors = list(centred_state(mps, 0).tensors)
    tensors[0] = unit_peak(tensors[0])  # the norm cancels in the conditionals
    blocks = _block_sizes(n_samples)
    streams = [np.random.default_rng(int(k)) for k in rng.integers(0, 2**63 - 1, size=len(blocks))]
    workers = min(available_threads(), len(blocks))

    def draw(job: tuple[int, np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        return _sample_block(tensors, job[0], job[1])

    with blas_threads(1 if workers > 1 else max(mps.bond_dims, default=1)):
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(draw, zip(blocks, streams)))
        else:
            parts = [draw(job) for job in zip(blocks, streams)]
    if parts:
        out = np.concatenate([p[0] for p in parts])
        log_prob = np.concatenate([p[1] for p in parts])
    else:
        out, log_prob = np.empty((0, mps.n_sites), dtype=np.intp), np.zeros(0)
    return (out, log_prob) if return_log_prob else out


def _block_sizes(n_samples: int) -> list[int]:
    """Rows per independent sampling block (a function of ``n_samples`` only)."""
    n_blocks = max(1, min(MAX_SAMPLE_BLOCKS, n_samples // MIN_BLOCK_ROWS))
    base, extra = divmod(n_samples, n_blocks)
    return [base + (b < extra) for b in range(n_blocks) if base + (b < extra) > 0]


def _sample_block(
    tensors: list[np.ndarray], n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential perfect sampling of ``n`` rows from right-canonical ``tensors``.

    Returns ``(configs, log_prob)`` of shapes ``(n, n_sites)`` and ``(n,)``.
    """
    out = np.empty((n, len(tensors)), dtype=np.intp)
    log_prob = np.zeros(n)
    rows = np.arange(n)
    left = np.ones((n, 1), dtype=tensors[0].dtype)
    for i, a in enumerate(tensors):
        t = contract(_PREFIX, left, a)  # (n, d, right bond)
        weights = np.einsum("nsb,nsb->ns", t, t.conj()).real if np.iscomplexobj(t) else np.einsum(
            "nsb,nsb->ns", t, t
        )
        cumulative = np.cumsum(weights, axis=1)
        total = cumulative[:, -1]
        u = rng.random(n) * total
        s = np.minimum((cumulative < u[:, None]).sum(axis=1), a.shape[1] - 1)
        p = weights[rows, s]
        out[:, i] = s
        log_prob += np.log(p / total)
        left = t[rows, s]
        left *= (1.0 / np.sqrt(p))[:, None]
    return out, log_prob


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
