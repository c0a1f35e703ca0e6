"""Control of the BLAS threads tnkit's linear algebra runs on.

Tensor-network sweeps do many small matrix products and factorisations. At those
sizes OpenBLAS gains little from a second thread, and when the other core is busy
its spinning threads can make a product a hundred times slower. tnkit therefore
runs each public operation with a thread count it chooses:

* ``set_num_threads(n)``: exactly ``n`` BLAS threads inside tnkit;
* by default (``None``, or the environment variable ``TNKIT_NUM_THREADS``
  unset): one thread while the largest bond involved is below
  :data:`AUTO_THREAD_BOND` (1024), and the caller's current BLAS thread count
  (e.g. set with ``threadpoolctl.threadpool_limits``) above it. Measured on a
  2-core machine: compressing bond 256 to 64 took 0.94 s on one thread and 1.77 s
  on two, so the threshold sits well above the bonds of everyday sweeps.
  Operations made only of matrix products (overlaps and MPO expectation values: no
  factorisation) switch at
  :data:`GEMM_THREAD_BOND` (128) instead: there a second thread pays (overlap of
  two bond-128 chains: 65 ms on one thread, 40 ms on two).

torch's own CPU thread pool (once torch is imported) follows the same rule.
So tnkit never gets slower when more threads are available. The previous thread
count is restored when the operation returns. Switching costs a few microseconds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["set_num_threads", "get_num_threads", "blas_threads", "with_blas_threads", "available_threads",
           "one_blas_thread", "map_on_threads", "AUTO_THREAD_BOND", "GEMM_THREAD_BOND", "GEMM_THREAD_WORK"]

#: Bond dimension from which tnkit lets BLAS use the caller's threads by default.
AUTO_THREAD_BOND = 1024

#: The same for operations made only of matrix products (no factorisations).
GEMM_THREAD_BOND = 128

#: Multiply-adds of one matrix product from which operations that measure their work
#: (tree networks, batched sampling) use the caller's threads: the size of a bond-128
#: chain step, where :data:`GEMM_THREAD_BOND` switches.
GEMM_THREAD_WORK = 2**22

_setting: dict[str, int | None] = {"n": None}
_libs: list[Any] | None = None
_libs_key = -1  # len(sys.modules) when _libs was found

F = TypeVar("F", bound=Callable[..., Any])


def _from_environment() -> int | None:
    value = os.environ.get("TNKIT_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"TNKIT_NUM_THREADS must be a positive integer, got {value!r}.") from None
    if n < 1:
        raise ValueError(f"TNKIT_NUM_THREADS must be a positive integer, got {value!r}.")
    return n


_setting["n"] = _from_environment()


def set_num_threads(n: int | None) -> None:
    """Use ``n`` BLAS threads inside tnkit operations; ``None`` restores the automatic choice."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise TypeError(f"`n` must be a positive integer or None, got {n!r} of type {type(n).__name__}.")
    if n is not None and n < 1:
        raise ValueError(f"`n` must be a positive integer or None, got {n!r}.")
    _setting["n"] = n


def get_num_threads() -> int | None:
    """The fixed thread count set by :func:`set_num_threads` (``None``: automatic)."""
    return _setting["n"]


def _blas_libraries() -> list[Any]:
    """The loaded BLAS libraries, found again whenever a module has been imported since the last look.

    A library loaded later (scipy's own OpenBLAS comes with its first ``scipy.linalg`` call)
    would otherwise keep its threads while numpy's are limited.
    """
    global _libs, _libs_key
    key = len(sys.modules)
    if _libs is None or key != _libs_key:
        try:
            from threadpoolctl import ThreadpoolController

            _libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # pragma: no cover - threadpoolctl missing or unable to inspect
            _libs = []
        _libs_key = len(sys.modules)
    return _libs


class _TorchThreads:
    """torch's intra-op thread pool behind the ``get_num_threads``/``set_num_threads`` of a threadpoolctl controller.

    torch runs CPU tensors' products on its own pool, which threadpoolctl does not
    see; on a busy 2-core machine its second thread made a ``(6, 20) @ (20, 12)``
    product take 3.5 ms instead of 4 us. Managed like BLAS once torch is imported.
    """

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def get_num_threads(self) -> int:
        return self.torch.get_num_threads()

    def set_num_threads(self, n: int) -> None:
        self.torch.set_num_threads(n)


def _thread_controllers() -> list[Any]:
    """The BLAS libraries, plus torch's pool when torch has been imported (never imports it)."""
    libs = _blas_libraries()
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        return libs
    return [*libs, _TorchThreads(torch)]


def available_threads() -> int:
    """Threads a tnkit operation may occupy: the :func:`set_num_threads` setting, or the caller's BLAS count.

    Operations that split independent work over Python threads (sampling splits its
    samples) use this many workers, each with one BLAS thread.
    """
    fixed = _setting["n"]
    if fixed is not None:
        return fixed
    libs = _blas_libraries()
    return max((lib.get_num_threads() for lib in libs), default=1)


@contextlib.contextmanager
def blas_threads(max_bond: int, threshold: int = AUTO_THREAD_BOND) -> Iterator[None]:
    """Run the body with the BLAS thread count tnkit chooses for bonds up to ``max_bond``.

    ``threshold``: the bond from which the caller's threads are used (by default;
    :func:`set_num_threads` overrides it).
    """
    libs = _thread_controllers()
    if not libs:
        yield
        return
    current = [lib.get_num_threads() for lib in libs]
    fixed = _setting["n"]
    if fixed is not None:
        target = fixed
    else:
        target = 1 if max_bond < threshold else max(current)
    if all(c == target for c in current):
        yield
        return
    for lib in libs:
        lib.set_num_threads(target)
    try:
        yield
    finally:
        for lib, c in zip(libs, current):
            lib.set_num_threads(c)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the body with one BLAS thread in every library, whatever :func:`set_num_threads` says.

    For bodies that run their own Python threads (:func:`map_on_threads`): each
    of them then gets one core, without BLAS threads spinning against each other.
    """
    libs = _thread_controllers()
    current = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, c in zip(libs, current):
            lib.set_num_threads(c)


def map_on_threads(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> list[Any]:
    """``[fn(item) for item in items]``, on ``workers`` Python threads with one BLAS thread each when ``workers > 1``.

    numpy releases the GIL inside its matrix products, so independent pieces of
    work dominated by them (sample blocks, subtrees) run side by side.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1 or threading.current_thread().name.startswith(_POOL_PREFIX):
        return [fn(item) for item in items]  # nested calls run in their worker (no pool waits on itself)
    with one_blas_thread():
        return list(_pool(min(workers, len(items))).map(fn, items))


_POOL_PREFIX = "tnkit-worker"


@functools.lru_cache(maxsize=8)
def _pool(workers: int) -> ThreadPoolExecutor:
    """A persistent pool of ``workers`` threads.

    Kept between calls, so thread start-up is paid once and per-thread state
    (the :mod:`tnkit.core.workspace` scratch buffers) survives from one call to the next.
    """
    return ThreadPoolExecutor(workers, thread_name_prefix=_POOL_PREFIX)


def with_blas_threads(bond_of: Callable[..., int], threshold: int = AUTO_THREAD_BOND) -> Callable[[F], F]:
    """Decorate an operation so it runs under :func:`blas_threads`.

    ``bond_of`` receives the operation's arguments and returns the largest bond
    dimension it will handle; ``threshold`` is passed on (use
    :data:`GEMM_THREAD_BOND` for operations without factorisations).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with blas_threads(bond_of(*args, **kwargs), threshold):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
