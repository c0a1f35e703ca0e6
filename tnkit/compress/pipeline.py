"""Compressing a whole model: choose layers, measure activations, factorise, replace.

Methods (:data:`METHODS`)
-------------------------
``"svd"``, ``"asvd"``, ``"whiten"``
    Low-rank layers (:mod:`tnkit.compress.lowrank`), the same fraction of each layer kept.
``"mpo"``
    Plain CompactifAI: TT-SVD of each weight (:class:`MPOLinear`), same fraction per layer.
``"mpo-aware"``
    Data-aware MPO (first version): each weight truncated in the basis scaled by its
    input activations (ASVD's channel scale), the last core refitted on the
    activation second moment.
``"mpo-whiten"``
    tnkit's whitened MPO (:mod:`tnkit.compress.whitened_mpo`): channel RMS divided
    out, TT-SVD in the Kronecker-whitened basis, then ALS sweeps on the full input
    second moment; the error is the layer's expected output error.

Budgets: ``ratio`` is the fraction of the selected layers' parameters kept;
``max_bond`` fixes the bond dimension (the rank for low-rank methods) instead.
``allocation="uniform"`` keeps the same fraction of every layer;
``allocation="curve"`` allocates sizes across layers for the global budget from each
layer's error-versus-size curve in the method's own metric (whitened for
``"whiten"`` and ``"mpo-whiten"``; :mod:`tnkit.compress.allocate`), optionally weighted
per layer (the sensitivity or entanglement profile,
:func:`tnkit.compress.sensitivity_weights`, :func:`tnkit.compress.entanglement_weights`);
a layer whose best option is dense stays dense. The default is ``"curve"`` for the
MPO data-aware methods and ``"uniform"`` otherwise (the literature baselines).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ..core.validate import check_option
from .allocate import SizeCurve, allocate_budget, lowrank_curve, mpo_curve
from .calibration import ActivationStats, channel_scale, collect_activation_stats
from .factorize import bond_for_params, max_bonds
from .lowrank import LowRankLinear, cholesky_whitener, ridge_covariance
from .mpo_linear import MPOLinear
from .surgery import find_layers, linear_weight, replace_layers
from .whitened_mpo import whitened_mpo_curve

__all__ = ["METHODS", "ALLOCATIONS", "DEFAULT_RIDGE", "LayerReport", "CompressionResult", "compress_model",
           "count_params"]

METHODS = ("svd", "asvd", "whiten", "mpo", "mpo-aware", "mpo-whiten")
#: relative ridge added to each layer's input second moment by the whitening methods
#: (:func:`tnkit.compress.lowrank.ridge_covariance`). ``mpo-whiten``: 0.3, the best output
#: error on held-out activations over SmolLM2's block matrices, and lower perplexity than
#: 0; ``whiten``: 0, because there 0.3 lowered the held-out output error by 8% but tripled
#: the perplexity at 70% kept (docs/compress.md), and SVD-LLM's error cannot blow up anyway
DEFAULT_RIDGE = {"whiten": 0.0, "mpo-whiten": 0.3}
ALLOCATIONS = ("uniform", "curve")
_NEEDS_DATA = ("asvd", "whiten", "mpo-aware", "mpo-whiten")
_LOWRANK = ("svd", "asvd", "whiten")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerReport:
    """What happened to one layer: ``form`` is ``"mpo"``, ``"lowrank"`` or ``"dense"``."""

    name: str
    form: str
    size: int
    params: int
    original_params: int
    error: float


@dataclass(frozen=True)
class CompressionResult:
    """Summary of :func:`compress_model`."""

    method: str
    layers: tuple[LayerReport, ...]
    params_before: int
    params_after: int
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Total model parameters after / before."""
        return self.params_after / self.params_before

    def table(self) -> str:
        """A readable per-layer table."""
        rows = [f"{'layer':48s} {'form':8s} {'size':>5s} {'params':>10s} {'kept':>6s} {'error':>7s}"]
        for r in self.layers:
            rows.append(f"{r.name:48s} {r.form:8s} {r.size:5d} {r.params:10,d} "
                        f"{r.params / r.original_params:6.1%} {r.error:7.4f}")
        rows.append(f"method={self.method}: {self.params_before:,} -> {self.params_after:,} parameters "
                    f"({self.ratio:.1%}) in {self.seconds:.1f} s")
        return "\n".join(rows)


