"""Scratch arrays reused across calls, so hot loops do not touch fresh memory pages.

A sweep that makes a new multi-megabyte intermediate at every node pays, besides
the arithmetic, for the pages of that memory whenever the C allocator has handed
them back to the operating system (glibc maps blocks above its mmap threshold
fresh and trims the top of its heap): each first touch of a 4 KiB page is a page
fault. Whether that happens depends on the process's allocation history, not on
tnkit. Measured on the ``norm`` of a 64-leaf binary TTN at bond 64 (six
``64**3`` nodes, two 2 MiB intermediates each): 14 ms when the allocator kept its
pages, 28 ms (5,950 page faults per call) after an unrelated 13 MB allocation
changed its state.

:func:`scratch` hands out views of per-thread buffers that persist between calls,
one buffer per named slot, grown when a larger request comes. A caller owns a
slot's contents only until its next request for the same slot, so each hot loop
uses its own slot names and never keeps a scratch view beyond the loop. Requests
above :data:`MAX_SCRATCH_BYTES` get a fresh array (nothing that large is cached);
:func:`release` frees the calling thread's buffers.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["scratch", "release", "cached_bytes", "MAX_SCRATCH_BYTES"]

#: Largest request served from a cached buffer (64 MiB); larger ones are allocated fresh.
MAX_SCRATCH_BYTES = 64 * 2**20

_local = threading.local()


def _buffers() -> dict[str, np.ndarray]:
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    return buffers


def scratch(slot: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, backed by ``slot``'s buffer.

    Parameters
    ----------
    slot : str
        Name of the buffer, unique to the loop that uses it (e.g. ``"ttn.norm.0"``).
        The previous array handed out for this slot on this thread is overwritten
        by the caller's writes into the new one.
    shape : tuple of int
    dtype : numpy dtype

    Returns
    -------
    numpy.ndarray
        A view of the slot's buffer, or a fresh array for requests above
        :data:`MAX_SCRATCH_BYTES`.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > MAX_SCRATCH_BYTES:
        return np.empty(shape, dtype=dtype)
    buffers = _buffers()
    buf = buffers.get(slot)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[slot] = np.empty(max(nbytes, 1), dtype=np.uint8)
    # uint8 buffers from numpy are aligned for every numeric dtype (16-byte alignment or more).
    return buf[:nbytes].view(dtype).reshape(shape)


def release() -> None:
    """Free the calling thread's cached scratch buffers."""
    _buffers().clear()


def cached_bytes() -> int:
    """Bytes held in the calling thread's scratch buffers."""
    return sum(b.nbytes for b in _buffers().values())
