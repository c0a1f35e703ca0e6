"""Compressing a whole model: choose layers, measure activations, factorise, replace.

Methods (:data:`METHODS`)
-------------------------
``"svd"``, ``"asvd"``, ``"whiten"``
    Low-rank layers (:mod:`tnkit.compress.layers.lowrank`), the same fraction of each layer kept.
``"mpo"``
    Plain CompactifAI: TT-SVD of each weight (:class:`MPOLinear`), same fraction per layer.
``"mpo-aware"``
    Data-aware MPO (first version): each weight truncated in the basis scaled by its
    input activations (ASVD's channel scale), the last core refitted on the
    activation second moment.
``"mpo-whiten"``
    tnkit's whitened MPO (:mod:`tnkit.compress.numerics.whitened_mpo`): channel RMS divided
    out, TT-SVD in the Kronecker-whitened basis, then ALS sweeps on the full input
    second moment; the error is the layer's expected output error.

Budgets: ``ratio`` is the fraction of the selected layers' parameters kept;
``max_bond`` fixes the bond dimension (the rank for low-rank methods) instead.
``allocation="uniform"`` keeps the same fraction of every layer;
``allocation="curve"`` allocates sizes across layers for the global budget from each
layer's error-versus-size curve in the method's own metric (whitened for
``"whiten"`` and ``"mpo-whiten"``; :mod:`tnkit.compress.numerics.allocate`), optionally weighted
per layer (the sensitivity or entanglement profile,
:func:`tnkit.compress.sensitivity_weights`, :func:`tnkit.compress.entanglement_weights`);
a layer whose best option is dense stays dense. The default is ``"curve"`` for the
MPO data-aware methods and ``"uniform"`` otherwise (the literature baselines).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ...core.validate import check_option
from .methods import ALLOCATIONS, DEFAULT_METHOD, METHOD_SPECS, METHODS, NEEDS_DATA, MethodSpec
from ..numerics.allocate import SizeCurve, allocate_budget, lowrank_curve, mpo_curve
from ..calibrate.calibration import ActivationStats, channel_scale, collect_activation_stats
from ..calibrate.calibration import STATS_PRECISIONS
from ..calibrate.calibration import stats_precision as default_stats_precision
from ..numerics.factorize import bond_for_params, max_bonds
from ...core.linalg import cholesky_whitener
from ..layers.lowrank import LowRankLinear, ridge_covariance
from ..layers.mpo_linear import MPOLinear
from .prune import pruned_stats
from ..layers.surgery import find_layers, linear_weight, replace_layers
from ..numerics.search import gradient_weights
from ..numerics.whitened_mpo import whitened_mpo_curve

__all__ = ["AutoCandidate", "auto_candidates", "StageClock", "METHODS", "METHOD_SPECS", "MethodSpec", "DEFAULT_METHOD", "DEFAULT_FAMILIES", "DEFAULT_SEQUENTIAL", "SENSITIVITIES", "ALLOCATIONS", "DEFAULT_RIDGE", "LayerReport", "CompressionResult", "compress_model", "uniform_size",
           "count_params"]



#: candidate families of the default search, and whether it calibrates sequentially
DEFAULT_FAMILIES = ("lowrank",)
DEFAULT_SEQUENTIAL = True
#: relative ridge added to each layer's input second moment by the whitening methods
#: (:func:`tnkit.compress.layers.lowrank.ridge_covariance`). ``mpo-whiten``: 0.3, the best output
#: error on held-out activations over SmolLM2's block matrices, and lower perplexity than
#: 0; ``whiten``: 0, because there 0.3 lowered the held-out output error by 8% but tripled
#: the perplexity at 70% kept (docs/compress.md), and SVD-LLM's error cannot blow up anyway
DEFAULT_RIDGE = {"whiten": 0.0, "mpo-whiten": 0.3}
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


class StageClock:
    """Wall and process CPU seconds spent in each named stage (``with clock("calibrate"): ...``).

    ``seconds`` maps each stage, in the order first entered, to ``(wall, cpu)``; a stage
    entered again adds up. :func:`compress_model` records its stages in its result's
    ``extra["stage_seconds"]``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, tuple[float, float]] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            w, c = self.seconds.get(stage, (0.0, 0.0))
            self.seconds[stage] = (w + time.perf_counter() - wall, c + time.process_time() - cpu)


