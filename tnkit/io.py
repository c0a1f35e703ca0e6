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

Kinds written by tnkit (see :data:`KINDS`): ``MatrixProductState``,
``MatrixProductOperator``, ``TreeTensorNetwork``, ``MPSClassifier``,
``TTNClassifier``, ``MPSBornMachine`` and ``TTNBornMachine``.

Reading checks, before any array is read: the archive's members are ``.npy``
arrays of numbers or strings (never Python objects); their total size, from the
``.npy`` headers, is at most ``max_bytes``; no member expands more than
:data:`MAX_EXPANSION` times its compressed size (tnkit writes uncompressed
archives); and the schema version is an integer tnkit knows (1 to
:data:`SCHEMA_VERSION`).

:func:`read_safetensors_header` reads the tensor table of a safetensors file (the
format of model weights) without its data, for the readers of such files above.

This module is the bottom floor of file handling: arrays, schema and atomic
writes. Each class owns its format (``MatrixProductState.save`` / ``.load``,
``MatrixProductOperator``, ``TreeTensorNetwork`` and the estimators likewise);
:func:`save_mps`, :func:`load_mps`, :func:`save_mpo` and :func:`load_mpo` call
them, the loaders through :func:`register_loader`, so this module imports no class.

Temporary files are named ``.<target name>.tnkit-<pid>-<random>.tmp`` beside the
target. A process killed while writing leaves one behind; the next write to the
same target removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .core.validate import DEFAULT_MAX_BYTES, check_memory
from .errors import SchemaError

__all__ = [
    "atomic_write",
    "save_arrays",
    "load_arrays",
    "read_tnkit_file",
    "TnkitFile",
    "save_mps",
    "load_mps",
    "save_mpo",
    "load_mpo",
    "register_loader",
    "remove_stale_temporaries",
    "read_safetensors_header",
    "SCHEMA_VERSION",
    "KINDS",
    "MAX_EXPANSION",
]

SCHEMA_VERSION = 1

#: The kinds of ``.npz`` file tnkit writes.
KINDS = (
    "MatrixProductState",
    "MatrixProductOperator",
    "TreeTensorNetwork",
    "MPSClassifier",
    "TTNClassifier",
    "MPSBornMachine",
    "TTNBornMachine",
)

#: Largest ratio of a member's size to its compressed size accepted on reading (a
#: guard against decompression bombs; tnkit itself stores arrays uncompressed).
MAX_EXPANSION = 100

#: Array dtype kinds a file may hold: booleans, integers, floats, complex, strings.
_SAFE_KINDS = "biufcUS"

#: Age after which a temporary file without a process id (older tnkit) counts as stale.
_STALE_SECONDS = 3600.0


