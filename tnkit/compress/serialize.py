"""Saving a compressed model as safetensors plus JSON, and loading it back.

Directory layout (schema version 1)::

    config.json          the transformers model config (quantisation entries removed)
    tnkit_layers.json    {"schema": 1, "kind": "tnkit-compressed-lm", "layers": {name: spec}}
    model.safetensors    every tensor of the state dict (tied weights stored once)
    tokenizer files      when a tokenizer is given

Loading builds the architecture from ``config.json``, puts empty
:class:`~tnkit.compress.MPOLinear` / :class:`~tnkit.compress.LowRankLinear` layers of
the recorded shapes in place, and loads the tensors: no pickle, no code from the
file is run. Every file is written with :func:`tnkit.io.atomic_write`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import SchemaError
from ..io import atomic_write
from .lowrank import LowRankLinear
from .mpo_linear import MPOLinear
from .surgery import replace_layers

__all__ = ["save_compressed", "load_compressed", "LAYERS_FILE", "WEIGHTS_FILE", "SCHEMA"]

LAYERS_FILE = "tnkit_layers.json"
WEIGHTS_FILE = "model.safetensors"
SCHEMA = 1
_KIND = "tnkit-compressed-lm"
_TYPES = {"mpo": MPOLinear, "lowrank": LowRankLinear}


def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path) as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True).encode())


def save_compressed(model: nn.Module, directory: Any, *, tokenizer: Any = None) -> Path:
    """Write ``model`` (with its compressed layers) to ``directory``; returns it.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    directory : str or path-like
        Created if missing; existing files of the same names are replaced atomically.
    tokenizer : transformers tokenizer, optional
        Saved alongside, so ``tnkit eval DIR`` needs nothing else.
    """
    from safetensors.torch import save

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    specs = {n: m.spec() for n, m in model.named_modules() if isinstance(m, (MPOLinear, LowRankLinear))}
    tensors, seen = {}, set()
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue  # a tied weight: stored once, tied again on load
        seen.add(key)
        tensors[name] = t.detach().contiguous().cpu()
    payload = save(tensors, metadata={"format": "pt", "producer": "tnkit"})
    with atomic_write(out / WEIGHTS_FILE) as fh:
        fh.write(payload)
    _write_json(out / "config.json", config)
    _write_json(out / LAYERS_FILE, {"schema": SCHEMA, "kind": _KIND, "layers": specs})
    if tokenizer is not None:
        _save_tokenizer(tokenizer, out)
    return out


def _save_tokenizer(tokenizer: Any, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            if f.is_file():
                with atomic_write(out / f.name) as fh:
                    fh.write(f.read_bytes())


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing: not a compressed-model directory written by tnkit.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{str(path)!r} is corrupt (not valid JSON): {exc}") from exc


def load_compressed(directory: Any) -> nn.Module:
    """Load a model written by :func:`save_compressed` (eval mode, float32).

    Raises
    ------
    FileNotFoundError
        If the directory or one of its files is missing.
    tnkit.errors.SchemaError
        If a file is corrupt or of another kind/schema.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load
    from transformers import AutoConfig, AutoModelForCausalLM

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"compressed-model directory {str(d)!r} does not exist.")
    meta = _read_json(d / LAYERS_FILE)
    if not isinstance(meta, dict) or meta.get("kind") != _KIND or meta.get("schema") != SCHEMA:
        raise SchemaError(f"{str(d / LAYERS_FILE)!r} is not a tnkit compressed-model file of schema {SCHEMA}.")
    config_dict = _read_json(d / "config.json")
    try:
        config = AutoConfig.for_model(**config_dict)
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaError(f"config.json in {str(d)!r} is not a transformers config: {exc}") from exc
    model = AutoModelForCausalLM.from_config(config)
    layers = {}
    for name, spec in meta["layers"].items():
        if spec.get("type") not in _TYPES:
            raise SchemaError(f"layer {name!r} has unknown type {spec.get('type')!r}.")
        layers[name] = _TYPES[spec["type"]].empty_like_spec(spec)
    replace_layers(model, layers)
    try:
        tensors = load((d / WEIGHTS_FILE).read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(d / WEIGHTS_FILE)!r} is missing.") from None
    except (SafetensorError, ValueError, OSError) as exc:
        raise SchemaError(f"{str(d / WEIGHTS_FILE)!r} is corrupt: {exc}") from exc
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {k for k in missing if _is_tied(model, k)}
    if set(missing) - tied or unexpected:
        raise SchemaError(f"{str(d / WEIGHTS_FILE)!r} does not match the architecture: missing "
                          f"{sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}.")
    model.tie_weights()
    return model.eval()


def _is_tied(model: nn.Module, key: str) -> bool:
    return bool(getattr(model.config, "tie_word_embeddings", False)) and key.endswith("lm_head.weight")
