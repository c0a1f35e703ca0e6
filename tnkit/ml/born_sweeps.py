"""Two-site and one-site NLL sweeps of MPS Born machines (:func:`sweep_train`).

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

Distinct rows. The NLL and its gradient are sums over samples of terms that depend
on the sample only, so the environments hold each distinct training row once and the
sums weigh it by its frequency (:class:`CountedEnvironments`): the same objective, and
every pass over the environments shrinks by the repetition of the data (20,000
samples of a 16-site, bond-8 Born distribution hold 5,000-7,300 distinct rows, of a
12-site, bond-4 one 1,300-1,800).

Numerical safety. ``Phi(x) / psi(x)`` is invariant under scaling ``L(x)`` and
``R(x)``, so the per-sample environments are stored normalised to unit norm with
their log-scales kept apart (as in :mod:`tnkit.ml.environments`); nothing over- or
underflows on hundreds of sites, whatever the learning rate or the start.

Why a gather and not :class:`tnkit.ml.environments.BatchEnvironments`. The data are
integers; their one-hot embedding makes ``L(x) (x) e_{x_k}`` mostly zeros. Grouping
the samples by ``(x_k, x_{k+1})`` turns ``psi`` and the gradient into one
``(n_g, D) @ (D, D)`` product per group: ``d_k d_{k+1}`` times fewer operations than
contracting the one-hot vectors, and physical dimensions may differ from site to
site (categorical features), which the shared environments do not allow; the
gathers live in :mod:`tnkit.ml.environments` (:class:`~tnkit.ml.environments.CodedEnvironments`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.contract import contract
from ..core.linalg import truncated_svd
from ..core.threads import blas_threads
from ..mps.mps import MatrixProductState
from .environments import TINY, CodedEnvironments, absorb_left, absorb_right, group_rows
from .history import TrainingHistory, converged, progress_bar, record

__all__ = ["sweep_train", "sphere_descent", "PairProblem", "CountedEnvironments"]


class PairProblem:
    """The NLL as a function of the merged pair ``(k, k+1)`` (or of site ``k``), the environments fixed.

    ``dims`` holds the numbers of values of the two sites (or of the one site);
    ``weights`` (shape ``(n,)``, summing to one) weighs the rows of the environments, the
    frequencies of distinct samples (:class:`CountedEnvironments`); ``None``: ``1/n`` each.

    With the rest of the chain isometric, ``NLL(B) = log ||B||**2 - 1/n sum_x log psi(x)**2``
    exactly (the stored log-scales of the environments added back), so a local step that
    lowers it lowers the NLL of the whole state.
    """

    def __init__(
        self, envs: CodedEnvironments, k: int, dims: tuple[int, ...], weights: np.ndarray | None = None
    ) -> None:
        width = len(dims)  # 2: the pair (k, k+1); 1: the single site k
        left, right = envs.env[k], envs.env[k + width]
        self.n = left.shape[0]
        self.log_scale = envs.scale[k] + envs.scale[k + width]
        weights = np.full(self.n, 1.0 / self.n) if weights is None else weights
        self._mean_log_scale = float(np.dot(weights, self.log_scale))
        self.groups = [
            ((slice(None), *values, slice(None)), rows, left[rows], right[rows])
            for values, rows in group_rows(*(envs.X[:, k + j] for j in range(width)), dims=dims)
        ]
        self._weights = [weights[rows] for _, rows, _, _ in self.groups]
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
            total = sum(float(np.dot(w, np.log(np.abs(a)))) for w, a in zip(self._weights, self._group_psi(merged)))
        return float(np.log(np.vdot(merged, merged).real)) - 2.0 * (total + self._mean_log_scale)

    def data_gradient(self, merged: np.ndarray) -> np.ndarray:
        """``sum_x w(x) Phi(x) / psi(x)`` (same shape as ``merged``; ``w = 1/n`` without weights)."""
        grad = np.zeros_like(merged)
        for (index, _, left, right), w, psi in zip(self.groups, self._weights, self._group_psi(merged), strict=True):
            psi = np.where(np.abs(psi) < TINY, TINY, psi)
            grad[index] = left.T @ (right * (w / psi)[:, None])
        return grad.conj() if np.iscomplexobj(grad) else grad


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


class CountedEnvironments(CodedEnvironments):
    """:class:`~tnkit.ml.environments.CodedEnvironments` of the distinct rows of the data, with their frequencies.

    The NLL and its gradient are sums over samples of terms that depend on the sample
    only, so the distinct rows weighted by their frequencies give them exactly. Data drawn
    from a distribution of low entropy repeat many rows (20,000 samples of a 16-site, bond-8
    Born distribution hold 5,000-7,300 distinct rows; of a 12-site one 1,300-1,800), and
    every pass over the environments shrinks by that factor.

    Attributes
    ----------
    weights : numpy.ndarray, shape (n_distinct,)
        Frequency of each distinct row (sums to one).
    """

    def __init__(self, X: np.ndarray) -> None:
        rows, counts = np.unique(X, axis=0, return_counts=True)
        super().__init__(rows)
        self.weights = counts / counts.sum()


def _end_nll(envs: CountedEnvironments, tensors: list[np.ndarray], centre: int) -> float:
    """Exact NLL of the normalised MPS whose centre is the end site ``centre``."""
    n_sites = len(tensors)
    if centre == n_sites - 1:
        env, scale = envs.env[centre], envs.scale[centre]
        psi = absorb_left(env, tensors[centre], envs.X[:, centre])[:, 0]
    else:
        env, scale = envs.env[1], envs.scale[1]
        psi = absorb_right(env, tensors[0], envs.X[:, 0])[:, 0]
    with np.errstate(divide="ignore"):
        return float(-np.dot(envs.weights, 2.0 * (scale + np.log(np.abs(psi)))))


@dataclass(frozen=True)
class Descent:
    """How each centre tensor descends in a sweep (the options of :func:`sphere_descent`).

    Attributes
    ----------
    learning_rate : float
        First trial step of the sweep (each update then starts from the last one's step).
    n_steps : int
        Accepted steps per update.
    normalized : bool
        The ``"norm0.25"`` rule for small gradients.
    max_rate : float
        Largest step tried.
    """

    learning_rate: float
    n_steps: int
    normalized: bool
    max_rate: float

    @property
    def options(self) -> tuple[int, bool, float]:
        """``(n_steps, normalized, max_rate)``, the trailing arguments of :func:`sphere_descent`."""
        return self.n_steps, self.normalized, self.max_rate


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
        :meth:`PairProblem.descend`) instead of Han et al.'s plain step.
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
            descent = Descent(learning_rate, n_descent_steps, normalized_gradient,
                              learning_rate if batched or normalized_gradient else 0.5)
            with blas_threads(max(t.shape[2] for t in tensors) if max_bond is None else max_bond):
                if one_site_from is None:
                    _one_sweep(tensors, envs, going_right, descent, max_bond, cutoff)
                else:
                    _one_site_sweep(tensors, envs, going_right, descent)
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


def _start_environments(tensors: list[np.ndarray], X: np.ndarray, going_right: bool) -> CountedEnvironments:
    """Environments of the distinct rows of ``X`` for a sweep starting at the left end (``going_right``) or the right end."""
    envs = CountedEnvironments(X)
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
    envs: CountedEnvironments,
    going_right: bool,
    descent: Descent,
    max_bond: int | None,
    cutoff: float,
) -> float:
    """One sweep of pair updates; returns the exact NLL of the state it leaves.

    Every pair update is monotone: the merged tensor descends by :func:`sphere_descent`,
    and if the truncated split of the result has a higher NLL than the pair had before
    (the descent went where ``max_bond`` cannot follow), the pair is split unchanged.
    """
    n_sites = len(tensors)
    pairs = range(n_sites - 1) if going_right else range(n_sites - 2, -1, -1)
    nll, rate = math.inf, descent.learning_rate
    for k in pairs:
        start = contract("asb,btc->astc", tensors[k], tensors[k + 1])
        problem = PairProblem(envs, k, (start.shape[1], start.shape[2]), envs.weights)
        merged, nll, rate = sphere_descent(start, problem, rate, *descent.options)
        tensors[k], tensors[k + 1], nll = _truncated_step(problem, start, merged, nll, going_right, max_bond, cutoff)
        if going_right:
            envs.set_left(tensors, k + 1)
        else:
            envs.set_right(tensors, k + 1)
    return nll


def _one_site_sweep(
    tensors: list[np.ndarray],
    envs: CountedEnvironments,
    going_right: bool,
    descent: Descent,
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
    nll, rate = math.inf, descent.learning_rate
    for k in sites:
        problem = PairProblem(envs, k, (tensors[k].shape[1],), envs.weights)
        tensors[k], nll, rate = sphere_descent(tensors[k], problem, rate, *descent.options)
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
    problem: PairProblem,
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
