"""Structured width pruning of Llama-style models: MLP channels and attention heads.

A Llama block adds two things to the residual stream: the MLP's output
``down(h)``, ``h = act(gate x) * up x`` (``intermediate_size`` channels), and the
attention's output ``o(z)``, ``z`` the heads' outputs side by side (``num_attention_heads``
heads of ``head_dim``, sharing ``num_key_value_heads`` key/value heads in groups). Removing
MLP channel ``j`` deletes row ``j`` of ``gate``/``up`` and column ``j`` of ``down``; removing a
query head deletes its rows of ``q`` and its columns of ``o``; removing a key/value group
deletes its rows of ``k``, ``v`` and its query heads.

**Scores** are activation-weighted: the energy a unit sends into the residual stream on
the calibration text, ``tr(W_R C_RR W_R^T)`` for the columns ``R`` of ``down`` (or ``o``)
that the unit feeds, with ``C = E[z z^T]`` the second moment of that layer's inputs. A
block keeps the units with the largest scores.

**Folding** (least squares): the removed units' contribution is partly predictable from
the kept ones. With kept columns ``K`` and removed ``R`` the output layer
``W' = W_K + W_R C_RK (C_KK + ridge)^-1`` minimises ``E||W z - W' z_K||^2``; it replaces
``W_K`` when it lowers that error on the calibration statistics (and is skipped when it
does not). The ridge (:data:`PRUNE_FOLD_RIDGE` times the kept channels' mean energy) keeps
the fold from fitting the calibration text: with about 900 coefficients per output and a
few thousand tokens, a ridge of 1e-3 made the perplexity worse than no fold at all.

**Uniform widths.** Every block loses the same number of MLP channels and of heads, so
the result is a plain, smaller ``LlamaForCausalLM``: ``config.intermediate_size``,
``num_attention_heads`` and ``num_key_value_heads`` (and ``head_dim``, stated
explicitly) are updated, and ``model.save_pretrained`` writes a checkpoint that
transformers loads with no tnkit code. Grouped-query attention stays consistent: either
the same number of query heads leaves every key/value group, or whole groups go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ...core.threads import available_threads, blas_threads, map_on_threads
from ...core.validate import check_int, check_number, check_option

__all__ = ["PruneResult", "prune_width", "prune_plan", "width_prunable", "min_prune_fraction", "pruned_stats",
           "block_linear_params", "PRUNE_FOLD_RIDGE", "CHANNEL_SCORES", "DEFAULT_CHANNEL_SCORE"]

#: relative ridge of the least-squares fold (times the mean kept-channel energy): 0.1-1 is the flat optimum on
#: SmolLM2 at 70% kept (docs/compress.md); 1e-3 overfitted the calibration text
PRUNE_FOLD_RIDGE = 1e-1

#: the linear layers every block must have for width pruning: (submodule, names)
_LLAMA_LAYOUT = (("mlp", ("gate_proj", "up_proj", "down_proj")),
                 ("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")))


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_width` removed.

    Attributes
    ----------
    intermediate_size : int
        MLP channels kept per block (before -> after in ``before``).
    heads_per_group : int
        Query heads kept per key/value group.
    kv_groups : int
        Key/value heads kept.
    params_before, params_after : int
        Block linear weights before and after.
    before : dict
        The original ``intermediate_size``, ``heads_per_group`` and ``kv_groups``.
    removed_energy : float
        Residual-stream energy of the removed units summed over blocks, relative to the
        blocks' total MLP + attention output energy (after folding).
    kept : dict
        Per block index: ``(mlp_channels, attention_columns)``, the sorted indices of the
        kept inputs of ``down_proj`` and ``o_proj`` (see :func:`pruned_stats`), ``None``
        where nothing was removed.
    errors : dict
        Absolute output error ``tr(E C E^T)`` of each pruned ``down_proj`` / ``o_proj``
        (after the fold), by layer name: the same currency as the factorisation
        search's errors (:mod:`tnkit.compress.numerics.search`).
    """

    intermediate_size: int
    heads_per_group: int
    kv_groups: int
    params_before: int
    params_after: int
    before: dict
    removed_energy: float
    kept: dict = field(default_factory=dict, repr=False)
    errors: dict = field(default_factory=dict, repr=False)

    @property
    def ratio(self) -> float:
        """Block linear weights kept."""
        return self.params_after / self.params_before