def count_params(model: nn.Module) -> int:
    """Distinct parameters and buffers-free numbers of ``model`` (tied weights once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def compress_model(
    model: nn.Module,
    *,
    method: str = DEFAULT_METHOD,
    ratio: float | None = None,
    max_bond: int | None = None,
    layers: Mapping[str, nn.Module] | Sequence[str] | None = None,
    calibration: Sequence[Any] | None = None,
    stats: Mapping[str, ActivationStats] | None = None,
    weights: Mapping[str, float] | None = None,
    allocation: str | None = None,
    families: Sequence[str] = DEFAULT_FAMILIES,
    sensitivity: str = "gradient",
    max_flops: int | None = None,
    prune: float | None = None,
    n_cores: int = 2,
    alpha: float = 0.5,
    step: int = 8,
    refit_limit: int = 2048,
    sweeps: int = 1,
    cg_iterations: int = 8,
    ridge: float | None = None,
    protect: Sequence[str] = (),
    sequential: bool | None = None,
    feedback_ridge: float | None = None,
    stats_precision: str | None = None,
    progress: bool = True,
) -> CompressionResult:
    """Replace the chosen linear layers of ``model`` by compressed ones, in place.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM (Llama-style ``nn.Linear`` or GPT-2-style ``Conv1D``).
    method : str
        One of :data:`METHODS`; default :data:`DEFAULT_METHOD` (``"auto"``: width pruning and
        the per-layer search, the budget split between them chosen on held-out calibration loss;
        the search alone for a model whose blocks are not Llama-style, such as GPT-2,
        :mod:`tnkit.compress.recipes.recipe`). ``"prune"`` is structured width pruning alone
        (:mod:`tnkit.compress.recipes.prune`, Llama-style models), ``"search"`` the per-layer
        search over factorisations alone (:mod:`tnkit.compress.numerics.search`).
    ratio : float, optional
        Fraction in (0, 1] of the selected layers' weight parameters to keep (by default
        the selected layers are every linear layer inside the blocks: embeddings, norms
        and the head are not counted and not changed).
    max_bond : int, optional
        Fixed bond dimension (MPO) or rank (low-rank) instead of ``ratio`` (not for
        ``"search"`` and ``"prune"``).
    layers : mapping or sequence of names, optional
        Layers to compress; default every linear layer in the blocks.
    calibration : sequence of torch.Tensor, optional
        Token-id batches ``(batch, seq)`` for the data-aware methods.
    stats : mapping, optional
        Precomputed :class:`ActivationStats` (instead of ``calibration``).
    weights : mapping of str to float, optional
        Per-layer importance of each layer's error in the ``"curve"`` allocation and the
        search (default: ``sensitivity``).
    allocation : {"uniform", "curve"}, optional
        How ``ratio`` is shared between layers by the single-family methods (see the
        module docstring); default ``"curve"`` for ``"mpo-aware"`` and ``"mpo-whiten"``,
        ``"uniform"`` otherwise. ``"search"`` always solves the global knapsack.
    families : sequence of str
        ``"search"``: candidate factorisations of every layer
        (``tnkit.compress.FAMILIES``; dense is always one).
    sensitivity : {"gradient", "none"}
        ``"search"`` without ``weights``: weigh each layer's output error by its measured
        loss-gradient energy (:func:`tnkit.compress.numerics.search.gradient_weights`, one backward
        pass over ``calibration``), or not at all.
    max_flops : int, optional
        ``"search"``: bound on the selected layers' multiply-adds per token.
    prune : float, optional
        First prune widths (:func:`tnkit.compress.prune_width`) to this fraction of the
        block linear weights, then factorise the rest down to ``ratio`` overall. One pass
        measures every layer's statistics on the original model; pruning uses them, and the
        factorisation plans (and, without ``sequential``, truncates) on them cut to the kept
        channels (:func:`tnkit.compress.pruned_stats`).
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
        ALS sweeps and conjugate-gradient iterations per core of the whitened MPOs
        (:func:`tnkit.compress.numerics.whitened_mpo.whitened_mpo_factorize`).
    ridge : float, optional
        Relative ridge ``C + ridge * tr(C) / n * I`` on each layer's input second moment
        for ``"whiten"`` and ``"mpo-whiten"`` (default :data:`DEFAULT_RIDGE`).
    protect : sequence of str
        Layers (among those compressed) kept dense. They count toward the budget.
    sequential : bool, optional
        Data-aware methods: compress block by block, each layer truncated in the metric
        of the inputs the already-compressed blocks produce
        (:mod:`tnkit.compress.calibrate.sequential`); needs ``calibration`` batches. Sizes are
        planned on the original model's statistics. Default: :data:`DEFAULT_SEQUENTIAL`
        for ``"search"`` given ``calibration`` batches, else off.
    feedback_ridge : float, optional
        With ``sequential``: also correct each weight toward the original layer's
        outputs (error feedback) with this relative ridge. Off by default.
    stats_precision : {"float32", "bfloat16"}, optional
        Precision of the forward passes that measure method ``"auto"``'s activation statistics
        (:func:`tnkit.compress.collect_activation_stats`), gradient sensitivities
        (:func:`tnkit.compress.numerics.search.gradient_weights`) and held-out losses
        (``tnkit.compress.recipes.recipe.heldout_loss``); default
        ``tnkit.compress.calibrate.calibration.stats_precision(model)``: bfloat16 where the hardware
        multiplies it natively, else float32. The other methods measure in float32.
    progress : bool
        Show tqdm bars over the stages.
    """
    if sequential is None:
        sequential = DEFAULT_SEQUENTIAL and method in METHOD_SPECS and METHOD_SPECS[method].search \
            and calibration is not None
    if stats_precision is not None:
        check_option("stats_precision", stats_precision, STATS_PRECISIONS)
    opts = _check_options(method, ratio, max_bond, allocation, ridge, feedback_ridge, sequential, calibration,
                          stats, sensitivity, families, prune, layers)
    if method == "prune" or prune is not None:  # "auto" searches alone where widths cannot be pruned
        from .prune import width_prunable

        if not width_prunable(model):
            raise TypeError(f"width pruning (method 'prune' or `prune`) needs a Llama-style model "
                            f"(model.layers[i].mlp.gate_proj/up_proj/down_proj, self_attn.q/k/v/o_proj as "
                            f"nn.Linear), got {type(model).__name__}; method 'search' factorises any model.")
    start = time.perf_counter()
    params_before = count_params(model)
    runner = _RECIPE_RUNNERS.get(method)
    if runner is not None:  # a recipe of its own, not one factorisation of every layer
        return runner(model, RecipeCall(ratio, calibration, stats, weights, families, sensitivity, step, max_flops,
                                        progress, start, params_before, stats_precision))
    spec = METHOD_SPECS[method]
    clock = StageClock()
    extra: dict[str, Any] = {"stage_seconds": clock.seconds}
    if prune is not None:  # width pruning as a stage before the factorisation
        if stats is None:  # one pass measures every layer, pruning and planning share it
            with clock("calibrate"):
                stats = collect_activation_stats(model, find_layers(model), _bar(calibration, "calibrate", progress))
        with clock("prune"):
            pres = _prune_stage(model, prune, calibration, stats, progress)
        extra["prune"] = pres
        ratio, stats = min(ratio / pres.ratio, 1.0), pruned_stats(stats, pres)
    allocation = opts["allocation"]
    ridge = opts["ridge"]
    chosen = _resolve_layers(model, layers)
    planning_needs_stats = spec.search or (allocation == "curve" and max_bond is None)
    if spec.needs_data and stats is None and (planning_needs_stats or not sequential):
        with clock("calibrate"):
            stats = collect_activation_stats(model, chosen, _bar(calibration, "calibrate", progress))
    protect = set(protect)
    unknown = sorted(protect - set(chosen))
    if unknown:
        raise ValueError(f"`protect` names layers that are not being compressed: {unknown[:3]}.")
    if spec.search:
        if weights is None and sensitivity == "gradient" and calibration is not None:
            with clock("sensitivity"):
                weights = gradient_weights(model, chosen,
                                           _bar(calibration[:_GRADIENT_BATCHES], "sensitivity", progress))
        with clock("plan"):
            plan, forms, _ = _search_plan(chosen, ratio, stats, weights, families, step, protect, max_flops, progress)
    else:
        with clock("plan"):
            plan = _plan_sizes(chosen, method, ratio, max_bond, stats, weights, n_cores, alpha, step, allocation,
                               ridge, protect)
        plan.update({name: -1 for name in protect})
        forms = {name: method for name in plan}
    options = _BuildOptions(n_cores, alpha, refit_limit, sweeps, cg_iterations, ridge)
    extra["allocation"] = "search" if spec.search else allocation
    with clock("block-by-block build" if sequential else "factorise"):
        return _build_planned(model, method, chosen, plan, forms, stats, options, calibration, sequential,
                              feedback_ridge, progress, extra, start, params_before)


def _build_planned(model, method, chosen, plan, forms, stats, options, calibration, sequential, feedback_ridge,
                   progress, extra, start, params_before, bases=None) -> CompressionResult:
    """Build and swap in every planned layer (``plan``: size per layer, ``-1`` dense; ``forms``: what each becomes).

    ``bases`` (one-shot builds of the search only) maps layer names to the ``WhitenedBasis``
    their candidates were computed with on ``stats``: those low-rank layers are cut from it
    instead of factorised again.
    """
    spec = METHOD_SPECS[method]
    whiteners = _Whiteners(options.ridge)  # q/k/v and gate/up share their statistics, so one Cholesky factor
    bases = bases or {}

    def build(name: str, module: nn.Module, st: ActivationStats | None) -> nn.Module | None:
        size = plan[name]
        if size < 0:
            return None
        form = forms[name]
        if spec.search and form == "lowrank" and bases.get(name) is not None:
            return _lowrank_from_basis(module, bases[name], size, st, whiteners)
        if spec.search and form in _CORES_OF:
            return MPOLinear.from_linear_whitened(module, st.covariance, n_cores=_CORES_OF[form], max_bond=size,
                                                  sweeps=options.sweeps, cg_iterations=options.cg_iterations,
                                                  ridge=DEFAULT_RIDGE["mpo-whiten"])
        form = "whiten" if spec.search else form
        return _LAYER_BUILDERS[form](module, form, size, st, options, whiteners)

    todo = {name: m for name, m in chosen.items() if plan.get(name, -1) >= 0}
    if bases and options.ridge != 0.0:
        raise ValueError(f"layer bases are computed on the unridged statistics, got ridge {options.ridge}.")
    replacements = _replace(model, todo, build, stats, calibration, sequential, feedback_ridge, method, progress)
    ridge = options.ridge
    reports = []
    for name, module in chosen.items():
        original = _layer_params(module)
        new = replacements.get(name)
        if new is None:
            reports.append(LayerReport(name, "dense", -1, original, original, 0.0))
        else:
            reports.append(LayerReport(name, "mpo" if isinstance(new, MPOLinear) else "lowrank", plan[name],
                                       new.num_params, original, new.truncation_error))
    extra.setdefault("allocation", "search")
    extra.update({"ridge": ridge, "sequential": bool(sequential), "feedback_ridge": feedback_ridge})
    return CompressionResult(method, tuple(reports), params_before, count_params(model),
                             time.perf_counter() - start, extra)


def _lowrank_from_basis(module: nn.Module, basis: Any, rank: int, st: ActivationStats, whiteners: _Whiteners
                        ) -> LowRankLinear:
    """The whitened low-rank layer of ``rank`` cut from the candidates' eigenvectors (no second eigendecomposition)."""
    from ...core.threads import blas_threads

    weight = linear_weight(module).detach()
    w = weight.double().numpy()
    with blas_threads(min(w.shape)):  # one thread below 1024 (tnkit.core.threads), as the factorisations
        u, v, err = basis.factors(w, rank, whiteners(st) if basis.side == "right" else None)
    bias = None if getattr(module, "bias", None) is None else module.bias.detach()
    return LowRankLinear(u, v, bias, truncation_error=err, dtype=weight.dtype)


