"""Saving a compressed model as safetensors plus JSON, and loading it back.

Directory layout (schema version 2)::

    config.json          {"model_type": "tnkit-compressed", "base_config": <transformers config>, ...}
    tnkit_layers.json    {"schema": 2, "kind": "tnkit-compressed-lm", "layers": {name: spec}}
    model.safetensors    every tensor of the state dict (tied weights stored once)
    README.md            how to load the directory (and how to export a plain model)
    tokenizer files      when a tokenizer is given

A directory with factorised layers cannot be read by plain transformers: its
``config.json`` names the model type ``tnkit-compressed``, which
``AutoModelForCausalLM.from_pretrained`` refuses with an "unrecognised model type"
error instead of loading the architecture with random weights where the factors
are. :func:`load_compressed` reads it; :func:`tnkit.compress.export_dense` writes a
plain Hugging Face model. A model without factorised layers (dense, or pruned to
smaller widths) is written with its own ``config.json``: transformers loads it as is.

Saving writes every file into a temporary directory next to the target
(``.NAME.tnkit-partial-*``) and renames it into place, so a crash leaves either the
previous model or the new one, never a mixture. The previous directory is renamed
aside (``.NAME.tnkit-previous-*``) until the new one is in place; entries of it that
the new save does not write (a healing checkpoint, a report) are moved into the new
directory. Leftovers of an interrupted save are cleaned up (or the previous model put
back) by the next save to the same target.

Loading builds the architecture on the ``meta`` device (no memory), puts empty
:class:`~tnkit.compress.MPOLinear` / :class:`~tnkit.compress.LowRankLinear` layers of
the recorded shapes in place, checks the safetensors header against the expected
names, shapes and the file size before reading a byte of tensor data, maps the file
(copy-on-write) so that each tensor is a view read on use, and refuses NaN or
infinite values. No pickle, and no code from the directory is run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import SchemaError
from ...io import read_safetensors_header
from ..layers.lowrank import LowRankLinear
from ..layers.mpo_linear import MPOLinear
from ..layers.surgery import replace_layers
from .models import SAVE_DTYPE_NAMES

__all__ = ["save_compressed", "load_compressed", "check_output_dir", "read_safetensors", "write_metadata", "all_finite",
           "round_weights", "SAVE_DTYPES", "LAYERS_FILE", "WEIGHTS_FILE", "SCHEMA", "MODEL_TYPE"]

LAYERS_FILE = "tnkit_layers.json"
WEIGHTS_FILE = "model.safetensors"
SCHEMA = 2
#: ``model_type`` of a directory that needs tnkit: transformers refuses it by name.
MODEL_TYPE = "tnkit-compressed"
_KIND = "tnkit-compressed-lm"
#: precisions a compressed model can be saved in (:func:`save_compressed`'s ``dtype``)
SAVE_DTYPES = {name: getattr(torch, name) for name in SAVE_DTYPE_NAMES}
_TYPES = {"mpo": MPOLinear, "lowrank": LowRankLinear}
_PARTIAL, _PREVIOUS = "tnkit-partial-", "tnkit-previous-"
_MAX_HEADER = 100 << 20
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
_README = """# tnkit compressed model

Some linear layers of this model are stored as factors (matrix product operators or
low-rank pairs), so plain `transformers` cannot load it (its `config.json` names the
model type `tnkit-compressed` on purpose). Load it with tnkit:

```python
from tnkit.compress import load_compressed
model = load_compressed("{name}")
```

or write a plain Hugging Face copy (dense weights rebuilt from the factors) with
`tnkit export --dense {name} OUT`.
"""


# ---------------------------------------------------------------------- saving


def check_output_dir(directory: Any) -> Path:
    """Check, before any work, that a model can be saved to ``directory``; returns it as a ``Path``.

    Raises
    ------
    NotADirectoryError
        If ``directory`` (or an ancestor) exists and is not a directory.
    PermissionError
        If the directory that would hold it is not writable.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"the output directory must be a str or path-like, got {type(directory).__name__}.")
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {str(out)!r} exists and is not a directory.")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"output {str(out)!r}: {str(parent)!r} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):  # the new directory is made beside the target, then renamed
        raise PermissionError(f"output {str(out)!r}: cannot write in {str(parent)!r}.")
    return out


