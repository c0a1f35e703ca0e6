"""Array libraries: the one dispatch between numpy, torch and cupy arrays.

A network's site tensors decide where its work runs, as in quimb: numpy arrays
on the CPU through numpy's LAPACK and BLAS, torch tensors on their device (CPU,
CUDA or ``meta``), cupy arrays on their GPU. The engine never converts them
behind the caller's back; only :func:`to_numpy` (an explicit copy to the host)
and the small host decisions listed below cross over.

Dispatch is by the array's top-level module (``type(x).__module__``, cached per
type, as opt_einsum does): :func:`namespace` returns the library module itself
(``numpy``, ``torch`` or ``cupy``), whose numpy-named functions the engine calls
(``xp.linalg.qr``, ``xp.linalg.svd(..., full_matrices=False)``,
``xp.linalg.eigh``, ``xp.linalg.cholesky``, ``xp.linalg.solve``, ``xp.sqrt``,
``xp.clip``). So a numpy array pays one dictionary look-up per call and runs
exactly the numpy code it ran before. The few places where the libraries
differ (dtype promotion, reversing an axis, creating arrays on the right device,
``astype`` against ``to``, ``transpose`` against ``permute``) are the helper
functions of this module.

Host decisions: the rank a truncation keeps and the scale factors of overlap
sweeps are Python numbers, so the singular values of one bond (a vector) and one
peak magnitude per site are read back; tensors stay where they are. Torch is
imported only when a torch tensor is seen or asked for: the core install runs
without it.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "LIBRARIES",
    "library_of",
    "is_numpy",
    "namespace",
    "import_library",
    "to_numpy",
    "convert",
    "like",
    "ones",
    "zeros",
    "eye",
    "result_type",
    "dtype_of",
    "numpy_dtype",
    "is_complex",
    "eps",
    "astype",
    "permute",
    "flip",
    "numel",
    "norm2",
    "device_of",
    "is_meta",
    "all_finite",
    "as_host_scalar",
    "copy",
    "concatenate",
    "arange",
    "tensordot",
    "ascontiguous",
    "vdot",
    "norm",
]

#: The array libraries the engine runs on, with the extra that installs each.
LIBRARIES = {"numpy": None, "torch": "llm", "cupy": None}


@functools.lru_cache(maxsize=64)
def _library_of_type(cls: type) -> str:
    return cls.__module__.split(".")[0]


def library_of(x: Any) -> str:
    """``"numpy"``, ``"torch"``, ``"cupy"``: the top-level module of ``x``'s type (numbers: ``"numpy"``)."""
    name = _library_of_type(type(x))
    return "numpy" if name == "builtins" else name


def is_numpy(x: Any) -> bool:
    """Whether ``x`` is a numpy array (the engine's default)."""
    return isinstance(x, np.ndarray)


def import_library(name: str) -> Any:
    """The module of array library ``name``; a one-line ``ImportError`` naming the extra if it is missing."""
    if name not in LIBRARIES:
        raise ValueError(f"`library` must be one of {sorted(LIBRARIES)}, got {name!r}.")
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return importlib.import_module(name)
    except ImportError:
        extra = LIBRARIES[name]
        how = f"pip install 'tnkit[{extra}]'" if extra else f"pip install {name}"
        message = f"arrays of library {name!r} need {name}, which is not installed ({how})."
        raise ImportError(message) from None


