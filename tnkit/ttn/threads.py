"""How many BLAS threads a tree-network operation runs on: decided by its largest matrix product.

The engine's rule (:mod:`tnkit.core.threads`) looks at the largest *bond*: one
thread below bond 1024 (128 for operations made only of matrix products). It
suits chains, whose site tensors are ``D x d x D``. A tree node holds ``D**3``
numbers, and a batched contraction multiplies ``(batch, D) @ (D, D**2)``, so
the same bond gives matrix products a factor ``D`` (or ``batch``) larger, and
large enough for a second thread to pay long before bond 1024: at bond 64 one
node step is ``64**4 = 1.7e7`` multiply-adds, a product that OpenBLAS splits
well over two threads.

TTN operations therefore measure their work directly, as the multiply-adds of
their largest matrix product, and use the caller's BLAS threads from
:data:`GEMM_THREAD_WORK` multiply-adds (``2**22``, about 4 million: the size of a
bond-128 chain step, where the engine's overlaps already switch, see
:data:`tnkit.core.threads.GEMM_THREAD_BOND`), one thread below. Every TTN sweep
is dominated by such products: the factorisations left (Cholesky, Hermitian
eigensolvers) act on ``D x D`` Gram matrices and cost a fraction of them.
:func:`tnkit.core.threads.set_num_threads` (or ``TNKIT_NUM_THREADS``) overrides
the rule, as everywhere in tnkit.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ..core.threads import GEMM_THREAD_WORK, available_threads, with_blas_threads

__all__ = ["GEMM_THREAD_WORK", "PARALLEL_BRANCH_WORK", "node_product_work", "batch_product_work", "with_gemm_threads",
           "thread_groups"]

F = TypeVar("F", bound=Callable[..., Any])


def node_product_work(tensors: Sequence[np.ndarray | None]) -> int:
    """Multiply-adds of the largest node step of a sweep: ``T.size * max(T.shape)`` over the node tensors.

    A canonical move, an environment step or a Gram matrix multiplies a node
    tensor ``T`` by a square matrix on one axis (or by itself over all axes but
    one): ``T.size * D`` multiply-adds for that axis of dimension ``D``.
    """
    return max((math.prod(t.shape) * max(t.shape, default=1) for t in tensors if t is not None), default=0)


def batch_product_work(tensors: Sequence[np.ndarray | None], batch: int) -> int:
    """Multiply-adds of the largest step of a batched product-input contraction: ``batch * T.size``."""
    return batch * max((math.prod(t.shape) for t in tensors if t is not None), default=0)


def with_gemm_threads(work_of: Callable[..., int]) -> Callable[[F], F]:
    """Decorate a TTN operation to run on the caller's BLAS threads when ``work_of(*args)`` >= :data:`GEMM_THREAD_WORK`.

    ``work_of`` receives the operation's arguments and returns the multiply-adds
    of its largest matrix product (e.g. :func:`node_product_work` of its tensors).
    """
    return with_blas_threads(work_of, GEMM_THREAD_WORK)


#: Multiply-adds each Python thread must get before independent branches of a tree are swept on
#: separate threads (one BLAS thread each): a bond-64 binary node (``64**4``). Two BLAS threads
#: gain little on products of this size; two branches on two cores gain nearly twice.
PARALLEL_BRANCH_WORK = 2**24


def thread_groups(work: dict[int, int]) -> list[tuple[int, ...]]:
    """Share independent branches (``{branch: multiply-adds}``) out among the available threads.

    Branches go to the least loaded group, largest first. One group (run them in
    turn, on the caller's BLAS threads) unless more than one thread is available
    (:func:`tnkit.core.threads.available_threads`), every group gets
    :data:`PARALLEL_BRANCH_WORK` and no group holds more than 70% of the work, so a
    lopsided tree never waits on one thread while BLAS could have used two.
    """
    keys = list(work)
    threads = min(available_threads(), len(keys))
    if threads < 2:
        return [tuple(keys)]
    groups: list[list[int]] = [[] for _ in range(threads)]
    load = [0] * threads
    for key in sorted(keys, key=work.get, reverse=True):
        k = load.index(min(load))
        groups[k].append(key)
        load[k] += work[key]
    if min(load) < PARALLEL_BRANCH_WORK or max(load) > 0.7 * sum(load):
        return [tuple(keys)]
    return [tuple(g) for g in groups]
