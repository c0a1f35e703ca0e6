"""Per-layer sizes for a global parameter budget, from error-versus-size curves.

Each layer ``l`` offers options ``j`` (a bond dimension or rank, or the dense layer)
with ``params[l][j]`` numbers and an error ``err[l][j]``. We minimise
``sum_l weight_l * err[l][j_l]`` subject to ``sum_l params[l][j_l] <= budget``: a
multiple-choice knapsack. As in "Approximately Optimal Core Shapes for Tensor
Decompositions" (Ghadiri et al., arXiv:2302.03886) we solve it greedily on the lower
convex hull of each curve: starting from every layer's smallest option, repeatedly take
the upgrade with the largest error decrease per added parameter that still fits. On
convex curves this is optimal up to one item.

For a two-core MPO (and for a low-rank layer) a whole curve costs one SVD: the error
at bond ``r`` is the discarded tail of the singular values at the single cut.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..layers.lowrank import gram_singular_values
from ...core.validate import check_int

__all__ = ["SizeCurve", "mpo_curve", "lowrank_curve", "allocate_budget"]


@dataclass(frozen=True)
class SizeCurve:
    """Options of one layer, in increasing parameter count.

    Attributes
    ----------
    sizes : numpy.ndarray of int
        Bond dimension / rank of each option (``-1`` for the dense layer).
    params : numpy.ndarray of int
    errors : numpy.ndarray of float
        Relative squared error of each option (0 for the dense layer).
    """

    sizes: np.ndarray
    params: np.ndarray
    errors: np.ndarray


def curve_from_tail(tail: np.ndarray, per_unit: int, dense: int, step: int) -> SizeCurve:
    """The error-versus-parameters curve of keeping ``k`` units (ranks, bonds), ``k`` in steps of ``step``.

    ``tail[k]`` is the squared error of keeping ``k`` units (see :func:`tail_energy`), each unit
    costs ``per_unit`` parameters, and sizes at or above ``dense`` are left out.
    """
    total = tail[0] if tail[0] > 0 else 1.0
    ranks = np.arange(step, len(tail), step)
    ranks = ranks[ranks * per_unit < dense]
    sizes = np.concatenate([ranks, [-1]])
    params = np.concatenate([ranks * per_unit, [dense]])
    errors = np.concatenate([tail[ranks] / total, [0.0]])
    return SizeCurve(sizes.astype(int), params.astype(int), errors)


def tail_energy(s: np.ndarray) -> np.ndarray:
    """``tail[k] = sum(s[k:]**2)`` for ``k = 0..len(s)``."""
    w = s * s
    return np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])


def mpo_curve(weight: np.ndarray, out_dims, in_dims, *, input_scale: np.ndarray | None = None,
              step: int = 8) -> SizeCurve:
    """Error-versus-bond curve of a two-core MPO of ``weight`` (``diag(input_scale)`` applied)."""
    if len(out_dims) != 2 or len(in_dims) != 2:
        raise ValueError(f"`mpo_curve` needs a two-core factorisation, got {out_dims}x{in_dims}.")
    w = np.asarray(weight, dtype=np.float64)
    if input_scale is not None:
        w = w * input_scale[None, :]
    (o0, o1), (i0, i1) = out_dims, in_dims
    m = w.reshape(o0, o1, i0, i1).transpose(0, 2, 1, 3).reshape(o0 * i0, o1 * i1)
    s = gram_singular_values(m)
    return curve_from_tail(tail_energy(s), o0 * i0 + o1 * i1, w.size, check_int("step", step, minimum=1))


def lowrank_curve(target: np.ndarray, *, step: int = 8) -> SizeCurve:
    """Error-versus-rank curve of a low-rank layer; ``target`` is the (scaled/whitened) weight."""
    t = np.asarray(target, dtype=np.float64)
    s = gram_singular_values(t)
    return curve_from_tail(tail_energy(s), sum(t.shape), t.size, check_int("step", step, minimum=1))


def _hull_next(curve: SizeCurve, j: int) -> tuple[float, int] | None:
    """Best upgrade from option ``j``: (error decrease per parameter, target option)."""
    best = None
    for k in range(j + 1, len(curve.params)):
        dp = curve.params[k] - curve.params[j]
        if dp <= 0:
            continue
        slope = (curve.errors[j] - curve.errors[k]) / dp
        if best is None or slope > best[0]:
            best = (slope, k)
    return best


def allocate_budget(curves: Mapping[str, SizeCurve], budget: int, *,
                    weights: Mapping[str, float] | None = None) -> dict[str, int]:
    """Option index per layer minimising the weighted error within ``budget`` parameters.

    Parameters
    ----------
    curves : mapping of layer name to SizeCurve
    budget : int
        Total parameters of all these layers together.
    weights : mapping of layer name to float, optional
        Importance of each layer's error (e.g. its measured sensitivity); default 1.

    Raises
    ------
    ValueError
        If even the smallest options exceed ``budget``.
    """
    budget = check_int("budget", budget, minimum=0)
    choice = {name: 0 for name in curves}
    used = sum(int(c.params[0]) for c in curves.values())
    if used > budget:
        raise ValueError(f"`budget` of {budget:,} parameters is below the smallest possible size {used:,}.")
    w = {name: float((weights or {}).get(name, 1.0)) for name in curves}
    heap = []
    for name, c in curves.items():
        nxt = _hull_next(c, 0)
        if nxt is not None:
            heapq.heappush(heap, (-nxt[0] * w[name], name, nxt[1]))
    while heap:
        _, name, k = heapq.heappop(heap)
        c = curves[name]
        extra = int(c.params[k] - c.params[choice[name]])
        if used + extra > budget:
            # try a smaller step of the same layer later: the next option up only
            j = choice[name]
            if k > j + 1:
                slope = (c.errors[j] - c.errors[j + 1]) / max(c.params[j + 1] - c.params[j], 1)
                heapq.heappush(heap, (-slope * w[name], name, j + 1))
            continue
        used += extra
        choice[name] = k
        nxt = _hull_next(c, k)
        if nxt is not None:
            heapq.heappush(heap, (-nxt[0] * w[name], name, nxt[1]))
    return choice