def _as_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or path-like, got {type(path).__name__}.")
    return Path(path)


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
    remove_stale_temporaries(path)
    import secrets  # here, not at the top: importing tnkit stays cheap

    tmp = str(directory / f".{path.name}.tnkit-{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as exc:
            raise _naming(exc, tmp, path) from None
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _naming(exc, tmp, path) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _naming(exc: OSError, tmp: str, path: Path) -> OSError:
    """``exc`` with the user's ``path`` in place of the temporary file's name."""
    if tmp not in (exc.filename, exc.filename2):
        return exc
    return type(exc)(exc.errno, f"cannot write {str(path)!r}: {exc.strerror}")


_TEMP_PID = re.compile(r"\.tnkit-(\d+)-[0-9a-f]+\.tmp$")


def remove_stale_temporaries(path: Any) -> list[Path]:
    """Remove temporary files an interrupted :func:`atomic_write` of ``path`` left behind.

    They are the files ``.<name>.tnkit-<pid>-<hex>.tmp`` next to ``path`` whose
    process no longer runs (checked on POSIX only; elsewhere, and for the
    ``.<name>.<random>.tmp`` files of older tnkit versions, those untouched for an
    hour). Files of running writers are kept. Returns the paths removed.
    """
    path = _as_path(path)
    directory = path.parent if str(path.parent) else Path(".")
    removed = []
    try:
        import glob

        candidates = list(directory.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        if _is_stale(tmp):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _is_stale(tmp: Path) -> bool:
    match = _TEMP_PID.search(tmp.name)
    if match and os.name == "posix":
        pid = int(match.group(1))
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except OSError:  # exists, owned by someone else
            return False
        return False
    try:
        return time.time() - tmp.stat().st_mtime > _STALE_SECONDS
    except OSError:
        return False


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
        arr = np.asarray(t)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"`tensors[{i}]` must hold numbers, got an array of dtype {arr.dtype}.")
        payload[f"t{i:04d}"] = arr
    for name, value in (meta or {}).items():
        arr = np.asarray(value)
        if arr.dtype.kind not in _SAFE_KINDS:
            raise TypeError(f"metadata {name!r} must be numeric or string, not {arr.dtype}.")
        payload[f"meta__{name}"] = arr
    with atomic_write(path) as fh:
        np.savez(fh, **payload)
    return path


@dataclass(frozen=True)
class TnkitFile:
    """The checked contents of a tnkit ``.npz`` file (see :func:`read_tnkit_file`).

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    kind : str
        What it holds, one of :data:`KINDS` for files tnkit wrote.
    schema : int
        Its schema version.
    version : str
        The tnkit version that wrote it (``""`` if absent).
    tensors : list of numpy.ndarray
        The site or node tensors, unvalidated.
    meta : dict of str to numpy.ndarray
        The extra arrays of the kind.
    """

    path: Path
    kind: str
    schema: int
    version: str
    tensors: list
    meta: dict


def load_arrays(
    path: Any, kind: str, *, max_bytes: float = DEFAULT_MAX_BYTES
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_arrays`, checking its kind and schema.

    ``path`` may omit the ``.npz`` suffix that :func:`save_arrays` adds. See
    :func:`read_tnkit_file` for the checks and ``max_bytes``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    SchemaError
        If the file is not a tnkit file of this ``kind`` and schema version, or is corrupt.
    ValueError
        If its arrays would take more than ``max_bytes``.
    """
    found = read_tnkit_file(path, max_bytes=max_bytes)
    if found.kind != kind:
        raise SchemaError(f"{str(found.path)!r} holds a {found.kind}, expected a {kind}.")
    return found.tensors, found.meta


def read_tnkit_file(path: Any, *, max_bytes: float = DEFAULT_MAX_BYTES) -> TnkitFile:
    """Read any tnkit ``.npz`` file, checked but not converted into an object.

    Parameters
    ----------
    path : str or path-like
        The file (the ``.npz`` suffix may be omitted).
    max_bytes : float
        Largest total size of the arrays (default 8 GiB,
        ``DEFAULT_MAX_BYTES``), read from the ``.npz``
        headers before any array is loaded.

    Returns
    -------
    TnkitFile

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    SchemaError
        If the file is not a tnkit file (foreign, corrupt, holding Python objects,
        expanding more than :data:`MAX_EXPANSION` times, or of an unknown schema).
    ValueError
        If its arrays would take more than ``max_bytes``.
    """
    path = _as_path(path)
    if not path.exists() and path.suffix != ".npz" and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise SchemaError(f"{str(path)!r} is a directory, not a tnkit .npz file.")
    if not path.is_file():  # a device (a link to /dev/zero), a pipe, a socket: never opened
        raise SchemaError(f"{str(path)!r} is not a regular file, so not a tnkit .npz file.")
    name = str(path)
    try:
        with open(path, "rb") as fh:
            if not zipfile.is_zipfile(fh):
                fh.seek(0)
                if fh.read(4) == b"PK\x03\x04":
                    raise SchemaError(f"{name!r} is corrupt: the zip archive is damaged or truncated.")
                raise SchemaError(f"{name!r} is not a tnkit file: not an .npz (zip) archive.")
            fh.seek(0)
            with zipfile.ZipFile(fh) as archive:
                _check_members(archive, name, max_bytes)
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as data:
                return _read_payload(data, path)
    except SchemaError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        if isinstance(exc, ValueError) and "max_bytes" in str(exc):
            raise
        raise SchemaError(f"{name!r} is corrupt: {_plain_reason(exc)}.") from None


def _plain_reason(exc: BaseException) -> str:
    """A short cause for a corrupt file, without numpy's advice about pickles."""
    if isinstance(exc, zipfile.BadZipFile):
        return "the zip archive is damaged or truncated"
    if isinstance(exc, EOFError):
        return "it ends early"
    return "an array could not be read (damaged or truncated data)"


def _check_members(archive: zipfile.ZipFile, name: str, max_bytes: float) -> None:
    """Check every member's header and size before anything is decompressed in full."""
    total = 0
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise SchemaError(f"{name!r} is not a tnkit file: it holds {info.filename!r}, not an .npy array.")
        bound = MAX_EXPANSION * max(info.compress_size, 1024)
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > bound:
            raise SchemaError(
                f"{name!r} is not a tnkit file: {info.filename!r} would expand from "
                f"{info.compress_size:,} to {info.file_size:,} bytes (more than {MAX_EXPANSION}x)."
            )
        with archive.open(info) as member:
            shape, dtype = _npy_header(member, name, info.filename)
            stored = info.file_size - member.tell()  # bytes after the header
        n_bytes = math.prod(shape) * dtype.itemsize
        if n_bytes > stored:
            raise SchemaError(f"{name!r} is corrupt: {info.filename!r} is shorter than its header says.")
        total += n_bytes
    check_memory(total, max_bytes, what=f"the arrays of {name!r}", cause="as their headers say")


def _npy_header(member: BinaryIO, name: str, member_name: str) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from an ``.npy`` header; refuses object and other unsafe dtypes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(member)
        readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in readers:
            raise SchemaError(f"{name!r} is not a tnkit file: {member_name!r} has .npy format {version}.")
        shape, _, dtype = readers[version](member)
    except SchemaError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise SchemaError(f"{name!r} is corrupt: {member_name!r} has no valid .npy header.") from exc
    if dtype.hasobject or dtype.kind not in _SAFE_KINDS:
        raise SchemaError(
            f"{name!r} is not a tnkit file: {member_name!r} holds {dtype} data "
            "(pickled Python objects are never loaded: that could run code from the file)."
        )
    return tuple(shape), dtype


def _scalar(data: Any, key: str, kinds: str, name: str) -> Any:
    value = data[key]
    if value.ndim != 0 or value.dtype.kind not in kinds:
        raise SchemaError(
            f"{name!r} is not a valid tnkit file: {key!r} must be a scalar, got {value.dtype} {value.shape}."
        )
    return value[()]


def _read_payload(data: Any, path: Path) -> TnkitFile:
    name = str(path)
    files = set(data.files)
    required = {"__tnkit_kind__", "__tnkit_schema__", "n_sites"}
    if not required <= files:
        raise SchemaError(f"{name!r} is not a tnkit file (missing {sorted(required - files)}).")
    kind = str(_scalar(data, "__tnkit_kind__", "U", name))
    schema = _scalar(data, "__tnkit_schema__", "iu", name)
    if schema > SCHEMA_VERSION:
        raise SchemaError(
            f"{name!r} has schema version {schema}; this tnkit reads up to {SCHEMA_VERSION}. Upgrade tnkit."
        )
    if schema < 1:
        raise SchemaError(
            f"{name!r} has schema version {schema}; tnkit files have versions 1 to {SCHEMA_VERSION}."
        )
    n = int(_scalar(data, "n_sites", "iu", name))
    missing = [f"t{i:04d}" for i in range(n) if f"t{i:04d}" not in files]
    if missing:
        raise SchemaError(f"{name!r} is missing site tensors {missing[:3]}.")
    version = str(data["__tnkit_version__"]) if "__tnkit_version__" in files else ""
    tensors = [data[f"t{i:04d}"] for i in range(n)]
    meta = {k[len("meta__") :]: data[k] for k in files if k.startswith("meta__")}
    return TnkitFile(path, kind, int(schema), version, tensors, meta)


# ---------------------------------------------------------------------- formats of the engine's classes
#
# Each class owns its format (its ``save`` method and ``load`` classmethod, built on
# :func:`save_arrays` / :func:`load_arrays`) and registers its loader here when its
# module is imported, so this bottom-floor module imports none of them.

_LOADERS: dict[str, Callable[..., Any]] = {}


def register_loader(kind: str, loader: Callable[..., Any]) -> None:
    """Register ``loader(path, *, max_bytes)`` as the reader of files of ``kind``.

    Called by the classes that own a format (``MatrixProductState``,
    ``MatrixProductOperator``) when their module is imported; registering a kind
    again replaces its loader (a module reloaded).
    """
    if not isinstance(kind, str) or not callable(loader):
        raise TypeError(f"`kind` must be a string and `loader` callable, got {kind!r} and {loader!r}.")
    _LOADERS[kind] = loader


def _loader(kind: str) -> Callable[..., Any]:
    try:
        return _LOADERS[kind]
    except KeyError:
        raise SchemaError(f"no reader of {kind!r} files is registered; known: {sorted(_LOADERS)}.") from None


def save_mps(mps: Any, path: Any) -> Path:
    """Write a :class:`~tnkit.MatrixProductState`, with its canonical bookkeeping (``mps.save(path)``)."""
    return mps.save(path)


def load_mps(path: Any, *, max_bytes: float = DEFAULT_MAX_BYTES) -> Any:
    """Read a :class:`~tnkit.MatrixProductState` (``MatrixProductState.load``).

    The canonical bookkeeping stored in the file is re-checked, never trusted: each
    site it claims to be an isometry is verified (to 1e-10), else it is dropped.
    """
    return _loader("MatrixProductState")(path, max_bytes=max_bytes)


def save_mpo(mpo: Any, path: Any) -> Path:
    """Write a :class:`~tnkit.MatrixProductOperator` (``mpo.save(path)``)."""
    return mpo.save(path)


def load_mpo(path: Any, *, max_bytes: float = DEFAULT_MAX_BYTES) -> Any:
    """Read a :class:`~tnkit.MatrixProductOperator` (``MatrixProductOperator.load``)."""
    return _loader("MatrixProductOperator")(path, max_bytes=max_bytes)


def read_safetensors_header(path: Any, *, max_header_bytes: int = 100 << 20) -> tuple[dict[str, Any], int, int]:
    """The header of a safetensors file (8-byte little-endian length, then a JSON table), not its data.

    Parameters
    ----------
    path : str or Path
    max_header_bytes : int
        Largest header accepted (a guard against a corrupt length).

    Returns
    -------
    table : dict
        Tensor name -> ``{"dtype", "shape", "data_offsets"}`` as written (``__metadata__``
        left out); the entries are not checked here.
    data_start : int
        Byte offset of the tensor data (8 plus the header length).
    file_size : int

    Raises
    ------
    SchemaError
        When the file is shorter than its header says, the header is longer than
        ``max_header_bytes``, or it is not a JSON object.
    """
    path = _as_path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise SchemaError(f"{str(path)!r} is not a safetensors file (corrupt: {size} bytes, too short for a "
                              "header).")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, max_header_bytes):
            raise SchemaError(f"{str(path)!r} is not a safetensors file (corrupt: header of {n:,} bytes in a file "
                              f"of {size:,}).")
        try:
            table = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{str(path)!r} is not a safetensors file (corrupt: unreadable header, "
                              f"{_plain_reason(exc)}).") from None
    if not isinstance(table, dict):
        raise SchemaError(f"{str(path)!r} is not a safetensors file (corrupt: the header is not a table).")
    table.pop("__metadata__", None)
    return table, 8 + n, size