def _orphans(target: Path, tag: str) -> list[Path]:
    parent = target.absolute().parent
    return sorted(parent.glob(f".{target.name}.{tag}*")) if parent.is_dir() else []


def _recover(target: Path) -> None:
    """Clean up after an interrupted save to ``target``: drop partial copies, settle previous ones."""
    for partial in _orphans(target, _PARTIAL):
        shutil.rmtree(partial, ignore_errors=True)
    for previous in _orphans(target, _PREVIOUS):
        if not target.exists():
            os.rename(previous, target)  # interrupted between the two renames: put the old model back
            continue
        _move_extras(previous, target)
        shutil.rmtree(previous, ignore_errors=True)


def _move_extras(source: Path, target: Path) -> None:
    """Move the entries of ``source`` that ``target`` lacks into ``target``."""
    for entry in source.iterdir():
        if not (target / entry.name).exists():
            os.rename(entry, target / entry.name)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished directory ``tmp`` to ``target``, keeping the old one until then."""
    for f in tmp.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(tmp)
    previous = None
    if target.exists():
        previous = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_PREVIOUS}", dir=target.absolute().parent))
        os.rmdir(previous)
        os.rename(target, previous)
    os.rename(tmp, target)
    _fsync_dir(target.absolute().parent)
    if previous is not None:
        _move_extras(previous, target)
        shutil.rmtree(previous, ignore_errors=True)


def write_model_dir(directory: Any, write: Any) -> Path:
    """Create ``directory`` as a unit: ``write(tmp)`` fills a temporary sibling, which is renamed into place.

    Used by :func:`save_compressed` and :func:`tnkit.compress.export_dense`; on an
    exception the temporary directory is removed and ``directory`` is untouched.
    """
    out = check_output_dir(directory)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    _recover(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{_PARTIAL}", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        write(tmp)
        _publish(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno is None:
            raise
        # name the user's directory, not the hidden temporary one the error came from
        raise type(exc)(exc.errno, f"could not save to {str(out)!r}: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")


def unique_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with tied tensors kept once (the first name), contiguous and on the CPU."""
    tensors, seen = {}, set()
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue  # a tied weight: stored once, tied again on load
        seen.add(key)
        tensors[name] = t.detach().contiguous().cpu()
    return tensors


def _save_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype) and dtype in SAVE_DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in SAVE_DTYPES:
        return SAVE_DTYPES[dtype]
    raise ValueError(f"`dtype` must be None or one of {sorted(SAVE_DTYPES)}, got {dtype!r}.")


def round_weights(model: nn.Module, dtype: Any) -> nn.Module:
    """Round every floating parameter and buffer of ``model`` to ``dtype``'s precision, in place.

    The tensors keep their own dtype (training and evaluation run as before); their values
    become exactly those :func:`save_compressed` with ``dtype`` writes, so a perplexity
    measured afterwards is that of the saved model. Returns ``model``.
    """
    target = _save_dtype(dtype)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point() and t.dtype != target and t.element_size() > target.itemsize:
                t.copy_(t.to(target))
    return model


def save_compressed(model: nn.Module, directory: Any, *, tokenizer: Any = None, dtype: Any = None) -> Path:
    """Write ``model`` (with its compressed layers) to ``directory`` as a unit; returns it.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    directory : str or path-like
        Created if missing. An existing directory is replaced as a whole once the new
        one is complete; its entries that this save does not write are kept.
    tokenizer : transformers tokenizer, optional
        Saved alongside, so ``tnkit eval DIR`` needs nothing else.
    dtype : {"float32", "bfloat16", "float16"} or torch.dtype, optional
        Precision of the saved floating tensors (and the config's ``dtype``); default: as
        they are in memory. :func:`load_compressed` gives them back in this precision, as
        transformers does with a checkpoint (keep a bfloat16 model's output bfloat16, or it
        is twice its size per parameter).

    Raises
    ------
    NotADirectoryError, PermissionError
        If ``directory`` cannot be written (checked before anything is written).
    ValueError
        For an unknown ``dtype``.
    """
    from safetensors.torch import save_file

    target = _save_dtype(dtype)
    config = model.config.to_dict()
    if target is not None:
        name = next(k for k, v in SAVE_DTYPES.items() if v == target)
        config.update({k: name for k in ("dtype", "torch_dtype") if k in config} or {"dtype": name})
    specs = {n: m.spec() for n, m in model.named_modules() if isinstance(m, (MPOLinear, LowRankLinear))}

    def write(tmp: Path) -> None:
        tensors = unique_tensors(model)
        if target is not None:
            tensors = {k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "producer": "tnkit"})
        write_metadata(tmp, config, specs, name=Path(directory).name, tokenizer=tokenizer)

    return write_model_dir(directory, write)