#: calibration batches differentiated for the search's gradient sensitivity
_GRADIENT_BATCHES = 1
_CORES_OF = {"mpo": 2, "mpo3": 3, "mpo4": 4}
SENSITIVITIES = ("gradient", "none")


def _check_options(method, ratio, max_bond, allocation, ridge, feedback_ridge, sequential, calibration, stats,
                   sensitivity, families, prune, layers) -> dict[str, Any]:
    """Validate every option before any work; return the resolved allocation and ridge."""
    from ..numerics.search import FAMILIES

    check_option("method", method, METHODS)
    spec = METHOD_SPECS[method]
    allocation = allocation or ("curve" if spec.curve_allocation else "uniform")
    check_option("allocation", allocation, ALLOCATIONS)
    check_option("sensitivity", sensitivity, SENSITIVITIES)
    for fam in families:
        check_option("families", fam, FAMILIES)
    if (ratio is None) == (max_bond is None):
        raise ValueError(f"give exactly one of `ratio` and `max_bond`, got ratio={ratio}, max_bond={max_bond}.")
    if ratio is not None and not (0.0 < float(ratio) <= 1.0):
        raise ValueError(f"`ratio` must lie in (0, 1], got {ratio}.")
    if max_bond is not None and spec.plans_sizes:
        raise ValueError(f"method {method!r} plans sizes for a `ratio`; `max_bond` is for the single-family methods.")
    if prune is not None:
        if not (0.0 < float(prune) <= 1.0) or (ratio is not None and float(prune) < float(ratio)):
            raise ValueError(f"`prune` must lie in [ratio, 1] (the width-pruned fraction of the block weights), "
                             f"got {prune}.")
        if method == "prune":
            raise ValueError("`prune` is a stage before factorisation; method 'prune' prunes alone.")
    if method == "auto" and (prune is not None or calibration is None):
        raise ValueError("method 'auto' chooses the pruning itself and needs `calibration` batches: leave `prune` "
                         f"unset and give `calibration`, got prune={prune!r}"
                         + (" and no calibration." if calibration is None else "."))
    if (spec.prunes or prune is not None) and layers is not None:
        raise ValueError("width pruning acts on every block's MLP and attention: leave `layers` unset.")
    ridge = DEFAULT_RIDGE.get(method, 0.0) if ridge is None else float(ridge)
    if not ridge >= 0.0:
        raise ValueError(f"`ridge` must be a number >= 0, got {ridge}.")
    if feedback_ridge is not None and not (sequential and float(feedback_ridge) >= 0.0):
        raise ValueError(f"`feedback_ridge` needs `sequential=True` and a number >= 0, got {feedback_ridge!r}.")
    if sequential and (not spec.needs_data or calibration is None):
        raise ValueError(f"`sequential` needs a data-aware method ({', '.join(NEEDS_DATA)}) and `calibration` "
                         f"batches, got method={method!r}" + (" and no calibration." if calibration is None else "."))
    if spec.needs_data and calibration is None and stats is None:
        raise ValueError(f"method {method!r} is data-aware: give `calibration` batches or `stats`.")
    if prune is not None and calibration is None:
        raise ValueError("`prune` needs `calibration` batches (the pruned model is re-measured).")
    return {"allocation": allocation, "ridge": ridge}


