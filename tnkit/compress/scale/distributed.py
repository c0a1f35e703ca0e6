"""Compression and healing on several processes with ``torch.distributed`` (launched by ``torchrun``).

World size 1 is the default and needs no process group: every function here then runs
in the one process, and gives the result the single-process pipeline gives.

Compression (:func:`compress_streaming`) walks the blocks of a model streamed from
disk (:class:`tnkit.compress.scale.streaming.BlockStream`), one at a time::

    rank r:   its share of the calibration batches (batches r, r + W, r + 2W, ...)
    block i:  read from disk ------------------------------------------- every rank
              run on the rank's hidden states, input second moments ---- every rank
              all-reduce the moments (sums of x x^T, |x|, token counts) - every rank
              layers bin-packed by factorisation cost (plan.assign_layers)
              factorise the layers assigned to r ----------------------- rank r
              broadcast each new layer from its rank (shapes as JSON, then tensors)
              advance the hidden states; write block i (rank 0); free it

The statistics are sums, so all-reducing the ranks' partial sums gives the statistics of
all the text (up to the order of float64 additions), and every layer is factorised from
the same weight and the same statistics as in one process: the result equals the world
size 1 result to rounding. With ``sequential=True`` (the default for the data-aware
methods) each block's statistics are taken on the inputs the already-compressed blocks
produce (:mod:`tnkit.compress.calibrate.sequential`); otherwise on the original model's.

Healing (:func:`heal_sharded`) shards the model with FSDP2
(``torch.distributed.fsdp.fully_shard``, each block then the root): each rank holds a
1/W slice of every parameter and of AdamW's state, runs its share of every batch, and the
gradients are averaged across ranks, so a step equals the single-process step on the
whole batch.

Launch (CPU ranks on one machine; on GPUs drop the two variables and use one rank per GPU)::

    MASTER_ADDR=127.0.0.1 GLOO_SOCKET_IFNAME=lo \\
        python -m torch.distributed.run --standalone --nproc_per_node 2 -m tnkit compress MODEL --out DIR --stream

The backend is ``gloo`` on CPU and ``nccl`` when CUDA is available; collective tensors
live on the backend's device.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.validate import check_int, check_option
from ..calibrate.calibration import ActivationStats, channel_scale
from ..layers.lowrank import LowRankLinear, lowrank_factors
from ..layers.mpo_linear import MPOLinear
from .plan import assign_layers, factorisation_cost, uniform_size
from ..calibrate.sequential import capture_first_block_inputs
from .streaming import BlockStream, SafetensorsWriter, find_blocks
from ..layers.surgery import is_linear, linear_weight, replace_layers

__all__ = ["Ranks", "init_ranks", "current_ranks", "comm_device", "close_ranks", "STREAM_METHODS", "StreamResult",
           "compress_streaming", "all_reduce_stats", "broadcast_layer", "return_freed_memory", "map_large_allocations",
           "MMAP_THRESHOLD_BYTES", "DenseLayer", "shard_for_training",
           "heal_sharded", "ShardedHealResult"]

log = logging.getLogger(__name__)
_TYPES = {"mpo": MPOLinear, "lowrank": LowRankLinear}


@dataclass(frozen=True)
class Ranks:
    """This process's place: ``rank`` among ``world_size`` (``0`` of ``1`` without a process group)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes files and prints)."""
        return self.rank == 0


def current_ranks() -> Ranks:
    """The initialised default process group's rank and size, else ``Ranks(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def init_ranks(*, backend: str | None = None) -> Ranks:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), once; else world size 1.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        Default ``nccl`` when CUDA is available, else ``gloo``.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        check_option("backend", backend, ("gloo", "nccl"))
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return current_ranks()


def comm_device() -> torch.device:
    """Where collective tensors live: the current GPU under ``nccl``, else the CPU."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def close_ranks(*, synchronise: bool = True) -> None:
    """Leave the process group, if one was joined.

    Parameters
    ----------
    synchronise : bool, default True
        Wait at a barrier first, so that no rank tears its connections down while a peer still
        uses them (under gloo a rank that leaves early makes the others abort at exit). Pass
        ``False`` on an error path, where a peer may never reach the barrier.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if synchronise and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------------- collectives


def all_reduce_stats(stats: Sequence[ActivationStats]) -> None:
    """Sum every rank's :class:`ActivationStats` in place (no-op at world size 1); same order on every rank."""
    import torch.distributed as dist

    if current_ranks().world_size == 1:
        return
    device = comm_device()
    for st in stats:
        for array in (st.second_moment_sum, st.abs_sum):
            t = torch.from_numpy(array).to(device)
            dist.all_reduce(t)
            array[...] = t.cpu().numpy()
        count = torch.tensor([st.n_tokens], dtype=torch.int64, device=device)
        dist.all_reduce(count)
        st.n_tokens = int(count.item())


