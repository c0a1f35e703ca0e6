"""tnkit.core.sliced: sliced contractions against ``np.einsum``, in process and on executors."""

from __future__ import annotations

import math
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import pytest
from conftest import DTYPES, assert_close, random_array
from opt_einsum.testing import rand_equation

import tnkit
from tnkit.core.sliced import SlicedContraction, contract_slice, contract_sliced, plan_sliced

pytest.importorskip("cotengra", reason="sliced contraction plans come from cotengra: pip install cotengra")

# (n_terms, regularity, n_out, global_dim, seed): seeded random networks, one with a hyper index
_EQ_PARAMS = [(5, 3, 2, False, 0), (6, 3, 0, True, 1), (8, 3, 3, False, 2), (10, 3, 1, False, 3)]
EQUATIONS = [
    rand_equation(n, reg, n_out=n_out, d_min=2, d_max=4, seed=seed, global_dim=glob)
    for n, reg, n_out, glob, seed in _EQ_PARAMS
]
EQ_IDS = [eq for eq, _ in EQUATIONS]


def _operands(rng, shapes, dtype=np.float64):
    return [random_array(rng, s, dtype) for s in shapes]


def _largest_intermediate(equation: str, shapes, path) -> int:
    """Replay a linear ``path`` on the index sets and return the size of the largest intermediate."""
    lhs, output = equation.split("->")
    terms = lhs.split(",")
    sizes = {
        c: d for term, shape in zip(terms, shapes, strict=True) for c, d in zip(term, shape, strict=True)
    }
    largest = 0
    for step in path:
        operands = [terms[p] for p in step]
        for p in sorted(step, reverse=True):
            del terms[p]
        needed = set(output).union(*terms)
        result = {c for term in operands for c in term if c in needed}
        largest = max(largest, math.prod(sizes[c] for c in result))
        terms.append("".join(sorted(result)))
    return largest


def _bound(shapes, equation, fraction):
    """A bound ``fraction`` of the unsliced plan's largest intermediate (at least 1)."""
    return max(1, int(tnkit.contraction_info(equation, *shapes).largest_intermediate * fraction))


class RecordingExecutor:
    """An executor that runs each task when its result is asked for and records what it was sent."""

    num_workers = 1  # read like mpi4py's MPIPoolExecutor: one worker, so two tasks in flight

    def __init__(self):
        self.tasks = []
        self.in_flight = 0
        self.most_in_flight = 0

    def submit(self, fn, *args):
        self.tasks.append((fn, args))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        executor = self

        class _Lazy(Future):
            def result(self, timeout=None):
                if not self.done():
                    executor.in_flight -= 1
                    self.set_result(fn(*args))
                return super().result(timeout)

        return _Lazy()


# --------------------------------------------------------------------------- plans


@pytest.mark.parametrize("fraction", [1 / 4, 1 / 16])
@pytest.mark.parametrize("optimize", [None, "greedy"])
@pytest.mark.parametrize("eq_shapes", EQUATIONS, ids=EQ_IDS)
def test_every_intermediate_of_a_slice_is_within_the_bound(eq_shapes, optimize, fraction):
    eq, shapes = eq_shapes
    bound = _bound(shapes, eq, fraction)
    plan = plan_sliced(eq, *shapes, max_intermediate=bound, optimize=optimize)
    lhs = plan.slice_equation.split("->")[0].split(",")
    sizes = dict(zip("".join(eq.split("->")[0].split(",")), [d for s in shapes for d in s], strict=True))
    slice_shapes = [tuple(sizes[c] for c in term) for term in lhs]
    replayed = _largest_intermediate(plan.slice_equation, slice_shapes, plan.path)
    assert replayed == plan.largest_intermediate <= bound
    assert plan.unsliced_largest_intermediate > bound or plan.n_slices == 1
    assert plan.n_slices == math.prod(d for _, d in plan.sliced)
    assert all(c not in plan.slice_equation for c, _ in plan.sliced)


def test_plan_without_need_to_slice_is_the_unsliced_plan():
    plan = plan_sliced("ab,bc->ac", (4, 5), (5, 6), max_intermediate=24)
    info = tnkit.contraction_info("ab,bc->ac", (4, 5), (5, 6))
    assert plan.n_slices == 1 and plan.sliced == () and plan.path == info.path
    assert plan.overhead == 1.0
    assert "sliced nothing" in str(plan)


def test_plans_are_cached_and_reproducible():
    eq, shapes = EQUATIONS[3]
    first = plan_sliced(eq, *shapes, max_intermediate=4)
    assert plan_sliced(eq, *shapes, max_intermediate=4) is first
    assert first.n_slices > 1 and "slices" in str(first)


