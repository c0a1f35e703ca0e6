"""Out-of-core models: build on ``meta``, fill one block at a time from safetensors or GGUF, write as you go.

A Hugging Face checkpoint directory holds ``config.json`` and either ``model.safetensors``
or shards named by ``model.safetensors.index.json``; a GGUF file holds the configuration
and the tensors (possibly quantised) in one file, memory-mapped and dequantised one
tensor at a time (:class:`GGUFFiles`). :class:`BlockStream` builds the
architecture with its parameters on torch's ``meta`` device (shapes only; buffers such as
the rotary frequencies are real), reads the tensors outside the blocks (embeddings, final
norm, untied output head) and then fills and empties one block at a time::

    stream = BlockStream(directory)       # every parameter on meta
    stream.load_trunk_inputs()            # the embeddings: enough to capture the first block's inputs
    ...                                   # capture them
    stream.release_all()                  # back to meta
    for i in range(stream.n_blocks):
        block = stream.load_block(i)      # read block i from its shard(s), float32
        ...                               # run it, compress it
        stream.release_block(i)           # back to meta: its memory is freed

so peak memory is about one block (or the embeddings, at the start). The tensors outside
the blocks are copied to the output one at a time (:meth:`BlockStream.outside_tensors`). Every tensor is checked
against the architecture's shape before it is used; safetensors files hold no code and
are never unpickled. A model already in memory streams too (``BlockStream(model)``):
loading and releasing are then no-ops.

:class:`SafetensorsWriter` is the output side: tensors are appended to a staging file
block by block, and :meth:`SafetensorsWriter.finish` writes one ``model.safetensors``
(header, then the staged bytes, copied in chunks) inside a temporary directory that is
renamed into place (:func:`tnkit.compress.storage.serialize.write_model_dir`), so the result is the
layout :func:`tnkit.compress.load_compressed` reads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import SchemaError
from ..storage.serialize import WEIGHTS_FILE, read_safetensors, write_metadata, write_model_dir

__all__ = ["CheckpointFiles", "GGUFFiles", "gguf_config", "BlockStream", "SafetensorsWriter", "INDEX_FILE", "find_blocks"]

INDEX_FILE = "model.safetensors.index.json"
_DTYPE_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}
_CHUNK = 64 << 20


class CheckpointFiles:
    """The tensor names of a safetensors checkpoint directory and the file holding each.

    Parameters
    ----------
    directory : str or path-like
        Holds ``model.safetensors`` or ``model.safetensors.index.json`` and its shards.

    Raises
    ------
    FileNotFoundError
        If neither file exists, or a shard named by the index is missing.
    tnkit.errors.SchemaError
        If the index is not a ``{"weight_map": {name: file}}`` object or names a file
        outside the directory.
    """

    def __init__(self, directory: Any) -> None:
        self.directory = Path(directory)
        index = self.directory / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError, TypeError) as exc:
                raise SchemaError(f"{str(index)!r} is not a safetensors index ({exc!r}).") from None
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise SchemaError(f"{str(index)!r}: `weight_map` must map tensor names to file names.")
            self.file_of = {str(k): v for k, v in weight_map.items()}
        elif (self.directory / WEIGHTS_FILE).is_file():
            from safetensors import safe_open

            with safe_open(str(self.directory / WEIGHTS_FILE), framework="pt") as fh:
                self.file_of = dict.fromkeys(fh.keys(), WEIGHTS_FILE)
        else:
            raise FileNotFoundError(f"{str(self.directory)!r} holds neither {WEIGHTS_FILE} nor {INDEX_FILE}.")
        for file in set(self.file_of.values()):
            if Path(file).name != file or not (self.directory / file).is_file():
                raise FileNotFoundError(f"shard {file!r} named by {str(self.directory)!r} is missing or not a plain "
                                        "file name.")

    def read(self, names: list[str], *, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The tensors ``names`` (floating ones converted to ``dtype``), each shard opened once.

        Read with plain file reads into fresh tensors (no memory map), after the shard's
        header is checked (:func:`tnkit.compress.storage.serialize.read_safetensors`).
        """
        missing = [n for n in names if n not in self.file_of]
        if missing:
            raise SchemaError(f"the checkpoint in {str(self.directory)!r} lacks tensors {missing[:3]}.")
        by_file: dict[str, list[str]] = {}
        for name in names:
            by_file.setdefault(self.file_of[name], []).append(name)
        out = {}
        for file, group in by_file.items():
            for name, t in read_safetensors(self.directory / file, names=set(group)).items():
                out[name] = t.to(dtype) if t.is_floating_point() else t
        return out