def _blocks(model: nn.Module) -> list[nn.Module]:
    layers = getattr(getattr(model, "model", None), "layers", None)
    cfg = getattr(model, "config", None)
    ok = layers is not None and cfg is not None and len(layers) > 0 and all(
        all(isinstance(getattr(getattr(b, part, None), n, None), nn.Linear) for part, names in _LLAMA_LAYOUT
            for n in names)
        for b in layers)
    if not ok:
        raise TypeError(f"width pruning needs a Llama-style model (model.layers[i].mlp.gate_proj/up_proj/down_proj, "
                        f"self_attn.q/k/v/o_proj), got {type(model).__name__}.")
    return list(layers)


def width_prunable(model: nn.Module) -> bool:
    """Whether :func:`prune_width` can act on ``model``: every block has the Llama layout.

    That is ``model.model.layers[i]`` with ``nn.Linear`` layers ``mlp.gate_proj``,
    ``mlp.up_proj``, ``mlp.down_proj`` and ``self_attn.q_proj``, ``k_proj``, ``v_proj``,
    ``o_proj`` (Llama, Mistral, Qwen2/3, Gemma and the like). GPT-2's ``Conv1D`` layers,
    fused projections (Phi-3's ``qkv_proj``) and mixture-of-experts MLPs are not.
    """
    try:
        _blocks(model)
    except TypeError:
        return False
    return True


def min_prune_fraction(model: nn.Module) -> float:
    """The least fraction of the block linear weights :func:`prune_width` can keep.

    One MLP channel, one key/value head and one query head per block. Raises ``TypeError``
    for a model that is not Llama-style (:func:`width_prunable`).
    """
    _blocks(model)
    inter, n_kv, per_group, head_dim = _geometry(model)
    hidden = model.config.hidden_size
    return _block_params(hidden, 1, 1, 1, head_dim) / _block_params(hidden, inter, n_kv, per_group, head_dim)


def _geometry(model: nn.Module) -> tuple[int, int, int, int]:
    """``(intermediate, n_kv, heads_per_group, head_dim)``."""
    cfg = model.config
    n_heads, n_kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    return cfg.intermediate_size, n_kv, n_heads // n_kv, head_dim


def _block_params(hidden: int, inter: int, n_kv: int, per_group: int, head_dim: int) -> int:
    q = n_kv * per_group * head_dim
    return 3 * hidden * inter + 2 * hidden * q + 2 * hidden * n_kv * head_dim


def _energy(w: np.ndarray, c: np.ndarray, cols: np.ndarray) -> float:
    wr = w[:, cols]
    return float(np.sum((wr @ c[np.ix_(cols, cols)]) * wr))


def _head_scores(o: np.ndarray, c: np.ndarray, n_kv: int, per_group: int, head_dim: int) -> np.ndarray:
    """Energy of each query head through ``o``, shape ``(n_kv, per_group)``."""
    heads = n_kv * per_group
    oh = o[:, : heads * head_dim].reshape(o.shape[0], heads, head_dim).transpose(1, 0, 2)  # (heads, out, head_dim)
    ch = c[: heads * head_dim, : heads * head_dim].reshape(heads, head_dim, heads, head_dim)
    diag = ch[np.arange(heads), :, np.arange(heads), :]  # (heads, head_dim, head_dim): each head's own block
    return np.sum((oh @ diag) * oh, axis=(1, 2)).reshape(n_kv, per_group)  # batched products, not an einsum loop