def broadcast_layer(layer: nn.Module | None, src: int) -> nn.Module | None:
    """Send rank ``src``'s compressed ``layer`` (or ``None``: kept dense) to every rank; return it everywhere.

    The layer travels as its JSON spec (:meth:`MPOLinear.spec` / :meth:`LowRankLinear.spec`)
    in a byte tensor, then its tensors in state-dict order: nothing is pickled.
    """
    import torch.distributed as dist

    ranks = current_ranks()
    if ranks.world_size == 1:
        return layer
    device = comm_device()
    mine = ranks.rank == src
    spec = json.dumps(None if layer is None else layer.spec()).encode() if mine else b""
    size = torch.tensor([len(spec)], dtype=torch.int64, device=device)
    dist.broadcast(size, src)
    buf = (torch.frombuffer(bytearray(spec), dtype=torch.uint8) if mine
           else torch.empty(int(size.item()), dtype=torch.uint8)).to(device)
    dist.broadcast(buf, src)
    if not mine:
        decoded = json.loads(bytes(buf.cpu().numpy()).decode())
        layer = None if decoded is None else _TYPES[decoded["type"]].empty_like_spec(decoded)
    if layer is None:
        return None
    for t in layer.state_dict().values():
        moved = t.to(device)
        dist.broadcast(moved, src)
        if not mine:
            t.copy_(moved)
    return layer


# ---------------------------------------------------------------------- layer builders


@dataclass(frozen=True)
class DenseLayer:
    """A block linear layer about to be factorised, its weight read only when a builder asks for it.

    ``read()`` returns ``(weight, bias)``: the ``(out, in)`` weight as a new float64 array
    that the caller owns (it may overwrite it; nothing else holds it, so dropping it frees
    it) and the bias or ``None``. ``dtype`` is the floating type of the compressed layer.
    """

    read: Callable[[], tuple[np.ndarray, torch.Tensor | None]]
    dtype: torch.dtype


def _stats_free(method: str) -> Callable:
    def build(layer: DenseLayer, size: int, st: ActivationStats | None, ridge: float, last: bool) -> nn.Module:
        w, bias = layer.read()
        weight = torch.from_numpy(w).to(layer.dtype)
        del w
        if method == "mpo":
            return MPOLinear.from_weight(weight, bias, n_cores=2, max_bond=size)
        return LowRankLinear.from_weight(weight, bias, rank=size, method="svd")
    return build


def _covariance(st: ActivationStats, last: bool) -> np.ndarray:
    """A new array holding ``st``'s second moment; the last user takes the statistics' own storage."""
    return st.take_covariance() if last else st.covariance


def _build_asvd(layer: DenseLayer, size: int, st: ActivationStats, ridge: float, last: bool) -> nn.Module:
    return _lowrank(layer, size, method="asvd", input_scale=channel_scale(st, alpha=0.5))


def _build_whiten(layer: DenseLayer, size: int, st: ActivationStats, ridge: float, last: bool) -> nn.Module:
    return _lowrank(layer, size, method="whiten", covariance=_covariance(st, last), ridge=ridge,
                    overwrite_covariance=True)


def _lowrank(layer: DenseLayer, size: int, **kwargs: Any) -> LowRankLinear:
    """Factorise in the weight's own storage with only the kept eigenvectors: ``W S`` and the whitening
    factor are the only large arrays alive during the truncation."""
    w, bias = layer.read()
    u, v, error = lowrank_factors(w, size, overwrite_weight=True, low_memory=True, **kwargs)
    del w  # ``W S``: the weight's storage
    return LowRankLinear(u, v, bias, truncation_error=error, dtype=layer.dtype)


