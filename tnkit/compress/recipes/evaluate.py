"""Measuring a language model: perplexity, size and generation speed.

Perplexity uses a sliding window (as in the transformers perplexity guide): windows
of ``window`` tokens start every ``stride`` tokens; in each window only the tokens
not scored by an earlier window count, each conditioned on up to ``window - 1``
preceding tokens. ``stride == window`` gives disjoint chunks (fastest, pessimistic).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.validate import check_int
from ...io import atomic_write

__all__ = ["perplexity", "model_bytes", "generation_speed", "EvalReport", "evaluate_model", "format_reports",
           "write_reports"]


def perplexity(model: nn.Module, ids: Any, *, window: int = 512, stride: int = 256,
               max_tokens: int | None = None, progress: bool = False) -> float:
    """Sliding-window perplexity of ``model`` on the token ids ``ids`` (1-D).

    Parameters
    ----------
    model : causal LM returning ``logits`` of shape ``(1, seq, vocab)``
    ids : array_like of int, shape (n,)
    window, stride : int
        Window length and step, ``1 <= stride <= window``.
    max_tokens : int, optional
        Use only the first ``max_tokens`` ids.
    """
    window = check_int("window", window, minimum=2)
    stride = check_int("stride", stride, minimum=1)
    if stride > window:
        raise ValueError(f"`stride` must be at most `window`={window}, got {stride}.")
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    if max_tokens is not None:
        ids = ids[: check_int("max_tokens", max_tokens, minimum=2)]
    if ids.numel() < 2:
        raise ValueError(f"need at least 2 tokens to measure perplexity, got {ids.numel()}.")
    from tqdm.auto import tqdm

    nll, count, prev_end = 0.0, 0, 0
    starts = range(0, max(ids.numel() - 1, 1), stride)
    model.eval()
    ids = ids.to(next(model.parameters()).device)
    with torch.no_grad():
        for begin in tqdm(starts, desc="perplexity", disable=not progress, leave=False):
            end = min(begin + window, ids.numel())
            chunk = ids[begin:end][None]
            logits = model(input_ids=chunk).logits[0, :-1].float()
            targets = chunk[0, 1:]
            first_new = max(prev_end - begin, 0)  # targets at positions >= first_new are new
            lp = torch.log_softmax(logits[first_new:], -1)
            nll -= float(lp.gather(1, targets[first_new:, None]).sum())
            count += targets.numel() - first_new
            prev_end = end
            if end == ids.numel():
                break
    return math.exp(nll / count)


def model_bytes(model: nn.Module, *, dtype: Any = None) -> int:
    """Bytes of the distinct parameters and buffers held in memory.

    With ``dtype`` (a name of ``tnkit.compress.storage.serialize.SAVE_DTYPES`` or a
    ``torch.dtype``): the bytes they take stored in that precision (wider floating
    tensors counted at its width), as :func:`tnkit.compress.save_compressed` writes them.
    """
    width = None
    if dtype is not None:
        from ..storage.serialize import SAVE_DTYPES

        width = (SAVE_DTYPES[dtype] if isinstance(dtype, str) else dtype).itemsize
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return sum(t.numel() * (min(width, t.element_size()) if width and t.is_floating_point() else t.element_size())
               for t in tensors.values())


def generation_speed(model: nn.Module, *, prompt_ids: Any, new_tokens: int = 32, repeats: int = 3,
                     batch_size: int = 1) -> float:
    """Median tokens/s of greedy generation (after one warm-up): ``batch_size`` copies of the prompt.

    Tokens/s counts every generated token, ``batch_size * new_tokens`` per call.
    """
    new_tokens = check_int("new_tokens", new_tokens, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    ids = torch.as_tensor(np.asarray(prompt_ids, dtype=np.int64)).reshape(1, -1).repeat(batch_size, 1)
    if ids.shape[1] < 1:
        raise ValueError("`prompt_ids` must hold at least one token.")
    device = next(model.parameters()).device
    ids = ids.to(device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  attention_mask=torch.ones_like(ids), pad_token_id=0)
    times = []
    with torch.no_grad():
        model.generate(ids, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})
        for _ in range(repeats):
            t = time.perf_counter()
            model.generate(ids, **kwargs)
            times.append(time.perf_counter() - t)
    return batch_size * new_tokens / float(np.median(times))


@dataclass(frozen=True)
class EvalReport:
    """One model's measurements (``None`` where not measured)."""

    label: str
    params: int
    memory_bytes: int
    disk_bytes: int | None
    perplexity: float | None
    window: int
    stride: int
    eval_tokens: int
    tokens_per_s: float | None


def evaluate_model(model: nn.Module, label: str, *, ids: Any = None, window: int = 512, stride: int = 256,
                   max_tokens: int | None = None, speed_tokens: int = 32, disk_path: Any = None,
                   progress: bool = False) -> EvalReport:
    """Measure ``model``: params, bytes, perplexity on ``ids`` and generation speed."""
    from .pipeline import count_params

    speed_tokens = check_int("speed_tokens", speed_tokens, minimum=0)
    ppl, n_eval, speed = None, 0, None
    if ids is not None:
        n_eval = len(ids) if max_tokens is None else min(len(ids), max_tokens)
        ppl = perplexity(model, ids, window=window, stride=stride, max_tokens=max_tokens, progress=progress)
        if speed_tokens:
            speed = generation_speed(model, prompt_ids=np.asarray(ids)[:16], new_tokens=speed_tokens)
    disk = None
    if disk_path is not None:
        p = Path(disk_path)
        disk = sum(f.stat().st_size for f in ([p] if p.is_file() else p.iterdir()) if f.is_file())
    return EvalReport(label, count_params(model), model_bytes(model), disk, ppl, window, stride, n_eval, speed)


def format_reports(reports: list[EvalReport]) -> str:
    """A printed table; ratios are relative to the first report."""
    base = reports[0]
    lines = [f"{'model':24s} {'params':>12s} {'mem MB':>8s} {'disk MB':>8s} {'ppl':>9s} {'ppl/base':>8s} {'tok/s':>7s}"]
    for r in reports:
        ratio = f"{r.perplexity / base.perplexity:8.3f}" if r.perplexity and base.perplexity else f"{'-':>8s}"
        lines.append(
            f"{r.label:24s} {r.params:12,d} {r.memory_bytes / 1e6:8.1f} "
            f"{(r.disk_bytes or 0) / 1e6:8.1f} {r.perplexity or float('nan'):9.3f} {ratio} "
            f"{r.tokens_per_s or float('nan'):7.1f}")
    if base.perplexity is not None:
        lines.append(f"perplexity: window {base.window}, stride {base.stride}, {base.eval_tokens:,} tokens")
    return "\n".join(lines)


def write_reports(reports: list[EvalReport], path: Any) -> None:
    """Write the reports as a JSON list, atomically."""
    with atomic_write(path) as fh:
        fh.write(json.dumps([asdict(r) for r in reports], indent=2).encode())
