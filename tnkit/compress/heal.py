"""Healing: a short AdamW fine-tune of a compressed model on plain text.

Two losses: ``"lm"``, the plain next-token cross-entropy on the text, and ``"kl"``,
distillation from the original model (the *teacher*, in eval mode, forward under
``no_grad``): the mean over predicted positions of ``KL(p_teacher || p_student)``
between the two next-token distributions. The teacher's whole distribution carries far
more information per token than the one observed next token, so distillation usually
recovers a compressed model with fewer steps, at the price of one extra forward pass.

Training windows of ``seq_len`` tokens are drawn in a fixed, seeded order; a run
stops at ``max_tokens`` trained tokens or ``max_seconds``, whichever comes first.
With ``checkpoint_dir``, the trainable tensors and AdamW's moments are written
(safetensors + JSON, atomically) every ``checkpoint_every`` steps and at the end; a
later call with the same directory resumes from the last checkpoint (same window
order, same optimizer state), so an interrupted run loses at most one interval.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.validate import check_int
from ..io import atomic_write

__all__ = ["HealResult", "heal", "HEAL_LOSSES"]

HEAL_LOSSES = ("lm", "kl")

log = logging.getLogger(__name__)
_STATE = "heal_state.json"
_TENSORS = "heal_state.safetensors"


@dataclass(frozen=True)
class HealResult:
    """Summary of a healing run."""

    steps: int
    tokens: int
    seconds: float
    final_loss: float
    resumed_from_step: int
    losses: tuple[float, ...]
    cpu_seconds: float = 0.0
    loss: str = "lm"


def _windows(n_ids: int, seq_len: int, batch_size: int, seed: int) -> np.ndarray:
    n = n_ids // (seq_len + 1)
    if n < batch_size:
        raise ValueError(f"healing text too short: {n_ids} tokens give {n} windows of {seq_len + 1}, "
                         f"fewer than `batch_size`={batch_size}.")
    return np.random.default_rng(seed).permutation(n) * (seq_len + 1)


def _save(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer, meta: dict) -> None:
    from safetensors.torch import save

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    tensors = {f"param.{n}": params[n].detach().contiguous() for n in names}
    for i, n in enumerate(names):
        st = opt.state.get(params[n], {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k in st:
                tensors[f"opt.{i}.{k}"] = st[k].contiguous()
        if "step" in st:
            meta.setdefault("opt_steps", {})[str(i)] = float(st["step"])
    with atomic_write(ckpt / _TENSORS) as fh:
        fh.write(save(tensors))
    with atomic_write(ckpt / _STATE) as fh:
        fh.write(json.dumps(meta).encode())


def _load(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    from safetensors.torch import load

    meta = json.loads((ckpt / _STATE).read_text())
    tensors = load((ckpt / _TENSORS).read_bytes())
    params = dict(model.named_parameters())
    names = [n for n, p in params.items() if p.requires_grad]
    with torch.no_grad():
        for n in names:
            if f"param.{n}" not in tensors:
                raise ValueError(f"checkpoint in {str(ckpt)!r} does not match the model (no {n!r}).")
            params[n].copy_(tensors[f"param.{n}"])
    for i, n in enumerate(names):
        if f"opt.{i}.exp_avg" in tensors:
            opt.state[params[n]] = {
                "step": torch.tensor(meta["opt_steps"][str(i)]),
                "exp_avg": tensors[f"opt.{i}.exp_avg"], "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"]}
    return meta


def _set_trainable(model: nn.Module, trainable: str) -> None:
    """Freeze every parameter outside the compressed layers when ``trainable == "compressed"``."""
    from ..core.validate import check_option
    from .lowrank import LowRankLinear
    from .mpo_linear import MPOLinear

    check_option("trainable", trainable, ("all", "compressed"))
    if trainable == "all":
        return
    keep = {id(p) for m in model.modules() if isinstance(m, (MPOLinear, LowRankLinear)) for p in m.parameters()}
    if not keep:
        raise ValueError("`trainable`='compressed' but the model has no compressed layer.")
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def heal(
    model: nn.Module,
    ids: Any,
    *,
    max_tokens: int = 100_000,
    max_seconds: float | None = None,
    max_cpu_seconds: float | None = None,
    seq_len: int = 256,
    batch_size: int = 4,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    checkpoint_dir: Any = None,
    checkpoint_every: int = 50,
    seed: int = 0,
    trainable: str = "all",
    loss: str = "lm",
    teacher: nn.Module | None = None,
    progress: bool = True,
) -> HealResult:
    """Fine-tune ``model`` (in place) with AdamW on the token ids ``ids``.

    Parameters
    ----------
    model : causal LM
    ids : array_like of int, shape (n,)
        Healing tokens (never the evaluation text).
    max_tokens : int
        Token budget: stop once this many tokens were trained on.
    max_seconds : float, optional
        Wall-time budget of this call.
    max_cpu_seconds : float, optional
        Process CPU-time budget of this call (``time.process_time``): on a shared
        machine a fairer equal budget than wall time.
    seq_len, batch_size : int
        Window length and windows per step.
    lr, weight_decay : float
        AdamW settings (constant learning rate after a 10-step warm-up).
    checkpoint_dir : path, optional
        Where to write/resume checkpoints.
    checkpoint_every : int
        Steps between checkpoints.
    seed : int
        Seed of the window order.
    trainable : {"all", "compressed"}
        Train every parameter, or only those of the compressed layers
        (:class:`MPOLinear`, :class:`LowRankLinear`; the rest is frozen, which also
        skips the large embedding's gradient and optimizer state).
    loss : {"lm", "kl"}
        ``"lm"``: next-token cross-entropy; ``"kl"``: ``KL(teacher || model)`` of the
        next-token distributions at every position (distillation; needs ``teacher``).
    teacher : causal LM, optional
        The uncompressed model, same vocabulary; run in eval mode without gradients.
    progress : bool
        tqdm bar with loss and tokens/s.
    """
    from tqdm.auto import tqdm

    from ..core.validate import check_option

    check_option("loss", loss, HEAL_LOSSES)
    if loss == "kl" and teacher is None:
        raise ValueError("`loss`='kl' distils from the original model: give `teacher` (the uncompressed model).")
    if teacher is not None:
        teacher.eval()
    max_tokens = check_int("max_tokens", max_tokens, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=2)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    ids = np.asarray(ids, dtype=np.int64)
    starts = _windows(len(ids), seq_len, batch_size, seed)
    _set_trainable(model, trainable)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    step, tokens, losses = 0, 0, []
    if ckpt is not None and (ckpt / _STATE).is_file():
        meta = _load(ckpt, model, opt)
        step, tokens, losses = meta["step"], meta["tokens"], meta["losses"]
        if meta.get("loss", "lm") != loss:
            raise ValueError(f"checkpoint in {str(ckpt)!r} was trained with loss={meta.get('loss', 'lm')!r}, "
                             f"got `loss`={loss!r}.")
        log.info("resumed healing from step %d (%d tokens)", step, tokens)
    resumed = step
    per_step = batch_size * seq_len
    total_steps = -(-max_tokens // per_step)
    model.train()
    t0, cpu0 = time.perf_counter(), time.process_time()
    bar = tqdm(total=total_steps, initial=step, desc="heal", disable=not progress)
    try:
        while step < total_steps:
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
            if max_cpu_seconds is not None and time.process_time() - cpu0 > max_cpu_seconds:
                break
            idx = [starts[(step * batch_size + b) % len(starts)] for b in range(batch_size)]
            batch = torch.as_tensor(np.stack([ids[s : s + seq_len + 1] for s in idx]))
            value = _step_loss(model, batch, loss, teacher)
            opt.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            for group in opt.param_groups:  # linear warm-up over 10 steps, then constant
                group["lr"] = lr * min(1.0, (step + 1) / 10)
            opt.step()
            step += 1
            tokens += per_step
            losses.append(float(value.detach()))
            elapsed = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{(tokens - resumed * per_step) / max(elapsed, 1e-9):.0f}")
            if ckpt is not None and step % checkpoint_every == 0:
                _save(ckpt, model, opt, {"step": step, "tokens": tokens, "losses": losses, "loss": loss})
    finally:
        bar.close()
        model.eval()
    if ckpt is not None and step > resumed:
        _save(ckpt, model, opt, {"step": step, "tokens": tokens, "losses": losses, "loss": loss})
    return HealResult(step, tokens, time.perf_counter() - t0, losses[-1] if losses else float("nan"), resumed,
                      tuple(losses), time.process_time() - cpu0, loss)


def _step_loss(model: nn.Module, batch: torch.Tensor, loss: str, teacher: nn.Module | None) -> torch.Tensor:
    """The training loss on ``batch`` (``(b, seq_len + 1)`` ids): ``seq_len`` predicted positions either way."""
    if loss == "lm":
        return model(input_ids=batch, labels=batch).loss
    inputs = batch[:, :-1]
    with torch.no_grad():
        target = torch.log_softmax(teacher(input_ids=inputs).logits.float(), dim=-1)
    logp = torch.log_softmax(model(input_ids=inputs).logits.float(), dim=-1)
    kl = torch.nn.functional.kl_div(logp.flatten(0, 1), target.flatten(0, 1), log_target=True, reduction="batchmean")
    return kl