def _build_mpo_whiten(layer: DenseLayer, size: int, st: ActivationStats, ridge: float, last: bool) -> nn.Module:
    from ...mps.mpo import balanced_factors
    from ..numerics.factorize import max_bonds
    from ..numerics.whitened_mpo import whitened_mpo_factorize

    w, bias = layer.read()
    w = torch.from_numpy(w).to(layer.dtype).numpy()  # the layer's own precision, as from_linear_whitened
    out, inp = w.shape
    size = min(size, max(max_bonds(balanced_factors(out, 2), balanced_factors(inp, 2))))
    f = whitened_mpo_factorize(w, _covariance(st, last), n_cores=2, max_bond=size, sweeps=1, cg_iterations=8,
                               ridge=ridge)
    return MPOLinear(f.cores, bias, input_scale=f.input_scale, truncation_error=f.error,
                     original_params=w.size + (0 if bias is None else out), dtype=layer.dtype)


#: Methods :func:`compress_streaming` runs: ``method -> (build(layer, size, stats, ridge, last), needs data)``, where
#: ``layer`` is a :class:`DenseLayer`, ``last`` says that no later layer of the rank reads ``stats`` (its storage may be reused). Each
#: keeps the same fraction of every layer, as :func:`tnkit.compress.compress_model` with
#: ``allocation="uniform"`` does.
STREAM_METHODS: dict[str, tuple[Callable, bool]] = {
    "svd": (_stats_free("svd"), False),
    "mpo": (_stats_free("mpo"), False),
    "asvd": (_build_asvd, True),
    "whiten": (_build_whiten, True),
    "mpo-whiten": (_build_mpo_whiten, True),
}


# ---------------------------------------------------------------------- the walk


@dataclass(frozen=True)
class StreamResult:
    """Summary of :func:`compress_streaming` (identical on every rank).

    ``seconds`` is the wall time of the whole walk; ``factorise_seconds`` the wall time of
    the factorisation stage alone (every block's factorisations and broadcasts, the
    slowest rank's, as every rank waits for it), ``stats_seconds`` that of the statistics
    (forward passes and all-reduces); ``factorise_cpu_seconds`` is this rank's process CPU
    time in the factorisation stage (on a shared machine, the work done, whatever the load).
    """

    method: str
    world_size: int
    layers: tuple[tuple[str, str, int, float, int], ...]  # (name, form, size, error, rank)
    block_weights_before: int
    block_weights_after: int
    seconds: float
    factorise_seconds: float
    stats_seconds: float
    factorise_cpu_seconds: float = 0.0
    directory: str | None = None


def _forward(block: nn.Module, stream: list[tuple], layers: dict[str, nn.Module] | None = None, *,
             keep_outputs: bool = True) -> tuple[list[tuple], dict[str, ActivationStats]]:
    """Run ``block`` on every entry of ``stream``; with ``layers``, also their input statistics.

    Layers fed the same tensor (q/k/v, gate/up) share one :class:`ActivationStats`. Without
    ``keep_outputs`` the outputs are dropped as they come (the list returned is empty).
    """
    stats: dict[str, ActivationStats] = {}
    fed: dict[int, tuple[torch.Tensor, ActivationStats]] = {}  # holds x, so its id stays unique in the batch

    def observe(name: str) -> Callable:
        def hook(_m: nn.Module, args: tuple, _out: Any) -> None:
            x = args[0]  # the tensor itself: a detached copy would be a new object for each layer it feeds
            if id(x) not in fed:
                st = stats.get(name) or ActivationStats.zeros(x.shape[-1])
                st.update(x)
                fed[id(x)] = (x, st)
            stats.setdefault(name, fed[id(x)][1])
        return hook

    handles = [m.register_forward_hook(observe(n)) for n, m in (layers or {}).items()]
    out = []
    try:
        for hidden, rest, kwargs in stream:
            fed.clear()
            y = block(hidden, *rest, **kwargs)
            if keep_outputs:
                out.append((y[0] if isinstance(y, tuple) else y, rest, kwargs))
            del y
    finally:
        for h in handles:
            h.remove()
    return out, stats


def _check_stream_options(method: str, ratio: float, calibration: Any, ranks: Ranks, ridge: float | None) -> bool:
    check_option("method", method, STREAM_METHODS)
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"`ratio` must lie in (0, 1], got {ratio!r}.")
    if ridge is not None and not float(ridge) >= 0.0:
        raise ValueError(f"`ridge` must be a number >= 0, got {ridge!r}.")
    needs_data = STREAM_METHODS[method][1]
    if needs_data:
        if calibration is None:
            raise ValueError(f"method {method!r} is data-aware: give `calibration` batches.")
        if len(calibration) < ranks.world_size:
            raise ValueError(f"`calibration` has {len(calibration)} batches, fewer than the {ranks.world_size} ranks "
                             "that share them: give at least one batch per rank.")
    return needs_data