class GGUFFiles:
    """The tensors of a GGUF file under their transformers names, dequantised one at a time.

    ``gguf``'s ``GGUFReader`` maps the file into memory without reading it; a tensor is
    dequantised (``gguf.dequantize``: float16, bfloat16 and the block quantisations)
    only when asked for. The names come from transformers' GGUF mapping
    (``transformers.modeling_gguf_pytorch_utils.get_gguf_hf_weights_map``) and every
    tensor goes through the architecture's tensor processor there (for Llama, the
    reverse of llama.cpp's permutation of the query and key rows), so the tensors are
    those ``from_pretrained(..., gguf_file=...)`` loads.

    Parameters
    ----------
    path : str or path-like
        The ``.gguf`` file.
    model : torch.nn.Module
        The architecture (on ``meta``), built from the file's configuration.

    Raises
    ------
    tnkit.errors.SchemaError
        If the file is not a GGUF file.
    """

    def __init__(self, path: Any, model: nn.Module) -> None:
        from gguf import GGUFReader
        from transformers.modeling_gguf_pytorch_utils import (
            TENSOR_PROCESSORS,
            TensorProcessor,
            get_gguf_hf_weights_map,
            read_field,
        )

        self.path = Path(path)
        try:
            self._reader = GGUFReader(str(self.path))
        except (ValueError, OSError) as exc:
            raise SchemaError(f"{str(self.path)!r} is not a readable GGUF file ({exc}).") from None
        arch = read_field(self._reader, "general.architecture")
        self._processor = TENSOR_PROCESSORS.get(arch[0] if arch else "", TensorProcessor)(
            config=model.config.to_dict())
        self._to_hf = get_gguf_hf_weights_map(model, self._processor)
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.file_of = {hf: gguf for gguf, hf in self._to_hf.items() if gguf in self._tensors}
        self.directory = self.path.parent

    def read(self, names: list[str], *, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The tensors ``names``, dequantised and converted to ``dtype`` (fresh tensors, none kept)."""
        from gguf import dequantize

        from ..storage.serialize import all_finite

        missing = [n for n in names if n not in self.file_of]
        if missing:
            raise SchemaError(f"the GGUF file {str(self.path)!r} lacks tensors {missing[:3]}.")
        out = {}
        for name in names:
            gguf_name = self.file_of[name]
            entry = self._tensors[gguf_name]
            result = self._processor.process(weights=dequantize(entry.data, entry.tensor_type), name=gguf_name,
                                             tensor_key_mapping=self._to_hf, parsed_parameters={"tensors": {}})
            if result.name != gguf_name or result.weights is None:
                raise SchemaError(f"GGUF tensor {gguf_name!r} does not map to one tensor of the architecture; "
                                  "streaming reads one-to-one layouts (Llama-like models).")
            t = torch.from_numpy(np.array(result.weights, dtype=np.float32)).to(dtype)
            if not all_finite(t):
                raise SchemaError(f"{str(self.path)!r}: tensor {gguf_name!r} holds NaN or infinite values.")
            out[name] = t
        return out


def gguf_config(path: Any) -> Any:
    """The transformers configuration stored in the GGUF file ``path`` (metadata only; no tensor is read)."""
    from transformers import AutoConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist.")
    try:
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise SchemaError(f"{str(path)!r} is not a GGUF model transformers can read ({exc}).") from None


class BlockStream:
    """A causal LM whose blocks live on disk until asked for (see the module docstring).

    Parameters
    ----------
    source : str, path-like or torch.nn.Module
        A Hugging Face checkpoint directory (config + safetensors), a ``.gguf`` file
        (:class:`GGUFFiles`), or a model already in memory.

    Attributes
    ----------
    model : torch.nn.Module
        The model; blocks not loaded have their parameters on ``meta``.
    blocks : torch.nn.ModuleList
    prefix : str
        The blocks' name in the model (``model.layers`` for Llama).
    """

    def __init__(self, source: Any) -> None:
        from .plan import load_config, meta_model

        self.files: CheckpointFiles | GGUFFiles | None = None
        if isinstance(source, nn.Module):
            self.model = source
        elif Path(source).suffix == ".gguf" and Path(source).is_file():
            self.model = meta_model(gguf_config(source))
            self.files = GGUFFiles(source, self.model)
        else:
            self.files = CheckpointFiles(source)
            self.model = meta_model(load_config(source))
        self.prefix, self.blocks = find_blocks(self.model)
        self.model.eval()

    def outside_names(self) -> list[str]:
        """State-dict names outside the blocks, a tied output head left out (it is tied again on load)."""
        inside = f"{self.prefix}."
        own = {n for n, _ in self.model.named_parameters()} | {n for n, _ in self.model.named_buffers()}
        return [k for k in self.model.state_dict() if not k.startswith(inside) and k in own]

    def outside_tensors(self) -> Iterator[dict[str, torch.Tensor]]:
        """The tensors outside the blocks, one at a time (``{name: tensor}``), read from disk or the model."""
        state = self.model.state_dict() if self.files is None else None
        for name in self.outside_names():
            yield {name: state[name].detach()} if state is not None else self._checked(name, self.files.read([name]))

    def load_trunk_inputs(self) -> None:
        """Read what the model runs before its first block (everything outside the blocks but the output head)."""
        if self.files is None:
            return
        head = self.model.get_output_embeddings()
        skip = {id(p) for p in head.parameters()} if head is not None else set()
        tied = {id(p) for p in self.model.get_input_embeddings().parameters()}
        inside = f"{self.prefix}."
        names = [n for n, p in self.model.named_parameters() if not n.startswith(inside)
                 and (id(p) not in skip or id(p) in tied)]
        expected = self.model.state_dict()
        self._assign(self.model, "", self.files.read(names), {n: expected[n] for n in names})

    def release_all(self) -> None:
        """Free every parameter read from disk (back to ``meta``; no-op for a model in memory)."""
        if self.files is not None:
            self.model.to("meta")

    def _checked(self, name: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        expected = self.model.state_dict()[name]
        if tuple(tensors[name].shape) != tuple(expected.shape):
            raise SchemaError(f"tensor {name!r} has shape {tuple(tensors[name].shape)} in the checkpoint, the "
                              f"architecture expects {tuple(expected.shape)}.")
        return tensors

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    def block_name(self, index: int) -> str:
        """Full name of block ``index`` (``model.layers.3``)."""
        return f"{self.prefix}.{index}"

    def load_block(self, index: int) -> nn.Module:
        """Block ``index`` with its parameters read from disk (no-op for a model in memory)."""
        block = self.blocks[index]
        if self.files is not None:
            expected = block.state_dict()
            head = f"{self.block_name(index)}."
            tensors = self.files.read([head + k for k in expected])
            self._assign(block, head, tensors, expected)
        return block

    def load_layer(self, index: int, name: str, *, dtype: torch.dtype = torch.float32) -> nn.Module:
        """Module ``name`` of block ``index`` with its parameters read from disk again, floating ones as ``dtype``.

        Lets a layer's weight leave memory between the block's forward pass and its
        factorisation (no-op for a model in memory).
        """
        module = self.blocks[index].get_submodule(name)
        if self.files is not None:
            expected = module.state_dict()
            head = f"{self.block_name(index)}.{name}."
            self._assign(module, head, self.files.read([head + k for k in expected], dtype=dtype), expected)
        return module

    def release_block(self, index: int) -> None:
        """Free block ``index``'s parameters (back to ``meta``; no-op for a model in memory)."""
        if self.files is not None:
            self.blocks[index] = self.blocks[index].to("meta")

    def release_module(self, module: nn.Module) -> None:
        """Free the parameters of ``module``, part of a loaded block (back to ``meta``; no-op for a model in memory)."""
        if self.files is not None:
            module.to("meta")

    def _assign(self, module: nn.Module, head: str, tensors: dict[str, torch.Tensor],
                expected: dict[str, torch.Tensor]) -> None:
        local = {}
        for key, ref in expected.items():
            t = tensors.get(head + key)
            if t is None:
                continue
            if tuple(t.shape) != tuple(ref.shape):
                raise SchemaError(f"tensor {head + key!r} has shape {tuple(t.shape)} in the checkpoint, the "
                                  f"architecture expects {tuple(ref.shape)}.")
            local[key] = t
        module.load_state_dict(local, strict=False, assign=True)


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The name and the longest ``nn.ModuleList`` of ``model``: its blocks (``model.layers`` for Llama)."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of blocks (nn.ModuleList) to stream.")
    name, blocks = max(lists, key=lambda nm: len(nm[1]))
    return name, blocks


