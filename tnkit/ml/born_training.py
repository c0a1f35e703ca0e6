"""Training of MPS Born machines: two-site NLL sweeps and a minibatch gradient trainer.

A Born machine models discrete data ``x = (x_0, ..., x_{N-1})`` with
``p(x) = |psi(x)|**2 / Z``, ``psi(x) = A0[:, x_0, :] @ ... @ A_{N-1}[:, x_{N-1}, :]``
and ``Z = <psi|psi>`` (Han, Wang, Fan, Wang & Zhang, PRX 8, 031012 (2018),
arXiv:1709.01662). Training minimises the negative log-likelihood on a data set ``T``::

    NLL = -1/|T| sum_{x in T} log p(x) = log Z - 1/|T| sum_{x in T} log |psi(x)|**2

Two-site sweeps (:func:`sweep_train`)
-------------------------------------
The MPS is kept in mixed canonical form with the orthogonality centre on the pair
``(k, k+1)`` being trained, so ``Z = ||B||**2`` for the merged tensor
``B[l, s, t, r] = sum_m A_k[l, s, m] A_{k+1}[m, t, r]`` and costs nothing. With
``psi(x) = L(x) B[:, x_k, x_{k+1}, :] R(x)`` the gradient is::

    dNLL/dB = 2 B / Z - 2/|T| sum_x Phi(x) / psi(x),
    Phi(x)[l, s, t, r] = L(x)[l] delta(s, x_k) delta(t, x_{k+1}) R(x)[r]

Each step is ``B <- B - eta * dNLL/dB`` followed by ``B <- B / ||B||`` (the paper's
update) with ``eta`` found by backtracking from ``learning_rate`` so that every step
lowers the NLL (:func:`sphere_descent`). After ``n_descent_steps`` steps ``B`` is split by a truncated SVD
(:func:`tnkit.core.linalg.truncated_svd`, so ``max_bond`` and ``cutoff`` follow the
engine's rule and the bond grows where the data need it) and the centre moves on.
Near a minimum the truncated split undoes what the descent of the merged pair gained
(the descent leaves the set of bond-``max_bond`` states), the update is then rejected
and the two-site sweeps stall above the minimum; so once they converge, or after half
of the sweeps, full-batch training continues with one-site updates at fixed bonds,
which truncate nothing.

Numerical safety. ``Phi(x) / psi(x)`` is invariant under scaling ``L(x)`` and
``R(x)``, so the per-sample environments are stored normalised to unit norm with
their log-scales kept apart (as in :mod:`tnkit.ml.environments`); nothing over- or
underflows on hundreds of sites, whatever the learning rate or the start.

Why a gather and not :class:`tnkit.ml.environments.BatchEnvironments`. The data are
integers; their one-hot embedding makes ``L(x) (x) e_{x_k}`` mostly zeros. Grouping
the samples by ``(x_k, x_{k+1})`` turns ``psi`` and the gradient into one
``(n_g, D) @ (D, D)`` product per group: ``d_k d_{k+1}`` times fewer operations than
contracting the one-hot vectors, and physical dimensions may differ from site to
site (categorical features), which the shared environments do not allow.

Minibatch gradient trainer (:func:`gradient_train`)
---------------------------------------------------
All site tensors are updated together with Adam on minibatches, the bond dimensions
fixed. :func:`nll_and_gradient` gives the exact NLL and its gradient with respect to
every site tensor, with ``Z`` and its gradient from log-scaled transfer environments.
The site tensors are held in one zero-padded array (largest bond, largest number of
values), so each step costs a few calls for all sites together instead of a dozen per
site: the per-step Python overhead, not arithmetic, is what small models spend their
time on.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.contract import contract
from ..core.linalg import truncated_svd
from ..core.threads import blas_threads
from ..mps.mps import MatrixProductState
from .environments import normalize_rows

__all__ = [
    "TrainingHistory",
    "sweep_train",
    "gradient_train",
    "nll_and_gradient",
    "group_rows",
    "absorb_left",
    "absorb_right",
    "sphere_descent",
    "record",
    "progress_bar",
    "converged",
]

#: ``|psi(x)|`` (of normalised environments) is floored here before dividing by it.
#: Floor of probabilities and amplitudes squared before taking logarithms.
TINY = 1e-150


@dataclass
class TrainingHistory:
    """What a trainer did, one entry per sweep (or epoch).

    Attributes
    ----------
    nll : list of float
        Training NLL in nats after each sweep / epoch (exact, of the state as stored).
    max_bond : list of int
        Largest bond dimension after each sweep / epoch.
    seconds : list of float
        Wall time of each sweep / epoch.
    learning_rate : list of float
        Learning rate used in each sweep / epoch.
    """

    nll: list[float] = field(default_factory=list)
    max_bond: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)

    def append(self, nll: float, max_bond: int, seconds: float, learning_rate: float = math.nan) -> None:
        """Record one sweep or epoch."""
        self.nll.append(float(nll))
        self.max_bond.append(int(max_bond))
        self.seconds.append(float(seconds))
        self.learning_rate.append(float(learning_rate))


# --------------------------------------------------------------------------- gathers


def group_rows(*columns: np.ndarray, dims: tuple[int, ...]) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Group sample indices by the values of one or more integer columns.

    Parameters
    ----------
    *columns : numpy.ndarray of int, shape (n,)
        Values of the grouped sites, ``0 <= columns[j] < dims[j]``.
    dims : tuple of int
        Number of values of each column.

    Returns
    -------
    list of (values, rows)
        One entry per value combination that occurs: the tuple of values and the
        sorted row indices holding it.
    """
    code = np.zeros(len(columns[0]), dtype=np.intp)
    for col, d in zip(columns, dims):
        code = code * d + col
    order = np.argsort(code, kind="stable")
    sorted_codes = code[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    groups = []
    for a, b in zip(starts, ends):
        values = np.unravel_index(int(sorted_codes[a]), dims)
        groups.append((tuple(int(v) for v in values), order[a:b]))
    return groups


def _absorb(env: np.ndarray, tensor: np.ndarray, x: np.ndarray, equation: str, out_dim: int) -> np.ndarray:
    """Contract each sample's environment with the matrix ``tensor[:, x[n], :]``, grouped by value."""
    out = np.empty((env.shape[0], out_dim), dtype=np.result_type(env, tensor))
    for (s,), rows in group_rows(x, dims=(tensor.shape[1],)):
        out[rows] = contract(equation, env[rows], tensor[:, s, :])
    return out


def absorb_left(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``env[n] @ tensor[:, x[n], :]`` for every sample ``n`` (not normalised).

    Parameters
    ----------
    env : numpy.ndarray, shape (n, D_left)
    tensor : numpy.ndarray, shape (D_left, d, D_right)
    x : numpy.ndarray of int, shape (n,)

    Returns
    -------
    numpy.ndarray, shape (n, D_right)
    """
    return _absorb(env, tensor, x, "na,ab->nb", tensor.shape[2])


def absorb_right(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``tensor[:, x[n], :] @ env[n]`` for every sample ``n`` (not normalised).

    Parameters
    ----------
    env : numpy.ndarray, shape (n, D_right)
    tensor : numpy.ndarray, shape (D_left, d, D_right)
    x : numpy.ndarray of int, shape (n,)

    Returns
    -------
    numpy.ndarray, shape (n, D_left)
    """
    return _absorb(env, tensor, x, "nb,ab->na", tensor.shape[0])


# --------------------------------------------------------------------------- environments


class _Environments:
    """Normalised per-sample left/right environments of integer data, cached per site.

    ``env[j]`` is the left environment of sites ``0..j-1`` (shape ``(n, D_j)``) for
    ``j <= k`` and the right environment of sites ``j..N-1`` for ``j >= k + 2`` while
    the pair ``(k, k+1)`` is trained; ``scale[j]`` holds the removed log-norms.
    """

    def __init__(self, X: np.ndarray) -> None:
        n, n_sites = X.shape
        self.X = X
        ones = np.ones((n, 1))
        self.env: list[np.ndarray | None] = [None] * (n_sites + 1)
        self.scale: list[np.ndarray | None] = [None] * (n_sites + 1)
        self.env[0], self.scale[0] = ones, np.zeros(n)
        self.env[n_sites], self.scale[n_sites] = ones, np.zeros(n)

    def build_right(self, tensors: list[np.ndarray], stop: int) -> None:
        """Right environments ``env[j]`` for ``j = N-1 .. stop``."""
        for j in range(len(tensors) - 1, stop - 1, -1):
            self.set_right(tensors, j)

    def build_left(self, tensors: list[np.ndarray], stop: int) -> None:
        """Left environments ``env[j]`` for ``j = 1 .. stop``."""
        for j in range(1, stop + 1):
            self.set_left(tensors, j)

    def set_left(self, tensors: list[np.ndarray], j: int) -> None:
        """``env[j]`` from ``env[j-1]`` and site ``j - 1``."""
        env, log_norm = normalize_rows(absorb_left(self.env[j - 1], tensors[j - 1], self.X[:, j - 1]))
        self.env[j], self.scale[j] = env, self.scale[j - 1] + log_norm

    def set_right(self, tensors: list[np.ndarray], j: int) -> None:
        """``env[j]`` from ``env[j+1]`` and site ``j``."""
        env, log_norm = normalize_rows(absorb_right(self.env[j + 1], tensors[j], self.X[:, j]))
        self.env[j], self.scale[j] = env, self.scale[j + 1] + log_norm


# --------------------------------------------------------------------------- two-site sweeps


class _PairProblem:
    """The NLL as a function of the merged pair ``(k, k+1)`` (or of site ``k``), the environments fixed.

    ``dims`` holds the numbers of values of the two sites (or of the one site).

    With the rest of the chain isometric, ``NLL(B) = log ||B||**2 - 1/n sum_x log psi(x)**2``
    exactly (the stored log-scales of the environments added back), so a local step that
    lowers it lowers the NLL of the whole state.
    """

    def __init__(self, envs: _Environments, k: int, dims: tuple[int, ...]) -> None:
        width = len(dims)  # 2: the pair (k, k+1); 1: the single site k
        left, right = envs.env[k], envs.env[k + width]
        self.n = left.shape[0]
        self.log_scale = envs.scale[k] + envs.scale[k + width]
        self._mean_log_scale = float(np.mean(self.log_scale))
        self.groups = [
            ((slice(None), *values, slice(None)), rows, left[rows], right[rows])
            for values, rows in group_rows(*(envs.X[:, k + j] for j in range(width)), dims=dims)
        ]
        self._cache: tuple[np.ndarray, list[np.ndarray]] | None = None

    def _group_psi(self, merged: np.ndarray) -> list[np.ndarray]:
        if self._cache is not None and self._cache[0] is merged:
            return self._cache[1]
        out = [np.einsum("nb,nb->n", left @ merged[index], right) for index, _, left, right in self.groups]
        self._cache = (merged, out)
        return out

    def psi(self, merged: np.ndarray) -> np.ndarray:
        """Amplitudes of the normalised environments, ``(n,)``, in sample order."""
        out = np.empty(self.n, dtype=merged.dtype)
        for (_, rows, _, _), amp in zip(self.groups, self._group_psi(merged), strict=True):
            out[rows] = amp
        return out

    def nll(self, merged: np.ndarray) -> float:
        """Exact NLL of the state whose centre pair is ``merged`` (``inf`` where some ``psi(x) = 0``)."""
        with np.errstate(divide="ignore"):
            total = sum(float(np.sum(np.log(np.abs(a)))) for a in self._group_psi(merged))
        return float(np.log(np.vdot(merged, merged).real)) - 2.0 * (total / self.n + self._mean_log_scale)

    def data_gradient(self, merged: np.ndarray) -> np.ndarray:
        """``1/n sum_x Phi(x) / psi(x)`` (same shape as ``merged``)."""
        grad = np.zeros_like(merged)
        for (index, _, left, right), psi in zip(self.groups, self._group_psi(merged), strict=True):
            psi = np.where(np.abs(psi) < TINY, TINY, psi)
            grad[index] = left.T @ (right / psi[:, None])
        return (grad.conj() if np.iscomplexobj(grad) else grad) / self.n


def sphere_descent(
    tensor: np.ndarray,
    problem: Any,
    learning_rate: float,
    n_steps: int,
    normalized: bool = False,
    max_rate: float = 0.5,
) -> tuple[np.ndarray, float, float]:
    """Line-searched gradient steps on a unit-norm centre tensor; the NLL never rises.

    With the rest of the network isometric, ``Z = ||T||**2 = 1`` and
    ``dNLL/dT = 2 T - 2 D(T)``, ``D(T) = 1/n sum_x Phi(x) / psi(x)``; this gradient is
    tangent to the unit sphere (``<D(T), T> = 1``). Han et al.'s update
    ``T <- (T - eta dNLL/dT) / ||.||`` is taken with a *backtracking* step: a trial step
    is accepted only if it lowers the NLL by Armijo's margin, else ``eta`` is divided
    by 4 (up to 12 times); after an accepted step ``eta`` doubles, capped at ``max_rate``
    (default 0.5: the fixed-point update ``T <- D(T) / ||D(T)||``). A fixed step cannot work for every
    data set: ``D`` holds ``1 / psi(x)``, so near a sample of small amplitude the
    gradient is huge and a step that suits the rest of the tensor throws the state far
    off (the NLL then rises from sweep to sweep). Shared by the MPS pair updates and the
    tree node updates (:mod:`tnkit.ml.ttn_born_machine`).

    Parameters
    ----------
    tensor : numpy.ndarray
        The centre tensor, unit norm.
    problem : object
        ``problem.nll(T)`` (exact NLL with ``T`` at the centre, any norm) and
        ``problem.data_gradient(T)`` (``D(T)``, same shape as ``T``).
    learning_rate : float
        First trial step ``eta``.
    n_steps : int
        Accepted steps at most (fewer once no step lowers the NLL).
    normalized : bool
        A gradient whose half-norm ``||g|| / 2`` is below ``g.size**0.25`` is scaled up to
        it (the ``"norm0.25"`` mode of the authors' later code: small gradients near
        saddles are amplified, large ones kept).
    max_rate : float
        Largest step tried. Sweeps over random subsets, and the normalised rule (a
        fixed small step by design), pass ``learning_rate``: the step then only
        backtracks, never grows.

    Returns
    -------
    tensor : numpy.ndarray
        Unit norm, NLL not above the start's.
    nll : float
        Its NLL.
    rate : float
        The step the next call may start from (the last accepted one, doubled).
    """
    nll = problem.nll(tensor)
    rate = learning_rate
    for _ in range(n_steps):
        grad = 2.0 * tensor - 2.0 * problem.data_gradient(tensor)
        slope = float(np.vdot(grad, grad).real)
        if normalized:
            half_norm = 0.5 * math.sqrt(slope)
            floor = grad.size**0.25
            if 0.0 < half_norm < floor:
                grad = grad * (floor / half_norm)
                slope *= floor / half_norm
        if not slope > 0.0:
            break
        for _ in range(_BACKTRACKS):
            trial = tensor - rate * grad
            norm = float(np.linalg.norm(trial))
            if np.isfinite(norm) and norm > 0.0:
                trial = trial / norm
                trial_nll = problem.nll(trial)
                if trial_nll <= nll - _ARMIJO * rate * slope:
                    break
            rate *= 0.25
        else:
            rate = learning_rate
            break  # no step lowers the NLL: a (local) minimum at this resolution
        tensor, nll = trial, trial_nll
        rate = min(2.0 * rate, max_rate)
    return tensor, nll, rate


#: Backtracking of :func:`sphere_descent`: tries per step, sufficient-decrease factor.
_BACKTRACKS = 12
_ARMIJO = 1e-4


def _split(
    merged: np.ndarray, *, going_right: bool, max_bond: int | None, cutoff: float
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Truncated SVD of ``B`` into two sites, the norm (one) moved to the next centre.

    Returns the two tensors and whether anything was truncated.
    """
    dl, d1, d2, dr = merged.shape
    u, s, vh, discarded = truncated_svd(merged.reshape(dl * d1, d2 * dr), max_bond=max_bond, cutoff=cutoff)
    s = s / np.linalg.norm(s)
    if going_right:
        return u.reshape(dl, d1, -1), (s[:, None] * vh).reshape(-1, d2, dr), discarded > 0
    return (u * s).reshape(dl, d1, -1), vh.reshape(-1, d2, dr), discarded > 0


def _end_nll(envs: _Environments, tensors: list[np.ndarray], centre: int) -> float:
    """Exact NLL of the normalised MPS whose centre is the end site ``centre``."""
    n_sites = len(tensors)
    if centre == n_sites - 1:
        env, scale = envs.env[centre], envs.scale[centre]
        psi = absorb_left(env, tensors[centre], envs.X[:, centre])[:, 0]
    else:
        env, scale = envs.env[1], envs.scale[1]
        psi = absorb_right(env, tensors[0], envs.X[:, 0])[:, 0]
    with np.errstate(divide="ignore"):
        return float(-np.mean(2.0 * (scale + np.log(np.abs(psi)))))


def sweep_train(
    mps: MatrixProductState,
    X: np.ndarray,
    *,
    n_sweeps: int,
    learning_rate: float,
    n_descent_steps: int,
    max_bond: int | None,
    cutoff: float,
    normalized_gradient: bool = False,
    learning_rate_decay: float = 1.0,
    batch_size: int | None = None,
    rng: np.random.Generator | None = None,
    progress: bool = False,
    history: TrainingHistory | None = None,
    callback: Callable[[int, MatrixProductState, float], None] | None = None,
    tol: float | None = None,
    one_site: bool = True,
) -> tuple[MatrixProductState, TrainingHistory]:
    """Train a Born machine by two-site sweeps on the negative log-likelihood.

    Parameters
    ----------
    mps : MatrixProductState
        Starting state (real); it is canonicalised, not modified.
    X : numpy.ndarray of int, shape (n_samples, n_sites)
        Training data, ``0 <= X[:, i] < mps.phys_dims[i]`` (checked by the caller).
    n_sweeps : int
        Number of sweeps; a sweep is one pass over the ``N - 1`` pairs in one
        direction, alternating direction (Han et al.'s "loop" is two sweeps). Full-batch
        sweeps switch to one-site updates (:func:`_one_site_sweep`, nothing truncated)
        once the two-site sweeps have converged by ``tol`` or used half of ``n_sweeps``;
        the two-site sweeps grow the bonds, and near a minimum their truncated splits
        undo the descent (the fit stalls), which one-site updates cannot.
    learning_rate : float
        Step of ``B <- B - learning_rate * dNLL/dB``.
    n_descent_steps : int
        Gradient steps per pair before the split.
    max_bond : int or None
        Largest bond dimension kept by the split.
    cutoff : float
        Largest relative discarded weight per split (see :mod:`tnkit.core.linalg`).
    normalized_gradient : bool
        Scale small gradients up to half-norm ``size**0.25`` (see
        :meth:`_PairProblem.descend`) instead of Han et al.'s plain step.
    learning_rate_decay : float
        Multiply the learning rate by this factor after a sweep that raised the NLL
        (full-batch sweeps only; the authors' code uses 0.2). 1 keeps it fixed. The
        rate of each sweep is recorded in ``history.learning_rate``.
    batch_size : int, optional
        Train each sweep on a fresh random subset of this many samples (drawn with
        ``rng``), as the authors' GPU code does for large data sets; the environments
        then take ``batch_size * sum(D)`` numbers instead of ``n_samples * sum(D)``.
        The NLL recorded per sweep is that of the sweep's batch. ``None``: all samples.
    rng : numpy.random.Generator, optional
        For the batches.
    progress : bool
        Show a tqdm bar over sweeps with the NLL.
    history : TrainingHistory, optional
        Appended to (warm start); a new one by default.
    callback : callable, optional
        ``callback(sweep, mps, nll)`` after each sweep.
    tol : float, optional
        Stop before ``n_sweeps`` once each of the last three one-site sweeps lowered the
        training NLL by less than this (nats; full-batch sweeps only; :func:`converged`).
    one_site : bool
        Whether full-batch sweeps switch to one-site updates (see ``n_sweeps``); without
        them the sweeps stop once the two-site sweeps converge.

    Returns
    -------
    mps : MatrixProductState
        The trained state, normalised, centre at one end.
    history : TrainingHistory
    """
    history = TrainingHistory() if history is None else history
    n_before = len(history.nll)
    n_sites = mps.n_sites
    if n_sites < 2:
        raise ValueError(f"two-site sweeps need at least 2 sites, got {n_sites}.")
    state = mps.copy()
    # start at the end where the centre is (or site 0) and sweep away from it
    start_right = state.center != n_sites - 1
    state.canonicalize_(0 if start_right else n_sites - 1).normalize_()
    tensors = list(state.tensors)
    batched = batch_size is not None and batch_size < len(X)
    rng = np.random.default_rng() if rng is None else rng
    envs = None
    going_right = start_right
    one_site_from: int | None = None  # index in history.nll where the one-site sweeps began
    with progress_bar(n_sweeps, progress) as bar:
        for sweep in range(n_sweeps):
            tick = time.perf_counter()
            if envs is None or batched:
                rows = np.sort(rng.choice(len(X), size=batch_size, replace=False)) if batched else slice(None)
                envs = _start_environments(tensors, X[rows], going_right)
            max_rate = learning_rate if batched or normalized_gradient else 0.5
            with blas_threads(max(t.shape[2] for t in tensors) if max_bond is None else max_bond):
                if one_site_from is None:
                    _one_sweep(tensors, envs, going_right, learning_rate, n_descent_steps, max_bond, cutoff,
                               normalized_gradient, max_rate)
                else:
                    _one_site_sweep(tensors, envs, going_right, learning_rate, n_descent_steps,
                                    normalized_gradient, max_rate)
            nll = _end_nll(envs, tensors, n_sites - 1 if going_right else 0)
            previous = history.nll[-1] if history.nll else None
            record(history, bar, nll, max(t.shape[2] for t in tensors), time.perf_counter() - tick, learning_rate)
            if previous is not None and nll > previous and not batched:
                learning_rate *= learning_rate_decay
            going_right = not going_right
            if callback is not None:
                callback(sweep, _as_mps(tensors, going_right), nll)
            if batched:
                continue
            if one_site_from is not None:
                if converged(history.nll[one_site_from:], tol):
                    break
            elif converged(history.nll[n_before:], tol):
                if not one_site:
                    break
                one_site_from = len(history.nll)
            elif one_site and sweep + 1 >= n_sweeps // 2:
                one_site_from = len(history.nll)
    return _as_mps(tensors, going_right), history


def _start_environments(tensors: list[np.ndarray], X: np.ndarray, going_right: bool) -> _Environments:
    """Environments for a sweep starting at the left end (``going_right``) or the right end."""
    envs = _Environments(X)
    if going_right:
        envs.build_right(tensors, 2)
    else:
        envs.build_left(tensors, len(tensors) - 2)
    return envs


def _as_mps(tensors: list[np.ndarray], next_going_right: bool) -> MatrixProductState:
    n = len(tensors)
    # after a right sweep the centre is at N-1, after a left sweep at 0
    if next_going_right:
        return MatrixProductState.from_tensors(list(tensors), canonical_range=(0, 1), validate=False)
    return MatrixProductState.from_tensors(list(tensors), canonical_range=(n - 1, n), validate=False)


def _one_sweep(
    tensors: list[np.ndarray],
    envs: _Environments,
    going_right: bool,
    learning_rate: float,
    n_steps: int,
    max_bond: int | None,
    cutoff: float,
    normalized: bool,
    max_rate: float = 0.5,
) -> float:
    """One sweep of pair updates; returns the exact NLL of the state it leaves.

    Every pair update is monotone: the merged tensor descends by :func:`sphere_descent`,
    and if the truncated split of the result has a higher NLL than the pair had before
    (the descent went where ``max_bond`` cannot follow), the pair is split unchanged.
    """
    n_sites = len(tensors)
    pairs = range(n_sites - 1) if going_right else range(n_sites - 2, -1, -1)
    nll, rate = math.inf, learning_rate
    for k in pairs:
        start = contract("asb,btc->astc", tensors[k], tensors[k + 1])
        problem = _PairProblem(envs, k, (start.shape[1], start.shape[2]))
        merged, nll, rate = sphere_descent(start, problem, rate, n_steps, normalized, max_rate)
        tensors[k], tensors[k + 1], nll = _truncated_step(problem, start, merged, nll, going_right, max_bond, cutoff)
        if going_right:
            envs.set_left(tensors, k + 1)
        else:
            envs.set_right(tensors, k + 1)
    return nll


def _one_site_sweep(
    tensors: list[np.ndarray],
    envs: _Environments,
    going_right: bool,
    learning_rate: float,
    n_steps: int,
    normalized: bool,
    max_rate: float = 0.5,
) -> float:
    """One sweep of single-site updates at fixed bonds; returns the exact NLL of the state it leaves.

    Each site descends by :func:`sphere_descent` with the rest isometric, then a QR
    (an LQ going left) moves the centre on. Nothing is truncated, so a step that
    lowers the NLL is kept as it is: where the two-site update stalls because the
    truncated split of every descended pair loses what the descent gained, the
    one-site update still descends.
    """
    n_sites = len(tensors)
    sites = range(n_sites) if going_right else range(n_sites - 1, -1, -1)
    nll, rate = math.inf, learning_rate
    for k in sites:
        problem = _PairProblem(envs, k, (tensors[k].shape[1],))
        tensors[k], nll, rate = sphere_descent(tensors[k], problem, rate, n_steps, normalized, max_rate)
        dl, d, dr = tensors[k].shape
        if going_right and k < n_sites - 1:
            q, r = np.linalg.qr(tensors[k].reshape(dl * d, dr))
            tensors[k] = q.reshape(dl, d, -1)
            tensors[k + 1] = contract("ab,bsc->asc", r, tensors[k + 1])
            envs.set_left(tensors, k + 1)
        elif not going_right and k > 0:
            q, r = np.linalg.qr(tensors[k].reshape(dl, d * dr).T)
            tensors[k] = q.T.reshape(-1, d, dr)
            tensors[k - 1] = contract("asb,cb->asc", tensors[k - 1], r)
            envs.set_right(tensors, k)
    return nll


def _truncated_step(
    problem: _PairProblem,
    start: np.ndarray,
    merged: np.ndarray,
    nll: float,
    going_right: bool,
    max_bond: int | None,
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Split the descended pair, backtracking toward ``start`` if the truncation undoes the gain.

    Tries ``start + a (merged - start)`` for ``a = 1, 1/2, .., 1/16`` and keeps the first
    whose truncated split has a lower NLL than ``start``; else splits ``start`` itself
    (already within ``max_bond``). Returns the two sites and the NLL of the state.
    """
    left, right, truncated = _split(merged, going_right=going_right, max_bond=max_bond, cutoff=cutoff)
    if not truncated:
        return left, right, nll
    start_nll = problem.nll(start)
    step = merged - start
    for k in range(5):
        if k:
            trial = start + 0.5**k * step
            left, right, _ = _split(trial / np.linalg.norm(trial), going_right=going_right, max_bond=max_bond,
                                    cutoff=cutoff)
        nll = problem.nll(contract("asb,btc->astc", left, right))
        if nll < start_nll:
            return left, right, nll
    left, right, _ = _split(start, going_right=going_right, max_bond=max_bond, cutoff=cutoff)
    return left, right, start_nll


#: Sweeps in a row that must each gain less than ``tol`` before the sweeps stop.
PATIENCE = 3


def converged(nll: list[float], tol: float | None) -> bool:
    """Whether each of the last :data:`PATIENCE` sweeps of ``nll`` gained less than ``tol`` nats.

    One slow sweep is not enough: the NLL of a Born machine creeps along plateaus and
    then falls again.
    """
    if tol is None or len(nll) <= PATIENCE:
        return False
    return all(nll[k - 1] - nll[k] < tol for k in range(len(nll) - PATIENCE, len(nll)))


def record(history: TrainingHistory, bar: Any, nll: float, max_bond: int, seconds: float, learning_rate: float) -> None:
    """Append one sweep or epoch to ``history`` and show its NLL on the progress bar (if any)."""
    history.append(nll, max_bond, seconds, learning_rate)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(nll=f"{nll:.4f}", bond=max_bond)


def _progress(total: int, enabled: bool):  # noqa: ANN202 - tqdm or None
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Born machine", unit="sweep")


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar over sweeps or epochs (or None when not ``enabled``), closed on exit.

    Closed however the loop ends: all ``total`` steps, an early stop on convergence, or
    an exception.
    """
    bar = _progress(total, enabled)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


# --------------------------------------------------------------------------- full gradient


def nll_and_gradient(tensors: list[np.ndarray], X: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """Exact NLL of ``X`` under the Born machine of ``tensors`` and its gradient.

    Parameters
    ----------
    tensors : list of numpy.ndarray
        Real or complex site tensors ``(D_left, d_i, D_right)``, any gauge and norm.
    X : numpy.ndarray of int, shape (n, n_sites)

    Returns
    -------
    nll : float
        ``log Z - mean log |psi(x)|**2`` in nats.
    grads : list of numpy.ndarray
        ``dNLL/dA_i``, same shapes as ``tensors``; for complex tensors
        ``dNLL/dRe(A_i) + 1j dNLL/dIm(A_i)`` (the direction of steepest ascent).
    """
    chain = _PaddedChain(tensors)
    log_z, norm_grad = chain.norm_terms()
    log_psi, data = chain.data_terms(X)
    grad = 2.0 * norm_grad - 2.0 * data
    return float(log_z - 2.0 * np.mean(log_psi)), chain.unpad(grad)


#: Per-row environments of the gradient trainer are renormalised every this many sites.
_RENORM_EVERY = 4


class _PaddedChain:
    """The site tensors of an MPS in one zero-padded array ``A`` of shape ``(N, D, d, D)``.

    ``D`` is the largest bond and ``d`` the largest number of values; site ``i`` sits in
    ``A[i, :D_i, :d_i, :D_{i+1}]`` and the rest is zero. With uniform shapes every
    per-site operation of the gradient (gathers, the data term, the norm environments'
    contraction with the tensors) is one call for all sites, which removes the Python
    overhead of small tensors. The padding stays exactly zero under gradient steps:
    the environments vanish on padded bond indices and padded values never occur in
    the data, so the gradient is zero there.
    """

    def __init__(self, tensors: list[np.ndarray], dtype: Any = None) -> None:
        self.shapes = [t.shape for t in tensors]
        self.dtype = np.result_type(*tensors) if dtype is None else np.dtype(dtype)
        n_sites = len(tensors)
        bond = max(max(s[0], s[2]) for s in self.shapes)
        self.A = np.zeros((n_sites, bond, max(s[1] for s in self.shapes), bond), dtype=self.dtype)
        for i, t in enumerate(tensors):
            dl, d, dr = t.shape
            self.A[i, :dl, :d, :dr] = t

    def unpad(self, padded: np.ndarray | None = None) -> list[np.ndarray]:
        """Views of ``padded`` (default: the tensors) with the sites' own shapes."""
        padded = self.A if padded is None else padded
        return [padded[i, :dl, :d, :dr] for i, (dl, d, dr) in enumerate(self.shapes)]

    def norm_terms(self) -> tuple[float, np.ndarray]:
        """``log Z`` and ``d log Z / d conj(A)`` for every site, ``(N, D, d, D)``.

        Transfer environments from both ends (ket index first), rescaled by their
        traces every :data:`_RENORM_EVERY` sites; the per-site environment
        ``L_i^T A_i R_i`` of all sites is then one batched product, and dividing it by
        ``<A_i, L_i^T A_i R_i>`` removes the scales.
        """
        A = self.A
        n_sites, bond, d, _ = A.shape
        flat, flat_conj = A.reshape(n_sites, bond * d, bond), A.conj().reshape(n_sites, bond * d, bond)
        rows, rows_conj = A.reshape(n_sites, bond, d * bond), A.conj().reshape(n_sites, bond, d * bond)
        start = np.zeros((bond, bond), dtype=A.dtype)
        start[0, 0] = 1.0
        lefts, log_z = [start], 0.0
        for i in range(n_sites - 1):
            e = (lefts[-1].T @ rows[i]).reshape(bond * d, bond).T @ flat_conj[i]
            if (i + 1) % _RENORM_EVERY == 0:
                tr = float(e.trace().real)
                if not tr > 0:
                    raise FloatingPointError("the state has zero norm.")
                log_z += math.log(tr)
                e = e / tr
            lefts.append(e)
        rights = [start]
        for i in range(n_sites - 1, 0, -1):
            e = (flat[i] @ rights[-1]).reshape(bond, d * bond) @ rows_conj[i].T
            rights.append(e / e.trace().real if i % _RENORM_EVERY == 0 else e)
        env = (np.stack(lefts).transpose(0, 2, 1) @ rows).reshape(n_sites, bond * d, bond)
        env = (env @ np.stack(rights[::-1])).reshape(A.shape)
        weight = np.einsum("iasb,iasb->i", flat_conj.reshape(A.shape), env).real
        if not np.all(weight > 0):
            raise FloatingPointError("the state has zero norm (or overflows).")
        return log_z + math.log(weight[-1]), env / weight[:, None, None, None]

    def _left_pass(self, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Left vectors ``L_i`` (sites before ``i``), products ``L_i A_i[:, x_i, :]`` and ``log|psi|``.

        ``L_i`` are rescaled to unit rows every :data:`_RENORM_EVERY` sites (logs kept
        apart). Each step is one matrix product with all values of the site followed
        by a selection of each row's value: far faster than gathering per-row
        matrices and multiplying them one by one.
        """
        n = len(X)
        n_sites, bond, d, _ = self.A.shape
        rows = self.A.reshape(n_sites, bond, d * bond)
        index = np.arange(n)
        left = np.zeros((n, bond), dtype=self.dtype)
        left[:, 0] = 1.0
        lefts, products, log_scale = [], [], np.zeros(n)
        for i in range(n_sites):
            lefts.append(left)
            product = (left @ rows[i]).reshape(n, d, bond)[index, X[:, i]]
            products.append(product)
            if (i + 1) % _RENORM_EVERY == 0 or i == n_sites - 1:
                left, log_norm = _unit_rows(product)
                log_scale += log_norm
            else:
                left = product
        with np.errstate(divide="ignore"):
            log_psi = log_scale + np.log(np.abs(left[:, 0]))
        return lefts, products, log_psi

    def log_psi(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """``log |psi(x)|`` of each row (left passes only, in chunks of rows)."""
        return np.concatenate([self._left_pass(X[b : b + chunk])[2] for b in range(0, len(X), chunk)])

    def data_terms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log|psi(x)|`` per row and ``conj(1/n sum_x Phi_i(x) / psi(x))`` for every site, ``(N, D, d, D)``.

        A left and a right pass (:meth:`_left_pass`), then the amplitudes and the
        one-hot weighted outer products of all sites in a few batched calls.
        """
        n = len(X)
        n_sites, bond, d, _ = self.A.shape
        lefts, products, log_psi = self._left_pass(X)
        cols = np.ascontiguousarray(self.A.transpose(0, 3, 2, 1)).reshape(n_sites, bond, d * bond)
        index = np.arange(n)
        right = np.zeros((n, bond), dtype=self.dtype)
        right[:, 0] = 1.0
        rights = [right]
        for i in range(n_sites - 1, 0, -1):
            right = (right @ cols[i]).reshape(n, d, bond)[index, X[:, i]]
            if i % _RENORM_EVERY == 0:
                right = _unit_rows(right)[0]
            rights.append(right)
        rights = np.stack(rights[::-1])
        psi = np.einsum("inb,inb->in", np.stack(products), rights)
        psi[np.abs(psi) < TINY] = TINY
        one_hot = X.T[:, :, None] == np.arange(d)
        stacked = (one_hot[:, :, :, None] * np.stack(lefts)[:, :, None, :]).reshape(n_sites, n, d * bond)
        g = (stacked.transpose(0, 2, 1) @ (rights / psi[:, :, None])).reshape(n_sites, d, bond, bond)
        g = g.transpose(0, 2, 1, 3)
        return log_psi, (g.conj() if np.iscomplexobj(g) else g) / n

    def nll(self, X: np.ndarray) -> float:
        """Exact NLL of the rows ``X``."""
        log_z, _ = self.norm_terms()
        return float(log_z - 2.0 * np.mean(self.log_psi(X)))


def _unit_rows(env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows divided by their 2-norms (zero rows kept) and the log-norms: one reduction, real or complex."""
    sq = np.einsum("na,na->n", env, env.conj()).real if np.iscomplexobj(env) else np.einsum("na,na->n", env, env)
    norms = np.sqrt(sq, out=sq)
    norms[norms == 0] = 1.0
    return env / norms[:, None], np.log(norms)


class _FlatAdam:
    """Adam on one flat real array of parameters (complex entries as two reals)."""

    def __init__(self, size: int, learning_rate: float) -> None:
        self.rate, self.t = learning_rate, 0
        self.m, self.v = np.zeros(size), np.zeros(size)

    def step(self, theta: np.ndarray, grad: np.ndarray, beta1: float = 0.9, beta2: float = 0.999) -> None:
        """Move ``theta`` (in place) one step against ``grad``."""
        self.t += 1
        self.m *= beta1
        self.m += (1 - beta1) * grad
        self.v *= beta2
        self.v += (1 - beta2) * grad * grad
        scale = self.rate * math.sqrt(1 - beta2**self.t) / (1 - beta1**self.t)
        theta -= scale * self.m / (np.sqrt(self.v) + 1e-8)


def gradient_train(
    mps: MatrixProductState,
    X: np.ndarray,
    *,
    n_epochs: int,
    batch_size: int,
    learning_rate: float,
    rng: np.random.Generator,
    progress: bool = False,
    history: TrainingHistory | None = None,
) -> tuple[MatrixProductState, TrainingHistory]:
    """Train all site tensors together with Adam on minibatches (bond dimensions fixed).

    The tensors live in one zero-padded array ``(N, D, d, D)`` (:class:`_PaddedChain`),
    so each part of the gradient is one call for all sites and Adam is a few vector
    operations on its flat view; before each step the state is rescaled to ``Z = 1``
    with the ``Z`` its gradient needs anyway.

    Parameters
    ----------
    mps : MatrixProductState
        Starting state (real or complex).
    X : numpy.ndarray of int, shape (n_samples, n_sites)
    n_epochs : int
        Passes over the shuffled data.
    batch_size : int
        Samples per step.
    learning_rate : float
        Adam's step size.
    rng : numpy.random.Generator
        For the shuffles.
    progress : bool
        Show a tqdm bar over epochs with the NLL.
    history : TrainingHistory, optional
        Appended to (warm start).

    Returns
    -------
    mps : MatrixProductState
        Normalised, right-canonical (centre 0).
    history : TrainingHistory
        The NLL recorded per epoch is that of the whole training set at the epoch's end.
    """
    history = TrainingHistory() if history is None else history
    chain = _PaddedChain(list(mps.normalized().tensors))
    theta = chain.A.reshape(-1)
    real = theta.view(np.float64)
    adam = _FlatAdam(real.size, learning_rate)
    n_sites = len(chain.shapes)
    bond = max(s[2] for s in chain.shapes)
    with progress_bar(n_epochs, progress) as bar:
        for _ in range(n_epochs):
            tick = time.perf_counter()
            shuffled = X[rng.permutation(len(X))]
            with blas_threads(bond):
                for begin in range(0, len(X), batch_size):
                    log_z, norm_grad = chain.norm_terms()
                    theta *= math.exp(-log_z / (2 * n_sites))
                    _, data = chain.data_terms(shuffled[begin : begin + batch_size])
                    grad = 2.0 * norm_grad - 2.0 * data
                    adam.step(real, grad.reshape(-1).view(np.float64))
                nll = chain.nll(X)
            record(history, bar, nll, bond, time.perf_counter() - tick, learning_rate)
    state = MatrixProductState([t.copy() for t in chain.unpad()])
    state.canonicalize_(0).normalize_()
    return state, history
