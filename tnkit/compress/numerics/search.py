"""One factorisation family searched per layer, and the global budget as one knapsack.

A weight ``W`` (``(out, in)``) factorised as an MPO is defined by how its row and column
dimensions are split over cores. The two-core split with *every* output leg on core 0
and *every* input leg on core 1 (``out_dims = (out, 1)``, ``in_dims = (1, in)``) is
exactly a low-rank layer ``W ~ U V`` with the bond as the rank: :class:`LowRankLinear`.
The balanced two-core split (``out = o_0 o_1``, ``in = i_0 i_1``) is a sum of Kronecker
products (CompactifAI's MPO); three or four cores split further. Keeping the layer dense
is the last candidate. This module offers every layer all of them::

    candidate   cores                         params at bond r        error curve costs
    ---------   ---------------------------   ---------------------   -------------------------
    lowrank     (1, out, 1, r)(r, 1, in, 1)   r (out + in)            one eigendecomposition of
                                                                      (W S)^T (W S), S S^T = C
    mpo         (1, o0, i0, r)(r, o1, i1, 1)  r (o0 i0 + o1 i1) + in  one factorisation and one
                                                                      exact error per grid bond
    mpo3/mpo4   3 / 4 balanced cores          (idem)                  (idem)
    dense       W                             out * in                0

Every error is the layer's *absolute* expected output error on its calibration inputs,
``eps = tr((W - M) C (W - M)^T)`` with ``C = E[x x^T]``: for ``lowrank`` the tail of the
singular values of ``W S`` (SVD-LLM's truncation is optimal in this metric, so these are
exact), for the MPO candidates the error of the factorisation actually built
(:func:`tnkit.compress.whitened_mpo_factorize`, no ALS sweeps) measured on ``C``.

The global problem is a **multiple-choice knapsack**: pick one option ``j_l`` per layer
to minimise ``sum_l g_l eps_l[j_l]`` subject to ``sum_l params_l[j_l] <= budget`` (and,
optionally, ``sum_l flops_l[j_l] <= max_flops``). ``g_l`` is the layer's measured
sensitivity: by default :func:`gradient_weights`, the mean squared gradient of the
language-model loss with respect to the layer's output per output channel, so that
``g_l eps_l`` is the second-order (Fisher) estimate of the loss increase caused by the
layer's error, assuming the error is isotropic in the output space. :func:`knapsack`
solves it exactly by dynamic programming on the budget discretised into ``resolution``
units (each option's cost rounded *up*, so the real budget always holds), then repairs
the rounding by taking, while anything fits, the upgrade with the largest weighted error
decrease per parameter. A FLOPs constraint is handled by a Lagrange multiplier on the
FLOPs, bisected until the constraint holds.

Because the low-rank options are among every layer's candidates, the search's objective
is never worse than whitened SVD's at the same budget (uniform or allocated): it
optimises over a superset.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.threads import with_blas_threads
from ...core.validate import check_int, check_option

__all__ = [
    "FAMILIES",
    "LayerOptions",
    "layer_options",
    "knapsack",
    "search_allocation",
    "gradient_weights",
    "lowrank_dims",
    "whitened_weight",
    "WhitenedBasis",
]

#: Candidate families of the per-layer search (``"dense"`` is always a candidate).
FAMILIES = ("lowrank", "mpo", "mpo3", "mpo4")
_CORES = {"mpo": 2, "mpo3": 3, "mpo4": 4}


def lowrank_dims(out: int, inp: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two-core split that is a low-rank layer: all output legs on core 0, all input legs on core 1."""
    return (int(out), 1), (1, int(inp))