def namespace(x: Any) -> Any:
    """The library module of ``x`` (``numpy`` for numpy arrays and numbers, else ``torch`` or ``cupy``)."""
    if isinstance(x, np.ndarray):
        return np
    return sys.modules[library_of(x)]


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array on the host: an explicit copy for device arrays, ``x`` itself for numpy."""
    if isinstance(x, np.ndarray):
        return x
    name = library_of(x)
    if name == "torch":
        return x.detach().cpu().resolve_conj().numpy()
    if name == "cupy":
        return x.get()
    return np.asarray(x)


def device_of(x: Any) -> str:
    """Where ``x`` lives: ``"cpu"`` (numpy), a torch device (``"cuda:0"``, ``"meta"``), or ``"cuda:N"``."""
    if isinstance(x, np.ndarray):
        return "cpu"
    name = library_of(x)
    if name == "torch":
        return str(x.device)
    if name == "cupy":
        return f"cuda:{x.device.id}"
    return "cpu"


def is_meta(x: Any) -> bool:
    """Whether ``x`` is a torch tensor on the ``meta`` device (shapes and dtypes only, no data)."""
    return not isinstance(x, np.ndarray) and getattr(getattr(x, "device", None), "type", None) == "meta"


# --------------------------------------------------------------------------- dtypes

_NAMES = ("float32", "float64", "complex64", "complex128")


def numpy_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype of ``dtype`` given as a numpy dtype, a name, or a torch dtype (``torch.float32``)."""
    if isinstance(dtype, np.dtype):
        return dtype
    name = str(dtype)
    if name.startswith("torch."):
        return np.dtype(name[len("torch."):])
    return np.dtype(dtype)


def dtype_of(library: str, dtype: Any) -> Any:
    """``dtype`` (numpy dtype, name or torch dtype) as library ``library`` spells it."""
    dt = numpy_dtype(dtype)
    if library == "torch":
        return getattr(import_library("torch"), dt.name)
    return dt


def result_type(*arrays: Any) -> Any:
    """The common dtype of ``arrays`` (all of one library), in that library's spelling."""
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.result_type(*arrays)
    first = next(a for a in arrays if not isinstance(a, np.ndarray))
    if library_of(first) == "torch":
        torch = sys.modules["torch"]
        out = arrays[0].dtype if not isinstance(arrays[0], np.ndarray) else dtype_of("torch", arrays[0].dtype)
        for a in arrays[1:]:
            other = a.dtype if not isinstance(a, np.ndarray) else dtype_of("torch", a.dtype)
            out = torch.promote_types(out, other)
        return out
    return namespace(first).result_type(*arrays)


def is_complex(x: Any) -> bool:
    """Whether the array ``x`` (or a dtype) is complex."""
    dtype = getattr(x, "dtype", x)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "c"
    return getattr(dtype, "is_complex", False) or numpy_dtype(dtype).kind == "c"


def eps(dtype: Any) -> float:
    """Machine epsilon of a floating or complex dtype of any library."""
    return float(np.finfo(numpy_dtype(dtype)).eps)


# --------------------------------------------------------------------------- creation and conversion


def _torch_device(x: Any) -> Any:
    return getattr(x, "device", None)


def like(data: Any, reference: Any, *, dtype: Any = None) -> Any:
    """``data`` (numpy array, list or number) as an array of ``reference``'s library and device.

    Numpy references get ``numpy.asarray``; ``dtype`` defaults to ``data``'s own.
    """
    if isinstance(reference, np.ndarray):
        return np.asarray(data, dtype=dtype)
    name = library_of(reference)
    xp = sys.modules[name]
    if name == "torch":
        arr = np.asarray(data) if not hasattr(data, "device") else data
        target = dtype_of("torch", dtype if dtype is not None else arr.dtype)
        if isinstance(arr, np.ndarray):
            return _torch_from_numpy(arr).to(device=reference.device, dtype=target)
        return arr.to(device=reference.device, dtype=target)
    with reference.device:  # cupy
        return xp.asarray(data, dtype=dtype)


def _torch_from_numpy(x: np.ndarray) -> Any:
    """A CPU tensor of a numpy array: shares a writeable C-contiguous array's memory, else copies it."""
    torch = sys.modules["torch"]
    native = x.dtype.byteorder in "=|"
    if not (x.flags.writeable and x.flags.c_contiguous and native):
        x = np.array(x, dtype=x.dtype if native else x.dtype.newbyteorder("="), order="C")
    return torch.from_numpy(x)