def compress_streaming(
    source: Any,
    out: Any = None,
    *,
    method: str = "whiten",
    ratio: float = 0.8,
    calibration: Sequence[torch.Tensor] | None = None,
    sequential: bool = True,
    ridge: float | None = None,
    tokenizer: Any = None,
    progress: bool = True,
) -> StreamResult:
    """Compress every block linear layer of a model, one block in memory at a time, on every rank.

    Parameters
    ----------
    source : str, path-like or torch.nn.Module
        A Hugging Face checkpoint directory (streamed from disk) or a model in memory
        (compressed in place).
    out : str or path-like, optional
        Directory to write the compressed model to (rank 0 writes, block by block;
        :func:`tnkit.compress.load_compressed` reads it). Needed for a directory
        ``source``.
    method : str
        One of :data:`STREAM_METHODS`; every layer keeps ``ratio`` of its parameters.
    ratio : float
        Fraction in (0, 1] of each block linear weight kept.
    calibration : sequence of torch.Tensor, optional
        Token-id batches ``(batch, seq)`` for the data-aware methods, the same on
        every rank (each rank uses batches ``rank, rank + W, ...``).
    sequential : bool
        Data-aware methods: statistics of each block on the inputs the compressed
        blocks before it produce (default), else on the original model's.
    ridge : float, optional
        Relative ridge of the whitening methods (default
        :data:`tnkit.compress.DEFAULT_RIDGE`).
    tokenizer : transformers tokenizer, optional
        Saved with the model.
    progress : bool
        A progress bar over blocks (rank 0).

    Returns
    -------
    StreamResult
    """
    from tqdm.auto import tqdm

    from ..recipes.pipeline import DEFAULT_RIDGE

    ranks = current_ranks()
    needs_data = _check_stream_options(method, ratio, calibration, ranks, ridge)
    if out is None and not isinstance(source, nn.Module):
        raise ValueError("streaming a model from disk needs `out`, the directory to write the compressed model to.")
    ridge = DEFAULT_RIDGE.get(method, 0.0) if ridge is None else float(ridge)
    build = STREAM_METHODS[method][0]
    map_large_allocations()
    start = time.perf_counter()
    stream = BlockStream(source)
    writer = SafetensorsWriter(out) if out is not None and ranks.is_main else None
    try:
        result = _walk(stream, writer, build, method, float(ratio), ridge,
                       list(calibration[ranks.rank::ranks.world_size]) if needs_data else None,
                       sequential, ranks, tqdm, progress, start)
        if writer is not None:
            config = stream.model.config.to_dict()
            specs = {n: m.spec() for n, m in stream.model.named_modules() if isinstance(m, (MPOLinear, LowRankLinear))}
            writer.finish(config, specs, tokenizer=tokenizer)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if ranks.world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # the directory exists for every rank once this returns
    return result if out is None else StreamResult(**{**result.__dict__, "directory": str(out)})