@dataclass(frozen=True)
class LayerOptions:
    """The candidates of one layer, one entry per option.

    Attributes
    ----------
    families : tuple of str
        ``"lowrank"``, ``"mpo"``, ``"mpo3"``, ``"mpo4"`` or ``"dense"``.
    sizes : numpy.ndarray of int
        Rank or bond dimension (``-1`` for dense).
    params : numpy.ndarray of int
        Numbers stored (the dense option: ``out * in``).
    errors : numpy.ndarray of float
        Absolute output error ``tr(E C E^T)`` (0 for dense).
    flops : numpy.ndarray of int
        Multiply-adds per input row of the factored forward pass.
    """

    families: tuple[str, ...]
    sizes: np.ndarray
    params: np.ndarray
    errors: np.ndarray
    flops: np.ndarray
    basis: Any = None  # a WhitenedBasis, or None

    def __len__(self) -> int:
        return len(self.families)

    @classmethod
    def concat(cls, parts: Sequence[LayerOptions]) -> LayerOptions:
        """The options of several candidate lists together (the first basis among them is kept)."""
        return cls(sum((p.families for p in parts), ()), np.concatenate([p.sizes for p in parts]).astype(int),
                   np.concatenate([p.params for p in parts]).astype(np.int64),
                   np.concatenate([p.errors for p in parts]).astype(float),
                   np.concatenate([p.flops for p in parts]).astype(np.int64),
                   next((p.basis for p in parts if p.basis is not None), None))

    def without_basis(self) -> LayerOptions:
        """The same options without ``basis`` (which holds a ``min(out, in)``-square array)."""
        return self if self.basis is None else dataclasses.replace(self, basis=None)


@dataclass(frozen=True)
class WhitenedBasis:
    """The eigenvectors behind a layer's low-rank candidates, from which the factors of every rank follow.

    The low-rank candidate truncates the whitened weight ``W S`` (``S S^T = C + d I``,
    :func:`tnkit.core.linalg.cholesky_whitener`); its error curve is the spectrum of the
    smaller Gram matrix of ``W S``. Kept with its eigenvectors (one eigendecomposition
    with vectors instead of values only), the truncation to any rank needs no second
    eigendecomposition: :meth:`factors` gives the factors
    :func:`tnkit.compress.layers.lowrank.lowrank_factors` (``method="whiten"``) gives, to rounding.

    Attributes
    ----------
    vectors : numpy.ndarray, shape (k, k)
        Eigenvectors, by descending eigenvalue: of ``(W S)^T (W S)`` (``side="right"``,
        ``k = in``) or of ``(W S)(W S)^T = W (C + d I) W^T`` (``side="left"``, ``k = out``).
    side : {"right", "left"}
    total : float
        ``||W S||_F^2``.
    values : numpy.ndarray, shape (k,)
        The eigenvalues (descending, clipped at 0).
    """

    vectors: np.ndarray
    side: str
    total: float
    values: np.ndarray

    def factors(self, weight: np.ndarray, rank: int, whitener: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, float]:
        """``U (out, rank)``, ``V (rank, in)`` with ``U V`` the rank-``rank`` whitened truncation of ``weight``.

        Parameters
        ----------
        weight : numpy.ndarray, shape (out, in)
            The weight the basis was computed for.
        rank : int
            At most ``k``.
        whitener : numpy.ndarray, shape (in, in), optional
            ``S``; needed for ``side="right"`` (``U = W S V_k``, ``V = V_k^T S^-1``). A
            left basis needs none: ``U = U_k``, ``V = U_k^T W S S^-1 = U_k^T W``.

        Returns
        -------
        U, V : numpy.ndarray
        error : float
            Relative squared error in the whitened basis (dropped eigenvalues over ``total``).
        """
        from scipy.linalg import solve_triangular

        rank = check_int("rank", rank, minimum=1)
        if rank > len(self.values):
            raise ValueError(f"`rank` must be at most {len(self.values)} for this basis, got {rank}.")
        w = np.asarray(weight, dtype=np.float64)
        vk = np.ascontiguousarray(self.vectors[:, :rank])
        error = max(self.total - float(self.values[:rank].sum()), 0.0) / max(self.total, 1e-300)
        if self.side == "left":
            return vk, vk.T @ w, error
        if whitener is None:
            raise ValueError("a right basis needs the `whitener` S it was computed with.")
        u = whitened_weight(w, whitener) @ vk
        v = solve_triangular(whitener, vk, trans="T", lower=True, check_finite=False).T  # V_k^T S^-1
        return u, np.ascontiguousarray(v), error


def whitened_weight(weight: np.ndarray, whitener: np.ndarray) -> np.ndarray:
    """``weight @ whitener`` for a lower-triangular ``whitener``, as a new float64 array (BLAS ``trmm``).

    Half the multiply-adds of a full product: the whitened weight ``W S`` whose spectrum is
    the low-rank candidate's error curve (``S S^T = C``, :func:`tnkit.core.linalg.cholesky_whitener`).
    """
    from scipy.linalg.blas import dtrmm

    w = np.array(weight, dtype=np.float64, order="C")  # a copy: trmm overwrites it
    # w is C-ordered, so w.T is a Fortran-ordered view: w.T <- whitener^T w.T is w <- w whitener
    out = dtrmm(1.0, np.asfortranarray(whitener, dtype=np.float64), w.T, side=0, lower=1, trans_a=1, overwrite_b=1)
    return w if np.shares_memory(out, w) else np.ascontiguousarray(out.T)


