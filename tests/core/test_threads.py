"""tnkit.core.threads: the BLAS thread count chosen per operation, and its restoration."""

from __future__ import annotations

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from tnkit.core.threads import (  # noqa: E402
    AUTO_THREAD_BOND,
    GEMM_THREAD_BOND,
    available_threads,
    blas_threads,
    set_num_threads,
    with_blas_threads,
)


def _blas_threads() -> set[int]:
    return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}


@pytest.fixture
def two_caller_threads():
    if not _blas_threads():
        pytest.skip("no BLAS library visible to threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield
    set_num_threads(None)


def test_one_thread_below_the_threshold_callers_above(two_caller_threads):
    with blas_threads(64):
        assert _blas_threads() == {1}
    assert _blas_threads() == {2}  # restored
    with blas_threads(AUTO_THREAD_BOND):
        assert _blas_threads() == {2}
    with blas_threads(GEMM_THREAD_BOND, GEMM_THREAD_BOND):  # matrix products only: threads pay earlier
        assert _blas_threads() == {2}
    with blas_threads(GEMM_THREAD_BOND - 1, GEMM_THREAD_BOND):
        assert _blas_threads() == {1}


def test_fixed_setting_and_decorator_restore_after_errors(two_caller_threads):
    set_num_threads(1)
    with blas_threads(4096):
        assert _blas_threads() == {1}

    @with_blas_threads(lambda bond: bond, GEMM_THREAD_BOND)
    def fails(bond):
        raise RuntimeError(str(_blas_threads()))

    set_num_threads(None)
    with pytest.raises(RuntimeError, match="2"):
        fails(256)
    with pytest.raises(RuntimeError, match="1"):
        fails(8)
    assert _blas_threads() == {2}


def test_available_threads_follows_setting_then_caller(two_caller_threads):
    assert available_threads() == 2
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert available_threads() == 1
    set_num_threads(3)
    assert available_threads() == 3
    set_num_threads(None)
    assert available_threads() == 2