def ones(shape: Sequence[int], *, like: Any, dtype: Any = None) -> Any:
    """Ones of ``shape`` in ``like``'s library and device (``like``'s dtype unless given)."""
    return _filled("ones", shape, like, dtype)


def zeros(shape: Sequence[int], *, like: Any, dtype: Any = None) -> Any:
    """Zeros of ``shape`` in ``like``'s library and device (``like``'s dtype unless given)."""
    return _filled("zeros", shape, like, dtype)


def _filled(kind: str, shape: Sequence[int], reference: Any, dtype: Any) -> Any:
    if isinstance(reference, np.ndarray):
        return getattr(np, kind)(shape, dtype=reference.dtype if dtype is None else dtype)
    name = library_of(reference)
    xp = sys.modules[name]
    if name == "torch":
        dt = reference.dtype if dtype is None else dtype_of("torch", dtype)
        return getattr(xp, kind)(tuple(shape), dtype=dt, device=reference.device)
    with reference.device:
        return getattr(xp, kind)(shape, dtype=reference.dtype if dtype is None else dtype)


def eye(n: int, *, like: Any, dtype: Any = None) -> Any:
    """The ``n x n`` identity in ``like``'s library and device (``like``'s dtype unless given)."""
    if isinstance(like, np.ndarray):
        return np.eye(n, dtype=like.dtype if dtype is None else dtype)
    name = library_of(like)
    xp = sys.modules[name]
    if name == "torch":
        dt = like.dtype if dtype is None else dtype_of("torch", dtype)
        return xp.eye(n, dtype=dt, device=like.device)
    with like.device:
        return xp.eye(n, dtype=like.dtype if dtype is None else dtype)


def convert(x: Any, library: str, *, device: Any = None, dtype: Any = None) -> Any:
    """``x`` as an array of ``library`` (``"numpy"``, ``"torch"``, ``"cupy"``) on ``device`` in ``dtype``.

    ``device`` is a torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"meta"``)
    or a cupy device number; numpy takes none. ``dtype`` is a numpy dtype, its
    name or a torch dtype; by default ``x``'s own. An array already there is
    returned as it is; a move to ``meta`` keeps shapes and dtypes only.
    """
    if library == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"`device`: numpy arrays live on the CPU, got device={device!r}.")
        out = to_numpy(x)
        return out if dtype is None else out.astype(numpy_dtype(dtype), copy=False)
    xp = import_library(library)
    if library == "torch":
        target = None if dtype is None else dtype_of("torch", dtype)
        if isinstance(x, np.ndarray):
            t = _torch_from_numpy(x)
        elif library_of(x) == "torch":
            t = x
        else:
            t = xp.as_tensor(to_numpy(x))
        return t.to(device=device, dtype=target)
    # cupy
    host_or_device = x if library_of(x) == "cupy" else to_numpy(x)
    if device is None:
        return xp.asarray(host_or_device, dtype=None if dtype is None else numpy_dtype(dtype))
    with xp.cuda.Device(device):
        return xp.asarray(host_or_device, dtype=None if dtype is None else numpy_dtype(dtype))


# --------------------------------------------------------------------------- operations that differ


def astype(x: Any, dtype: Any) -> Any:
    """``x`` in ``dtype`` (any spelling); ``x`` itself if it has it already."""
    if isinstance(x, np.ndarray):
        return x.astype(numpy_dtype(dtype), copy=False)
    if library_of(x) == "torch":
        return x.to(dtype_of("torch", dtype))
    return x.astype(numpy_dtype(dtype), copy=False)


def permute(x: Any, perm: Sequence[int]) -> Any:
    """``x`` with axes permuted: numpy's ``transpose(axes)``, torch's ``permute``."""
    if isinstance(x, np.ndarray) or not hasattr(x, "permute"):
        return x.transpose(tuple(perm))
    return x.permute(*perm)