def _bar(batches: Any, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, disable=not progress, leave=False) if batches is not None else None


def _replace(model, chosen, build, stats, calibration, sequential, feedback_ridge, method, progress):
    """Build and swap in every replacement (block by block when ``sequential``)."""
    if sequential:
        from ..calibrate.sequential import compress_sequentially

        return compress_sequentially(model, chosen, list(calibration), build, feedback_ridge=feedback_ridge,
                                     progress=progress)
    from tqdm.auto import tqdm

    from ...core.threads import available_threads, map_on_threads

    bar = tqdm(total=len(chosen), desc=f"factorise ({method})", disable=not progress, leave=False)
    st_of = {name: None if stats is None else stats[name] for name in chosen}

    def one(names: list[str]) -> list[tuple[str, nn.Module | None]]:
        out = []
        for name in names:
            out.append((name, build(name, chosen[name], st_of[name])))
            bar.update(1)
        return out

    # layers sharing their statistics (q/k/v, gate/up) stay together: one worker, one whitener
    built = dict(pair for part in map_on_threads(one, _by_stats(st_of), available_threads()) for pair in part)
    bar.close()
    replacements = {name: built[name] for name in chosen if built[name] is not None}
    replace_layers(model, replacements)
    return replacements


def _by_stats(st_of: Mapping[str, Any]) -> list[list[str]]:
    """The names grouped by their statistics object (same object: same input), in order of first appearance."""
    groups: dict[int, list[str]] = {}
    for name, st in st_of.items():
        groups.setdefault(id(st) if st is not None else id(name), []).append(name)
    return list(groups.values())


def _search_options(chosen, stats, families, step, protect, progress, known=None, keep_bases=False):
    """Every layer's candidates (:func:`tnkit.compress.numerics.search.layer_options`), on all worker threads.

    Layers fed the same input (q/k/v, gate/up) share one statistics object, hence one
    second moment and one Cholesky whitener, computed once per object. ``known`` maps
    layer names to candidates already computed for the same weight and statistics.
    ``keep_bases``: keep each low-rank candidate's eigenvectors (``LayerOptions.basis``).
    """
    from tqdm.auto import tqdm

    from ...core.threads import available_threads, blas_threads, map_on_threads
    from ..numerics.search import LayerOptions, layer_options

    names = list(chosen)
    found = {n: o for n, o in (known or {}).items() if n in chosen}
    groups: dict[int, tuple[ActivationStats, list[str]]] = {}
    for name in names:
        if name in found:
            continue
        if name in protect:
            n = linear_weight(chosen[name]).numel()
            found[name] = LayerOptions(("dense",), np.array([-1]), np.array([n]), np.array([0.0]), np.array([n]))
            continue
        groups.setdefault(id(stats[name]), (stats[name], []))[1].append(name)
    bar = tqdm(total=len(names), initial=len(found), desc="candidates", disable=not progress, leave=False)

    def one(group: tuple[ActivationStats, list[str]]) -> dict[str, LayerOptions]:
        st, members = group
        c = st.covariance
        shapes = [linear_weight(chosen[name]).shape for name in members]
        # one whitener for the layers sharing this input; a lone wide layer (down_proj) needs none
        shared = len(members) > 1 or shapes[0][0] >= shapes[0][1]
        with blas_threads(len(c)):
            whitener = cholesky_whitener(c) if "lowrank" in families and shared else None
        out = {}
        for name in members:
            w = linear_weight(chosen[name]).detach().double().numpy()
            out[name] = layer_options(w, c, families=families, step=step, whitener=whitener, keep_basis=keep_bases)
            bar.update(1)
        return out

    # independent inputs: numpy releases the GIL in LAPACK, so workers with one BLAS thread each run side by side
    for part in map_on_threads(one, list(groups.values()), available_threads()):
        found.update(part)
    bar.close()
    return {n: found[n] for n in names}