def write_metadata(folder: Path, config: dict, specs: dict, *, name: str, tokenizer: Any = None) -> None:
    """Write everything of a compressed-model directory but its weights into ``folder``.

    ``config`` is the transformers config as a dict, ``specs`` the :meth:`spec` of every
    factorised layer by name, ``name`` the directory's final name (quoted in the README).
    """
    config = {k: v for k, v in config.items() if k != "quantization_config"}
    if specs:
        _write_json(folder / "config.json", {"model_type": MODEL_TYPE, "tnkit_schema": SCHEMA, "base_config": config,
                                             "load_with": "tnkit.compress.load_compressed"})
        (folder / "README.md").write_text(_README.format(name=name), encoding="utf-8")
    else:  # nothing factorised: a plain transformers directory
        _write_json(folder / "config.json", config)
    _write_json(folder / LAYERS_FILE, {"schema": SCHEMA, "kind": _KIND, "layers": specs})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


# ---------------------------------------------------------------------- loading


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} is missing: not a compressed-model directory written by tnkit.")
    _check_regular(path, limit=64 << 20)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{str(path)!r} is corrupt (not valid JSON): {exc}") from exc


def _check_regular(path: Path, *, limit: int | None = None) -> int:
    """Size of ``path``, refusing anything but a regular file (a device, a FIFO) and oversized files."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path)!r} is missing.") from None
    if not stat.S_ISREG(st.st_mode):
        raise SchemaError(f"{str(path)!r} is not a regular file (a device, pipe or directory); refusing to read it.")
    if limit is not None and st.st_size > limit:
        raise SchemaError(f"{str(path)!r} is {st.st_size:,} bytes, more than the {limit:,} such a file may hold.")
    return st.st_size


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The validated tensor table of a safetensors file and the offset of its data."""
    _check_regular(path)
    table, data_start, size = read_safetensors_header(path, max_header_bytes=_MAX_HEADER)
    data_size, end = size - data_start, 0
    for name, entry in sorted(table.items(), key=lambda kv: _offsets(kv[1])[0]):
        begin, stop = _offsets(entry)
        dtype = _DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (dtype is None or not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
                or begin != end or stop - begin != math.prod(shape) * dtype.itemsize):
            raise SchemaError(f"{str(path)!r} is corrupt: bad entry for tensor {name!r}: {entry!r}.")
        end = stop
    if end != data_size:
        raise SchemaError(f"{str(path)!r} is corrupt: {data_size:,} bytes of tensor data, the header describes {end:,}.")
    return table, data_start


def _offsets(entry: Any) -> tuple[int, int]:
    offs = entry.get("data_offsets") if isinstance(entry, dict) else None
    if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) and o >= 0 for o in offs)
            or offs[0] > offs[1]):
        return (-1, -1)
    return offs[0], offs[1]


