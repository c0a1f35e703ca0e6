"""Perfect sampling and batched amplitudes of a matrix product state.

Sampling (Ferris & Vidal 2012, "Perfect sampling with unitary tensor networks",
arXiv:1201.3974) draws site after site from the exact conditional distributions.
With the chain right-canonical (centre at site 0), the conditional probability of
``s_i`` given ``s_0 .. s_{i-1}`` is ``||v @ A_i[:, s_i, :]||**2`` normalised over
``s_i``, where ``v`` is the (normalised) left vector of the prefix. All samples are
carried at once: one ``(n, D) @ (D, d D)`` matrix product per site, in independent
blocks that run on parallel threads.
Conditionals
------------
:func:`log_marginal` and :func:`complete` condition on observed values (a boolean
mask per row). The right **density environment** of sites ``i..N-1`` is::

    rho_i = sum_{s} w_i[s] A_i[:, s, :] rho_{i+1} A_i[:, s, :]^H,   rho_N = 1,

with ``w_i[s] = 1`` on a free site (summed over) and ``w_i[s] = delta(s, x_i)`` on an
observed one; ``rho_0`` times the stored scales over ``Z`` is the marginal probability
of the observed values. Sampling the free sites from left to right, with the prefix
carried as a pure left vector ``l``, draws ``s`` on a free site ``i`` with probability
proportional to ``(l A_i[:, s, :]) rho_{i+1} (l A_i[:, s, :])^H``: exact samples of
``p(x_free | x_observed)``. Each ``rho`` is stored divided by its trace, with the log of
the trace kept apart, so nothing over- or underflows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.rng import as_generator
from ..core.threads import GEMM_THREAD_WORK, available_threads, blas_threads, map_on_threads
from ..core.validate import check_int
from .canonical import centred_state, unit_peak

if TYPE_CHECKING:  # pragma: no cover
    from .mps import MatrixProductState

__all__ = [
    "sample",
    "amplitudes",
    "log_amplitudes",
    "check_configurations",
    "log_marginal",
    "complete",
    "site_weights",
    "choose",
]

#: Bytes of density environments held at once by conditional sampling (rows are chunked).
_ENV_BUDGET = 2**27

_PREFIX = "na,asb->nsb"  # left vectors, site tensor -> (sample, s, right bond)


#: Samples are drawn in at most this many independent blocks (one random stream each).
MAX_SAMPLE_BLOCKS = 8

#: Fewest rows per block (so tiny draws are not split into streams for nothing).
MIN_BLOCK_ROWS = 32

#: Multiply-adds per site a worker thread must get before samples are split over
#: threads; below it one thread draws all blocks (with BLAS threads from
#: :data:`~tnkit.core.threads.GEMM_THREAD_WORK`). Measured at bond 64, 2 cores: 1,000
#: samples 43 ms on one worker with 2 BLAS threads vs 46 ms on 2 workers; 2,000
#: samples 101 vs 70 ms.
PARALLEL_SAMPLE_WORK = 6 * 2**20


def sample(
    mps: MatrixProductState, n_samples: int, *, seed: object = None, return_log_prob: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` configurations from ``p(s) = |psi(s)|**2 / <psi|psi>``.

    The samples are split into up to :data:`MAX_SAMPLE_BLOCKS` blocks of at least
    :data:`MIN_BLOCK_ROWS` rows, each with its own random stream derived from
    ``seed``. With enough work per site (:data:`PARALLEL_SAMPLE_WORK` multiply-adds
    per worker) the blocks are shared out among up to
    :func:`tnkit.core.threads.available_threads` Python threads (one BLAS thread
    each); otherwise they go through together, one matrix product per site.
    The split depends only on ``n_samples``, so a seed gives the same samples
    whatever the thread count.

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
    if not isinstance(tensors[0], np.ndarray):
        out, log_prob = _sample_on_device(tensors, blocks, streams, return_log_prob)
        return (out, log_prob) if return_log_prob else out
    work = n_samples * max((a.size for a in tensors), default=0)  # largest per-site product
    workers = max(1, min(available_threads(), len(blocks), work // PARALLEL_SAMPLE_WORK))
    groups = _contiguous_groups(len(blocks), workers)

    def draw(group: range) -> tuple[np.ndarray, np.ndarray]:
        return _sample_blocks(tensors, [blocks[b] for b in group], [streams[b] for b in group], return_log_prob)

    if workers > 1:
        parts = map_on_threads(draw, groups, workers)
    else:
        with blas_threads(work, threshold=GEMM_THREAD_WORK):
            parts = [draw(group) for group in groups]
    if parts:
        out = np.concatenate([p[0] for p in parts])
        log_prob = np.concatenate([p[1] for p in parts])
    else:
        out, log_prob = np.empty((0, mps.n_sites), dtype=np.intp), np.zeros(0)
    return (out, log_prob) if return_log_prob else out


def _contiguous_groups(n_blocks: int, n_groups: int) -> list[range]:
    """Split block indices ``0 .. n_blocks-1`` into ``n_groups`` contiguous, near-equal ranges."""
    edges = np.linspace(0, n_blocks, max(n_groups, 1) + 1).round().astype(int)
    return [range(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def _block_sizes(n_samples: int) -> list[int]:
    """Rows per independent sampling block (a function of ``n_samples`` only)."""
    n_blocks = max(1, min(MAX_SAMPLE_BLOCKS, n_samples // MIN_BLOCK_ROWS))
    base, extra = divmod(n_samples, n_blocks)
    return [base + (b < extra) for b in range(n_blocks) if base + (b < extra) > 0]


def _sample_blocks(
    tensors: list[np.ndarray], sizes: list[int], streams: list[np.random.Generator], with_log_prob: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential perfect sampling from right-canonical ``tensors`` of consecutive blocks of rows.

    Block ``b`` has ``sizes[b]`` rows and draws its uniforms from ``streams[b]``; all
    rows go through one matrix product per site, so grouping blocks changes nothing
    but the speed. Returns ``(configs, log_prob)`` of shapes ``(n, n_sites)`` and ``(n,)``
    (``log_prob`` stays zero unless ``with_log_prob``).
    """
    n = sum(sizes)
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
        u = np.concatenate([g.random(m) for g, m in zip(streams, sizes)]) * total
        s = np.minimum((cumulative < u[:, None]).sum(axis=1), a.shape[1] - 1)
        p = weights[rows, s]
        out[:, i] = s
        if with_log_prob:
            log_prob += np.log(p / total)
        left = t[rows, s]
        left *= (1.0 / np.sqrt(p))[:, None]
    return out, log_prob


