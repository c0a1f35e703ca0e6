"""Sequential calibration: compress block by block, on the inputs the compressed model produces.

One-shot calibration measures every layer's input statistics on the original model.
Once the early blocks are compressed, the later blocks no longer see those inputs, and
their errors compound down the stack. Sequential calibration (as GPTQ does for
quantisation) walks the blocks in order, with two streams of hidden states on the same
calibration tokens: the original model's (``h``) and the compressed-so-far model's
(``h'``). Each chosen layer of block ``i`` sees input ``x`` on the first stream and
``x'`` on the second. Two fits are offered:

* **re-whitening** (the default): the layer's data-aware truncation (whitened SVD,
  whitened MPO, ...) uses the second moment ``C' = E[x' x'^T]`` of the inputs it will
  actually receive instead of the original model's;
* **error feedback** (``feedback_ridge`` given; SVD-LLM v2 style): the layer is fitted to
  the *original* layer's outputs,

      min over W'  E || W x - W' x' ||^2  =  const + E || (W* - W') x' ||^2,
      W* = W E[x x'^T] (E[x' x'^T] + ridge tr/n I)^-1,

  i.e. the truncation is applied to the corrected weight ``W*`` in the ``C'`` metric, so
  each layer also absorbs the error of the blocks before it.

Measured on SmolLM2-135M at 70% of the parameters kept (whitened SVD, blocks 0, 1, 2, 11,
28 dense, 4,096 calibration tokens; docs/compress.md): one-shot 271, re-whitening **227**,
error feedback 1,139 (ridge 1e-3), 652 (ridge 0.1) and 2,765 (ridge 1). With a few thousand tokens the
correction ``W*`` overfits them (mean relative weight change 0.6-0.9, against 0.28 for the
truncation alone), so it is off by default.

Blocks run one at a time on cached hidden states: the inputs of the first block are
captured once (with every argument the model passes its blocks: rotary embeddings,
masks), so the whole walk costs at most two forward passes of the trunk (each block on the
compressed stream for statistics, then compressed), three with error feedback (the
original block on the original stream), not one pass per block. The statistics run of a
block stops as soon as the last layer to compress in it has its input (a block whose MLP
stays dense stops before the MLP; one with nothing to compress is not run), and nothing
runs after the last block with a layer to compress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve
from torch import nn

from .calibration import ActivationStats
from ..layers.surgery import layer_depth, linear_weight, replace_layers

__all__ = ["capture_first_block_inputs", "compress_sequentially", "corrected_weight"]


class _Stop(Exception):
    """Raised by the capture hook to end the forward pass at the first block."""


def corrected_weight(weight: np.ndarray, cross: np.ndarray, covariance: np.ndarray, ridge: float) -> np.ndarray:
    """``W* = W X (C' + ridge tr(C')/n I)^-1``: the least-squares weight on the compressed stream's inputs.

    Parameters
    ----------
    weight : numpy.ndarray, shape (out, in)
        The original layer's ``W``.
    cross : numpy.ndarray, shape (in, in)
        ``X = E[x x'^T]`` (original-stream input by compressed-stream input).
    covariance : numpy.ndarray, shape (in, in)
        ``C' = E[x' x'^T]``.
    ridge : float
        Relative ridge of the solve, at least 0 (0 needs a positive definite ``C'``).
    """
    n = covariance.shape[0]
    c = covariance + (ridge * max(float(np.trace(covariance)) / n, 1e-300)) * np.eye(n)
    factor = cho_factor(c, lower=True)
    return cho_solve(factor, cross.T @ weight.T).T  # C'^-1 symmetric: (W X C'^-1)^T = C'^-1 X^T W^T


def _blocks(model: nn.Module, names: Iterable[str]) -> tuple[nn.ModuleList, dict[int, list[str]]]:
    """The model's list of blocks and the chosen layer names in each block (by depth)."""
    by_depth: dict[int, list[str]] = {}
    for name in names:
        depth = layer_depth(name)
        if depth is None:
            raise ValueError(f"sequential calibration needs layers inside numbered blocks, got {name!r}.")
        by_depth.setdefault(depth, []).append(name)
    first = next(iter(by_depth.values()))[0]
    prefix = first[: first.index(f".{layer_depth(first)}.")]  # e.g. "model.layers"
    blocks = dict(model.named_modules()).get(prefix)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"sequential calibration: {prefix!r} is not a list of blocks in this model.")
    return blocks, dict(sorted(by_depth.items()))


def capture_first_block_inputs(model: nn.Module, block: nn.Module,
                                batches: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, tuple, dict]]:
    """``(hidden_states, other positional arguments, keyword arguments)`` the model passes its first block, per batch.

    Each forward pass stops at ``block`` (nothing after it runs); shared by the sequential
    calibration and the streamed, multi-rank compression.
    """
    captured: list[tuple[torch.Tensor, tuple, dict]] = []

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        kwargs = dict(kwargs)
        hidden, rest = (args[0], tuple(args[1:])) if args else (kwargs.pop("hidden_states"), ())
        captured.append((hidden.detach(), rest, kwargs))
        raise _Stop

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for ids in batches:
            try:
                model(input_ids=ids, use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


def _run_block(block: nn.Module, hidden: torch.Tensor, rest: tuple, kwargs: dict) -> torch.Tensor:
    out = block(hidden, *rest, **kwargs)
    return out[0] if isinstance(out, tuple) else out


class _InputMoments:
    """One input's statistics on the compressed stream and, for error feedback, ``sum x x'^T`` with the original
    stream's input (shared by the layers fed the same tensor)."""

    def __init__(self, n: int, paired: bool) -> None:
        self.stats = ActivationStats.zeros(n)
        self.cross = np.zeros((n, n)) if paired else None

    def add(self, x_comp: torch.Tensor, x: torch.Tensor | None) -> None:
        self.stats.accumulate(x_comp)  # read (and flushed) when the block's layers are built
        if self.cross is not None:
            a = x.reshape(-1, x.shape[-1]).to(torch.float64)
            b = x_comp.reshape(-1, x_comp.shape[-1]).to(torch.float64)
            self.cross += (a.T @ b).numpy()


def _block_stats(block: nn.Module, layers: Mapping[str, nn.Module], comp_stream: list, stream: list | None
                 ) -> tuple[dict[str, _InputMoments], list[torch.Tensor] | None]:
    """Run ``block`` on the compressed stream, and on the original one when given.

    Returns each layer's input moments on the compressed stream (with the cross moment
    against the original stream's inputs when ``stream`` is given) and the block's
    outputs on the original stream (``None`` without it). On the compressed stream the
    block runs only until the last of ``layers`` has received its input (its output is
    not needed), and not at all when ``layers`` is empty.
    """
    stored: dict[str, torch.Tensor] = {}
    moments: dict[str, _InputMoments] = {}
    by_input: dict[int, tuple[torch.Tensor, _InputMoments]] = {}
    seen: set[str] = set()
    original = [False]

    def hook(name: str) -> Callable:
        def fn(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            if original[0]:
                stored[name] = x
                return
            entry = by_input.get(id(x))  # (x, moments): holding x keeps its id unique within the batch
            if entry is None:  # first layer fed this tensor: q/k/v and gate/up share one input
                m = moments.get(name) or _InputMoments(x.shape[-1], paired=stream is not None)
                entry = by_input[id(x)] = (x, m)
                m.add(x, stored.get(name))
            moments.setdefault(name, entry[1])
            seen.add(name)
            if len(seen) == len(layers):
                raise _Stop  # every input measured: the rest of the block is not needed
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    outputs: list[torch.Tensor] | None = None if stream is None else []
    try:
        for k, (h_comp, *extra_comp) in enumerate(comp_stream):
            if stream is not None:
                original[0] = True
                h, *extra = stream[k]
                outputs.append(_run_block(block, h, *extra))
                original[0] = False
            if not layers:
                continue
            by_input.clear()
            seen.clear()
            try:
                _run_block(block, h_comp, *extra_comp)
            except _Stop:
                pass
    finally:
        for handle in handles:
            handle.remove()
    return moments, outputs


def compress_sequentially(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    batches: Sequence[torch.Tensor],
    build: Callable[[str, nn.Module, ActivationStats], nn.Module | None],
    *,
    feedback_ridge: float | None = None,
    progress: bool = True,
) -> dict[str, nn.Module]:
    """Replace ``layers`` block by block, each fitted on the compressed model's own inputs; return the replacements.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM whose blocks sit in one ``nn.ModuleList`` (``model.layers``,
        ``transformer.h``); modified in place, block by block.
    layers : mapping of str to torch.nn.Module
        The linear layers to compress (inside numbered blocks).
    batches : sequence of torch.Tensor
        Calibration token ids, each ``(batch, seq)``.
    build : callable
        ``build(name, layer, stats)`` returns the compressed layer (or ``None`` to keep
        it dense); ``stats`` are the compressed stream's input statistics
        (:class:`ActivationStats`) and ``layer`` the original layer, or with
        ``feedback_ridge`` a stand-in ``nn.Linear`` holding the corrected weight
        ``W*`` (:func:`corrected_weight`).
    feedback_ridge : float, optional
        Fit to the original layer's outputs (error feedback) with this relative ridge;
        ``None`` (default) re-whitens only.
    progress : bool
        Show a tqdm bar over blocks.
    """
    from tqdm.auto import tqdm

    blocks, by_depth = _blocks(model, layers)
    was_training = model.training
    model.eval()
    replaced: dict[str, nn.Module] = {}
    try:
        with torch.no_grad():
            comp_stream = capture_first_block_inputs(model, blocks[0], list(batches))
            stream = list(comp_stream) if feedback_ridge is not None else None  # the original model's, for W*
            last = max(by_depth, default=-1)  # the blocks after the last compressed one need no inputs
            for depth in tqdm(range(last + 1), desc="sequential calibration", disable=not progress, leave=False):
                block = blocks[depth]
                names = by_depth.get(depth, [])
                moments, outputs = _block_stats(block, {n: layers[n] for n in names}, comp_stream, stream)
                new = _build_block(names, layers, moments, build, feedback_ridge)
                replace_layers(model, new)
                replaced.update(new)
                if depth == last:
                    break
                comp_stream = [(_run_block(block, h, *extra), *extra) for h, *extra in comp_stream]
                if stream is not None:
                    stream = [(out, *extra) for out, (_, *extra) in zip(outputs, stream)]
    finally:
        model.train(was_training)
    return replaced


def _build_block(names: list[str], layers: Mapping[str, nn.Module], moments: Mapping[str, _InputMoments],
                 build: Callable, feedback_ridge: float | None) -> dict[str, nn.Module]:
    """The replacements of one block's layers, built on all worker threads; the layers fed the same input
    (sharing their moments) are built one after another on one thread."""
    from ...core.threads import available_threads, map_on_threads

    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(id(moments[name]), []).append(name)

    def one(group: list[str]) -> list[tuple[str, nn.Module | None]]:
        out = []
        for name in group:
            m = moments[name]
            layer = layers[name] if m.cross is None else _stand_in(layers[name], m, feedback_ridge)
            out.append((name, build(name, layer, m.stats)))
        return out

    built = dict(pair for part in map_on_threads(one, list(groups.values()), available_threads()) for pair in part)
    return {name: built[name] for name in names if built[name] is not None}


def _stand_in(layer: nn.Module, moments: _InputMoments, ridge: float) -> nn.Linear:
    """An ``nn.Linear`` with the corrected weight ``W*`` and the layer's bias."""
    w = linear_weight(layer).detach()
    n = max(moments.stats.n_tokens, 1)
    w_star = corrected_weight(w.double().numpy(), moments.cross / n, moments.stats.covariance, ridge)
    out = nn.Linear(w.shape[1], w.shape[0], bias=getattr(layer, "bias", None) is not None, dtype=w.dtype)
    out.weight.data.copy_(torch.from_numpy(w_star))
    if out.bias is not None:
        out.bias.data.copy_(layer.bias.detach())
    return out