class SafetensorsWriter:
    """Write a model's tensors piece by piece, then publish a compressed-model directory as a unit.

    Parameters
    ----------
    directory : str or path-like
        The output directory (checked writable now; written by :meth:`finish`).
    """

    def __init__(self, directory: Any) -> None:
        from ..storage.serialize import check_output_dir

        self.directory = check_output_dir(directory)
        parent = self.directory.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.tnkit-staging-", dir=parent))
        self._data = open(self._staging / "data.bin", "wb")
        self._entries: dict[str, dict[str, Any]] = {}
        self._offset = 0

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        """Append ``tensors`` (CPU, any dtype of the safetensors format)."""
        for name, t in tensors.items():
            if name in self._entries:
                raise ValueError(f"tensor {name!r} was already written.")
            t = t.detach().contiguous().cpu()
            if t.dtype not in _DTYPE_NAMES:
                raise TypeError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot hold.")
            raw = t.reshape(-1).view(torch.uint8).numpy()
            self._data.write(memoryview(raw))
            self._entries[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                                   "data_offsets": [self._offset, self._offset + raw.size]}
            self._offset += raw.size

    def finish(self, config: dict, specs: dict, *, tokenizer: Any = None) -> Path:
        """Write ``model.safetensors``, the config and the layer specs; publish the directory; return it."""
        self._data.close()
        header = json.dumps({"__metadata__": {"format": "pt", "producer": "tnkit"}, **self._entries},
                            separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)

        def write(tmp: Path) -> None:
            with open(tmp / WEIGHTS_FILE, "wb") as out, open(self._staging / "data.bin", "rb") as data:
                out.write(len(header).to_bytes(8, "little"))
                out.write(header)
                shutil.copyfileobj(data, out, _CHUNK)
            write_metadata(tmp, config, specs, name=self.directory.name, tokenizer=tokenizer)

        try:
            return write_model_dir(self.directory, write)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the staging files (also done by :meth:`finish`)."""
        if not self._data.closed:
            self._data.close()
        shutil.rmtree(self._staging, ignore_errors=True)

    def __del__(self) -> None:  # pragma: no cover - safety net for an abandoned writer
        try:
            if os.path.isdir(self._staging):
                self.discard()
        except AttributeError:
            pass
