"""Scratch buffers: reused per slot and thread, grown on demand, large requests left uncached."""

import threading

import numpy as np
import pytest

from tnkit.core import workspace
from tnkit.core.workspace import MAX_SCRATCH_BYTES, cached_bytes, release, scratch


@pytest.fixture(autouse=True)
def _fresh_buffers():
    release()
    yield
    release()


def test_same_slot_reuses_its_memory():
    a = scratch("test.a", (8, 16), np.float64)
    b = scratch("test.a", (4, 4), np.float64)  # smaller: same buffer
    assert a.shape == (8, 16) and b.shape == (4, 4) and a.flags.c_contiguous and b.flags.c_contiguous
    assert np.shares_memory(a, b)
    assert cached_bytes() == 8 * 16 * 8


def test_slots_are_separate_and_grow():
    a = scratch("test.a", (10,), np.complex128)
    b = scratch("test.b", (10,), np.complex128)
    assert not np.shares_memory(a, b)
    c = scratch("test.a", (1000,), np.float64)  # larger than the slot: a new buffer
    assert not np.shares_memory(a, c) and c.nbytes == 8000
    assert scratch("test.a", (3, 2), np.float32).dtype == np.float32


def test_large_requests_are_not_cached(monkeypatch):
    monkeypatch.setattr(workspace, "MAX_SCRATCH_BYTES", 1024)
    big = scratch("test.big", (200,), np.float64)
    assert big.shape == (200,) and cached_bytes() == 0
    assert MAX_SCRATCH_BYTES == 64 * 2**20


def test_threads_get_their_own_buffers():
    mine = scratch("test.t", (16,), np.float64)
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(scratch("test.t", (16,), np.float64)))
    worker.start()
    worker.join()
    assert not np.shares_memory(mine, theirs[0])


def test_release_frees_the_buffers():
    scratch("test.r", (100,), np.float64)
    assert cached_bytes() == 800
    release()
    assert cached_bytes() == 0


def test_empty_shapes():
    assert scratch("test.e", (0, 5), np.float64).shape == (0, 5)
