"""Saving and loading tnkit objects as schema-versioned ``.npz`` files.

Files hold only numeric arrays and a few strings, are read with
``allow_pickle=False`` (loading never executes code), and are written atomically:
to a temporary file in the same directory, flushed, then renamed over the target,
so a crash never leaves a half-written file behind.

Layout (schema version 1)::

    __tnkit_kind__      "MatrixProductState" | "MatrixProductOperator" | ...
    __tnkit_schema__    1
    __tnkit_version__   the tnkit version that wrote the file
    n_sites             number of site tensors
    t0000, t0001, ...   the site tensors
    meta__<name>        optional extra arrays of the object's kind
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import SchemaError

__all__ = ["atomic_write", "save_arrays", "load_arrays", "save_mps", "load_mps", "save_mpo", "load_mpo", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


def _as_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or path-like, got {type(path).__name__}.")
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: Any) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears whole or not at all.

    Writes go to a temporary file in the same directory (created if needed), which is
    flushed, fsynced and renamed over ``path`` when the ``with`` block ends without an
    exception; on an exception the temporary file is removed and ``path`` is untouched.
    Use it for every file tnkit writes (models, checkpoints, reports).

    Examples
    --------
    >>> with atomic_write(tmp_path / "model.safetensors") as fh:  # doctest: +SKIP
    ...     fh.write(data)
    """
    path = _as_path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0o600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_arrays(
    path: Any, kind: str, tensors: list[np.ndarray], meta: Mapping[str, Any] | None = None
) -> Path:
    """Atomically write ``tensors`` (and ``meta`` arrays) under ``kind`` to ``path``.

    A ``.npz`` suffix is added if missing. Returns the path written.
    """
    from . import __version__

    path = _as_path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    payload: dict[str, np.ndarray] = {
        "__tnkit_kind__": np.array(kind),
        "__tnkit_schema__": np.array(SCHEMA_VERSION),
        "__tnkit_version__": np.array(__version__),
        "n_sites": np.array(len(tensors)),
    }
    for i, t in enumerate(tensors):
        payload[f"t{i:04d}"] = np.asarray(t)
    for name, value in (meta or {}).items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"metadata {name!r} must be numeric or string, not object.")
        payload[f"meta__{name}"] = arr
    with atomic_write(path) as fh:
        np.savez(fh, **payload)
    return path


def load_arrays(path: Any, kind: str) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_arrays`, checking its kind and schema.

    ``path`` may omit the ``.npz`` suffix that :func:`save_arrays` adds.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    SchemaError
        If the file is not a tnkit file of this ``kind`` and schema version, or is corrupt.
    """
    path = _as_path(path)
    if not path.exists() and path.suffix != ".npz" and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    try:
        with open(path, "rb") as fh:
            data = np.load(fh, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise SchemaError(f"{str(path)!r} is not a tnkit file: it holds a single .npy array.")
            with data:
                return _read_payload(data, str(path), kind)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(f"{str(path)!r} is corrupt or not an .npz file: {exc}") from exc


def _read_payload(data: Any, name: str, kind: str) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    files = set(data.files)
    required = {"__tnkit_kind__", "__tnkit_schema__", "n_sites"}
    if not required <= files:
        raise SchemaError(f"{name!r} is not a tnkit file (missing {sorted(required - files)}).")
    found = str(data["__tnkit_kind__"])
    if found != kind:
        raise SchemaError(f"{name!r} holds a {found}, expected a {kind}.")
    schema = int(data["__tnkit_schema__"])
    if schema > SCHEMA_VERSION:
        raise SchemaError(
            f"{name!r} has schema version {schema}; this tnkit reads up to {SCHEMA_VERSION}. Upgrade tnkit."
        )
    n = int(data["n_sites"])
    missing = [f"t{i:04d}" for i in range(n) if f"t{i:04d}" not in files]
    if missing:
        raise SchemaError(f"{name!r} is missing site tensors {missing[:3]}.")
    tensors = [data[f"t{i:04d}"] for i in range(n)]
    meta = {k[len("meta__") :]: data[k] for k in files if k.startswith("meta__")}
    return tensors, meta


def save_mps(mps: Any, path: Any) -> Path:
    """Write a :class:`~tnkit.MatrixProductState`, with its canonical bookkeeping."""
    left, right = mps.canonical_range
    return save_arrays(path, "MatrixProductState", list(mps.tensors), {"canonical_range": [left, right]})


def load_mps(path: Any) -> Any:
    """Read a :class:`~tnkit.MatrixProductState` (validated like any user input).

    The canonical bookkeeping stored in the file is re-checked, never trusted: each
    site it claims to be an isometry is verified (to 1e-10), else it is dropped.
    """
    from .mps.mps import MatrixProductState

    tensors, meta = load_arrays(path, "MatrixProductState")
    mps = MatrixProductState(tensors)
    claimed = meta.get("canonical_range")
    if claimed is not None and claimed.shape == (2,) and claimed.dtype.kind in "iu":
        mps._adopt_verified_canonical_range(int(claimed[0]), int(claimed[1]))
    return mps


def save_mpo(mpo: Any, path: Any) -> Path:
    """Write a :class:`~tnkit.MatrixProductOperator`."""
    return save_arrays(path, "MatrixProductOperator", list(mpo.tensors))


def load_mpo(path: Any) -> Any:
    """Read a :class:`~tnkit.MatrixProductOperator`."""
    from .mps.mpo import MatrixProductOperator

    tensors, _ = load_arrays(path, "MatrixProductOperator")
    return MatrixProductOperator(tensors)
