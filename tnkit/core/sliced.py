"""Sliced contraction: a bound on the largest intermediate, and slices sent to an executor.

A contraction whose largest intermediate tensor does not fit in memory can be cut
into independent pieces by *slicing* some of its indices: fixing a summed index
``k`` to each of its values ``0 .. d_k - 1`` gives ``d_k`` smaller contractions
whose results add up to the full one (an output index that is sliced is stacked
instead of summed). Slicing several indices multiplies the number of slices. The
indices to slice are chosen by cotengra (``ContractionTree.slice``, or its
hyper-optimizer with ``slicing_opts``) so that every intermediate of one slice
holds at most ``max_intermediate`` elements, at the price of some repeated work
(:attr:`SlicedContraction.overhead`).

Each slice is an ordinary contraction: its equation is the full equation without
the sliced indices, its path is fixed once for all slices, and it runs through
:func:`tnkit.contract`'s compiled plans. Slices run one after another in the
calling process, or on any :class:`concurrent.futures.Executor`-like object with a
``submit`` method: a :class:`~concurrent.futures.ProcessPoolExecutor`, a dask
``distributed.Client`` or an ``mpi4py.futures.MPIPoolExecutor``. A task carries the
slice's equation, its path and the slices of the input arrays it needs, never the
plan search or the other slices. Inputs without a sliced index are the same in every
slice: a dask ``Client`` receives them once (``scatter``) and its tasks refer to them;
other executors send them with each task.
Results are summed in slice order, so the answer does not depend on which worker
finished first. At most two tasks per worker are in flight at a time (workers counted
by a dask ``Client`` or an ``MPIPoolExecutor``; other executors count as many workers as
this machine has CPUs), which bounds the memory held by tasks waiting to run.

The bound applies to intermediates, not to the inputs (which the caller already
holds) nor to the output (which is returned whole).

References
----------
Gray & Kourtis, "Hyper-optimized tensor network contraction", Quantum 5, 410 (2021),
arXiv:2002.01935 (contraction trees and slicing in cotengra).
"""

from __future__ import annotations

import functools
import importlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .contract import contract, contraction_info, current_strategy, hashable_optimize
from .validate import check_int

__all__ = ["SlicedContraction", "plan_sliced", "contract_sliced", "contract_slice"]

#: Tasks kept in flight per worker of an executor (one running, one waiting).
_TASKS_PER_WORKER = 2