def _sample_on_device(
    tensors: list, sizes: list[int], streams: list[np.random.Generator], with_log_prob: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_sample_blocks` for torch or cupy site tensors, all on their device.

    The uniforms come from the same host streams as on numpy (a block's stream
    yields its rows site after site), copied to the device once; the samples and
    log-probabilities come back once at the end. A seed therefore gives the same
    samples as on numpy up to ties at rounding level.
    """
    n, n_sites = sum(sizes), len(tensors)
    uniforms = np.concatenate([g.random((n_sites, m)) for g, m in zip(streams, sizes)], axis=1)
    like = tensors[0]
    u_all = backend.like(uniforms, like, dtype=np.float64)
    xp = backend.namespace(like)
    rows = backend.arange(n, like=like)
    left = backend.ones((n, 1), like=like)
    log_prob = backend.zeros((n,), like=like, dtype=np.float64)
    columns = []
    for i, a in enumerate(tensors):
        t = contract(_PREFIX, left, a)  # (n, d, right bond)
        weights = (t * t.conj()).real.sum(axis=2) if backend.is_complex(t) else (t * t).sum(axis=2)
        cumulative = xp.cumsum(weights, axis=1)
        total = cumulative[:, -1]
        s = xp.clip((cumulative < (u_all[i] * total)[:, None]).sum(axis=1), 0, a.shape[1] - 1)
        p = weights[rows, s]
        columns.append(s)
        if with_log_prob:
            log_prob = log_prob + xp.log(p / total)
        left = t[rows, s] * (1.0 / xp.sqrt(p))[:, None]
    configs = backend.to_numpy(xp.stack(columns, axis=1)).astype(np.intp)
    return configs, backend.to_numpy(log_prob)


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
    value, log_scale = _prefix_products(mps.tensors, configs, rescale=True)
    value, log_scale = backend.to_numpy(value[:, 0]), backend.to_numpy(log_scale)
    magnitude = np.abs(value)
    with np.errstate(divide="ignore", invalid="ignore"):
        phase = np.where(magnitude > 0, value / np.where(magnitude > 0, magnitude, 1), 0)
        log_abs = np.where(magnitude > 0, log_scale + np.log(magnitude), -np.inf)
    return phase, log_abs


def amplitudes(mps: MatrixProductState, configs: object) -> np.ndarray:
    """Amplitudes ``psi(s)`` for each row ``s`` of ``configs`` (shape ``(n, n_sites)``)."""
    configs = check_configurations(mps, configs)
    left, _ = _prefix_products(mps.tensors, configs, rescale=False)
    return backend.to_numpy(left[:, 0])


def _prefix_products(tensors: list, configs: np.ndarray, *, rescale: bool) -> tuple:
    """Row vectors ``A_0[s_0] ... A_{N-1}[s_{N-1}]`` per configuration, in the tensors' library.

    With ``rescale``, each step divides the rows by their largest magnitude and
    returns the logs of those factors summed; otherwise that sum is ``None``.
    """
    like = tensors[0]
    xp = backend.namespace(like)
    n = configs.shape[0]
    rows = backend.arange(n, like=like)
    cfg = configs if isinstance(like, np.ndarray) else backend.like(configs, like)
    left = backend.ones((n, 1), like=like)
    log_scale = backend.zeros((n,), like=like, dtype=np.float64) if rescale else None
    for i, a in enumerate(tensors):
        left = contract(_PREFIX, left, a)[rows, cfg[:, i]]
        if rescale:
            peak = xp.amax(abs(left), axis=1)
            safe = xp.where(peak > 0, peak, 1.0)
            left = left / safe[:, None]
            log_scale = log_scale + xp.log(safe)
    return left, log_scale


# --------------------------------------------------------------------------- conditionals


def site_weights(x: np.ndarray, observed: np.ndarray, d: int) -> np.ndarray:
    """``w[n, s]``: one for every ``s`` on a free row, ``delta(s, x[n])`` on an observed row."""
    w = np.ones((len(x), d))
    rows = np.flatnonzero(observed)
    w[rows] = 0.0
    w[rows, x[rows]] = 1.0
    return w


def _density_step(tensor: np.ndarray, rho: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One site into a right density environment; returns it trace-normalised and the log traces."""
    new = contract("asb,nbc,xsc,ns->nax", tensor, rho, tensor.conj(), weights)
    trace = np.einsum("naa->n", new).real
    safe = np.where(trace > 0, trace, 1.0)
    with np.errstate(divide="ignore"):
        return new / safe[:, None, None], np.log(np.maximum(trace, 0.0))


def log_marginal(mps: MatrixProductState, X: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``log p(x_observed)`` per row under ``p(x) = |psi(x)|**2 / <psi|psi>``: the marginal of the observed entries.

    Parameters
    ----------
    mps : MatrixProductState
        Real or complex state (any norm, any gauge).
    X : numpy.ndarray of int, shape (n, n_sites)
        Values; entries where ``observed`` is False are ignored.
    observed : numpy.ndarray of bool, shape (n, n_sites)

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``-inf`` where the observed values have probability zero.
    """
    n = X.shape[0]
    rho = np.ones((n, 1, 1), dtype=mps.dtype)
    log_p = np.zeros(n)
    for i in range(mps.n_sites - 1, -1, -1):
        a = mps.tensors[i]
        rho, log_trace = _density_step(a, rho, site_weights(X[:, i], observed[:, i], a.shape[1]))
        log_p += log_trace
    return log_p - 2.0 * mps.log_norm()


def complete(
    mps: MatrixProductState,
    X: np.ndarray,
    observed: np.ndarray,
    *,
    rng: np.random.Generator,
    greedy: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the unobserved entries of each row from ``p(x_free | x_observed)``, ``p = |psi|**2 / Z``.

    Conditional (exact) sampling: the right density environments of the observed
    values, then the free sites drawn left to right (see the module docstring).

    Parameters
    ----------
    mps : MatrixProductState
        Real or complex state (any norm, any gauge).
    X : numpy.ndarray of int, shape (n, n_sites)
        Observed values (other entries ignored).
    observed : numpy.ndarray of bool, shape (n, n_sites)
    rng : numpy.random.Generator
    greedy : bool
        Take the most likely value of each free site given everything fixed so far
        (left to right) instead of sampling it.

    Returns
    -------
    completed : numpy.ndarray of int, shape (n, n_sites)
        Observed entries unchanged.
    log_prob : numpy.ndarray, shape (n,)
        ``log p(x_free | x_observed)`` of the filled-in values.
    """
    n = X.shape[0]
    per_row = 8 * sum(t.shape[0] ** 2 for t in mps.tensors) + 1
    chunk = max(1, _ENV_BUDGET // per_row)
    out = np.array(X, dtype=np.intp, copy=True)
    log_prob = np.zeros(n)
    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        out[rows], log_prob[rows] = _complete_chunk(mps, out[rows], observed[rows], rng, greedy)
    return out, log_prob


def _complete_chunk(
    mps: MatrixProductState, X: np.ndarray, observed: np.ndarray, rng: np.random.Generator, greedy: bool
) -> tuple[np.ndarray, np.ndarray]:
    n, n_sites = X.shape
    tensors = mps.tensors
    rhos: list[np.ndarray] = [np.ones((n, 1, 1), dtype=mps.dtype)] * (n_sites + 1)
    for i in range(n_sites - 1, 0, -1):
        a = tensors[i]
        rhos[i], _ = _density_step(a, rhos[i + 1], site_weights(X[:, i], observed[:, i], a.shape[1]))
    left = np.ones((n, 1), dtype=mps.dtype)
    log_prob = np.zeros(n)
    rows = np.arange(n)
    for i, a in enumerate(tensors):
        t = contract("na,asb->nsb", left, a)
        weights = np.maximum(contract("nsb,nbc,nsc->ns", t, rhos[i + 1], t.conj()).real, 0.0)
        total = weights.sum(axis=1)
        free = ~observed[:, i]
        if np.any(free & (total <= 0)):
            raise ValueError("the observed values have probability zero under the model; nothing to complete.")
        s = X[:, i].copy()
        if free.any():
            s[free] = choose(weights[free] / total[free, None], rng, greedy)
            log_prob[free] += np.log(weights[free, s[free]] / total[free])
        X[:, i] = s
        picked = t[rows, s]
        norms = np.linalg.norm(picked, axis=1)
        left = picked / np.where(norms > 0, norms, 1.0)[:, None]
    return X, log_prob


def choose(p: np.ndarray, rng: np.random.Generator, greedy: bool) -> np.ndarray:
    """One index per row of the probability rows ``p``: the argmax (``greedy``) or a draw."""
    if greedy:
        return np.argmax(p, axis=1)
    u = rng.random((len(p), 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)