def read_safetensors(path: Any, expected: dict[str, tuple[int, ...]] | None = None, *,
                     names: Any = None, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a safetensors file with every check done before tensor data is read.

    Parameters
    ----------
    path : str or path-like
    expected : dict, optional
        ``name -> shape`` the file must match (names it lacks are allowed: tied
        weights; names or shapes it does not expect are refused).
    names : collection of str, optional
        Read only these tensors (the whole header is checked all the same).
    mmap : bool
        Map the file (private, copy-on-write) instead of reading it: each tensor is a
        view of the mapping, read from the file when first used, and its pages are
        handed back to the page cache once checked, so the process holds only what it
        uses (as transformers does with a checkpoint). Writing to a tensor copies the
        page it touches; the file is never written. The file must not be changed in
        place while the tensors live (tnkit replaces files by renaming, which is safe).

    Raises
    ------
    tnkit.errors.SchemaError
        For a non-regular file, a corrupt or truncated file, a header that does not
        match ``expected``, or a floating tensor holding NaN or infinity.
    """
    path = Path(path)
    table, data_start = _safetensors_header(path)
    if expected is not None:
        unexpected = sorted(set(table) - set(expected))
        wrong = [f"{k}: {table[k]['shape']} (expected {list(expected[k])})" for k in sorted(table)
                 if k in expected and tuple(table[k]["shape"]) != tuple(expected[k])]
        if unexpected or wrong:
            raise SchemaError(f"{str(path)!r} does not match the model's architecture: unexpected tensors "
                              f"{unexpected[:3]}, wrong shapes {wrong[:3]}.")
    tensors = {}
    with open(path, "rb") as fh:
        mapping = _map_file(fh) if mmap else None
        for name, entry in table.items():
            if names is not None and name not in names:
                continue
            begin = data_start + entry["data_offsets"][0]
            t = None if mapping is None else _mapped_tensor(mapping, entry, begin)
            mapped = t is not None
            if not mapped:
                t = torch.empty(entry["shape"], dtype=_DTYPES[entry["dtype"]])
                fh.seek(begin)
                view = t.reshape(-1).view(torch.uint8).numpy()
                if fh.readinto(memoryview(view)) != view.size:
                    raise SchemaError(f"{str(path)!r} is corrupt: tensor {name!r} is cut short.")
            if not _checked(t, mapping if mapped else None, begin):
                raise SchemaError(f"{str(path)!r}: tensor {name!r} holds NaN or infinite values.")
            tensors[name] = t
        if mapping is not None:
            # the kernel maps neighbouring pages around each fault (fault-around), including pages
            # of parts already released; nothing has been written, so dropping every page is safe
            _release_pages(mapping, 0, len(mapping))
    return tensors


def _map_file(fh: Any) -> Any:
    """A private (copy-on-write) mapping of the open file ``fh``."""
    import mmap

    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)


def _mapped_tensor(mapping: Any, entry: dict, begin: int) -> torch.Tensor | None:
    """The tensor of ``entry`` as a view of ``mapping`` at byte ``begin`` (``None``: read it instead)."""
    import numpy as np

    dtype = _DTYPES[entry["dtype"]]
    nbytes = math.prod(entry["shape"]) * dtype.itemsize
    if nbytes == 0 or begin % dtype.itemsize:
        return None  # nothing to map, or not aligned for its dtype
    raw = np.frombuffer(mapping, dtype=np.uint8, count=nbytes, offset=begin)
    return torch.from_numpy(raw).view(dtype).reshape(entry["shape"])


def _checked(t: torch.Tensor, mapping: Any, begin: int, *, chunk_bytes: int = 1 << 20) -> bool:
    """Whether ``t`` is finite (always, for integers); a mapped tensor (``mapping`` given, ``t`` at
    byte ``begin``) is checked ``chunk_bytes`` at a time, each part's pages released once checked,
    so loading never holds more than one part of the file."""
    if mapping is None:
        return not t.is_floating_point() or all_finite(t)
    flat, step = t.reshape(-1), max(1, chunk_bytes // t.element_size())
    for i in range(0, flat.numel(), step):
        part = flat[i:i + step]
        if t.is_floating_point() and not all_finite(part):
            return False
        start = begin + i * t.element_size()
        # from one part back: the kernel maps neighbouring pages around each fault (fault-around),
        # so a part's first reads map pages of the part before it again
        _release_pages(mapping, max(0, start - chunk_bytes), start + part.numel() * t.element_size())
    return True


def _release_pages(mapping: Any, begin: int, end: int) -> None:
    """Drop the checked pages of ``[begin, end)`` from the process (they stay in the page cache).

    Only pages nobody has written are released (loading reads them, nothing more), so
    no data is lost; the next use reads them again.
    """
    import mmap

    if not hasattr(mapping, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = begin - begin % mmap.PAGESIZE
    mapping.madvise(mmap.MADV_DONTNEED, start, end - start)


def all_finite(t: torch.Tensor, *, chunk: int = 1 << 15) -> bool:
    """Whether ``t`` holds no NaN or infinity, checked ``chunk`` numbers at a time.

    ``torch.isfinite`` on the whole tensor allocates temporaries of about 1.7 times its
    size. By chunks of 32,768 numbers they stay near 128 KiB, small enough that the C
    allocator reuses them instead of raising its threshold for returning memory to the
    system (chunks of megabytes left tens of MB of freed memory in the process).
    """
    flat = t.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.numel(), chunk))


def _base_config(config_dict: Any, meta: dict, d: Path) -> dict:
    if not isinstance(config_dict, dict):
        raise SchemaError(f"config.json in {str(d)!r} is not a JSON object.")
    if meta["schema"] == 1 or config_dict.get("model_type") != MODEL_TYPE:
        if meta["layers"] and meta["schema"] != 1:
            raise SchemaError(f"config.json in {str(d)!r} must name model type {MODEL_TYPE!r} for factorised layers.")
        return config_dict
    base = config_dict.get("base_config")
    if not isinstance(base, dict):
        raise SchemaError(f"config.json in {str(d)!r} has no `base_config` object.")
    return base


def _empty_model(config_dict: dict, meta: dict, d: Path) -> nn.Module:
    """The architecture with the recorded compressed layers, parameters on the meta device."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.for_model(**config_dict)
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaError(f"config.json in {str(d)!r} is not a usable transformers config: {exc}") from exc
    layers = {}
    for name, spec in meta["layers"].items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in _TYPES:
            raise SchemaError(f"{str(d / LAYERS_FILE)!r}: layer {name!r} has unknown type {kind!r}.")
        try:
            layers[name] = _TYPES[kind].empty_like_spec(spec, device="meta")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise SchemaError(f"{str(d / LAYERS_FILE)!r}: layer {name!r} has a bad spec ({exc!r}).") from None
    from ..layers.surgery import is_linear, linear_weight

    dense = {n: tuple(linear_weight(m).shape) for n, m in model.named_modules() if is_linear(m)}
    try:
        replace_layers(model, layers)
    except (ValueError, AttributeError) as exc:
        raise SchemaError(f"{str(d / LAYERS_FILE)!r} does not fit the architecture: {exc}") from None
    for name, new in layers.items():
        if dense.get(name) != (new.out_features, new.in_features):
            raise SchemaError(f"{str(d / LAYERS_FILE)!r}: layer {name!r} maps {new.in_features} -> "
                              f"{new.out_features} features, the architecture has {dense.get(name)} (out, in) there.")
    return model


def load_compressed(directory: Any) -> nn.Module:
    """Load a model written by :func:`save_compressed` (eval mode).

    Memory: the model is built on the meta device and its tensors are views of the
    memory-mapped weight file (private, copy-on-write), checked for NaN and infinity
    page by page and then handed back to the page cache: right after loading the
    process holds almost none of the weights, and while it runs it holds those it
    uses, at their stored size, as transformers does with a dense checkpoint. Loading
    a compressed model never needs the memory of the dense original. Training the
    loaded model copies the pages it writes; the file is never modified.

    Raises
    ------
    FileNotFoundError
        If the directory or one of its files is missing.
    tnkit.errors.SchemaError
        If a file is corrupt, not a regular file, of another kind/schema, does not
        match the architecture, or holds NaN/infinite weights.
    """
    d = Path(directory)
    if not d.is_dir():
        hint = _orphans(d, _PREVIOUS)
        extra = f" (an interrupted save left the previous model in {str(hint[0])!r})" if hint else ""
        raise FileNotFoundError(f"compressed-model directory {str(d)!r} does not exist{extra}.")
    meta = _read_json(d / LAYERS_FILE)
    if (not isinstance(meta, dict) or meta.get("kind") != _KIND or meta.get("schema") not in (1, SCHEMA)
            or not isinstance(meta.get("layers"), dict)):
        raise SchemaError(f"{str(d / LAYERS_FILE)!r} is not a tnkit compressed-model file of schema {SCHEMA}.")
    config_dict = _base_config(_read_json(d / "config.json"), meta, d)
    model = _empty_model(config_dict, meta, d)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tensors = read_safetensors(d / WEIGHTS_FILE, expected, mmap=True)
    missing = sorted(set(expected) - set(tensors))
    untied = [k for k in missing if not _is_tied(model, k)]
    if untied:
        raise SchemaError(f"{str(d / WEIGHTS_FILE)!r} does not match the architecture: missing {untied[:3]}.")
    model.load_state_dict(tensors, strict=False, assign=True)
    model.tie_weights()
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise SchemaError(f"{str(d / WEIGHTS_FILE)!r} leaves parameters unset: {left[:3]}.")
    return model.eval()


def _is_tied(model: nn.Module, key: str) -> bool:
    return bool(getattr(model.config, "tie_word_embeddings", False)) and key.endswith("lm_head.weight")