def _search_plan(chosen, ratio, stats, weights, families, step, protect, max_flops, progress, known=None,
                 keep_bases=False):
    """Sizes and forms of every layer from the per-layer candidates and one knapsack; and the candidates."""
    from ..numerics.search import search_allocation

    options = _search_options(chosen, stats, families, step, protect, progress, known, keep_bases)
    budget = int(ratio * sum(linear_weight(m).numel() for m in chosen.values()))
    choice = search_allocation(options, budget, weights=weights, max_flops=max_flops)
    plan = {n: int(options[n].sizes[j]) for n, j in choice.items()}
    forms = {n: options[n].families[j] for n, j in choice.items()}
    return plan, forms, options


@dataclass(frozen=True)
class AutoCandidate:
    """One split built by method ``"auto"`` (:func:`auto_candidates`).

    Attributes
    ----------
    prune : float
        Fraction of the block linear weights width pruning kept (1: the search alone;
        ``ratio``: pruning alone).
    model : torch.nn.Module
        The compressed copy.
    result : CompressionResult
    loss : float
        Mean next-token cross-entropy on the held-out calibration batch.
    predicted : dict
        The held-out loss of every split that uses the search built in one shot, by the
        fraction pruning keeps (see :func:`auto_candidates`); empty for pruning alone, which
        is built before them.
    """

    prune: float
    model: nn.Module
    result: CompressionResult
    loss: float
    predicted: dict = field(default_factory=dict)


@dataclass
class _Split:
    """A split of method ``"auto"`` planned on the original model's statistics (:func:`_plan_split`).

    ``pruned`` is the width-pruned copy of the model (``None`` when the split does not
    prune); the split's factorised layers are built on it in one shot (:func:`_build_split`).
    """

    keep: float
    pruned: nn.Module | None
    prune: Any
    stats: Mapping[str, ActivationStats]
    plan: dict[str, int]
    forms: dict[str, str]
    loss: float = float("nan")
    bases: dict[str, Any] | None = None


def _default_build_options() -> _BuildOptions:
    """The layer builders' options of :func:`compress_model` with its defaults, for method ``"search"``."""
    import inspect

    params = inspect.signature(compress_model).parameters
    fields = ("n_cores", "alpha", "refit_limit", "sweeps", "cg_iterations")
    return _BuildOptions(*(params[f].default for f in fields), ridge=DEFAULT_RIDGE.get("search", 0.0))


def _plan_split(model, ratio, keep, search, reference, keep_bases=False) -> tuple[_Split, tuple]:
    """Width-prune a copy of ``model`` to ``keep`` (1: none) and plan the search of the rest of ``ratio`` on it.

    ``reference`` is ``(layers, statistics, candidates)`` of an earlier split's search (or
    ``None``): the candidates of a layer that pruning left unchanged (same weight, same
    statistics object) are taken from it. ``keep_bases``: the split keeps its low-rank
    candidates' eigenvectors (``_Split.bases``) for the one-shot build.
    """
    import torch

    pruned, pres, stats, rest = None, None, search["stats"], ratio
    if keep < 1.0:
        pruned = copy.deepcopy(model)
        pres = _prune_stage(pruned, keep, None, stats, False)
        stats, rest = pruned_stats(stats, pres), min(ratio / pres.ratio, 1.0)
    chosen = find_layers(model if pruned is None else pruned)
    known = {}
    if reference is not None:
        layers0, stats0, options0 = reference
        for name, m in chosen.items():
            if name in options0 and stats.get(name) is stats0.get(name):
                w, w0 = linear_weight(m), linear_weight(layers0[name])
                if w.shape == w0.shape and bool(torch.equal(w, w0)):
                    known[name] = options0[name]
    plan, forms, options = _search_plan(chosen, rest, stats, search["weights"], search["families"], search["step"],
                                        set(), search["max_flops"], False, known, keep_bases)
    bases = {n: o.basis for n, o in options.items() if o.basis is not None} if keep_bases else None
    return _Split(keep, pruned, pres, stats, plan, forms, bases=bases), (chosen, stats, options)


def _build_split(model, split: _Split, progress, start, params_before) -> CompressionResult:
    """Factorise ``model`` (the split's pruned copy, or the unpruned model) in place by the split's plan, in one
    shot: every layer truncated on the original model's statistics (cut to the kept channels), the low-rank
    layers cut from the split's ``bases`` where it has them."""
    extra = {} if split.prune is None else {"prune": split.prune}
    return _build_planned(model, "search", find_layers(model), split.plan, split.forms, split.stats,
                          _default_build_options(), None, False, None, progress, extra, start, params_before,
                          bases=split.bases)