def _walk(stream: BlockStream, writer: SafetensorsWriter | None, build: Callable, method: str, ratio: float,
          ridge: float, share: list | None, sequential: bool, ranks: Ranks, tqdm: Any, progress: bool,
          start: float) -> StreamResult:
    """Block by block: statistics, bin-packed factorisation, broadcast, advance, write."""
    if writer is not None:
        for tensor in stream.outside_tensors():
            writer.add(tensor)
        del tensor  # the last one (the output head, a vocabulary x width matrix) would stay alive for the walk
        return_freed_memory()
    hidden = None
    if share is not None:
        stream.load_trunk_inputs()
        with torch.no_grad():
            hidden = capture_first_block_inputs(stream.model, stream.blocks[0], share)
        stream.release_all()
        return_freed_memory()
    reports, t_fact, t_stats, cpu_fact = [], 0.0, 0.0, 0.0
    before = after = 0
    for i in tqdm(range(stream.n_blocks), desc=f"blocks ({method})", disable=not (progress and ranks.is_main),
                  leave=False):
        block = stream.load_block(i)
        layers = {n: m for n, m in block.named_modules() if is_linear(m)}
        t0 = time.perf_counter()
        stats: dict[str, ActivationStats] = {}
        if hidden is not None:
            with torch.no_grad():  # sequential: the compressed block's outputs replace these outputs
                outputs, stats = _forward(block, hidden, layers, keep_outputs=not sequential)
            all_reduce_stats(list({id(s): s for s in stats.values()}.values()))
            if not sequential:
                hidden = outputs
            del outputs
            return_freed_memory()
        t1, c1 = time.perf_counter(), time.process_time()
        shapes = {n: tuple(linear_weight(m).shape) for n, m in layers.items()}
        owners = assign_layers({n: factorisation_cost(method, *shapes[n]) for n in layers}, ranks.world_size)
        # Every rank factorises all of its layers first and only then do the broadcasts run:
        # interleaving them would make each rank wait on the others' factorisations in turn.
        mine = _factorise_mine(stream, i, layers, owners, ranks.rank, stats, build,
                               {n: uniform_size(method, *shapes[n], ratio) for n in layers}, ridge)
        stats.clear()
        new = {name: broadcast_layer(mine.pop(name, None), owners[name]) for name in layers}
        t2 = time.perf_counter()
        cpu_fact += time.process_time() - c1
        head = stream.block_name(i)
        for name, layer in new.items():
            before += linear_weight(layers[name]).numel()
            after += layer.num_params - (0 if getattr(layer, "bias", None) is None else layer.bias.numel())
            reports.append((f"{head}.{name}", "mpo" if isinstance(layer, MPOLinear) else "lowrank",
                            int(getattr(layer, "rank", 0) or max(getattr(layer, "bond_dims", (0,)))),
                            float(layer.truncation_error), owners[name]))
        replace_layers(block, new)
        if hidden is not None and sequential and i + 1 < stream.n_blocks:
            with torch.no_grad():
                hidden = _forward(block, hidden)[0]
        t3 = time.perf_counter()
        t_fact += t2 - t1
        t_stats += (t1 - t0) + (t3 - t2)
        if writer is not None:
            writer.add({f"{head}.{k}": v for k, v in block.state_dict().items()})
        stream.release_block(i)
        return_freed_memory()
    return StreamResult(method, ranks.world_size, tuple(reports), before, after, time.perf_counter() - start,
                        t_fact, t_stats, cpu_fact)


def _factorise_mine(stream: BlockStream, index: int, layers: dict[str, nn.Module], owners: dict[str, int], rank: int,
                    stats: dict[str, ActivationStats], build: Callable, sizes: dict[str, int],
                    ridge: float) -> dict[str, nn.Module]:
    """Build the compressed layers ``rank`` owns, each from its weight read again just before.

    Every dense weight of the block is freed first (the block has run, its statistics are
    taken); each of this rank's layers is read back from disk, in float64, when its
    factorisation starts, so only that weight is in memory (a model in memory keeps its
    weights, and a float64 copy of each is made in turn). The last layer reading a
    statistics object may take its storage.
    """
    # the widest input first: its statistics (in x in) are the largest, and are freed before the other builds
    mine = sorted((name for name in layers if owners[name] == rank),
                  key=lambda name: -linear_weight(layers[name]).shape[1])
    dtypes = {name: linear_weight(layers[name]).dtype for name in mine}
    for module in layers.values():
        stream.release_module(module)
    readers: dict[int, int] = {}
    for name in mine:
        if name in stats:
            readers[id(stats[name])] = readers.get(id(stats[name]), 0) + 1
    built = {}
    for name in mine:
        st = stats.get(name)
        last = False
        if st is not None:
            readers[id(st)] -= 1
            last = readers[id(st)] == 0
        built[name] = build(DenseLayer(_reader(stream, index, name), dtypes[name]), sizes[name], st, ridge, last)
        stream.release_module(layers[name])
    return built


def _reader(stream: BlockStream, index: int, name: str) -> Callable[[], tuple[np.ndarray, torch.Tensor | None]]:
    """``DenseLayer.read`` for layer ``name`` of block ``index``: read it (float64), hand its weight over, free it."""
    def read() -> tuple[np.ndarray, torch.Tensor | None]:
        module = stream.load_layer(index, name, dtype=torch.float64)
        weight = linear_weight(module).detach()
        bias = None if getattr(module, "bias", None) is None else module.bias.detach()
        fresh = stream.files is not None and weight.dtype == torch.float64 and weight.is_contiguous()
        w = (weight if fresh else weight.to(torch.float64, copy=True).contiguous()).numpy()
        del weight
        stream.release_module(module)  # the arrays read survive in ``w`` and ``bias`` alone
        return w, bias
    return read