@dataclass(frozen=True)
class SlicedContraction:
    """The plan of a sliced contraction: which indices are sliced and how each slice runs.

    Attributes
    ----------
    equation : str
        Einsum equation of the whole contraction (output written out).
    slice_equation : str
        The equation of one slice: ``equation`` without the sliced indices.
    path : tuple of tuple of int
        How each slice is contracted, pair by pair (opt_einsum's linear format), the
        same order for every slice.
    sliced : tuple of (str, int)
        The sliced indices and their sizes; slice ``i`` fixes them to the digits of
        ``i`` in this mixed radix (the last index varies fastest).
    n_slices : int
        Number of slices, the product of the sliced sizes (1 when nothing is sliced).
    largest_intermediate : int
        Elements of the largest intermediate of one slice.
    flops : int
        Operations of all slices together.
    unsliced_path : tuple of tuple of int
        The contraction order of ``equation`` before slicing: the tree that was
        sliced, or the plan of :func:`tnkit.contract` when nothing needed slicing.
    unsliced_largest_intermediate : int
        Elements of the largest intermediate of ``unsliced_path``.
    unsliced_flops : int
        Operations of ``unsliced_path``.
    max_intermediate : int or None
        The bound asked for (``None``: no bound, one slice).
    """

    equation: str
    slice_equation: str
    path: tuple[tuple[int, ...], ...]
    sliced: tuple[tuple[str, int], ...]
    n_slices: int
    largest_intermediate: int
    flops: int
    unsliced_path: tuple[tuple[int, ...], ...]
    unsliced_largest_intermediate: int
    unsliced_flops: int
    max_intermediate: int | None

    @property
    def overhead(self) -> float:
        """``flops / unsliced_flops``: the repeated work that slicing costs."""
        return self.flops / max(self.unsliced_flops, 1)

    @property
    def output_sliced(self) -> tuple[str, ...]:
        """The sliced indices that are output indices (stacked rather than summed)."""
        output = self.equation.split("->")[1]
        return tuple(c for c in output if c in dict(self.sliced))

    @property
    def sliced_inputs(self) -> tuple[int, ...]:
        """Positions of the inputs that carry a sliced index (the others are the same in every slice)."""
        cut = dict(self.sliced)
        terms = self.equation.split("->")[0].split(",")
        return tuple(k for k, term in enumerate(terms) if any(c in cut for c in term))

    def slice_values(self, i: int) -> dict[str, int]:
        """The value of each sliced index in slice ``i`` (``0 <= i < n_slices``)."""
        values = {}
        for index, size in reversed(self.sliced):
            i, values[index] = divmod(i, size)
        return values

    def slice_arrays(self, arrays: Sequence[Any], i: int) -> list[Any]:
        """The operands of slice ``i``: each array indexed at the sliced values of its indices.

        Inputs without a sliced index are returned as they are; the others are views.
        """
        values = self.slice_values(i)
        terms = self.equation.split("->")[0].split(",")
        out = []
        for term, array in zip(terms, arrays, strict=True):
            if any(c in values for c in term):
                array = array[tuple(values.get(c, slice(None)) for c in term)]
            out.append(array)
        return out

    def gather(self, results: Iterable[Any]) -> Any:
        """Combine the results of slices ``0, 1, ..., n_slices - 1`` (in this order) into the full one.

        Results are summed over the sliced indices that are not in the output and
        stacked over those that are. ``results`` may be a generator: it is read once.
        """
        out_sliced = self.output_sliced
        chunks: dict[tuple[int, ...], Any] = {}
        for i, result in enumerate(results):
            values = self.slice_values(i)
            key = tuple(values[c] for c in out_sliced)
            chunks[key] = result if key not in chunks else chunks[key] + result
        if not out_sliced:
            return chunks[()]
        sizes = dict(self.sliced)
        output = self.equation.split("->")[1]

        def stack(prefix: tuple[int, ...]) -> Any:
            if len(prefix) == len(out_sliced):
                return chunks[prefix]
            index = out_sliced[len(prefix)]
            # the later sliced output indices are still missing from the parts
            axis = output.index(index) - len(prefix)
            return _stack([stack(prefix + (v,)) for v in range(sizes[index])], axis)

        return stack(())

    def __str__(self) -> str:
        sliced = ", ".join(f"{c}={d}" for c, d in self.sliced) or "nothing"
        return (
            f"SlicedContraction({self.equation!r}): sliced {sliced} into {self.n_slices} slices; "
            f"largest intermediate {self.largest_intermediate:,} elements per slice "
            f"(bound {self.max_intermediate}, unsliced {self.unsliced_largest_intermediate:,}); "
            f"flops {self.flops:.3e} ({self.overhead:.2f}x the unsliced {self.unsliced_flops:.3e})"
        )


