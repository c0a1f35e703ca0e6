"""Healing: an AdamW fine-tune of a compressed model, on text or by distillation, resumable.

Two losses: ``"lm"``, the plain next-token cross-entropy on the data, and ``"kl"``,
distillation from the original model (the *teacher*, in eval mode, forward under
``no_grad``): the mean over predicted positions of ``KL(p_teacher || p_student)``
between the two next-token distributions. The teacher's whole distribution carries far
more information per token than the one observed next token, so distillation usually
recovers a compressed model with fewer steps, at the price of one extra forward pass.

Data is a token array (cut into windows, see :class:`~tnkit.compress.tuning.distill.TextWindows`)
or any :class:`~tnkit.compress.tuning.distill.TokenStream`, such as text the teacher writes
itself (:func:`~tnkit.compress.tuning.distill.distillation_stream`): the token budget is then
bounded by time, not by a file. A run stops at ``max_tokens`` trained tokens,
``max_seconds`` or ``max_cpu_seconds``, whichever comes first.

Checkpoints
-----------
With ``checkpoint_dir``, every ``checkpoint_every`` steps and at the end the trainable
tensors, AdamW's moments and step counts and the torch RNG state are written to
``heal-<step>.safetensors``, then ``heal_state.json`` (step, tokens, losses, the data
stream's fingerprint, and the SHA-256 and size of the tensor file) replaces the
previous one; older tensor files are removed after that. Each file is written
atomically, so after a ``kill -9`` the JSON names a complete tensor file, and a run
restarted with the same directory continues from that step with the same data order
(a stream's rows are addressed by step) and the same optimizer state: its weights
equal an uninterrupted run's. A tensor file that does not match its JSON (torn,
truncated, edited) is refused, as is a checkpoint of another model shape, loss or
data stream.

Devices
-------
``device`` moves the model (and teacher) to ``"cpu"``, ``"cuda"`` or ``"auto"`` (a GPU
when one is available). On a GPU the forward passes run under bf16 autocast (weights
and optimizer state stay float32). ``gradient_checkpointing`` recomputes each block's
activations in the backward pass instead of storing them (transformers models).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...core.validate import check_int, check_number, check_option
from ...errors import SchemaError
from ...io import atomic_write
from .distill import TextWindows, TokenStream

__all__ = ["HealResult", "heal", "HEAL_LOSSES", "DEVICES", "resolve_device", "read_checkpoint_state"]

DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT_FORMAT = 2

log = logging.getLogger(__name__)
_STATE = "heal_state.json"


@dataclass(frozen=True)
class HealResult:
    """Summary of a healing run (``tokens``/``steps`` count the resumed part too; the rate this call's)."""

    steps: int
    tokens: int
    seconds: float
    final_loss: float
    resumed_from_step: int
    losses: tuple[float, ...]
    cpu_seconds: float = 0.0
    loss: str = "lm"
    tokens_per_s: float = 0.0
    device: str = "cpu"


def resolve_device(device: Any) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; ``"cuda"`` without a GPU is an error."""
    name = str(device)
    check_option("device", name.split(":")[0], DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"`device`={name!r} but no CUDA GPU is available (use 'cpu' or 'auto').")
    return torch.device(name)


# ---------------------------------------------------------------------- checkpoints


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _save(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer, meta: dict) -> None:
    """Tensor file first, then the JSON naming it; then older tensor files go."""
    from safetensors.torch import save_file

    tensors = {}
    for i, (n, p) in enumerate(_trainable(model)):
        tensors[f"param.{n}"] = p.detach().contiguous().cpu()
        st = opt.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq", "step"):
            if k in st:
                tensors[f"opt.{i}.{k}"] = torch.as_tensor(st[k]).detach().reshape(-1).contiguous().cpu()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and meta["device"].startswith("cuda"):
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    ckpt.mkdir(parents=True, exist_ok=True)
    name = f"heal-{meta['step']:09d}.safetensors"
    tmp = ckpt / f".{name}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp), metadata={"producer": "tnkit", "step": str(meta["step"])})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, ckpt / name)
    meta = {**meta, "format": CHECKPOINT_FORMAT, "tensors": name, "bytes": (ckpt / name).stat().st_size,
            "sha256": _file_digest(ckpt / name)}
    with atomic_write(ckpt / _STATE) as fh:
        fh.write(json.dumps(meta).encode())
    for old in ckpt.glob("heal-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def read_checkpoint_state(checkpoint_dir: Any) -> dict | None:
    """The JSON state of a healing checkpoint directory (``None`` when it holds none).

    Raises
    ------
    tnkit.errors.SchemaError
        When the state is unreadable, of another format, or its tensor file is
        missing or does not match the recorded size and SHA-256 (a torn checkpoint).
    """
    ckpt = Path(checkpoint_dir)
    state = ckpt / _STATE
    if not state.exists():
        return None
    try:
        meta = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"healing checkpoint {str(state)!r} is corrupt: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise SchemaError(f"healing checkpoint {str(state)!r} is not of format {CHECKPOINT_FORMAT} (written by "
                          "another tnkit version?): remove the directory to start afresh.")
    tensors = ckpt / str(meta.get("tensors", ""))
    if not tensors.is_file() or tensors.stat().st_size != meta.get("bytes") or _file_digest(tensors) != meta.get("sha256"):
        raise SchemaError(f"healing checkpoint in {str(ckpt)!r} is torn: {tensors.name!r} is missing or does not "
                          f"match {_STATE} (step {meta.get('step')}); refusing to resume from it.")
    return meta


def _load(ckpt: Path, meta: dict, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    from ..storage.serialize import read_safetensors

    tensors = read_safetensors(ckpt / meta["tensors"])
    named = _trainable(model)
    saved = {k[len("param."):] for k in tensors if k.startswith("param.")}
    if saved != {n for n, _ in named}:
        diff = sorted(saved ^ {n for n, _ in named})
        raise ValueError(f"checkpoint in {str(ckpt)!r} does not match the model's trainable tensors "
                         f"(differing: {diff[:3]}).")
    for n, p in named:
        if tuple(tensors[f"param.{n}"].shape) != tuple(p.shape):
            raise ValueError(f"checkpoint in {str(ckpt)!r} does not match the model: {n!r} has shape "
                             f"{tuple(tensors[f'param.{n}'].shape)} there, {tuple(p.shape)} in the model.")
    with torch.no_grad():
        for n, p in named:
            p.copy_(tensors[f"param.{n}"])
    for i, (_, p) in enumerate(named):
        if f"opt.{i}.exp_avg" in tensors:
            opt.state[p] = {"step": tensors[f"opt.{i}.step"].reshape(()).clone(),
                            "exp_avg": tensors[f"opt.{i}.exp_avg"].reshape(p.shape).to(p.device),
                            "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"].reshape(p.shape).to(p.device)}
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def _clean_orphans(ckpt: Path) -> None:
    """Remove temporary files of checkpoint writes killed half-way (recognisably named)."""
    if ckpt.is_dir():
        for f in list(ckpt.glob(".heal-*.tmp")) + list(ckpt.glob(f".{_STATE}.*.tmp")):
            f.unlink(missing_ok=True)


# ---------------------------------------------------------------------- training


def _set_trainable(model: nn.Module, trainable: str) -> None:
    """Freeze every parameter outside the compressed layers when ``trainable == "compressed"``."""
    from ..layers.lowrank import LowRankLinear
    from ..layers.mpo_linear import MPOLinear

    check_option("trainable", trainable, ("all", "compressed"))
    if trainable == "all":
        return
    keep = {id(p) for m in model.modules() if isinstance(m, (MPOLinear, LowRankLinear)) for p in m.parameters()}
    if not keep:
        raise ValueError("`trainable`='compressed' but the model has no compressed layer.")
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def _as_stream(data: Any, seq_len: int | None, seed: int) -> TokenStream:
    if isinstance(data, TokenStream):
        if seq_len is not None and seq_len != data.seq_len:
            raise ValueError(f"`seq_len`={seq_len} differs from the stream's seq_len={data.seq_len}.")
        return data
    return TextWindows(data, seq_len=256 if seq_len is None else check_int("seq_len", seq_len, minimum=2), seed=seed)


def _check_budgets(max_tokens: Any, max_seconds: Any, max_cpu_seconds: Any, checkpoint_every: Any) -> int:
    if max_seconds is not None:
        check_number("max_seconds", max_seconds)
    if max_cpu_seconds is not None:
        check_number("max_cpu_seconds", max_cpu_seconds)
    check_int("checkpoint_every", checkpoint_every, minimum=1)
    return check_int("max_tokens", max_tokens, minimum=1)


def _resume_state(ckpt: Path | None, resume: bool | None, fingerprint: dict, loss: str) -> dict | None:
    if ckpt is None:
        if resume:
            raise ValueError("`resume`=True needs `checkpoint_dir`.")
        return None
    _clean_orphans(ckpt)
    meta = read_checkpoint_state(ckpt)
    if meta is None:
        if resume:
            raise FileNotFoundError(f"nothing to resume: no healing checkpoint in {str(ckpt)!r}.")
        return None
    if resume is False:
        raise FileExistsError(f"a healing checkpoint (step {meta['step']}) is in {str(ckpt)!r}: resume it "
                              "(`resume`=True, --resume) or remove the directory to start afresh.")
    if meta.get("loss", "lm") != loss:
        raise ValueError(f"checkpoint in {str(ckpt)!r} was trained with loss={meta.get('loss', 'lm')!r}, "
                         f"got `loss`={loss!r}.")
    if meta.get("data") != fingerprint:
        raise ValueError(f"checkpoint in {str(ckpt)!r} was trained on other data or another order "
                         f"({meta.get('data')}), got {fingerprint}: resuming would not continue the same run.")
    return meta


def heal(
    model: nn.Module,
    data: Any,
    *,
    max_tokens: int = 100_000,
    max_seconds: float | None = None,
    max_cpu_seconds: float | None = None,
    seq_len: int | None = None,
    batch_size: int = 4,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    checkpoint_dir: Any = None,
    checkpoint_every: int = 50,
    resume: bool | None = None,
    seed: int = 0,
    trainable: str = "all",
    loss: str = "lm",
    teacher: nn.Module | None = None,
    device: Any = None,
    autocast: bool | None = None,
    gradient_checkpointing: bool = False,
    progress: bool = True,
) -> HealResult:
    """Fine-tune ``model`` (in place) with AdamW on ``data``.

    Parameters
    ----------
    model : causal LM
    data : array_like of int, shape (n,), or TokenStream
        Healing tokens (never the evaluation text), cut into windows of ``seq_len + 1``
        in a seeded order, or a stream such as
        :func:`~tnkit.compress.tuning.distill.distillation_stream` (self-generated text).
    max_tokens : int
        Token budget: stop once this many tokens were trained on (resumed ones count).
    max_seconds : float, optional
        Wall-time budget of this call (> 0).
    max_cpu_seconds : float, optional
        Process CPU-time budget of this call (``time.process_time``): on a shared
        machine a fairer equal budget than wall time.
    seq_len : int, optional
        Window length for a token array (default 256); a stream brings its own.
    batch_size : int
        Rows per step.
    lr, weight_decay : float
        AdamW settings (constant learning rate after a 10-step warm-up).
    checkpoint_dir : str or path-like, optional
        Where to write checkpoints (and resume from).
    checkpoint_every : int
        Steps between checkpoints.
    resume : bool, optional
        ``None``: resume when ``checkpoint_dir`` holds a checkpoint. ``True``: it must
        (else ``FileNotFoundError``). ``False``: it must not (else ``FileExistsError``:
        a finished or interrupted run is never overwritten silently).
    seed : int
        Seed of the window order of a token array.
    trainable : {"all", "compressed"}
        Train every parameter, or only those of the compressed layers
        (:class:`MPOLinear`, :class:`LowRankLinear`; the rest is frozen, which also
        skips the large embedding's gradient and optimizer state).
    loss : {"lm", "kl"}
        ``"lm"``: next-token cross-entropy; ``"kl"``: ``KL(teacher || model)`` of the
        next-token distributions at every position (distillation; needs ``teacher``).
    teacher : causal LM, optional
        The uncompressed model, same vocabulary; run in eval mode without gradients.
    device : {"auto", "cpu", "cuda"} or torch.device, optional
        Where to train (the model and teacher are moved there); default: where the
        model is.
    autocast : bool, optional
        bf16 autocast of the forward passes; default on for a GPU, off on the CPU.
    gradient_checkpointing : bool
        Recompute activations in the backward pass (less memory, about 30% more time).
    progress : bool
        tqdm bar with loss and tokens/s.

    Raises
    ------
    ValueError
        For bad budgets or settings (before any work), or a checkpoint of another
        model shape, loss or data.
    tnkit.errors.SchemaError
        For a torn or corrupt checkpoint.
    """
    check_option("loss", loss, HEAL_LOSSES)
    if loss == "kl" and teacher is None:
        raise ValueError("`loss`='kl' distils from the original model: give `teacher` (the uncompressed model).")
    max_tokens = _check_budgets(max_tokens, max_seconds, max_cpu_seconds, checkpoint_every)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    stream = _as_stream(data, seq_len, seed)
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    use_autocast = dev.type == "cuda" if autocast is None else bool(autocast)
    _set_trainable(model, trainable)
    model.to(dev)
    if teacher is not None:
        teacher.to(dev).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    fingerprint = {**stream.fingerprint(), "batch_size": batch_size}
    meta = _resume_state(ckpt, resume, fingerprint, loss)
    step, tokens, losses = 0, 0, []
    if meta is not None:
        _load(ckpt, meta, model, opt)
        step, tokens, losses = meta["step"], meta["tokens"], meta["losses"]
        log.info("resumed healing from step %d (%d tokens)", step, tokens)
    resumed = step
    per_step = batch_size * stream.seq_len
    total_steps = -(-max_tokens // per_step)
    state = {"loss": loss, "data": fingerprint, "device": str(dev)}
    restore = _enable_gradient_checkpointing(model) if gradient_checkpointing else None
    try:
        result = _train(model, stream, opt, params, teacher, dict(
            step=step, total_steps=total_steps, batch_size=batch_size, lr=lr, loss=loss, device=dev,
            autocast=use_autocast, max_seconds=max_seconds, max_cpu_seconds=max_cpu_seconds, ckpt=ckpt,
            checkpoint_every=checkpoint_every, state=state, tokens=tokens, losses=losses, progress=progress))
    finally:
        if restore is not None:
            restore()
    step, tokens, seconds, cpu = result
    if ckpt is not None and step > resumed:
        _save(ckpt, model, opt, {**state, "step": step, "tokens": tokens, "losses": losses})
    rate = (step - resumed) * per_step / max(seconds, 1e-9)
    log.info("healed %d steps (%d tokens) at %.0f tokens/s on %s", step - resumed, (step - resumed) * per_step, rate, dev)
    return HealResult(step, tokens, seconds, losses[-1] if losses else float("nan"), resumed, tuple(losses), cpu, loss,
                      rate, str(dev))


def _enable_gradient_checkpointing(model: nn.Module) -> Any:
    """Turn activation checkpointing on; returns the function that turns it off again (and restores the cache)."""
    names = (("activation_checkpointing_enable", "activation_checkpointing_disable", "activation_checkpointing_kwargs"),
             ("gradient_checkpointing_enable", "gradient_checkpointing_disable", "gradient_checkpointing_kwargs"))
    for enable, disable, kwargs in names:  # transformers >= 5.2x first
        if hasattr(model, enable):
            break
    else:
        raise ValueError("`gradient_checkpointing` needs a transformers model (activation checkpointing).")
    getattr(model, enable)(**{kwargs: {"use_reentrant": False}})
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    if config is not None:
        config.use_cache = False

    def restore() -> None:
        getattr(model, disable)()
        if config is not None:
            config.use_cache = use_cache

    return restore


def _train(model: nn.Module, stream: TokenStream, opt: torch.optim.Optimizer, params: list, teacher: Any,
           run: dict) -> tuple[int, int, float, float]:
    """The optimisation loop; returns ``(step, tokens, seconds, cpu_seconds)``; appends to ``run['losses']``."""
    from tqdm.auto import tqdm

    step, tokens, losses = run["step"], run["tokens"], run["losses"]
    per_step = run["batch_size"] * stream.seq_len
    resumed = step
    model.train()
    t0, cpu0 = time.perf_counter(), time.process_time()
    bar = tqdm(total=run["total_steps"], initial=step, desc="heal", disable=not run["progress"])
    try:
        while step < run["total_steps"]:
            if run["max_seconds"] is not None and time.perf_counter() - t0 > run["max_seconds"]:
                break
            if run["max_cpu_seconds"] is not None and time.process_time() - cpu0 > run["max_cpu_seconds"]:
                break
            batch = stream.batch(step, run["batch_size"]).to(run["device"])
            value = _step_loss(model, batch, run["loss"], teacher, autocast=run["autocast"])
            if not torch.isfinite(value):
                raise FloatingPointError(f"healing loss became {float(value)} at step {step}: lower `lr`.")
            opt.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            for group in opt.param_groups:  # linear warm-up over 10 steps, then constant
                group["lr"] = run["lr"] * min(1.0, (step + 1) / 10)
            opt.step()
            step += 1
            tokens += per_step
            losses.append(float(value.detach()))
            bar.update(1)
            rate = (step - resumed) * per_step / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{rate:.0f}")
            if run["ckpt"] is not None and step % run["checkpoint_every"] == 0:
                _save(run["ckpt"], model, opt, {**run["state"], "step": step, "tokens": tokens, "losses": losses})
    finally:
        bar.close()
        model.eval()
    return step, tokens, time.perf_counter() - t0, time.process_time() - cpu0


def _lm_loss(model: nn.Module, batch: torch.Tensor, teacher: nn.Module | None) -> torch.Tensor:
    """``"lm"``: next-token cross-entropy on the batch itself."""
    return model(input_ids=batch, labels=batch).loss.float()


def _kl_loss(model: nn.Module, batch: torch.Tensor, teacher: nn.Module | None) -> torch.Tensor:
    """``"kl"``: KL divergence from the teacher's next-token distribution (distillation)."""
    inputs = batch[:, :-1]
    with torch.no_grad():
        target = torch.log_softmax(teacher(input_ids=inputs).logits.float(), dim=-1)
    logp = torch.log_softmax(model(input_ids=inputs).logits.float(), dim=-1)
    return torch.nn.functional.kl_div(logp.flatten(0, 1), target.flatten(0, 1), log_target=True,
                                      reduction="batchmean")


#: Healing losses by name: a function of ``(model, batch, teacher)``, ``batch`` of shape
#: ``(b, seq_len + 1)`` token ids, giving a scalar tensor.
HEAL_LOSS_FUNCTIONS = {"lm": _lm_loss, "kl": _kl_loss}
HEAL_LOSSES = tuple(HEAL_LOSS_FUNCTIONS)


def _step_loss(model: nn.Module, batch: torch.Tensor, loss: str, teacher: nn.Module | None, *,
               autocast: bool = False) -> torch.Tensor:
    """The training loss on ``batch`` (``(b, seq_len + 1)`` ids): ``seq_len`` predicted positions either way."""
    import contextlib

    ctx = torch.autocast(batch.device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        return HEAL_LOSS_FUNCTIONS[loss](model, batch, teacher)

