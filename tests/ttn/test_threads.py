"""The TTN thread rule: the caller's BLAS threads from 2**22 multiply-adds in one matrix product."""

from __future__ import annotations

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from conftest import blas_thread_counts  # noqa: E402

from tnkit.core.threads import set_num_threads  # noqa: E402
from tnkit.ttn import TTN, Tree, network  # noqa: E402
from tnkit.ttn import threads as ttn_threads  # noqa: E402
from tnkit.ttn.threads import GEMM_THREAD_WORK, batch_product_work, node_product_work  # noqa: E402


@pytest.fixture
def seen(monkeypatch):
    """Thread counts seen inside the network routines the methods call."""
    record: list[set[int]] = []
    for name in ("log_norm", "product_inputs"):
        original = getattr(network, name)

        def spy(*args, _original=original, **kwargs):
            record.append(blas_thread_counts())
            return _original(*args, **kwargs)

        monkeypatch.setattr(network, name, spy)
    return record


def test_work_measures():
    psi = TTN.random(Tree.balanced(8), 2, 4, seed=0)  # node tensors (2, 2, 4), (4, 4, 4), (4, 4)
    tensors = psi.tensors
    assert node_product_work([None, *tensors]) == max(t.size * max(t.shape) for t in tensors) == 64 * 4
    assert batch_product_work(tensors, 1000) == 1000 * 64
    assert node_product_work([]) == 0


def test_large_node_products_use_the_callers_threads(two_caller_threads, seen):
    big = TTN(Tree.balanced(16), TTN.random(Tree.balanced(16), 4, 64, seed=1, normalize=False).tensors)
    small = TTN(Tree.balanced(16), TTN.random(Tree.balanced(16), 2, 8, seed=1, normalize=False).tensors)
    assert node_product_work(big.tensors) >= GEMM_THREAD_WORK > node_product_work(small.tensors)
    big.norm()
    small.norm()
    assert seen == [{2}, {1}]
    assert blas_thread_counts() == {2}  # restored
    set_num_threads(1)  # the user's setting overrides the rule
    big.norm()
    assert seen[-1] == {1}


def test_batched_contraction_threads_follow_the_batch(two_caller_threads, seen):
    psi = TTN.random(Tree.balanced(16), 2, 16, seed=2)  # largest node tensor: 16**3 = 4096 entries
    rng = np.random.default_rng(0)
    few, many = rng.standard_normal((8, 16, 2)), rng.standard_normal((2048, 16, 2))
    assert batch_product_work(psi.tensors, 8) < GEMM_THREAD_WORK <= batch_product_work(psi.tensors, 2048)
    out_few = psi.contract_product_inputs(few)
    out_many = psi.contract_product_inputs(list(many.transpose(1, 0, 2)))  # the list form counts its batch too
    assert seen == [{1}, {2}]
    np.testing.assert_allclose(out_many[:8], psi.contract_product_inputs(many[:8]), rtol=1e-12)
    assert out_few.shape == (8,)


def test_thread_groups_stay_serial_when_unbalanced_or_small(two_caller_threads, monkeypatch):
    """A branch holding most of the work, or too little work per thread: one group (run in turn)."""
    monkeypatch.setattr(ttn_threads, "PARALLEL_BRANCH_WORK", 100)
    assert ttn_threads.thread_groups({1: 900, 2: 100}) == [(1, 2)]  # 90% in one branch
    assert sorted(ttn_threads.thread_groups({1: 500, 2: 300, 3: 300})) == [(1,), (2, 3)]
    assert ttn_threads.thread_groups({1: 50, 2: 50}) == [(1, 2)]  # under PARALLEL_BRANCH_WORK each
    set_num_threads(1)
    assert ttn_threads.thread_groups({1: 500, 2: 500}) == [(1, 2)]  # one thread available


def test_canonical_form_sweeps_the_branches_on_threads(two_caller_threads, monkeypatch):
    """From no gauge information the root's branches are swept on two threads; the result is canonical and equal."""
    from tnkit.core import threads

    psi = TTN(Tree.balanced(16), TTN.random(Tree.balanced(16), 4, 64, seed=4, normalize=False).tensors)
    set_num_threads(1)
    serial = psi.canonicalize()
    set_num_threads(None)
    pools = []
    real_pool = threads._pool
    monkeypatch.setattr(threads, "_pool", lambda n: pools.append(n) or real_pool(n))
    monkeypatch.setattr(ttn_threads, "PARALLEL_BRANCH_WORK", 1)
    parallel = psi.canonicalize()
    assert pools == [2]
    assert parallel.is_canonical(parallel.tree.root) and parallel.center == parallel.tree.root
    for a, b in zip(serial.tensors, parallel.tensors):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert blas_thread_counts() == {2}
    pools.clear()
    again = parallel.canonicalize_(parallel.tree.root)  # nothing left to do: no threads, no QR
    assert pools == [] and again is parallel