def plan_sliced(
    equation: str,
    *arrays_or_shapes: Any,
    max_intermediate: int | None,
    optimize: Any = None,
) -> SlicedContraction:
    """Choose the indices to slice so that no intermediate exceeds ``max_intermediate`` elements.

    Parameters
    ----------
    equation : str
        Einsum equation with one term per operand, such as ``"ab,bc,cd->ad"``.
    *arrays_or_shapes : array or sequence of int
        The operands, or their shapes.
    max_intermediate : int or None
        Largest number of elements of any intermediate of one slice (``>= 1``);
        ``None`` slices nothing.
    optimize : str, sequence of index pairs or PathOptimizer, optional
        ``None`` (default): when the plan of :func:`tnkit.contract` already meets the
        bound, that plan; otherwise the best tree of cotengra's hyper-optimizer, sliced
        two-fold at a time with its subtrees re-optimised after each cut. The tree
        search is randomised, so two processes may slice different (equally costly)
        indices; within a process the plan is cached. Any other value of
        :func:`tnkit.contract`'s ``optimize`` fixes the path, which is then sliced the
        same way.

    Returns
    -------
    SlicedContraction
        The plan; planning is cached per equation, shapes, bound and ``optimize``.

    Raises
    ------
    TypeError
        If ``max_intermediate`` is not an integer.
    ValueError
        If ``max_intermediate < 1``, or the equation does not match the operands.
    ImportError
        If a bound is given and cotengra is not installed.

    Examples
    --------
    >>> import tnkit
    >>> plan = tnkit.plan_sliced("ab,bc,cd->ad", (8, 64), (64, 64), (64, 8), max_intermediate=256)
    >>> plan.largest_intermediate <= 256 < plan.unsliced_largest_intermediate
    True
    """
    if max_intermediate is not None:
        max_intermediate = check_int("max_intermediate", max_intermediate, minimum=1)
    shapes = tuple(
        tuple(int(d) for d in (op.shape if hasattr(op, "shape") else op)) for op in arrays_or_shapes
    )
    if optimize is None:  # the context's strategy is part of the key: a cached plan must follow it
        return _plan(equation, shapes, max_intermediate, None, hashable_optimize(current_strategy()))
    return _plan(equation, shapes, max_intermediate, hashable_optimize(optimize), None)


def contract_sliced(
    equation: str,
    *arrays: Any,
    max_intermediate: int | None = None,
    executor: Any = None,
    optimize: Any = None,
) -> Any:
    """Contract ``arrays`` in slices whose intermediates stay below a bound, optionally on an executor.

    This is what :func:`tnkit.contract` runs when it is given ``max_intermediate`` or
    ``executor``.

    Parameters
    ----------
    equation : str
        Einsum equation such as ``"ab,bc,cd->ad"``.
    *arrays : numpy.ndarray or torch.Tensor
        One array per input term.
    max_intermediate : int, optional
        Largest number of elements of any intermediate tensor of one slice (``>= 1``).
        ``None`` does not slice: the contraction runs as one task.
    executor : concurrent.futures.Executor-like, optional
        Anything with ``submit(fn, *args)`` returning a future with ``result()``: a
        process pool, a dask ``distributed.Client``, an ``MPIPoolExecutor``. ``None``
        runs the slices one after another in this process. Workers must be able to
        import tnkit.
    optimize : str, sequence of index pairs or PathOptimizer, optional
        As in :func:`plan_sliced`.

    Returns
    -------
    array
        The contracted array, of the type of the inputs, with the output indices in
        the order of the equation.

    Raises
    ------
    TypeError
        If ``executor`` has no ``submit`` method, ``max_intermediate`` is not an
        integer, or an operand is not an array; all before any work starts.
    ValueError
        If ``max_intermediate < 1`` or the equation does not match the operands.

    Examples
    --------
    >>> import numpy as np, tnkit
    >>> rng = np.random.default_rng(0)
    >>> a, b, c = rng.random((8, 64)), rng.random((64, 64)), rng.random((64, 8))
    >>> out = tnkit.contract("ab,bc,cd->ad", a, b, c, max_intermediate=256)
    >>> bool(np.allclose(out, a @ b @ c))
    True
    """
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "`executor` must have a submit(fn, *args) method (a concurrent.futures.Executor, "
            f"a dask distributed.Client, an MPIPoolExecutor), got {type(executor).__name__}."
        )
    for k, array in enumerate(arrays):
        if not (hasattr(array, "shape") and hasattr(array, "dtype")):
            raise TypeError(
                f"`arrays[{k}]` must be an array with shape and dtype, got {type(array).__name__}."
            )
    plan = plan_sliced(equation, *arrays, max_intermediate=max_intermediate, optimize=optimize)
    if executor is None:
        results: Iterable[Any] = (
            contract_slice(plan.slice_equation, plan.path, *plan.slice_arrays(arrays, i))
            for i in range(plan.n_slices)
        )
    else:
        results = _submitted_in_order(plan, arrays, executor)
    return plan.gather(results)