def _best_split(model, ratio, shares, search, held, progress, above=math.inf, precision="float32"
                ) -> tuple[AutoCandidate, dict[float, float]]:
    """The splits that use the search, built in one shot and scored on the held-out batch; the best one.

    Each split costs its pruning, its candidates' eigendecompositions, its factorisations and
    one forward pass over the held-out batch: no pass over the calibration text (the
    statistics are the original model's, cut to the kept channels). Not every split is
    built: the held-out loss is taken to be unimodal in the share, so the splits are built
    from the largest share of pruning down while the loss falls (:func:`descend`), the first
    compared with ``above`` (pruning alone's loss). Measured on SmolLM2 the one-shot loss
    falls steadily with the share at 70% kept (two splits built) and has one interior minimum
    at 90% (three). Each is built in place on its pruned copy (or on the model itself, whose
    dense layers are put back afterwards); only the best so far is kept.

    Returns the best split as an :class:`AutoCandidate` (``model`` is its compressed copy;
    ``model`` itself is unchanged) and the held-out loss of every split built, by the
    fraction width pruning keeps. ``precision``: of the held-out forward passes (:func:`heldout_loss`).

    A block-by-block build of the best split (:mod:`tnkit.compress.calibrate.sequential`, on
    three of the fitting batches) scored worse on the held-out batch than its one-shot build
    on SmolLM2 (70% kept: 3.992 against 3.950; 90%: 3.349 against 3.319; docs/compress.md)
    for two more passes of the trunk over that text, so the one-shot build is the candidate.
    """
    from tqdm.auto import tqdm

    from .recipe import descend, heldout_loss, prune_fraction

    shares = sorted(shares)
    losses, reference, best = {}, None, None
    params_before = count_params(model)
    bar = tqdm(total=len(shares), desc="auto: one-shot splits", disable=not progress, leave=False)

    def loss_of(i: int) -> float:
        nonlocal reference, best
        start = time.perf_counter()
        keep = round(prune_fraction(ratio, shares[i]), 6)
        split, planned = _plan_split(model, ratio, keep, search, reference, keep_bases=True)
        # the first split's candidates serve every later split wherever pruning left a layer unchanged
        reference = reference or _unchanged_bases(planned, find_layers(model))
        trial = model if split.pruned is None else split.pruned
        dense = find_layers(trial)
        try:
            res = _build_split(trial, split, False, start, params_before)
            split.loss = loss = heldout_loss(trial, held, precision=precision)
            if best is None or loss < best[0].loss:
                built = {name: trial.get_submodule(name) for name in dense}
                best = (split, {n: m for n, m in built.items() if m is not dense[n]}, res)
        finally:
            if trial is model:
                replace_layers(model, dense)  # the model itself stays as it was
        split.bases = None
        if best[0] is not split:
            split.pruned = None  # its pruned copy: not needed any more
        losses[keep] = loss
        bar.update(1)
        if progress:
            tqdm.write(f"auto: width pruning to {keep:.1%} of the block weights, then the factorisation search "
                       f"(one shot): held-out loss {loss:.4f}")
        return loss

    descend(loss_of, len(shares), above=above)
    bar.close()
    split, built, res = best
    trial = split.pruned if split.pruned is not None else replace_layers(copy.deepcopy(model), built)
    return AutoCandidate(split.keep, trial, res, split.loss), dict(sorted(losses.items(), reverse=True))


def _unchanged_bases(planned: tuple, original: Mapping[str, nn.Module]) -> tuple:
    """``planned`` (layers, statistics, candidates) with the eigenvectors kept only for the layers equal to
    ``original``'s (those later splits can reuse; the others' are dropped to free their memory)."""
    import torch

    layers, stats, options = planned

    def same(name: str) -> bool:
        a, b = layers[name], original.get(name)
        return b is not None and (a is b or (linear_weight(a).shape == linear_weight(b).shape
                                             and bool(torch.equal(linear_weight(a), linear_weight(b)))))

    return layers, stats, {n: o if same(n) else o.without_basis() for n, o in options.items()}


def auto_candidates(model: nn.Module, *, ratio: float, calibration: Sequence[Any],
                    weights: Mapping[str, float] | None = None, families: Sequence[str] = DEFAULT_FAMILIES,
                    sensitivity: str = "gradient", step: int = 8, max_flops: int | None = None,
                    stats_precision: str | None = None, progress: bool = True) -> Iterator[AutoCandidate]:
    """The candidates of method ``"auto"``, one compressed copy of ``model`` at a time (``model`` is unchanged).

    Each split of ``tnkit.compress.AUTO_SPLITS`` prunes widths to
    ``1 - share * (1 - ratio)`` of the block linear weights, then runs the factorisation search
    for the rest of the budget (a model that :func:`tnkit.compress.width_prunable` rejects, such
    as GPT-2, gets share 0 alone: the search without pruning; a split that would prune below
    :func:`tnkit.compress.min_prune_fraction` is left out). Pruning alone (share 1, which needs
    no factorisation) is the first candidate; the splits that use the search are built in one
    shot on the original model's statistics and scored by their held-out loss (:func:`_best_split`, which builds
    them from the largest share down while the loss falls), and the best of them is the
    second. Each candidate is scored on the last batch (see ``calibration_batches``). The
    original model's statistics (on every fitting batch) and gradient sensitivities are
    measured once and shared.
    """
    from .prune import min_prune_fraction, width_prunable
    from .recipe import AUTO_SPLITS, heldout_loss, heldout_split, prune_fraction

    clock = StageClock()  # every candidate's result.extra["stage_seconds"] is this clock's table, kept up to date
    fit, held = heldout_split(calibration)
    chosen = find_layers(model)
    precision = stats_precision or default_stats_precision(model)
    with clock("calibrate"):
        stats = collect_activation_stats(model, chosen, _bar(fit, "calibrate", progress), precision=precision)
    if weights is None and sensitivity == "gradient":
        with clock("sensitivity"):
            weights = gradient_weights(model, chosen, _bar(fit[:_GRADIENT_BATCHES], "sensitivity", progress),
                                       precision=precision)
    prunable = width_prunable(model)
    if not prunable and ratio < 1.0 and progress:
        from tqdm.auto import tqdm

        tqdm.write(f"auto: {type(model).__name__} has no Llama-style blocks to prune: the factorisation search alone")
    shares = tuple(dict.fromkeys(AUTO_SPLITS if ratio < 1.0 and prunable else (0.0,)))
    if prunable:  # a split that would prune below one channel and one head per block is left out
        floor = min_prune_fraction(model)
        shares = tuple(s for s in shares if s == 0.0 or prune_fraction(ratio, s) >= floor)
    pruned_loss = math.inf
    if 1.0 in shares:
        with clock("pruning alone"):
            trial = copy.deepcopy(model)
            res = compress_model(trial, method="prune", ratio=ratio, stats=stats, progress=progress)
        res.extra["stage_seconds"] = clock.seconds
        with clock("held-out scores"):
            pruned_loss = heldout_loss(trial, held, precision=precision)
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(f"auto: width pruning to {ratio:.1%} of the block weights: held-out loss {pruned_loss:.4f}")
        yield AutoCandidate(round(prune_fraction(ratio, 1.0), 6), trial, res, pruned_loss)
        del trial
    search = dict(stats=stats, weights=weights, families=tuple(families), step=step, max_flops=max_flops)
    with clock("one-shot splits"):
        cand, predicted = _best_split(model, ratio, [s for s in shares if s < 1.0], search, held, progress,
                                      above=pruned_loss, precision=precision)
    cand.result.extra["stage_seconds"] = clock.seconds
    yield AutoCandidate(cand.prune, cand.model, cand.result, cand.loss, predicted)