def _kept_heads(scores: np.ndarray, kv_keep: int, per_group_keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept key/value groups (sorted) and, per kept group, its kept query heads (sorted)."""
    groups = np.sort(np.argsort(-scores.sum(1), kind="stable")[:kv_keep])
    heads = np.stack([np.sort(np.argsort(-scores[g], kind="stable")[:per_group_keep]) for g in groups])
    return groups, heads


def _removed(w: np.ndarray, c: np.ndarray, keep: np.ndarray, *, fold: bool, ridge: float = PRUNE_FOLD_RIDGE
             ) -> tuple[float, np.ndarray]:
    """Output error of dropping the columns outside ``keep`` (after the least-squares fold when it helps) and the
    new output weight on the kept columns."""
    drop = np.setdiff1d(np.arange(w.shape[1]), keep)
    plain = _energy(w, c, drop)
    wk = w[:, keep]
    if not fold or drop.size == 0:
        return plain, wk
    ckk = c[np.ix_(keep, keep)]
    ridge = ridge * max(float(np.trace(ckk)) / len(keep), 1e-300)
    from scipy.linalg import cho_factor, cho_solve

    b = c[np.ix_(keep, drop)] @ w[:, drop].T  # (|K|, out): C_KR W_R^T
    x = cho_solve(cho_factor(ckk + ridge * np.eye(len(keep))), b)  # the fold's correction, transposed
    folded = wk + x.T
    # tr(E C E^T) with E = [-X^T on K, W_R on R] and (C_KK + ridge) X = B: plain - 2 <X, B> + <X, C_KK X>, and
    # C_KK X = B - ridge X, so no (out, in) product is formed
    err = plain - float(np.sum(x * b)) - ridge * float(np.sum(x * x))
    return (err, folded) if err < plain else (plain, wk)


def _energy_keep(w: np.ndarray, c: np.ndarray, keep_n: int, ridge: float) -> np.ndarray:
    """The ``keep_n`` columns of ``w`` sending the most energy ``||w_j||^2 C_jj`` into the output (sorted)."""
    score = np.sum(w * w, axis=0) * np.diag(c)
    return np.sort(np.argsort(-score, kind="stable")[:keep_n])


def _obs_keep(w: np.ndarray, c: np.ndarray, keep_n: int, ridge: float, *, chunk: int = 8) -> np.ndarray:
    """Columns of ``w`` to keep, removed greedily by their error after the least-squares fold (optimal brain surgeon).

    With ``H = C + ridge * tr(C) / n * I``, removing column ``j`` and re-fitting the others costs
    ``||w_j||^2 / [H^-1]_jj`` (the fold's error, structured OBS); the cheapest ``chunk`` columns go
    at a time, then ``w`` and ``H^-1`` are updated by the Schur complement.
    """
    n = c.shape[0]
    h = c + ridge * max(float(np.trace(c)) / n, 1e-300) * np.eye(n)
    hinv = np.linalg.inv(h)
    w = w.copy()
    alive = np.ones(n, dtype=bool)
    left = n - keep_n
    while left > 0:
        cost = np.sum(w * w, axis=0) / np.maximum(np.diag(hinv), 1e-300)
        cost[~alive] = np.inf
        b = np.argsort(cost, kind="stable")[: min(chunk, left)]
        hbb = hinv[np.ix_(b, b)]
        sol = np.linalg.solve(hbb, hinv[b])  # (|b|, n)
        w -= w[:, b] @ sol
        hinv -= hinv[:, b] @ sol
        alive[b] = False
        w[:, b] = 0.0
        hinv[b, :] = 0.0
        hinv[:, b] = 0.0
        left -= len(b)
    return np.flatnonzero(alive)


#: How :func:`prune_width` chooses the MLP channels each block keeps: name -> keep(down_weight, covariance,
#: keep_n, ridge) -> sorted kept columns of ``down_proj``
CHANNEL_SCORES = {"energy": _energy_keep, "obs": _obs_keep}
DEFAULT_CHANNEL_SCORE = "energy"


def _stats(model, blocks, calibration, stats):
    if stats is not None:
        return stats
    if calibration is None:
        raise ValueError("width pruning is data-aware: give `calibration` batches or `stats`.")
    from ..calibrate.calibration import collect_activation_stats

    names = {}
    for i, b in enumerate(blocks):
        names[f"model.layers.{i}.self_attn.o_proj"] = b.self_attn.o_proj
        names[f"model.layers.{i}.mlp.down_proj"] = b.mlp.down_proj
    return collect_activation_stats(model, names, calibration)


def prune_plan(model: nn.Module, ratio: float, stats: Mapping[str, object], *,
               weights: Mapping[str, float] | None = None) -> tuple[int, int, int]:
    """Widths ``(intermediate, kv_groups, heads_per_group)`` keeping at most ``ratio`` of the block linear weights.

    Every grouped-query-consistent attention width (whole key/value groups, or the same
    number of query heads from each group) is tried with the MLP width that fills the
    budget; the one whose removed units carry the least residual-stream energy (summed
    over blocks, weighted per layer by ``weights`` of ``o_proj`` / ``down_proj``) wins.
    """
    blocks = _blocks(model)
    inter, n_kv, per_group, head_dim = _geometry(model)
    hidden = model.config.hidden_size
    full = _block_params(hidden, inter, n_kv, per_group, head_dim)
    target = ratio * full
    w = weights or {}
    mats = []
    for i, b in enumerate(blocks):
        on, dn = f"model.layers.{i}.self_attn.o_proj", f"model.layers.{i}.mlp.down_proj"
        o = b.self_attn.o_proj.weight.detach().double().numpy()
        d = b.mlp.down_proj.weight.detach().double().numpy()
        co = stats[on].covariance
        ch = np.sum(d * d, axis=0) * stats[dn].variance  # each channel's own energy through down
        mats.append((_head_scores(o, co, n_kv, per_group, head_dim), np.sort(ch)[::-1],
                     float(w.get(on, 1.0)), float(w.get(dn, 1.0))))
    best = None
    for kv_keep in range(n_kv, 0, -1):
        for pg_keep in range(per_group, 0, -1):
            if kv_keep < n_kv and pg_keep < per_group:
                continue  # one kind of attention cut at a time
            attn = _block_params(hidden, 0, kv_keep, pg_keep, head_dim)
            m_keep = int((target - attn) // (3 * hidden))
            if m_keep < 1:
                continue
            m_keep = min(m_keep, inter)
            cost = 0.0
            for scores, ch, wo, wd in mats:
                groups, heads = _kept_heads(scores, kv_keep, pg_keep)
                kept_attn = sum(float(scores[g, hh].sum()) for g, hh in zip(groups, heads))
                cost += wo * (scores.sum() - kept_attn) + wd * float(ch[m_keep:].sum())
            if best is None or cost < best[0]:
                best = (cost, m_keep, kv_keep, pg_keep)
    if best is None:
        raise ValueError(f"`ratio`={ratio} is too small for width pruning to reach (at least one channel and one head "
                         f"per block).")
    return best[1], best[2], best[3]


def prune_width(model: nn.Module, *, ratio: float | None = None, intermediate_size: int | None = None,
                kv_groups: int | None = None, heads_per_group: int | None = None,
                calibration: Sequence[torch.Tensor] | None = None, stats: Mapping[str, object] | None = None,
                weights: Mapping[str, float] | None = None, fold: bool = True,
                fold_ridge: float = PRUNE_FOLD_RIDGE, channel_score: str = DEFAULT_CHANNEL_SCORE,
                progress: bool = False) -> PruneResult:
    """Remove MLP channels and attention heads uniformly in every block, in place.

    Parameters
    ----------
    model : transformers.LlamaForCausalLM (or a model of the same layout)
    ratio : float, optional
        Fraction in (0, 1] of the block linear weights to keep; the widths are chosen by
        :func:`prune_plan`. Or give the widths:
    intermediate_size, kv_groups, heads_per_group : int, optional
        MLP channels, key/value heads, and query heads per key/value head to keep
        (each defaults to the current width).
    calibration : sequence of torch.Tensor, optional
        Token-id batches for the activation statistics (or give ``stats``, keyed by the
        ``o_proj`` and ``down_proj`` names).
    weights : mapping of str to float, optional
        Per-layer sensitivity of ``o_proj`` / ``down_proj`` outputs for :func:`prune_plan`.
    fold : bool
        Fold the removed units' contribution into the output layers by least squares
        where it lowers the calibration error.
    fold_ridge : float
        Ridge of the fold, >= 0, relative to the kept channels' mean energy
        ``tr(C_KK) / |K|`` (default :data:`PRUNE_FOLD_RIDGE`): a small one fits the
        calibration text instead of the model.
    channel_score : str
        How each block's kept MLP channels are chosen, one of :data:`CHANNEL_SCORES`:
        ``"energy"`` (default, ``||down_j||^2 C_jj``) or ``"obs"`` (greedy removal by the
        error after the fold).
    progress : bool
        Show a tqdm bar over the blocks.

    Returns
    -------
    PruneResult

    Raises
    ------
    TypeError
        If the model is not Llama-style.
    ValueError
        For widths out of range or a ratio out of (0, 1].
    """
    blocks = _blocks(model)
    inter, n_kv, per_group, head_dim = _geometry(model)
    hidden = model.config.hidden_size
    fold_ridge = check_number("fold_ridge", fold_ridge, positive=False)
    check_option("channel_score", channel_score, CHANNEL_SCORES)
    if ratio is not None:
        if not 0.0 < float(ratio) <= 1.0:
            raise ValueError(f"`ratio` must lie in (0, 1], got {ratio}.")
        if any(v is not None for v in (intermediate_size, kv_groups, heads_per_group)):
            raise ValueError("give either `ratio` or the widths (`intermediate_size`, `kv_groups`, "
                             "`heads_per_group`), not both.")
    widths = {}
    for name, value, top in (("intermediate_size", intermediate_size, inter), ("kv_groups", kv_groups, n_kv),
                             ("heads_per_group", heads_per_group, per_group)):
        v = top if value is None else check_int(name, value, minimum=1)
        if v > top:
            raise ValueError(f"`{name}` must be at most {top}, got {v}.")
        widths[name] = v
    st = _stats(model, blocks, calibration, stats)
    workers = available_threads()  # read before the one-BLAS-thread section below, which it would report
    with blas_threads(min(hidden, inter)):  # small factorisations: one BLAS thread (tnkit.core.threads)
        if ratio is not None:
            widths["intermediate_size"], widths["kv_groups"], widths["heads_per_group"] = prune_plan(
                model, float(ratio), st, weights=weights)
        m_keep, kv_keep, pg_keep = widths["intermediate_size"], widths["kv_groups"], widths["heads_per_group"]
        def one(i: int) -> tuple[float, float, float, float, np.ndarray | None, np.ndarray | None]:
            b = blocks[i]
            err_a, tot_a, cols = _prune_attention(b.self_attn, st[f"model.layers.{i}.self_attn.o_proj"], n_kv,
                                                  per_group, head_dim, kv_keep, pg_keep, fold, fold_ridge)
            err_m, tot_m, channels = _prune_mlp(b.mlp, st[f"model.layers.{i}.mlp.down_proj"], m_keep, fold,
                                                fold_ridge, CHANNEL_SCORES[channel_score])
            return err_a, tot_a, err_m, tot_m, channels, cols

        from tqdm.auto import tqdm

        bar = tqdm(total=len(blocks), desc="prune", disable=not progress, leave=False)

        def counted(i: int):
            out = one(i)
            bar.update(1)
            return out

        # the blocks are independent: one worker thread per core, each with one BLAS thread (numpy frees the GIL)
        parts = map_on_threads(counted, range(len(blocks)), workers)
        bar.close()
        removed = total = 0.0
        kept, errors = {}, {}
        for i, (err_a, tot_a, err_m, tot_m, channels, cols) in enumerate(parts):
            kept[i] = (channels, cols)
            errors[f"model.layers.{i}.self_attn.o_proj"], errors[f"model.layers.{i}.mlp.down_proj"] = err_a, err_m
            removed += err_a + err_m
            total += tot_a + tot_m
    before = {"intermediate_size": inter, "kv_groups": n_kv, "heads_per_group": per_group}
    cfg = model.config
    cfg.intermediate_size = m_keep
    cfg.num_key_value_heads = kv_keep
    cfg.num_attention_heads = kv_keep * pg_keep
    cfg.head_dim = head_dim
    return PruneResult(m_keep, pg_keep, kv_keep, len(blocks) * _block_params(hidden, inter, n_kv, per_group, head_dim),
                       len(blocks) * _block_params(hidden, m_keep, kv_keep, pg_keep, head_dim), before,
                       removed / max(total, 1e-300), kept, errors)


def pruned_stats(stats: Mapping[str, object], result: PruneResult) -> dict[str, object]:
    """The statistics of the pruned model's block layers, cut from the original model's ``stats``.

    The inputs of ``q/k/v`` and ``gate/up`` (the normalised residual stream) are the
    original model's; those of ``o_proj`` and ``down_proj`` lose the pruned heads' and
    channels' rows and columns. Exact for the statistics measured on the original model,
    so a search after pruning can plan on them without another pass over the calibration
    text (:func:`tnkit.compress.compress_model` does so; its sequential build measures the
    pruned model's own inputs anyway).

    Parameters
    ----------
    stats : mapping of str to ActivationStats
        The original model's statistics of every block layer (``model.layers.<i>...`` names).
    result : PruneResult
        What :func:`prune_width` removed from that model.
    """
    from ..calibrate.calibration import ActivationStats

    out = dict(stats)
    for i, (channels, cols) in result.kept.items():
        for name, idx in ((f"model.layers.{i}.mlp.down_proj", channels), (f"model.layers.{i}.self_attn.o_proj", cols)):
            st = stats.get(name)
            if st is None or idx is None:
                continue
            out[name] = ActivationStats(st.second_moment_sum[np.ix_(idx, idx)], st.abs_sum[idx], st.n_tokens)
    return out


def _sliced(layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    # no random initialisation: every entry is overwritten below
    new = torch.nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None,
                                   dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _prune_mlp(mlp: nn.Module, st, keep_n: int, fold: bool, ridge: float, select
               ) -> tuple[float, float, np.ndarray | None]:
    d = mlp.down_proj.weight.detach().double().numpy()
    c = st.covariance
    total = st.output_energy(d, c)  # remembered: the prunings of copies of one model share it
    if keep_n == d.shape[1]:
        return 0.0, total, None
    keep = select(d, c, keep_n, ridge)
    err, new_down = _removed(d, c, keep, fold=fold, ridge=ridge)
    idx = torch.as_tensor(keep)
    dt = mlp.down_proj.weight.dtype
    for name in ("gate_proj", "up_proj"):
        lin = getattr(mlp, name)
        setattr(mlp, name, _sliced(lin, lin.weight.detach()[idx], None if lin.bias is None else lin.bias.detach()[idx]))
    lin = mlp.down_proj
    mlp.down_proj = _sliced(lin, torch.as_tensor(new_down, dtype=dt), None if lin.bias is None else lin.bias.detach())
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = keep_n
    return err, total, keep


def _prune_attention(attn: nn.Module, st, n_kv: int, per_group: int, head_dim: int, kv_keep: int,
                     pg_keep: int, fold: bool, ridge: float) -> tuple[float, float, np.ndarray | None]:
    o = attn.o_proj.weight.detach().double().numpy()
    c = st.covariance
    total = st.output_energy(o, c)
    if kv_keep == n_kv and pg_keep == per_group:
        return 0.0, total, None
    groups, heads = _kept_heads(_head_scores(o, c, n_kv, per_group, head_dim), kv_keep, pg_keep)
    q_heads = [g * per_group + h for g, hh in zip(groups, heads) for h in hh]
    q_cols = np.concatenate([np.arange(h * head_dim, (h + 1) * head_dim) for h in q_heads])
    kv_cols = np.concatenate([np.arange(g * head_dim, (g + 1) * head_dim) for g in groups])
    err, new_o = _removed(o, c, q_cols, fold=fold, ridge=ridge)
    qi, kvi = torch.as_tensor(q_cols), torch.as_tensor(kv_cols)
    for name, rows in (("q_proj", qi), ("k_proj", kvi), ("v_proj", kvi)):
        lin = getattr(attn, name)
        setattr(attn, name, _sliced(lin, lin.weight.detach()[rows], None if lin.bias is None else lin.bias.detach()[rows]))
    lin = attn.o_proj
    attn.o_proj = _sliced(lin, torch.as_tensor(new_o, dtype=lin.weight.dtype),
                          None if lin.bias is None else lin.bias.detach())
    for attr, value in (("num_heads", kv_keep * pg_keep), ("num_key_value_heads", kv_keep),
                        ("num_key_value_groups", pg_keep), ("head_dim", head_dim)):
        if hasattr(attn, attr):
            setattr(attn, attr, value)
    return err, total, q_cols


def block_linear_params(model: nn.Module) -> int:
    """Parameters of the linear weights inside the blocks (no embeddings, norms or head)."""
    from ..layers.surgery import find_layers, linear_weight

    return int(sum(linear_weight(m).numel() for m in find_layers(model).values()))