def count_params(model: nn.Module) -> int:
    """Distinct parameters and buffers-free numbers of ``model`` (tied weights once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def compress_model(
    model: nn.Module,
    *,
    method: str = "mpo-aware",
    ratio: float | None = None,
    max_bond: int | None = None,
    layers: Mapping[str, nn.Module] | Sequence[str] | None = None,
    calibration: Sequence[Any] | None = None,
    stats: Mapping[str, ActivationStats] | None = None,
    weights: Mapping[str, float] | None = None,
    allocation: str | None = None,
    n_cores: int = 2,
    alpha: float = 0.5,
    step: int = 8,
    refit_limit: int = 2048,
    sweeps: int = 1,
    cg_iterations: int = 8,
    ridge: float | None = None,
    protect: Sequence[str] = (),
    sequential: bool = False,
    feedback_ridge: float | None = None,
    progress: bool = True,
) -> CompressionResult:
    """Replace the chosen linear layers of ``model`` by compressed ones, in place.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM (Llama-style ``nn.Linear`` or GPT-2-style ``Conv1D``).
    method : str
        One of :data:`METHODS`.
    ratio : float, optional
        Fraction in (0, 1] of the selected layers' parameters to keep.
    max_bond : int, optional
        Fixed bond dimension (MPO) or rank (low-rank) instead of ``ratio``.
    layers : mapping or sequence of names, optional
        Layers to compress; default every linear layer in the blocks.
    calibration : sequence of torch.Tensor, optional
        Token-id batches ``(batch, seq)`` for the data-aware methods.
    stats : mapping, optional
        Precomputed :class:`ActivationStats` (instead of ``calibration``).
    weights : mapping of str to float, optional
        Per-layer importance for the ``"curve"`` allocation (default 1 each).
    allocation : {"uniform", "curve"}, optional
        How ``ratio`` is shared between layers (see the module docstring); default
        ``"curve"`` for ``"mpo-aware"`` and ``"mpo-whiten"``, ``"uniform"`` otherwise.
    n_cores : int
        MPO cores per weight (the ``"curve"`` allocation of MPOs needs 2).
    alpha : float
        Exponent of the ASVD channel scale.
    step : int
        Granularity of the bond dimensions considered by the allocation.
    refit_limit : int
        ``"mpo-aware"`` refits a layer's last core on the activations only when the
        linear system (``bond * i_last`` unknowns per output row) is at most this
        size; its cost grows as the cube.
    sweeps, cg_iterations : int
        ALS sweeps and conjugate-gradient iterations per core of ``"mpo-whiten"``
        (:func:`tnkit.compress.whitened_mpo.whitened_mpo_factorize`).
    ridge : float, optional
        Relative ridge ``C + ridge * tr(C) / n * I`` on each layer's input second moment
        for ``"whiten"`` and ``"mpo-whiten"`` (default :data:`DEFAULT_RIDGE`): it keeps
        the truncation from hiding large weight errors in directions the calibration
        text barely excites.
    protect : sequence of str
        Layers (among those compressed) kept dense, as CompactifAI keeps its most
        sensitive layers (:func:`tnkit.compress.sensitive_layers`). They count toward
        the budget: the other layers are compressed more to make up for them.
    sequential : bool
        Data-aware methods only: compress block by block, each layer truncated in the
        metric of the inputs the already-compressed blocks produce
        (:mod:`tnkit.compress.sequential`); needs ``calibration`` batches. Sizes are
        planned as without it.
    feedback_ridge : float, optional
        With ``sequential``: also correct each weight toward the original layer's
        outputs (error feedback) with this relative ridge. Off by default: on SmolLM2
        with 4,096 calibration tokens it overfitted them (perplexity 652-2,765 against
        227 without it).
    progress : bool
        Show a tqdm bar over layers.
    """
    check_option("method", method, METHODS)
    allocation = allocation or ("curve" if method in ("mpo-aware", "mpo-whiten") else "uniform")
    check_option("allocation", allocation, ALLOCATIONS)
    if (ratio is None) == (max_bond is None):
        raise ValueError(f"give exactly one of `ratio` and `max_bond`, got ratio={ratio}, max_bond={max_bond}.")
    if ratio is not None and not (0.0 < float(ratio) <= 1.0):
        raise ValueError(f"`ratio` must lie in (0, 1], got {ratio}.")
    ridge = DEFAULT_RIDGE.get(method, 0.0) if ridge is None else float(ridge)
    if not ridge >= 0.0:
        raise ValueError(f"`ridge` must be a number >= 0, got {ridge}.")
    if feedback_ridge is not None and not (sequential and float(feedback_ridge) >= 0.0):
        raise ValueError(f"`feedback_ridge` needs `sequential=True` and a number >= 0, got {feedback_ridge!r}.")
    if sequential and (method not in _NEEDS_DATA or calibration is None):
        raise ValueError(f"`sequential` needs a data-aware method ({', '.join(_NEEDS_DATA)}) and `calibration` "
                         f"batches, got method={method!r}" + (" and no calibration." if calibration is None else "."))
    start = time.perf_counter()
    chosen = _resolve_layers(model, layers)
    params_before = count_params(model)
    planning_needs_stats = allocation == "curve" and max_bond is None  # sequential builds measure their own
    if method in _NEEDS_DATA and stats is None and (planning_needs_stats or not sequential):
        if calibration is None:
            raise ValueError(f"method {method!r} is data-aware: give `calibration` batches or `stats`.")
        stats = collect_activation_stats(model, chosen, calibration)
    protect = set(protect)
    unknown = sorted(protect - set(chosen))
    if unknown:
        raise ValueError(f"`protect` names layers that are not being compressed: {unknown[:3]}.")
    plan = _plan_sizes(chosen, method, ratio, max_bond, stats, weights, n_cores, alpha, step, allocation, ridge,
                       protect)
    plan.update({name: -1 for name in protect})

    def build(name: str, module: nn.Module, st: ActivationStats | None) -> nn.Module | None:
        size = plan[name]
        return None if size < 0 else _build_layer(module, method, size, st, n_cores, alpha, refit_limit, sweeps,
                                                  cg_iterations, ridge)

    if sequential:
        from .sequential import compress_sequentially

        todo = {name: m for name, m in chosen.items() if plan[name] >= 0}
        replacements = compress_sequentially(model, todo, list(calibration), build, feedback_ridge=feedback_ridge,
                                             progress=progress)
    else:
        from tqdm.auto import tqdm

        replacements = {}
        for name in tqdm(list(chosen), desc=f"compress ({method})", disable=not progress, leave=False):
            new = build(name, chosen[name], None if stats is None else stats[name])
            if new is not None:
                replacements[name] = new
        replace_layers(model, replacements)
    reports = []
    for name, module in chosen.items():
        original = _layer_params(module)
        new = replacements.get(name)
        if new is None:
            reports.append(LayerReport(name, "dense", -1, original, original, 0.0))
        else:
            reports.append(LayerReport(name, "mpo" if isinstance(new, MPOLinear) else "lowrank", plan[name],
                                       new.num_params, original, new.truncation_error))
    return CompressionResult(method, tuple(reports), params_before, count_params(model),
                             time.perf_counter() - start,
                             {"allocation": allocation, "ridge": ridge, "sequential": bool(sequential),
                              "feedback_ridge": feedback_ridge})


def _resolve_layers(model: nn.Module, layers: Any) -> dict[str, nn.Module]:
    if layers is None:
        return find_layers(model)
    if isinstance(layers, Mapping):
        return dict(layers)
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise ValueError(f"`layers` names modules the model does not have: {missing[:3]}.")
    return {n: modules[n] for n in layers}


def _layer_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _dims(module: nn.Module, n_cores: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    from ..mps.mpo import balanced_factors

    out, inp = linear_weight(module).shape
    return balanced_factors(out, n_cores), balanced_factors(inp, n_cores)


def _uniform_size(module: nn.Module, method: str, ratio: float, n_cores: int) -> int:
    out, inp = linear_weight(module).shape
    if method.startswith("mpo"):
        o, i = _dims(module, n_cores)
        scale = inp if method in ("mpo-aware", "mpo-whiten") else 0  # the input scale costs `in` numbers
        return bond_for_params(o, i, ratio * out * inp - scale)
    return max(1, int(ratio * out * inp / (out + inp)))


def _size_curve(module: nn.Module, method: str, st: ActivationStats | None, alpha: float, step: int,
                ridge: float) -> SizeCurve:
    """The layer's error-versus-size curve in the method's own error metric."""
    w = linear_weight(module).detach().double().numpy()
    if method in _LOWRANK:
        target = w
        if method == "asvd":
            target = w * channel_scale(st, alpha=alpha)[None, :]
        elif method == "whiten":
            target = w @ cholesky_whitener(ridge_covariance(st.covariance, ridge))
        return lowrank_curve(target, step=step)
    o, i = _dims(module, 2)
    if method == "mpo-whiten":
        return whitened_mpo_curve(w, st.covariance, o, i, step=step, ridge=ridge)
    scale = channel_scale(st, alpha=alpha) if method == "mpo-aware" else None
    return mpo_curve(w, o, i, input_scale=scale, step=step)


def _ratio_of_the_rest(chosen: Mapping[str, nn.Module], ratio: float, protect: set[str]) -> float:
    """The fraction the unprotected layers keep so that all of them together keep ``ratio``."""
    sizes = {name: linear_weight(m).numel() for name, m in chosen.items()}
    rest = sum(v for n, v in sizes.items() if n not in protect)
    left = ratio * sum(sizes.values()) - (sum(sizes.values()) - rest)
    if rest == 0 or left <= 0:
        raise ValueError(f"the protected layers alone exceed the budget of `ratio`={ratio}: protect fewer layers.")
    return min(left / rest, 1.0)


def _dense_only(module: nn.Module) -> SizeCurve:
    """A curve with the dense layer as its only option."""
    n = linear_weight(module).numel()
    return SizeCurve(np.array([-1]), np.array([n]), np.array([0.0]))


def _plan_sizes(chosen, method, ratio, max_bond, stats, weights, n_cores, alpha, step, allocation,
                ridge, protect=frozenset()) -> dict[str, int]:
    if max_bond is not None:
        return {name: int(max_bond) for name in chosen}
    if allocation == "uniform":
        ratio = _ratio_of_the_rest(chosen, ratio, protect)
        return {name: _uniform_size(m, method, ratio, n_cores) for name, m in chosen.items() if name not in protect}
    if method.startswith("mpo") and n_cores != 2:
        raise ValueError(f"the 'curve' allocation of MPOs needs two-core MPOs, got n_cores={n_cores}.")
    curves = {name: _size_curve(m, method, None if stats is None else stats[name], alpha, step, ridge)
              if name not in protect else _dense_only(m) for name, m in chosen.items()}
    budget = int(ratio * sum(linear_weight(m).numel() for m in chosen.values()))
    if method == "mpo-aware":  # its curves leave out the input scales (`in` numbers per compressed layer)
        budget = max(budget - sum(linear_weight(m).shape[1] for m in chosen.values()), 0)
    choice = allocate_budget(curves, budget, weights=weights)
    return {name: int(curves[name].sizes[j]) for name, j in choice.items()}


def _build_layer(module, method, size, st, n_cores, alpha, refit_limit, sweeps, cg_iterations, ridge) -> nn.Module:
    if method in _LOWRANK:
        limit = min(linear_weight(module).shape)
        if size > limit:
            raise ValueError(f"`max_bond` (rank) must be at most {limit} for this layer, got {size}.")
        kwargs: dict[str, Any] = {"rank": size, "method": method}
        if method == "asvd":
            kwargs["input_scale"] = channel_scale(st, alpha=alpha)
        if method == "whiten":
            kwargs["covariance"], kwargs["ridge"] = st.covariance, ridge
        return LowRankLinear.from_linear(module, **kwargs)
    o, i = _dims(module, n_cores)
    if method == "mpo":
        return MPOLinear.from_linear(module, n_cores=n_cores, max_bond=size)
    size = min(size, max(max_bonds(o, i)))
    if method == "mpo-whiten":
        return MPOLinear.from_linear_whitened(module, st.covariance, n_cores=n_cores, max_bond=size, sweeps=sweeps,
                                              cg_iterations=cg_iterations, ridge=ridge)
    refit = size * i[-1] <= refit_limit
    return MPOLinear.from_linear(module, n_cores=n_cores, max_bond=size, input_scale=channel_scale(st, alpha=alpha),
                                 covariance=st.covariance if refit else None)