def contract_slice(slice_equation: str, path: tuple[tuple[int, ...], ...], *arrays: Any) -> Any:
    """Contract one slice: the task a worker runs (:func:`tnkit.contract` with a fixed path)."""
    return contract(slice_equation, *arrays, optimize=path)


# --------------------------------------------------------------------------- execution


def _submitted_in_order(plan: SlicedContraction, arrays: Sequence[Any], executor: Any) -> Iterator[Any]:
    """Submit the slices to ``executor`` a window at a time and yield their results in slice order."""
    window = _TASKS_PER_WORKER * _worker_count(executor)
    shared = _shared_inputs(plan, arrays, executor)
    pending: deque[Any] = deque()
    submitted = 0
    try:
        while submitted < plan.n_slices or pending:
            while submitted < plan.n_slices and len(pending) < window:
                args = [shared.get(k, x) for k, x in enumerate(plan.slice_arrays(arrays, submitted))]
                pending.append(executor.submit(contract_slice, plan.slice_equation, plan.path, *args))
                submitted += 1
            yield pending.popleft().result()
    finally:  # an error (or an abandoned generator) cancels what has not started
        for future in pending:
            future.cancel()


def _shared_inputs(plan: SlicedContraction, arrays: Sequence[Any], executor: Any) -> dict[int, Any]:
    """Inputs that every slice uses whole, sent once where the executor can (dask's ``scatter``).

    The tasks then carry a reference to the copy on the cluster instead of the array.
    Other executors have no such call: there the tasks carry the arrays.
    """
    scatter = getattr(executor, "scatter", None)
    if not callable(scatter) or plan.n_slices == 1:
        return {}
    whole = [k for k in range(len(arrays)) if k not in plan.sliced_inputs]
    return {k: scatter(arrays[k]) for k in whole}


def _dask_workers(executor: Any) -> int | None:
    nthreads = getattr(executor, "nthreads", None)
    return sum(nthreads().values()) if callable(nthreads) else None


def _mpi4py_workers(executor: Any) -> int | None:
    n = getattr(executor, "num_workers", None)
    return n if isinstance(n, int) else None


#: How to count the workers of each kind of executor; the first answer wins, and without one
#: the CPUs of this machine are counted (a concurrent.futures pool keeps the arguments of
#: waiting tasks as references, not copies, so a larger window costs it no memory).
_WORKER_COUNTS: tuple[Callable[[Any], int | None], ...] = (_dask_workers, _mpi4py_workers)


def _worker_count(executor: Any) -> int:
    for count in _WORKER_COUNTS:
        n = count(executor)
        if n:
            return int(n)
    return os.cpu_count() or 1


def _stack(arrays: list[Any], axis: int) -> Any:
    if isinstance(arrays[0], np.ndarray):
        return np.stack(arrays, axis)
    backend = importlib.import_module(type(arrays[0]).__module__.split(".")[0])  # torch, cupy
    return backend.stack(arrays, axis)


# --------------------------------------------------------------------------- planning


