"""tnkit.core.threads: the BLAS thread count chosen per operation, and its restoration."""

from __future__ import annotations

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from conftest import blas_thread_counts  # noqa: E402

from tnkit.core.threads import (  # noqa: E402
    AUTO_THREAD_BOND,
    GEMM_THREAD_BOND,
    available_threads,
    blas_threads,
    set_num_threads,
    with_blas_threads,
)


def test_one_thread_below_the_threshold_callers_above(two_caller_threads):
    with blas_threads(64):
        assert blas_thread_counts() == {1}
    assert blas_thread_counts() == {2}  # restored
    with blas_threads(AUTO_THREAD_BOND):
        assert blas_thread_counts() == {2}
    with blas_threads(GEMM_THREAD_BOND, GEMM_THREAD_BOND):  # matrix products only: threads pay earlier
        assert blas_thread_counts() == {2}
    with blas_threads(GEMM_THREAD_BOND - 1, GEMM_THREAD_BOND):
        assert blas_thread_counts() == {1}


def test_fixed_setting_and_decorator_restore_after_errors(two_caller_threads):
    set_num_threads(1)
    with blas_threads(4096):
        assert blas_thread_counts() == {1}

    @with_blas_threads(lambda bond: bond, GEMM_THREAD_BOND)
    def fails(bond):
        raise RuntimeError(str(blas_thread_counts()))

    set_num_threads(None)
    with pytest.raises(RuntimeError, match="2"):
        fails(256)
    with pytest.raises(RuntimeError, match="1"):
        fails(8)
    assert blas_thread_counts() == {2}


def test_available_threads_follows_setting_then_caller(two_caller_threads):
    assert available_threads() == 2
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert available_threads() == 1
    set_num_threads(3)
    assert available_threads() == 3
    set_num_threads(None)
    assert available_threads() == 2


def test_map_on_threads_keeps_its_workers_and_runs_nested_calls_inline(two_caller_threads):
    """The pool persists between calls (thread-local scratch survives), and a call from a worker does not wait on the pool."""
    import threading

    from tnkit.core.threads import map_on_threads

    def name(_):
        return threading.current_thread().name

    def worker(_):
        return threading.current_thread()

    assert all(n.startswith("tnkit-worker") for n in map_on_threads(name, range(8), 2))
    seen = set()
    for _ in range(5):
        seen.update(map_on_threads(worker, range(8), 2))
    assert len(seen) <= 2  # the same two thread objects every time, not new threads per call

    def nested(i):
        inner = map_on_threads(name, range(3), 2)  # would deadlock a saturated pool if submitted to it
        return len(set(inner)) == 1 and inner[0] == threading.current_thread().name

    assert all(map_on_threads(nested, range(4), 2))
    assert map_on_threads(lambda x: x * x, [1, 2, 3], 1) == [1, 4, 9]  # one worker: inline