def _auto(model, ratio, calibration, weights, families, sensitivity, step, max_flops, progress, start,
          params_before, stats_precision=None) -> CompressionResult:
    """Method ``"auto"``: the candidate of :func:`auto_candidates` with the lowest held-out loss, adopted in place."""
    from .prune import width_prunable
    from .recipe import adopt

    prunable = width_prunable(model)  # before the layers are replaced
    best, losses, predicted = None, {}, {}
    for cand in auto_candidates(model, ratio=ratio, calibration=calibration, weights=weights, families=families,
                                stats_precision=stats_precision,
                                sensitivity=sensitivity, step=step, max_flops=max_flops, progress=progress):
        losses[cand.prune] = cand.loss
        predicted = cand.predicted
        if best is None or cand.loss < best.loss:
            best = cand
        del cand
    adopt(model, best.model)
    extra = dict(best.result.extra, auto_losses=losses, auto_prune=best.prune, auto_predicted=predicted,
                 auto_prunable=prunable)
    return CompressionResult("auto", best.result.layers, params_before, count_params(model),
                             time.perf_counter() - start, extra)


@dataclass(frozen=True)
class RecipeCall:
    """The options of :func:`compress_model` that a method with a recipe of its own reads."""

    ratio: float
    calibration: Any
    stats: Any
    weights: Any
    families: Sequence[str]
    sensitivity: str
    step: int
    max_flops: int | None
    progress: bool
    start: float
    params_before: int
    stats_precision: str | None = None


def _run_auto(model: nn.Module, call: RecipeCall) -> CompressionResult:
    return _auto(model, call.ratio, call.calibration, call.weights, call.families, call.sensitivity, call.step,
                 call.max_flops, call.progress, call.start, call.params_before, call.stats_precision)


def _run_prune(model: nn.Module, call: RecipeCall) -> CompressionResult:
    clock = StageClock()
    with clock("prune"):
        pres = _prune_stage(model, call.ratio, call.calibration, call.stats, call.progress)
    result = _pruned_result(model, pres, call.params_before, time.perf_counter() - call.start)
    result.extra["stage_seconds"] = clock.seconds
    return result


#: Methods that are recipes of their own (``METHOD_SPECS``), by name: the runner gets the model
#: and the options in a :class:`RecipeCall`.
_RECIPE_RUNNERS: dict[str, Callable[[nn.Module, RecipeCall], CompressionResult]] = {
    "auto": _run_auto,
    "prune": _run_prune,
}


def _prune_stage(model, keep, calibration, stats, progress):
    from .prune import prune_width

    if progress:
        log.info("width pruning to %.0f%% of the block weights", 100 * keep)
    return prune_width(model, ratio=keep, calibration=_bar(calibration, "prune: calibrate", progress), stats=stats,
                       progress=progress)


def _pruned_result(model, pres, params_before, seconds) -> CompressionResult:
    layers = find_layers(model)
    reports = tuple(LayerReport(n, "pruned", -1, _layer_params(m), _layer_params(m), 0.0) for n, m in layers.items())
    return CompressionResult("prune", reports, params_before, count_params(model), seconds, {"prune": pres})


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
    from ...mps.mpo import balanced_factors

    out, inp = linear_weight(module).shape
    return balanced_factors(out, n_cores), balanced_factors(inp, n_cores)


def uniform_size(method: str, out: int, inp: int, ratio: float, *, n_cores: int = 2) -> int:
    """Rank (low-rank methods) or bond (MPOs of ``n_cores`` cores) keeping ``ratio`` of an ``(out, inp)`` weight.

    The rule of ``allocation="uniform"``; an input scale (:attr:`MethodSpec.input_scale`) costs ``inp``.
    """
    from ...mps.mpo import balanced_factors

    if method.startswith("mpo"):
        scale = inp if METHOD_SPECS[method].input_scale else 0  # the input scale costs `in` numbers
        return bond_for_params(balanced_factors(out, n_cores), balanced_factors(inp, n_cores), ratio * out * inp - scale)
    return max(1, int(ratio * out * inp / (out + inp)))


def _uniform_size(module: nn.Module, method: str, ratio: float, n_cores: int) -> int:
    out, inp = linear_weight(module).shape
    return uniform_size(method, out, inp, ratio, n_cores=n_cores)


#: How each low-rank method weights a weight ``w`` before its truncated SVD:
#: method -> target(w, stats, alpha, ridge).
_LOWRANK_TARGETS: dict[str, Callable[..., np.ndarray]] = {
    "svd": lambda w, st, alpha, ridge: w,
    "asvd": lambda w, st, alpha, ridge: w * channel_scale(st, alpha=alpha)[None, :],
    "whiten": lambda w, st, alpha, ridge: w @ cholesky_whitener(ridge_covariance(st.covariance, ridge)),
}