#: relative damping of the whitener (:func:`tnkit.core.linalg.cholesky_whitener`'s default), so that the
#: spectrum of ``W (C + damping mean(diag C) I) W^T`` is that of the whitened weight
_WHITENER_DAMPING = 1e-6


def _whitened_spectrum(w: np.ndarray, c: np.ndarray | None, whitener: np.ndarray | None, *,
                       keep_basis: bool = False) -> tuple[np.ndarray, WhitenedBasis | None]:
    """Singular values of the whitened weight ``W S`` (``S S^T = C``, damped), descending; and with
    ``keep_basis`` the eigenvectors behind them (:class:`WhitenedBasis`, else ``None``).

    Given the whitener: from ``W S``. Without it, for a wide weight (``out < in``: no
    Cholesky factorisation of the larger ``in x in`` matrix) as the square roots of the
    eigenvalues of ``W (C + d I) W^T`` (the same matrix as ``(W S)(W S)^T``); otherwise the
    whitener is computed.
    """
    from ...core.linalg import cholesky_whitener, gram

    out, inp = w.shape
    if whitener is None and out < inp:
        shift = _WHITENER_DAMPING * max(float(np.mean(np.diag(c))), 1e-30)
        g = (w @ c) @ w.T
        g += shift * (w @ w.T)
        side = "left"
    else:
        m = whitened_weight(w, cholesky_whitener(c) if whitener is None else whitener)
        side = "right" if inp <= out else "left"
        g = gram(m) if side == "right" else gram(m.T)
        del m
    total = float(np.trace(g))
    if keep_basis:  # LAPACK's divide and conquer through SciPy: 39 ms for a 576 matrix on one thread, numpy's 55 ms
        from scipy.linalg import eigh

        values, vectors = eigh(g, driver="evd", overwrite_a=True, check_finite=False)
        values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
    else:
        values, vectors = np.clip(np.linalg.eigvalsh(g)[::-1], 0.0, None), None
    basis = None if vectors is None else WhitenedBasis(vectors, side, total, values)
    return np.sqrt(values), basis


def _lowrank_options(w: np.ndarray, c: np.ndarray | None, step: int, whitener: np.ndarray | None = None,
                     keep_basis: bool = False) -> LayerOptions:
    out, inp = w.shape
    s, basis = _whitened_spectrum(w, c, whitener, keep_basis=keep_basis)
    tail = np.concatenate([np.cumsum((s * s)[::-1])[::-1], [0.0]])
    ranks = np.arange(step, len(s) + 1, step)
    ranks = ranks[ranks * (out + inp) < out * inp]
    per = ranks * (out + inp)
    return LayerOptions(("lowrank",) * len(ranks), ranks, per, tail[ranks], per, basis)


def _mpo_flops(out_dims: Sequence[int], in_dims: Sequence[int], bond: int) -> int:
    """Multiply-adds per input row of the factored MPO product, cores applied from the last to the first."""
    n = len(out_dims)
    bonds = [1] + [bond] * (n - 1) + [1]
    total, done_out = 0, 1
    for k in range(n - 1, -1, -1):
        rest_in = math.prod(in_dims[:k])
        total += rest_in * done_out * bonds[k + 1] * out_dims[k] * in_dims[k] * bonds[k]
        done_out *= out_dims[k]
    return int(total)