@functools.lru_cache(maxsize=256)
def _plan(equation: str, shapes: tuple, max_intermediate: int | None, optimize: Any,
          default: Any) -> SlicedContraction:
    """The plan of :func:`plan_sliced`; ``default`` is the context's strategy when ``optimize`` is None."""
    full = contraction_info(equation, *shapes, optimize=default if optimize is None else optimize)
    lhs, output = full.equation.split("->")
    inputs = lhs.split(",")
    if max_intermediate is None or full.largest_intermediate <= max_intermediate or len(inputs) < 2:
        return SlicedContraction(
            equation=full.equation, slice_equation=full.equation, path=full.path, sliced=(), n_slices=1,
            largest_intermediate=full.largest_intermediate, flops=full.flops, unsliced_path=full.path,
            unsliced_largest_intermediate=full.largest_intermediate, unsliced_flops=full.flops,
            max_intermediate=max_intermediate,
        )  # fmt: skip
    size_dict = {
        c: d for term, shape in zip(inputs, shapes, strict=True) for c, d in zip(term, shape, strict=True)
    }
    tree = _unsliced_tree(inputs, output, size_dict, optimize, full.path)
    unsliced_path = _linear_path(tree)
    unsliced = contraction_info(full.equation, *shapes, optimize=unsliced_path)
    tree = _slice_tree(tree, max_intermediate)
    sliced = tuple((c, size_dict[c]) for c in sorted(tree.sliced_inds))
    cut = {c for c, _ in sliced}
    slice_terms = ["".join(c for c in term if c not in cut) for term in inputs]
    slice_equation = ",".join(slice_terms) + "->" + "".join(c for c in output if c not in cut)
    slice_shapes = [tuple(size_dict[c] for c in term) for term in slice_terms]
    path = _linear_path(tree)
    one = contraction_info(slice_equation, *slice_shapes, optimize=path)
    if one.largest_intermediate > max_intermediate:  # cotengra and opt_einsum count alike
        raise RuntimeError(
            f"slicing left an intermediate of {one.largest_intermediate:,} elements, above "
            f"`max_intermediate`={max_intermediate:,}; this is a bug, please report it."
        )
    n_slices = math.prod(d for _, d in sliced)
    return SlicedContraction(
        equation=full.equation, slice_equation=slice_equation, path=path, sliced=sliced,
        n_slices=n_slices, largest_intermediate=one.largest_intermediate, flops=one.flops * n_slices,
        unsliced_path=unsliced_path, unsliced_largest_intermediate=unsliced.largest_intermediate,
        unsliced_flops=unsliced.flops,
        max_intermediate=max_intermediate,
    )  # fmt: skip


def _linear_path(tree: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(i) for i in step) for step in tree.get_path())


def _unsliced_tree(inputs, output, size_dict, optimize, path) -> Any:
    """The cotengra contraction tree to slice: a hyper-optimizer search, or ``path`` as a tree."""
    try:
        import cotengra as ctg
    except ImportError as exc:  # pragma: no cover - cotengra ships with quimb
        raise ImportError("`max_intermediate` needs the cotengra package: pip install cotengra") from exc
    inputs = [tuple(term) for term in inputs]
    if optimize is not None:
        return ctg.ContractionTree.from_path(inputs, tuple(output), size_dict, path=list(path))
    import importlib.util

    # without kahypar, cotengra warns and falls back to these; name them so it need not
    methods = None if importlib.util.find_spec("kahypar") else ["greedy", "labels"]
    search = ctg.HyperOptimizer(methods=methods, max_repeats=32, parallel=False, progbar=False, seed=0)
    return search.search(inputs, tuple(output), size_dict)


def _slice_tree(tree: Any, max_intermediate: int) -> Any:
    """Slice ``tree`` two-fold at a time, re-optimising its subtrees after each cut, until it fits.

    This is cotengra's ``slice_and_reconfigure`` with seeded slicing, so that a tree
    is always sliced the same way.
    """
    tree = tree.copy()
    step = 0
    while tree.max_size() > max_intermediate:
        before = (tree.multiplicity, tree.max_size())
        tree.slice_(target_slices=2, seed=step)
        tree.subtree_reconfigure_()
        step += 1
        if (tree.multiplicity, tree.max_size()) == before:  # no progress: _plan reports the size
            break
    return tree