def test_plan_of_default_strategy_follows_contract_strategy():
    # plan_sliced(optimize=None) is cached; the context's strategy must be part of the key
    shapes = ((8, 64), (64, 64), (64, 8))
    left, right = ((0, 1), (0, 1)), ((1, 2), (0, 1))
    for path in (left, right, left):
        with tnkit.contract_strategy(list(path)):
            plan = plan_sliced("ab,bc,cd->ad", *shapes, max_intermediate=None)
        assert plan.path == path


def test_slice_values_run_through_every_combination_once():
    plan = SlicedContraction(
        equation="ab,bc->ac", slice_equation="a,c->ac", path=((0, 1),), sliced=(("b", 3), ("c", 2)),
        n_slices=6, largest_intermediate=1, flops=1, unsliced_path=((0, 1),),
        unsliced_largest_intermediate=1, unsliced_flops=1,
        max_intermediate=1,
    )  # fmt: skip
    seen = [tuple(plan.slice_values(i).values()) for i in range(plan.n_slices)]
    assert len(set(seen)) == 6
    assert plan.slice_values(1) == {"b": 0, "c": 1}  # the last index varies fastest
    assert plan.output_sliced == ("c",)


# --------------------------------------------------------------------------- results in process


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimize", [None, "greedy"])
@pytest.mark.parametrize("eq_shapes", EQUATIONS, ids=EQ_IDS)
def test_sliced_contraction_matches_einsum(rng, eq_shapes, optimize, dtype):
    eq, shapes = eq_shapes
    arrays = _operands(rng, shapes, dtype)
    bound = _bound(shapes, eq, 1 / 4)
    result = tnkit.contract(eq, *arrays, max_intermediate=bound, optimize=optimize)
    assert plan_sliced(eq, *shapes, max_intermediate=bound, optimize=optimize).n_slices > 1
    assert result.dtype == np.dtype(dtype)
    assert_close(result, np.einsum(eq, *arrays, optimize="greedy"), dtype)


@pytest.mark.parametrize("bound", [8, 4])
@pytest.mark.parametrize("output", ["eda", "aed", "dae"])
def test_sliced_output_indices_are_stacked_in_place(rng, output, bound):
    a, b, c = rng.standard_normal((6, 5)), rng.standard_normal((5, 7)), rng.standard_normal((7, 4, 3))
    eq = "ab,bc,cde->" + output
    assert len(plan_sliced(eq, a, b, c, max_intermediate=bound).output_sliced) >= 2  # output: 72 elements
    assert_close(tnkit.contract(eq, a, b, c, max_intermediate=bound), np.einsum(eq, a, b, c))


def test_explicit_path_is_kept_and_sliced(rng):
    arrays = [rng.standard_normal(s) for s in [(3, 8), (8, 8), (8, 8), (8, 3)]]
    path = [(0, 1), (0, 1), (0, 1)]
    plan = plan_sliced("ab,bc,cd,de->ae", *arrays, max_intermediate=16, optimize=path)
    assert plan.path == ((0, 1), (0, 1), (0, 1)) and plan.largest_intermediate <= 16
    result = tnkit.contract("ab,bc,cd,de->ae", *arrays, max_intermediate=16, optimize=path)
    assert_close(result, np.einsum("ab,bc,cd,de->ae", *arrays))


def test_torch_tensors_are_sliced_and_stacked_as_tensors(rng):
    torch = pytest.importorskip("torch")
    eq, shapes = EQUATIONS[2]
    arrays = _operands(rng, shapes)
    bound = _bound(shapes, eq, 1 / 16)
    result = tnkit.contract(eq, *[torch.from_numpy(a) for a in arrays], max_intermediate=bound)
    assert isinstance(result, torch.Tensor)
    assert_close(result.numpy(), np.einsum(eq, *arrays, optimize="greedy"))