def _mpo_options(w: np.ndarray, c: np.ndarray, family: str, fractions: Sequence[float], ridge: float
                 ) -> LayerOptions:
    """Whitened MPOs (TT-SVD stage) at the bonds whose size is each fraction of the dense layer; exact errors."""
    from scipy.linalg import solve_triangular

    from ...mps.mpo import balanced_factors
    from .factorize import bond_for_params, max_bonds, mpo_factorize, mpo_to_dense
    from ...core.linalg import ridge_covariance
    from .whitened_mpo import (
        apply_to_input_legs,
        channel_rms,
        site_whiteners,
        whiten_weight,
        kronecker_covariance,
    )

    n = _CORES[family]
    out, inp = w.shape
    od, idd = balanced_factors(out, n), balanced_factors(inp, n)
    if min(min(od), min(idd)) == 1 and n > 2:  # a prime-sized leg: no genuine n-core split
        return LayerOptions((), np.zeros(0, int), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    cr = ridge_covariance(c, ridge)
    d = channel_rms(cr)
    ws, cs = w * d[None, :], cr / np.outer(d, d)
    whiteners = site_whiteners(kronecker_covariance(cs, idd), 1e-6)
    inverses = [solve_triangular(s, np.eye(len(s)), lower=True) for s in whiteners]
    target = whiten_weight(ws, idd, whiteners)
    cw = c @ w.T  # (in, out): the exact error below is tr(E C E^T) = tr(W C W^T) - 2 tr(M C W^T) + tr(M C M^T)
    base = float(np.sum(w.T * cw))
    bonds = sorted({bond_for_params(od, idd, f * out * inp - inp) for f in fractions})
    limit = max(max_bonds(od, idd))
    fam, sizes, params, errors, flops = [], [], [], [], []
    for b in bonds:
        b = min(b, limit)
        f = mpo_factorize(target, out_dims=od, in_dims=idd, max_bond=b)
        cores = apply_to_input_legs(list(f.cores), inverses)
        m = mpo_to_dense(cores) / d[None, :]
        err = base - 2.0 * float(np.sum(m.T * cw)) + float(np.sum((m @ c) * m))
        fam.append(family)
        sizes.append(b)
        params.append(f.num_params + inp)
        errors.append(max(err, 0.0))
        flops.append(_mpo_flops(od, idd, b) + inp)
    return LayerOptions(tuple(fam), np.array(sizes, int), np.array(params, np.int64), np.array(errors),
                        np.array(flops, np.int64))


@with_blas_threads(lambda weight, *args, **kwargs: min(np.shape(weight)))  # one thread below bond 1024
def layer_options(weight: np.ndarray, covariance: np.ndarray, *, families: Sequence[str] = ("lowrank",),
                  step: int = 8, mpo_fractions: Sequence[float] = (0.3, 0.5, 0.7), mpo_ridge: float = 0.3,
                  whitener: np.ndarray | None = None, keep_basis: bool = False) -> LayerOptions:
    """Every candidate of one layer with its exact absolute output error (see the module docstring).

    Parameters
    ----------
    weight : numpy.ndarray, shape (out, in)
    covariance : numpy.ndarray, shape (in, in)
        ``C = E[x x^T]`` of the layer's inputs.
    families : sequence of str
        Candidate families among :data:`FAMILIES`; the dense layer is always added.
    step : int
        Ranks of the low-rank candidate considered: multiples of ``step``.
    mpo_fractions : sequence of float
        Sizes of the MPO candidates, as fractions of the dense layer's parameters (each
        costs one factorisation and one exact error).
    mpo_ridge : float
        Relative ridge of the whitened MPO factorisation (its error is measured on ``C``).
    whitener : numpy.ndarray, shape (in, in), optional
        :func:`tnkit.core.linalg.cholesky_whitener` ``(covariance)`` when the caller has it
        (layers fed the same input share one); computed otherwise.
    keep_basis : bool
        Keep the eigenvectors of the low-rank candidates in ``LayerOptions.basis``
        (a ``WhitenedBasis``: the factors of any rank without a second eigendecomposition).

    Returns
    -------
    LayerOptions
        Sorted by parameters; the last option is the dense layer.
    """
    for fam in families:
        check_option("families", fam, FAMILIES)
    step = check_int("step", step, minimum=1)
    w = np.asarray(weight, dtype=np.float64)
    c = np.asarray(covariance, dtype=np.float64)
    if w.ndim != 2 or c.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"`covariance` must have shape ({w.shape[1]}, {w.shape[1]}) for a weight of shape "
                         f"{w.shape}, got {c.shape}.")
    parts = []
    for fam in dict.fromkeys(families):
        parts.append(_lowrank_options(w, c, step, whitener, keep_basis) if fam == "lowrank"
                     else _mpo_options(w, c, fam, mpo_fractions, mpo_ridge))
    dense = w.size
    parts.append(LayerOptions(("dense",), np.array([-1]), np.array([dense]), np.array([0.0]), np.array([dense])))
    opts = LayerOptions.concat(parts)
    keep = opts.params <= dense  # an option bigger than the dense layer never pays
    order = np.argsort(opts.params[keep], kind="stable")
    idx = np.flatnonzero(keep)[order]
    return LayerOptions(tuple(opts.families[i] for i in idx), opts.sizes[idx], opts.params[idx], opts.errors[idx],
                        opts.flops[idx], opts.basis)