def return_freed_memory() -> None:
    """Collect garbage cycles, then give the heap's free pages back to the system (glibc ``malloc_trim``).

    Blocks of different shapes leave the heap fragmented: on a 24-block model the resident
    memory grew by about 70 MB a block without it, and stayed flat with it (measured).
    Without glibc only the collection runs.
    """
    import gc

    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


#: glibc ``mallopt`` parameter: allocations of at least this many bytes are memory maps of their own.
_M_MMAP_THRESHOLD = -3
#: The threshold :func:`map_large_allocations` sets (1 MiB).
MMAP_THRESHOLD_BYTES = 1 << 20


def map_large_allocations(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Make every allocation of at least ``threshold`` bytes a memory map of its own (glibc); whether it was set.

    glibc serves an allocation below its threshold (128 KiB, raised up to 32 MiB by each map
    freed) from its heaps, which keep what is freed between live objects: the activations
    and work arrays of a block, a few MiB to 32 MiB each, left about 0.1 GiB resident after
    every block's forward pass (measured on a 2048-wide Llama block). A map of its own
    is returned to the system when freed. This sets the process-wide ``M_MMAP_THRESHOLD``
    (which also stops glibc's raising of it); :func:`compress_streaming` calls it.
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)) == 1)


def _glibc() -> Any:
    """The C library if it is glibc (has ``malloc_trim`` and ``mallopt``), else ``None``."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc has both
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


# ---------------------------------------------------------------------- healing with FSDP2


@dataclass(frozen=True)
class ShardedHealResult:
    """Summary of :func:`heal_sharded`: steps, tokens trained (all ranks), the mean loss of each step."""

    steps: int
    tokens: int
    seconds: float
    losses: tuple[float, ...]
    world_size: int


def shard_for_training(model: nn.Module) -> nn.Module:
    """Shard ``model`` with FSDP2 (``fully_shard`` on each block, then the root); returns it.

    At world size 1 the model is returned unchanged.
    """
    if current_ranks().world_size == 1:
        return model
    from torch.distributed.fsdp import fully_shard

    _, blocks = find_blocks(model)
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def heal_sharded(model: nn.Module, ids: Any, *, steps: int, batch_size: int = 4, seq_len: int = 128,
                 lr: float = 1e-4, seed: int = 0, max_grad_norm: float = 1.0) -> ShardedHealResult:
    """Fine-tune ``model`` on next-token loss with AdamW, its parameters sharded over the ranks by FSDP2.

    Every step draws ``batch_size`` windows of ``seq_len + 1`` tokens from ``ids`` (the same
    windows on every rank, from ``seed``); rank ``r`` trains on windows ``r, r + W, ...``, and
    FSDP2 averages the gradients, so with ``batch_size`` a multiple of the world size a step
    equals the single-process step on all ``batch_size`` windows. Parameters with
    ``requires_grad=False`` stay frozen.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM (its forward takes ``input_ids``); sharded in place by
        :func:`shard_for_training` when the world size is above 1.
    ids : array-like of int, shape (n_tokens,)
        Training token ids.
    steps, batch_size, seq_len : int
    lr : float
        AdamW learning rate (weight decay 0).
    seed : int
        Seeds the window draws.
    max_grad_norm : float
        Gradient clipping on the global norm.
    """
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    ranks = current_ranks()
    if batch_size % ranks.world_size:
        raise ValueError(f"`batch_size` must be a multiple of the world size {ranks.world_size}, got {batch_size}.")
    data = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(-1)
    if data.numel() < seq_len + 1:
        raise ValueError(f"`ids` holds {data.numel()} tokens, fewer than one window of `seq_len` + 1 = {seq_len + 1}.")
    model = shard_for_training(model)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        starts = rng.integers(0, data.numel() - seq_len, size=batch_size)
        windows = torch.stack([data[s:s + seq_len + 1] for s in starts])[ranks.rank::ranks.world_size]
        logits = model(input_ids=windows[:, :-1]).logits
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
        opt.step()
        losses.append(_mean_over_ranks(loss.detach()))
    model.eval()
    return ShardedHealResult(steps, steps * batch_size * seq_len, time.perf_counter() - start, tuple(losses),
                             ranks.world_size)


def _mean_over_ranks(value: torch.Tensor) -> float:
    import torch.distributed as dist

    if current_ranks().world_size == 1:
        return float(value)
    t = value.reshape(1).to(comm_device(), torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / current_ranks().world_size
