"""Planning a compression before running it: layers, their cost, which rank does what, memory per rank.

A plan needs only the model's configuration: the architecture is built on torch's
``meta`` device (shapes, no storage), so a 70B Llama plans in seconds in a few hundred
MB. The plan follows what :func:`tnkit.compress.scale.distributed.compress_streaming` does:

* the blocks are walked one at a time, each read from disk, compressed and written
  before the next is read, so memory holds the embeddings, the output head, one dense
  block and its compressed copy, never the whole model;
* the layers of a block are **bin-packed** to the ranks by their factorisation cost
  (longest processing time first: each layer, most expensive first, goes to the rank
  with the least work so far; ties go to the lower rank), factorised there and
  broadcast, so every rank holds the compressed block afterwards;
* the calibration text is cut into one share per rank; each rank runs the block on
  its share and the input statistics are all-reduced, so every rank holds every input
  second moment of the block (float64, ``in x in`` per distinct input).

Costs are floating-point operations of the factorisation (:data:`COSTS`, one function
per method). Memory per rank is an estimate in bytes with its terms listed (see
:class:`RankPlan`): it counts parameters, statistics, the factorisation's work arrays
and the hidden states of the rank's share of the text, not the Python and torch
runtime itself (a few hundred MB per process).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.validate import check_int, check_option

__all__ = ["COSTS", "LayerTask", "RankPlan", "CompressionPlan", "assign_layers", "plan_compression",
           "factorisation_cost", "uniform_size", "meta_model", "load_config"]


def _svd_flops(m: int, n: int) -> float:
    k = min(m, n)
    return 2.0 * m * n * k + 9.0 * k ** 3  # Gram of the smaller side, its eigendecomposition


def _whiten_flops(m: int, n: int) -> float:
    return n ** 3 / 3.0 + 2.0 * m * n * n + _svd_flops(m, n)  # Cholesky, W S, truncation, triangular solve


def _mpo_flops(m: int, n: int) -> float:
    return _svd_flops(m, n)  # a two-core TT-SVD is one SVD of the reshaped (o_0 i_0, o_1 i_1) matrix


def _mpo_whiten_flops(m: int, n: int) -> float:
    return _whiten_flops(m, n) + 8.0 * m * n * n / max(1, int(n ** 0.5))  # + the CG refit's products with C


#: Factorisation cost in floating-point operations of an ``(out, in)`` weight, per method. Only
#: the ratios between layers matter: they decide the bin packing.
COSTS = {"svd": _svd_flops, "asvd": _svd_flops, "whiten": _whiten_flops, "mpo": _mpo_flops,
         "mpo-whiten": _mpo_whiten_flops}
#: float64 work arrays of a factorisation, in units of ``out * in`` and ``in * in`` numbers
#: (``whiten``: the factor of the second moment is computed in the array the statistics hand over, and
#: ``W S`` in the float64 copy of ``W``; one ``in x in`` copy for a layer that shares its input)
_WORK = {"svd": (3, 0), "asvd": (3, 0), "whiten": (3, 1), "mpo": (3, 0), "mpo-whiten": (4, 4)}


def factorisation_cost(method: str, out: int, inp: int) -> float:
    """Floating-point operations to factorise an ``(out, inp)`` weight by ``method`` (:data:`COSTS`)."""
    check_option("method", method, COSTS)
    return float(COSTS[method](int(out), int(inp)))


def uniform_size(method: str, out: int, inp: int, ratio: float) -> int:
    """Rank (low-rank methods) or bond (two-core MPOs) keeping ``ratio`` of an ``(out, inp)`` weight.

    The rule of :func:`tnkit.compress.compress_model` with ``allocation="uniform"``
    (:func:`tnkit.compress.recipes.pipeline.uniform_size`), for two-core MPOs.
    """
    from ..recipes.pipeline import uniform_size as rule

    return rule(method, out, inp, ratio, n_cores=2)


def assign_layers(costs: Mapping[str, float], world_size: int) -> dict[str, int]:
    """Bin-pack layers to ``world_size`` ranks by cost (longest processing time first).

    Deterministic: layers are taken by decreasing cost (ties by name) and each goes to
    the rank with the least assigned cost so far (ties: the lower rank). The makespan is
    at most 4/3 of the optimum (Graham's bound).

    Parameters
    ----------
    costs : mapping of str to float
        Cost of each layer (any unit).
    world_size : int
        Number of ranks, at least 1.

    Returns
    -------
    dict of str to int
        The rank of every layer, in the order of ``costs``.
    """
    world_size = check_int("world_size", world_size, minimum=1)
    load = [0.0] * world_size
    owner: dict[str, int] = {}
    for name in sorted(costs, key=lambda n: (-float(costs[n]), n)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[name] = rank
        load[rank] += float(costs[name])
    return {name: owner[name] for name in costs}


@dataclass(frozen=True)
class LayerTask:
    """One linear layer of the plan: its block, shape, size kept, cost and rank."""

    name: str
    block: int
    out_features: int
    in_features: int
    size: int
    cost: float
    rank: int


@dataclass(frozen=True)
class RankPlan:
    """Estimated peak memory of one rank, in bytes, term by term.

    ``outside``: embeddings, final norm and untied output head (float32); ``block``: one
    dense block plus its compressed copy; ``stats``: the block's input second moments
    (float64, held by every rank); ``work``: the largest float64 work arrays of a
    factorisation this rank runs; ``stream``: the hidden states of the rank's share of
    the calibration text (float32, the block's inputs and outputs).
    """

    rank: int
    cost: float
    n_layers: int
    outside: int
    block: int
    stats: int
    work: int
    stream: int

    @property
    def peak_bytes(self) -> int:
        """The sum of the terms."""
        return self.outside + self.block + self.stats + self.work + self.stream


@dataclass(frozen=True)
class CompressionPlan:
    """What :func:`plan_compression` found: layers, their ranks, memory per rank."""

    model_type: str
    n_params: int
    block_params: int
    n_blocks: int
    world_size: int
    method: str
    ratio: float
    layers: tuple[LayerTask, ...]
    ranks: tuple[RankPlan, ...]

    @property
    def float32_bytes(self) -> int:
        """Bytes of the whole model in float32."""
        return 4 * self.n_params

    @property
    def balance(self) -> float:
        """Mean rank cost / largest rank cost (1 is perfect; the best speed-up is ``world_size * balance``)."""
        costs = [r.cost for r in self.ranks]
        return sum(costs) / (len(costs) * max(max(costs), 1e-300))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (layers, ranks and the totals)."""
        return {"model_type": self.model_type, "n_params": self.n_params, "block_params": self.block_params,
                "n_blocks": self.n_blocks, "world_size": self.world_size, "method": self.method,
                "ratio": self.ratio, "balance": self.balance, "float32_bytes": self.float32_bytes,
                "ranks": [dict(r.__dict__, peak_bytes=r.peak_bytes) for r in self.ranks],
                "layers": [dict(t.__dict__) for t in self.layers]}

    def table(self) -> str:
        """A readable summary: the model, the assignment of one block, memory per rank."""
        gib = 2.0 ** 30
        lines = [f"{self.model_type}: {self.n_params:,} parameters ({self.float32_bytes / gib:,.1f} GiB in float32), "
                 f"{self.n_blocks} blocks of {self.block_params // max(self.n_blocks, 1):,}; method {self.method}, "
                 f"{self.ratio:.0%} of the block linear weights kept; world size {self.world_size}"]
        first = [t for t in self.layers if t.block == self.layers[0].block]
        lines.append("layers of each block -> rank (bin-packed by factorisation cost):")
        for t in first:
            short = t.name.split(f".{t.block}.", 1)[-1]
            lines.append(f"  {short:28s} {t.out_features:>6d} x {t.in_features:<6d} size {t.size:>6d} "
                         f"{t.cost / 1e9:10.1f} GFLOP  rank {t.rank}")
        lines.append(f"balance {self.balance:.2f} (best speed-up {self.world_size * self.balance:.2f}x over one rank)")
        lines.append(f"{'rank':>4s} {'layers':>7s} {'TFLOP':>8s} {'outside':>9s} {'block':>9s} {'stats':>9s} "
                     f"{'work':>9s} {'stream':>9s} {'peak GiB':>9s}")
        for r in self.ranks:
            lines.append(f"{r.rank:4d} {r.n_layers:7d} {r.cost / 1e12:8.2f} {r.outside / gib:9.2f} {r.block / gib:9.2f} "
                         f"{r.stats / gib:9.2f} {r.work / gib:9.2f} {r.stream / gib:9.2f} {r.peak_bytes / gib:9.2f}")
        return "\n".join(lines)


def load_config(model_or_config: Any) -> Any:
    """A transformers config from a config object, a ``config.json`` file or a model directory.

    Raises
    ------
    FileNotFoundError
        If the path does not exist or a directory has no ``config.json``.
    ValueError
        If the file is not a transformers configuration.
    """
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(model_or_config, PretrainedConfig):
        return model_or_config
    if not isinstance(model_or_config, (str, os.PathLike)):
        raise TypeError(f"`model_or_config` must be a transformers config or a path, got "
                        f"{type(model_or_config).__name__}.")
    path = Path(model_or_config)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no configuration at {str(file)!r} (give a config.json or a model directory).")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("model_type") == "tnkit-compressed":
            data = data["base_config"]
        return AutoConfig.for_model(**data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{str(file)!r} is not a transformers model configuration: {exc}") from exc


def meta_model(config: Any) -> Any:
    """The causal LM of ``config`` with parameters on the ``meta`` device (no storage) and real buffers."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # a tied output head shares the embedding's parameter, as on load
    return model


def _distinct_inputs(model: Any, names: Sequence[str]) -> list[int]:
    """Widths of the distinct inputs of a block's layers (q/k/v and gate/up share theirs)."""
    from ..layers.surgery import layer_role, linear_weight

    shared = {"q": "qkv-in", "k": "qkv-in", "v": "qkv-in", "gate": "mlp-in", "up": "mlp-in"}
    widths: dict[str, int] = {}
    modules = dict(model.named_modules())
    for name in names:
        key = shared.get(layer_role(name) or "", name)
        widths[key] = int(linear_weight(modules[name]).shape[1])
    return list(widths.values())


def plan_compression(model_or_config: Any, *, world_size: int = 1, method: str = "whiten", ratio: float = 0.8,
                     calib_tokens: int = 4096) -> CompressionPlan:
    """Plan a streamed (and possibly distributed) compression from a configuration alone.

    Parameters
    ----------
    model_or_config : transformers config, str or path-like
        A config object, a ``config.json`` file or a model directory (only its
        ``config.json`` is read).
    world_size : int
        Number of ranks.
    method : str
        Factorisation method (:data:`COSTS`).
    ratio : float
        Fraction in (0, 1] of every block linear weight kept.
    calib_tokens : int
        Calibration tokens in all (shared between the ranks).

    Returns
    -------
    CompressionPlan
    """
    world_size = check_int("world_size", world_size, minimum=1)
    check_option("method", method, COSTS)
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"`ratio` must lie in (0, 1], got {ratio!r}.")
    calib_tokens = check_int("calib_tokens", calib_tokens, minimum=1)
    config = load_config(model_or_config)
    model = meta_model(config)
    from ..layers.surgery import find_layers, layer_depth, linear_weight

    layers = find_layers(model)
    by_block: dict[int, list[str]] = {}
    for name in layers:
        by_block.setdefault(layer_depth(name), []).append(name)
    tasks, load, n_layers, work = [], [0.0] * world_size, [0] * world_size, [0] * world_size
    for block, names in sorted(by_block.items()):
        shapes = {n: tuple(int(d) for d in linear_weight(layers[n]).shape) for n in names}
        costs = {n: factorisation_cost(method, *shapes[n]) for n in names}
        for name, rank in assign_layers(costs, world_size).items():
            out, inp = shapes[name]
            tasks.append(LayerTask(name, block, out, inp, uniform_size(method, out, inp, float(ratio)), costs[name],
                                   rank))
            load[rank] += costs[name]
            n_layers[rank] += 1
            per_out, per_in = _WORK[method]
            work[rank] = max(work[rank], 8 * (per_out * out * inp + per_in * inp * inp))
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    blocks = _blocks_of(model, next(iter(layers)))
    block_bytes = 4 * max(sum(p.numel() for p in b.parameters()) for b in blocks)
    block_params = sum(p.numel() for b in blocks for p in b.parameters())
    stats = 8 * sum(w * w for w in _distinct_inputs(model, by_block[min(by_block)]))
    hidden = int(getattr(config, "hidden_size", 0) or linear_weight(layers[next(iter(layers))]).shape[1])
    stream = 2 * 4 * hidden * -(-calib_tokens // world_size)
    ranks = tuple(RankPlan(r, load[r], n_layers[r], 4 * (n_params - block_params), 2 * block_bytes, stats, work[r],
                           stream) for r in range(world_size))
    return CompressionPlan(str(getattr(config, "model_type", "?")), n_params, block_params, len(blocks), world_size,
                           method, float(ratio), tuple(tasks), ranks)


def _blocks_of(model: Any, layer_name: str) -> Any:
    """The ``nn.ModuleList`` of blocks holding ``layer_name`` (e.g. ``model.layers``)."""
    from ..layers.surgery import layer_depth

    prefix = layer_name[: layer_name.index(f".{layer_depth(layer_name)}.")]
    return model.get_submodule(prefix)