def test_executor_without_bound_runs_the_contraction_as_one_task(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    executor = RecordingExecutor()
    result = tnkit.contract("ab,bc->ac", a, b, executor=executor)
    assert len(executor.tasks) == 1
    assert_close(result, a @ b)


# --------------------------------------------------------------------------- what tasks carry


def test_each_task_carries_only_its_slice_and_few_are_in_flight(rng):
    a, b, c = rng.standard_normal((4, 32)), rng.standard_normal((32, 32)), rng.standard_normal((32, 4))
    executor = RecordingExecutor()
    result = tnkit.contract("ab,bc,cd->ad", a, b, c, max_intermediate=64, executor=executor)
    plan = plan_sliced("ab,bc,cd->ad", a, b, c, max_intermediate=64)
    assert len(executor.tasks) == plan.n_slices > 1
    assert executor.most_in_flight == 2  # two tasks per worker, however many slices
    for i, (fn, args) in enumerate(executor.tasks):
        assert fn is contract_slice
        assert args[:2] == (plan.slice_equation, plan.path)
        expected = plan.slice_arrays([a, b, c], i)
        assert [x.shape for x in args[2:]] == [x.shape for x in expected]
        assert sum(x.size for x in args[2:]) < a.size + b.size + c.size
    assert_close(result, a @ b @ c)


def test_inputs_every_slice_uses_whole_are_scattered_once_where_the_executor_can(rng):
    class Shared:
        def __init__(self, value):
            self.value = value

    class Scattering(RecordingExecutor):  # dask's Client.scatter: data sent once, tasks refer to it
        def __init__(self):
            super().__init__()
            self.scattered = []

        def scatter(self, data):
            self.scattered.append(data)
            return Shared(data)

        def submit(self, fn, *args):
            return super().submit(fn, *[a.value if isinstance(a, Shared) else a for a in args])

    a, b, c = rng.standard_normal((4, 32)), rng.standard_normal((32, 32)), rng.standard_normal((32, 4))
    executor = Scattering()
    result = tnkit.contract("ab,bc,cd->ad", a, b, c, max_intermediate=64, executor=executor)
    plan = plan_sliced("ab,bc,cd->ad", a, b, c, max_intermediate=64)
    whole = [k for k in range(3) if k not in plan.sliced_inputs]
    assert whole and len(executor.scattered) == len(whole)  # once, not once per slice
    assert all(any(x is [a, b, c][k] for x in executor.scattered) for k in whole)
    assert_close(result, a @ b @ c)


def test_a_failing_slice_raises_and_cancels_the_rest(rng):
    class Failing(RecordingExecutor):
        def submit(self, fn, *args):
            return super().submit(_fail, *args)

    executor = Failing()
    with pytest.raises(RuntimeError, match="slice failed"):
        tnkit.contract("ab,bc,cd->ad", *[np.eye(8)] * 3, max_intermediate=8, executor=executor)
    assert len(executor.tasks) == 2  # the window, not every slice


def _fail(*args):
    raise RuntimeError("slice failed")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_intermediate": 0}, ValueError, "max_intermediate.*>= 1.*got 0"),
        ({"max_intermediate": -3}, ValueError, "max_intermediate"),
        ({"max_intermediate": 2.5}, TypeError, "max_intermediate.*integer"),
        ({"max_intermediate": True}, TypeError, "max_intermediate.*integer"),
        ({"max_intermediate": 4, "executor": object()}, TypeError, "executor.*submit.*got object"),
        ({"max_intermediate": 4, "executor": 2}, TypeError, "executor.*submit.*got int"),
        ({"max_intermediate": 4, "optimize": "nope"}, ValueError, "optimize"),
    ],
)
def test_bad_input_is_refused_before_any_work(rng, kwargs, error, match):
    executor = kwargs.pop("executor", None) or RecordingExecutor()
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 6))
    with pytest.raises(error, match=match):
        tnkit.contract("ab,bc->ac", a, b, executor=executor, **kwargs)
    assert not getattr(executor, "tasks", [])


def test_mismatched_equation_and_non_arrays_are_refused(rng):
    executor = RecordingExecutor()
    with pytest.raises(ValueError, match="index 'b'"):
        contract_sliced("ab,bc->ac", np.ones((2, 3)), np.ones((4, 2)), max_intermediate=2, executor=executor)
    with pytest.raises(TypeError, match=r"arrays\[1\].*list"):
        contract_sliced("ab,bc->ac", np.ones((2, 3)), [[1.0]], max_intermediate=2, executor=executor)
    assert not executor.tasks


# --------------------------------------------------------------------------- real executors


@pytest.mark.distributed
def test_process_pool_of_two_workers_matches_the_unsliced_contraction(rng):
    eq, shapes = EQUATIONS[3]
    arrays = _operands(rng, shapes)
    bound = _bound(shapes, eq, 1 / 16)
    in_process = tnkit.contract(eq, *arrays, max_intermediate=bound)
    with ProcessPoolExecutor(2) as pool:
        on_pool = tnkit.contract(eq, *arrays, max_intermediate=bound, executor=pool)
    assert_close(on_pool, tnkit.contract(eq, *arrays))
    assert_close(on_pool, in_process)


@pytest.mark.distributed
def test_dask_local_cluster_on_loopback_matches_the_unsliced_contraction(rng):
    distributed = pytest.importorskip(
        "distributed", reason="dask executors need dask.distributed: pip install 'dask[distributed]'"
    )
    eq, shapes = EQUATIONS[2]
    arrays = _operands(rng, shapes, np.complex128)
    bound = _bound(shapes, eq, 1 / 16)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = tnkit.contract(eq, *arrays, max_intermediate=bound, executor=client)
        assert plan_sliced(eq, *shapes, max_intermediate=bound).n_slices > 1
    assert_close(result, np.einsum(eq, *arrays, optimize="greedy"), np.complex128)
