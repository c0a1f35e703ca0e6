"""``tnkit export --dense``: a plain Hugging Face model from a compressed one.

Tools that read Hugging Face checkpoints (transformers, converters to GGUF or ONNX,
serving stacks) know nothing of factorised layers. :func:`export_dense` rebuilds each
factorised layer's dense weight from its factors (``U V`` for a low-rank pair, the
contracted cores for an MPO, with the input scale folded in) and writes the model in
the original architecture with ``save_pretrained``: ``AutoModelForCausalLM.from_pretrained``
loads it with no tnkit code, and its logits equal the compressed model's up to float
rounding. The exported model has the original's size: the factorised form is what saves
memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["export_dense", "dense_state_dict"]


def dense_state_dict(model: nn.Module, reference: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``reference``'s architecture holding ``model``'s weights, factors multiplied out.

    Parameters
    ----------
    model : causal LM with :class:`MPOLinear` / :class:`LowRankLinear` layers
    reference : the same architecture with dense layers (parameters may be on the meta device)
    """
    from ..layers.lowrank import LowRankLinear
    from ..layers.mpo_linear import MPOLinear

    factored = {n: m for n, m in model.named_modules() if isinstance(m, (MPOLinear, LowRankLinear))}
    state = {k: v for k, v in model.state_dict().items()
             if not any(k.startswith(n + ".") for n in factored)}
    with torch.no_grad():
        for name, layer in factored.items():
            dense = reference.get_submodule(name)
            w = layer.dense_weight().detach().contiguous()
            # transformers' Conv1D (GPT-2) stores the weight as (in, out)
            state[f"{name}.weight"] = w if isinstance(dense, nn.Linear) else w.T.contiguous()
            if layer.bias is not None:
                state[f"{name}.bias"] = layer.bias.detach().clone()
            elif getattr(dense, "bias", None) is not None:
                state[f"{name}.bias"] = torch.zeros(layer.out_features, dtype=w.dtype)
    return state


def export_dense(directory: Any, out: Any) -> Path:
    """Write the compressed model in ``directory`` to ``out`` as a plain Hugging Face model.

    The output is written as a unit (temporary directory, then rename), with the
    tokenizer when the source has one. Returns ``out``.

    Raises
    ------
    FileNotFoundError, tnkit.errors.SchemaError
        As :func:`load_compressed` for the source directory.
    NotADirectoryError, PermissionError
        If ``out`` cannot be written (checked before the model is loaded).
    """
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from .models import load_tokenizer
    from .serialize import check_output_dir, load_compressed, write_model_dir

    check_output_dir(out)
    if Path(out).absolute() == Path(directory).absolute():
        raise ValueError(f"`out` must differ from the compressed model's directory, got {str(out)!r} for both.")
    model = load_compressed(directory)
    with init_empty_weights(include_buffers=False):
        dense = AutoModelForCausalLM.from_config(model.config)
    state = dense_state_dict(model, dense)
    dense.load_state_dict(state, strict=False, assign=True)
    dense.tie_weights()
    left = [n for n, p in dense.named_parameters() if p.is_meta]
    if left:
        raise ValueError(f"the compressed model in {str(directory)!r} does not provide {left[:3]}.")
    tokenizer = load_tokenizer(Path(directory), None, config=model.config)
    del model

    def write(tmp: Path) -> None:
        dense.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))

    return write_model_dir(out, write)