# ----------------------------------------------------------------------------- knapsack


def knapsack(costs: Sequence[np.ndarray], values: Sequence[np.ndarray], budget: int, *,
             resolution: int = 4096) -> list[int]:
    """Exact-up-to-discretisation multiple-choice knapsack: one option per group, least total value.

    Parameters
    ----------
    costs : sequence of numpy.ndarray of int
        ``costs[l][j]``: cost of option ``j`` of group ``l`` (at least 0).
    values : sequence of numpy.ndarray of float
        ``values[l][j]``: what option ``j`` adds to the objective (lower is better).
    budget : int
        Upper bound on the total cost.
    resolution : int
        The budget is split into this many units; costs are rounded up to whole units,
        so the solution always fits. When every cost is a multiple of
        ``ceil(budget / resolution)`` the result is exactly optimal.

    Returns
    -------
    list of int
        The chosen option of each group.

    Raises
    ------
    ValueError
        If the cheapest options together exceed ``budget``.
    """
    budget = check_int("budget", budget, minimum=0)
    resolution = check_int("resolution", resolution, minimum=1)
    costs = [np.asarray(c, dtype=np.int64) for c in costs]
    values = [np.asarray(v, dtype=float) for v in values]
    least = sum(int(c.min()) for c in costs)
    if least > budget:
        raise ValueError(f"`budget` of {budget:,} is below the smallest possible total {least:,}.")
    unit = max(1, -(-budget // resolution))
    cap = budget // unit
    units = [-(-c // unit) for c in costs]  # rounded up: the real total never exceeds the budget
    inf = np.inf
    best = np.zeros(cap + 1)  # best[b]: least value of the groups so far within b units
    picks = []
    for u, v in zip(units, values):
        new = np.full(cap + 1, inf)
        arg = np.zeros(cap + 1, dtype=np.int32)
        for j in np.argsort(v):
            if u[j] > cap:
                continue
            cand = np.full(cap + 1, inf)
            cand[u[j]:] = best[: cap + 1 - u[j]] + v[j]
            better = cand < new
            new[better] = cand[better]
            arg[better] = j
        best = new
        picks.append(arg)
    b = int(np.argmin(best))
    if not np.isfinite(best[b]):  # rounding made the cheapest set infeasible: fall back to it
        choice = [int(np.argmin(c)) for c in costs]
    else:
        choice = [0] * len(costs)
        for g in range(len(costs) - 1, -1, -1):
            j = int(picks[g][b])
            choice[g] = j
            b -= int(units[g][j])
    return _repair(costs, values, choice, budget)


def _repair(costs, values, choice, budget) -> list[int]:
    """Spend what the rounding left: repeatedly take the fitting change with the largest value gain per cost."""
    used = sum(int(c[j]) for c, j in zip(costs, choice))
    while True:
        best, best_gain = None, 0.0
        for g, (c, v) in enumerate(zip(costs, values)):
            j = choice[g]
            extra = c - c[j]
            gain = v[j] - v
            ok = (extra + used <= budget) & (gain > 0)
            if not ok.any():
                continue
            rate = np.where(ok, gain / np.maximum(extra, 1), -np.inf)
            k = int(np.argmax(rate))
            if rate[k] > best_gain:
                best, best_gain = (g, k), float(rate[k])
        if best is None:
            return choice
        g, k = best
        used += int(costs[g][k] - costs[g][choice[g]])
        choice[g] = k


def search_allocation(options: Mapping[str, LayerOptions], budget: int, *, weights: Mapping[str, float] | None = None,
                      max_flops: int | None = None, resolution: int = 4096) -> dict[str, int]:
    """The option of each layer minimising ``sum g_l eps_l`` within ``budget`` parameters (and ``max_flops``).

    Parameters
    ----------
    options : mapping of layer name to LayerOptions
    budget : int
        Total parameters of these layers together.
    weights : mapping of layer name to float, optional
        Sensitivity ``g_l`` of each layer's error (default 1).
    max_flops : int, optional
        Upper bound on the multiply-adds per token of these layers together; enforced
        through a Lagrange multiplier on the FLOPs, bisected (the result always satisfies
        it when the smallest options do).
    resolution : int
        Budget units of the dynamic programme (:func:`knapsack`).

    Returns
    -------
    dict of str to int
        Index into each layer's options.
    """
    names = list(options)
    g = np.array([float((weights or {}).get(n, 1.0)) for n in names])
    if not (np.isfinite(g).all() and (g >= 0).all()):
        raise ValueError("`weights` must be finite numbers >= 0.")
    costs = [options[n].params for n in names]
    errs = [options[n].errors * gi for n, gi in zip(names, g)]

    def solve(lam: float) -> list[int]:
        vals = errs if lam == 0 else [e + lam * options[n].flops for e, n in zip(errs, names)]
        return knapsack(costs, vals, budget, resolution=resolution)

    choice = solve(0.0)
    if max_flops is not None:
        flops = lambda ch: sum(int(options[n].flops[j]) for n, j in zip(names, ch))  # noqa: E731
        if flops(choice) > max_flops:
            scale = max(float(sum(e.max() for e in errs)), 1e-300) / max(float(max_flops), 1.0)
            lo, hi = 0.0, scale
            while flops(solve(hi)) > max_flops and hi < scale * 1e12:
                hi *= 10.0
            choice = solve(hi)
            if flops(choice) > max_flops:
                raise ValueError(f"`max_flops` of {max_flops:,} cannot be met within the parameter budget.")
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                trial = solve(mid)
                if flops(trial) <= max_flops:
                    hi, choice = mid, trial
                else:
                    lo = mid
    return dict(zip(names, choice))


# ----------------------------------------------------------------------------- sensitivity


def gradient_weights(model, layers: Mapping[str, object], batches: Sequence[object], *,
                     precision: str = "float32") -> dict[str, float]:
    """Per-layer sensitivity: mean squared loss gradient at the layer's output, per output channel.

    With ``g = dL/dy`` at a layer's output, the loss change caused by an output error
    ``e = (W - M) x`` is to second order ``E[(g^T e)^2] / 2`` (Fisher approximation);
    for errors spread evenly over the outputs this is ``E||g||^2 / out * tr(E C E^T) / 2``.
    The returned weights are ``E||g||^2 / out`` normalised to mean 1.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM taking ``input_ids`` and ``labels``.
    layers : mapping of str to torch.nn.Module
        The layers to weigh.
    batches : sequence of torch.Tensor
        Token ids ``(batch, seq)``; the language-model loss on them is differentiated.
    precision : {"float32", "bfloat16"}
        ``"bfloat16"`` runs the forward pass's matrix products (and so their gradients) in
        bfloat16 under ``torch.autocast``, as the statistics pass of method ``"auto"``
        (``tnkit.compress.numerics.precision.STATS_PRECISIONS``); the gradients'
        energies are summed in float64 either way.
    """
    import torch

    from .precision import precision_autocast

    autocast = precision_autocast(model, precision)

    sums = dict.fromkeys(layers, 0.0)
    counts = dict.fromkeys(layers, 0)

    def record(name):
        def fn(g):
            g = g.detach().to(torch.float64)
            sums[name] += float((g * g).sum()) / g.shape[-1]
            counts[name] += g[..., 0].numel()
        return fn

    def hook(name):
        # a hook on the output tensor, not a module backward hook: those wrap the output in a view that models
        # editing it in place (Falcon) cannot use; registered before any such edit, it sees dL/dy of the output
        def fn(_module, _inputs, out):
            y = out[0] if isinstance(out, tuple) else out
            if y.requires_grad:
                y.register_hook(record(name))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    model.eval()
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for ids in batches:
            emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # gradients flow to the hooks
            with autocast:
                loss = model(inputs_embeds=emb, labels=ids, use_cache=False).loss
            loss.backward()
    finally:
        for h in handles:
            h.remove()
        for p, r in zip(model.parameters(), grads):
            p.requires_grad_(r)
        model.train(was_training)
    raw = {n: sums[n] / max(counts[n], 1) for n in layers}
    mean = float(np.mean(list(raw.values()))) or 1.0
    return {n: v / mean for n, v in raw.items()}