def flip(x: Any, axis: int = 0) -> Any:
    """``x`` reversed along ``axis`` (numpy: a view ``x[::-1]``; torch has no negative steps)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "flip"):
        return np.flip(x, axis) if isinstance(x, np.ndarray) else namespace(x).flip(x, axis)
    return x.flip(axis)


def numel(x: Any) -> int:
    """Number of entries (``x.size`` of numpy, ``x.numel()`` of torch)."""
    return math.prod(x.shape)


def norm2(a: Any) -> float:
    """``sum |a|**2`` as a Python float (1 on the ``meta`` device, whose tensors count as unit scale)."""
    if not isinstance(a, np.ndarray) and is_meta(a):
        return 1.0
    return float(vdot(a, a).real)


def all_finite(x: Any) -> bool:
    """Whether every entry of ``x`` is finite (``True`` on the ``meta`` device, which has no values)."""
    if isinstance(x, np.ndarray):
        return bool(np.isfinite(x).all())
    if is_meta(x):
        return True
    return bool(namespace(x).isfinite(x).all())


def as_host_scalar(x: Any) -> complex | float:
    """A 0-d or one-entry array as a Python ``float`` (real dtypes) or ``complex``."""
    if isinstance(x, (int, float, complex)):
        return x
    if not isinstance(x, np.ndarray) and hasattr(x, "reshape"):
        x = x.reshape(-1)[0]
        return complex(x.item()) if is_complex(x) else float(x.item())
    value = np.asarray(x).reshape(-1)[0]
    return complex(value) if np.iscomplexobj(value) else float(value)


def copy(x: Any) -> Any:
    """A copy of ``x`` that owns its data (numpy/cupy ``copy``, torch ``clone``)."""
    if not isinstance(x, np.ndarray) and library_of(x) == "torch":
        return x.clone()
    return x.copy()


def concatenate(arrays: Sequence[Any], axis: int = 0) -> Any:
    """Join arrays of one library along ``axis``."""
    first = arrays[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(arrays, axis=axis)
    if library_of(first) == "torch":
        return sys.modules["torch"].cat(list(arrays), dim=axis)
    return namespace(first).concatenate(arrays, axis=axis)


def arange(n: int, *, like: Any) -> Any:
    """``0 .. n-1`` as an integer array of ``like``'s library and device."""
    if isinstance(like, np.ndarray):
        return np.arange(n)
    if library_of(like) == "torch":
        return sys.modules["torch"].arange(n, device=like.device)
    with like.device:
        return namespace(like).arange(n)


def tensordot(a: Any, b: Any, axes: Any) -> Any:
    """numpy's ``tensordot(a, b, axes)`` for arrays of one library (torch takes the axes as two lists)."""
    if isinstance(a, np.ndarray):
        return np.tensordot(a, b, axes)
    if library_of(a) == "torch":
        if not isinstance(axes, int):
            axes = tuple([ax] if isinstance(ax, int) else list(ax) for ax in axes)
        return sys.modules["torch"].tensordot(a, b, axes)
    return namespace(a).tensordot(a, b, axes)


def ascontiguous(x: Any) -> Any:
    """``x`` in C order, ``x`` itself when it is (numpy ``ascontiguousarray``, torch ``contiguous``)."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x)
    if library_of(x) == "torch":
        return x.contiguous()
    return namespace(x).ascontiguousarray(x)


def vdot(a: Any, b: Any) -> Any:
    """``sum(conj(a) * b)`` over all entries, as a 0-d array of the arrays' library."""
    if isinstance(a, np.ndarray):
        return np.vdot(a, b)
    if library_of(a) == "torch":
        return sys.modules["torch"].vdot(a.reshape(-1), b.reshape(-1))
    return namespace(a).vdot(a, b)


def norm(x: Any) -> float:
    """The 2-norm of all entries of ``x`` as a Python float (numpy: ``numpy.linalg.norm``)."""
    if isinstance(x, np.ndarray):
        return float(np.linalg.norm(x))
    return math.sqrt(norm2(x))