def _lowrank_size_curve(target: Callable[..., np.ndarray], module, w, st, alpha, step, ridge) -> SizeCurve:
    return lowrank_curve(target(w, st, alpha, ridge), step=step)


def _mpo_size_curve(module, w, st, alpha, step, ridge) -> SizeCurve:
    return mpo_curve(w, *_dims(module, 2), step=step)


def _mpo_aware_size_curve(module, w, st, alpha, step, ridge) -> SizeCurve:
    return mpo_curve(w, *_dims(module, 2), input_scale=channel_scale(st, alpha=alpha), step=step)


def _mpo_whiten_size_curve(module, w, st, alpha, step, ridge) -> SizeCurve:
    return whitened_mpo_curve(w, st.covariance, *_dims(module, 2), step=step, ridge=ridge)


#: Each method's error-versus-size curve of a layer (in the method's own error metric):
#: method -> curve(module, weight, stats, alpha, step, ridge).
_SIZE_CURVES: dict[str, Callable[..., SizeCurve]] = {
    **{m: functools.partial(_lowrank_size_curve, target) for m, target in _LOWRANK_TARGETS.items()},
    "mpo": _mpo_size_curve,
    "mpo-aware": _mpo_aware_size_curve,
    "mpo-whiten": _mpo_whiten_size_curve,
}


def _size_curve(module: nn.Module, method: str, st: ActivationStats | None, alpha: float, step: int,
                ridge: float) -> SizeCurve:
    """The layer's error-versus-size curve in the method's own error metric (:data:`_SIZE_CURVES`)."""
    return _SIZE_CURVES[method](module, linear_weight(module).detach().double().numpy(), st, alpha, step, ridge)


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


@dataclass(frozen=True)
class _BuildOptions:
    """The options of :func:`compress_model` that the layer builders read."""

    n_cores: int
    alpha: float
    refit_limit: int
    sweeps: int
    cg_iterations: int
    ridge: float


class _Whiteners:
    """The whitener of the statistics last asked for (:func:`tnkit.core.linalg.cholesky_whitener` of the ridged
    second moment), computed once for the layers that share them.

    Layers fed the same tensor share one :class:`ActivationStats` (q/k/v and gate/up:
    :func:`collect_activation_stats` and the block-by-block build), and each thread's builder
    meets them one after another (:func:`_by_stats`), so holding the last one per thread
    serves them all.
    """

    def __init__(self, ridge: float) -> None:
        import threading

        self.ridge = float(ridge)
        self._local = threading.local()  # builders on worker threads each hold their own last whitener

    def __call__(self, st: ActivationStats) -> np.ndarray:
        from ...core.threads import blas_threads

        last = getattr(self._local, "last", None)
        if last is None or last[0] is not st:
            c = ridge_covariance(st.covariance, self.ridge, overwrite=True)  # a fresh array: take its storage
            with blas_threads(len(c)):  # one thread below 1024 (tnkit.core.threads): a busy core makes two crawl
                last = self._local.last = (st, cholesky_whitener(c, overwrite=True))
        return last[1]


#: What each low-rank method passes to :meth:`LowRankLinear.from_linear` besides the rank:
#: method -> inputs(stats, options, whiteners); ``"whiten"`` takes the whitener the layers fed the same input share.
_LOWRANK_INPUTS: dict[str, Callable[..., dict[str, Any]]] = {
    "svd": lambda st, opt, whiteners: {},
    "asvd": lambda st, opt, whiteners: {"input_scale": channel_scale(st, alpha=opt.alpha)},
    "whiten": lambda st, opt, whiteners: {"whitener": whiteners(st)},
}


def _build_lowrank(module: nn.Module, method: str, size: int, st: Any, opt: _BuildOptions,
                   whiteners: _Whiteners) -> nn.Module:
    limit = min(linear_weight(module).shape)
    if size > limit:
        raise ValueError(f"`max_bond` (rank) must be at most {limit} for this layer, got {size}.")
    return LowRankLinear.from_linear(module, rank=size, method=method, **_LOWRANK_INPUTS[method](st, opt, whiteners))


def _build_mpo(module: nn.Module, method: str, size: int, st: Any, opt: _BuildOptions,
               whiteners: _Whiteners) -> nn.Module:
    return MPOLinear.from_linear(module, n_cores=opt.n_cores, max_bond=size)


def _capped_bond(module: nn.Module, size: int, n_cores: int) -> tuple[int, tuple[int, ...]]:
    """``size`` capped at the largest bond the layer's MPO admits, and the MPO's input dims."""
    o, i = _dims(module, n_cores)
    return min(size, max(max_bonds(o, i))), i


def _build_mpo_aware(module: nn.Module, method: str, size: int, st: Any, opt: _BuildOptions,
                     whiteners: _Whiteners) -> nn.Module:
    size, i = _capped_bond(module, size, opt.n_cores)
    refit = size * i[-1] <= opt.refit_limit
    return MPOLinear.from_linear(module, n_cores=opt.n_cores, max_bond=size, input_scale=channel_scale(st, alpha=opt.alpha),
                                 covariance=st.covariance if refit else None)


def _build_mpo_whiten(module: nn.Module, method: str, size: int, st: Any, opt: _BuildOptions,
                      whiteners: _Whiteners) -> nn.Module:
    size, _ = _capped_bond(module, size, opt.n_cores)
    return MPOLinear.from_linear_whitened(module, st.covariance, n_cores=opt.n_cores, max_bond=size, sweeps=opt.sweeps,
                                          cg_iterations=opt.cg_iterations, ridge=opt.ridge)


#: The compressed layer of each single-family method:
#: method -> build(module, method, size, stats, options, whiteners).
_LAYER_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    **dict.fromkeys(_LOWRANK_INPUTS, _build_lowrank),
    "mpo": _build_mpo,
    "mpo-aware": _build_mpo_aware,
    "mpo-whiten": _build_mpo_whiten,
}

