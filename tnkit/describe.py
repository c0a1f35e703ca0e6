"""``tnkit inspect PATH``: describe a file or directory that tnkit wrote.

Every ``.npz`` kind tnkit writes (:data:`tnkit.io.KINDS`: states, operators, tree
tensor networks, classifiers and Born machines) has a describer in
:data:`DESCRIBERS`, and a directory written by ``tnkit compress`` (a JSON layer
table beside ``config.json`` and ``model.safetensors``) is described from its JSON
and the safetensors header, without loading torch. Files are read with the checks
of :func:`tnkit.io.read_tnkit_file` (no pickle, sizes checked first); anything
else, foreign or corrupt, is refused in one line with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "describe", "describe_path", "DESCRIBERS"]

#: The files of a compressed-model directory (see :mod:`tnkit.compress.storage.serialize`).
_LM_LAYERS, _LM_WEIGHTS, _LM_CONFIG = "tnkit_layers.json", "model.safetensors", "config.json"
_LM_KIND = "tnkit-compressed-lm"

#: Largest JSON file or safetensors header read (bytes): real ones are far smaller.
_MAX_JSON_BYTES = 64 * 2**20


def add_parser(sub: Any) -> None:
    """Register the ``inspect`` subcommand."""
    p = sub.add_parser(
        "inspect",
        help="describe a file tnkit wrote (state, operator, tree, classifier, Born machine, "
        "compressed model)",
        description="Print what a file written by tnkit holds: for an MPS, MPO or TTN its sites, "
        "dimensions, bonds, norm and entanglement (nats); for a classifier or Born machine its "
        "settings, size and training history; for a directory written by 'tnkit compress' its "
        "model, compressed layers and weights. Foreign or corrupt files are refused (exit status 1).",
    )
    p.add_argument("file", help="a .npz file or a compressed-model directory written by tnkit")
    p.set_defaults(func=_run)


def describe(obj: Any) -> str:
    """A multi-line description of an MPS, MPO or TTN."""
    from .mps import MatrixProductState
    from .ttn import TreeTensorNetwork

    lines = [repr(obj), f"  bond dims : {list(obj.bond_dims)}", f"  parameters: {obj.num_params:,}"]
    if isinstance(obj, (MatrixProductState, TreeTensorNetwork)):
        lines.append(f"  norm      : {_norm_text(obj.log_norm())}")
    if isinstance(obj, MatrixProductState):
        if obj.n_sites > 1 and obj.log_norm() > -math.inf:
            s = obj.entanglement_entropy()
            at = int(np.argmax(s))
            lines.append(f"  entropy   : max {s.max():.4f} at bond {at}, mean {s.mean():.4f} (nats)")
    elif isinstance(obj, TreeTensorNetwork):
        if obj.log_norm() > -math.inf and obj.output_dim is None:
            s = obj.entropies()
            lines.append(f"  entropy   : max {s.max():.4f}, mean {s.mean():.4f} over {len(s)} edges (nats)")
    else:
        lines.append(f"  shape     : {obj.shape}")
    return "\n".join(lines)


def _norm_text(log_norm: float) -> str:
    """The norm, or ``exp(log_norm)`` where a float cannot hold it."""
    if log_norm == -math.inf:
        return "0 (the zero state)"
    if -700.0 < log_norm < 700.0:
        return f"{math.exp(log_norm):.12g}"
    return f"exp({log_norm:.12g}) (beyond the float range)"


def describe_path(path: Any) -> str:
    """Describe the tnkit file or compressed-model directory at ``path``.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    tnkit.errors.SchemaError
        If it is not something tnkit wrote, or is corrupt.
    """
    from .errors import SchemaError
    from .io import read_tnkit_file

    p = Path(path)
    if p.is_dir():
        return _describe_compressed_lm(p)
    found = read_tnkit_file(p)
    describer = DESCRIBERS.get(found.kind)
    if describer is None:
        raise SchemaError(f"{str(found.path)!r} holds a {found.kind!r}, which this tnkit cannot describe.")
    writer = found.version or "unknown"
    head = f"{found.path}: {found.kind} (schema {found.schema}, written by tnkit {writer})"
    try:
        body = describer(found)
    except SchemaError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise SchemaError(f"{str(found.path)!r} is not a valid {found.kind} file: {_one_line(exc)}") from None
    return "\n".join([head, *body])


# ---------------------------------------------------------------------- describers


def _state(found: Any) -> list[str]:
    from .mps import MatrixProductState

    psi = MatrixProductState(found.tensors)
    claimed = found.meta.get("canonical_range")
    if claimed is not None and claimed.shape == (2,) and claimed.dtype.kind in "iu":
        psi.adopt_canonical_range(int(claimed[0]), int(claimed[1]))
    return describe(psi).splitlines()


def _operator(found: Any) -> list[str]:
    from .mps import MatrixProductOperator

    return describe(MatrixProductOperator(found.tensors)).splitlines()


def _tree_network(found: Any) -> list[str]:
    from .ttn import TreeTensorNetwork

    return describe(TreeTensorNetwork.load(found.path)).splitlines()


def _classifier(found: Any) -> list[str]:
    meta = found.meta
    classes = [str(c) for c in np.asarray(meta["classes"]).ravel()]
    history = json.loads(str(meta["history"]))
    lines = [
        f"  settings  : {_settings(meta['params'])}",
        f"  features  : {int(meta['n_features_in'])}",
        f"  classes   : {len(classes)} ({_listing(classes)})",
        *_tensor_lines(found, tree="n_leaves" in meta),
    ]
    if history:
        last = history[-1]
        shown = {k: v for k, v in last.items() if k in ("loss", "accuracy") and isinstance(v, (int, float))}
        stats = ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
        lines.append(f"  training  : {len(history)} recorded steps; last {stats}")
    return lines


def _born_machine(found: Any) -> list[str]:
    meta = found.meta
    cats = [int(d) for d in np.asarray(meta["n_categories"]).ravel()]
    nll = np.asarray(meta["history_nll"], dtype=float)
    lines = [
        f"  settings  : {_settings(meta['params_json'])}",
        f"  features  : {len(cats)}, categories {_listing([str(c) for c in sorted(set(cats))])} per feature",
        *_tensor_lines(found, tree="n_leaves" in meta),
    ]
    if nll.size:
        lines.append(f"  training  : {nll.size} steps; NLL {nll[0]:.4f} -> {nll[-1]:.4f} (nats per sample)")
    return lines


#: Describer of each file kind: ``(TnkitFile) -> lines`` after the heading line.
DESCRIBERS: dict[str, Callable[[Any], list[str]]] = {
    "MatrixProductState": _state,
    "MatrixProductOperator": _operator,
    "TreeTensorNetwork": _tree_network,
    "MPSClassifier": _classifier,
    "TTNClassifier": _classifier,
    "MPSBornMachine": _born_machine,
    "TTNBornMachine": _born_machine,
}


def _tensor_lines(found: Any, *, tree: bool) -> list[str]:
    tensors = found.tensors
    n_params = sum(int(t.size) for t in tensors)
    dtypes = sorted({str(t.dtype) for t in tensors})
    if tree:
        largest = max((max(t.shape, default=1) for t in tensors), default=1)
        leaves = int(found.meta["n_leaves"])
        shape = f"{len(tensors)} node tensors of a tree over {leaves} leaves, largest dimension {largest}"
    else:
        bonds = [int(t.shape[-1]) for t in tensors[:-1]]
        shape = f"{len(tensors)} site tensors, bond dims {_listing([str(b) for b in bonds])}"
    return [f"  network   : {shape}", f"  parameters: {n_params:,} ({', '.join(dtypes)})"]


def _settings(params_json: Any) -> str:
    params = json.loads(str(params_json))
    if not isinstance(params, dict):
        raise TypeError("the settings are not a JSON object")
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if v is not None) or "defaults"


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# ---------------------------------------------------------------------- compressed model directories


def _describe_compressed_lm(directory: Path) -> str:
    from .errors import SchemaError

    name = str(directory)
    layers_file = directory / _LM_LAYERS
    if not layers_file.is_file():
        raise SchemaError(
            f"{name!r} is a directory without {_LM_LAYERS}: not a compressed model written by tnkit."
        )
    table = _read_json(layers_file)
    if not isinstance(table, dict) or table.get("kind") != _LM_KIND:
        raise SchemaError(f"{str(layers_file)!r} is not a tnkit layer table (no kind {_LM_KIND!r}).")
    schema = table.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise SchemaError(
            f"{str(layers_file)!r} has schema {schema!r}; tnkit layer tables have integer versions >= 1."
        )
    layers = table.get("layers")
    if not isinstance(layers, dict):
        raise SchemaError(f"{str(layers_file)!r} has no 'layers' table.")
    lines = [f"{name}: compressed language model (layer table schema {schema})"]
    config_file = directory / _LM_CONFIG
    if config_file.is_file():
        config = _read_json(config_file)
        if isinstance(config, dict):
            arch = ", ".join(config.get("architectures") or []) or str(config.get("model_type", "unknown"))
            keys = ("num_hidden_layers", "hidden_size", "vocab_size")
            sizes = ", ".join(f"{k}={config[k]}" for k in keys if k in config)
            lines.append(f"  model     : {arch}" + (f" ({sizes})" if sizes else ""))
    kinds = Counter(str(spec.get("type", "?")) if isinstance(spec, dict) else "?" for spec in layers.values())
    counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    lines.append(f"  layers    : {len(layers)} compressed ({counts})")
    bonds = [b for spec in layers.values() if isinstance(spec, dict) for b in spec.get("bond_dims", []) or []]
    if bonds:
        lines.append(f"  bonds     : largest {max(bonds)}")
    weights = directory / _LM_WEIGHTS
    if not weights.is_file():
        raise SchemaError(f"{name!r} has no {_LM_WEIGHTS}: the compressed model is incomplete.")
    n_tensors, n_params, dtypes = _safetensors_summary(weights)
    size = weights.stat().st_size
    kinds_text = ", ".join(dtypes)
    lines.append(f"  weights   : {n_tensors} tensors, {n_params:,} parameters ({kinds_text}), {size:,} bytes")
    return "\n".join(lines)


def _read_json(path: Path) -> Any:
    from .errors import SchemaError

    if path.stat().st_size > _MAX_JSON_BYTES:
        raise SchemaError(f"{str(path)!r} is larger than {_MAX_JSON_BYTES:,} bytes: not a file tnkit wrote.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{str(path)!r} is not valid JSON ({_one_line(exc)}).") from None


def _safetensors_summary(path: Path) -> tuple[int, int, list[str]]:
    """``(tensors, parameters, dtypes)`` from a safetensors header (8-byte length, then JSON)."""
    from .errors import SchemaError
    from .io import read_safetensors_header

    entries, _, _ = read_safetensors_header(path, max_header_bytes=_MAX_JSON_BYTES)
    try:
        n_params = sum(math.prod(int(d) for d in v["shape"]) for v in entries.values())
        dtypes = sorted({str(v["dtype"]) for v in entries.values()})
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"{str(path)!r} has a malformed safetensors header ({_one_line(exc)}).") from None
    return len(entries), n_params, dtypes


# ---------------------------------------------------------------------- command


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run(args: argparse.Namespace) -> int:
    from .errors import SchemaError

    try:
        text = describe_path(args.file)
    except FileNotFoundError:
        message = f"no such file or directory: {args.file!r}"
    except (SchemaError, ValueError, TypeError) as exc:
        message = _one_line(exc)
    except OSError as exc:  # unreadable: permissions, a device, ...
        message = f"cannot read {args.file!r}: {exc.strerror or _one_line(exc)}"
    else:
        print(text)
        return 0
    print(f"tnkit inspect: error: {message}", file=sys.stderr)
    return 1
