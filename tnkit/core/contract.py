"""The contraction layer: planned, compiled and cached einsum contractions.

Every contraction in tnkit goes through :func:`contract`. A contraction is planned
once per ``(equation, shapes, dtypes, optimize)`` with opt_einsum (or cotengra), then
compiled into a list of pairwise steps whose transposes, reshapes and matrix shapes
are precomputed, so a repeated call (as in a sweep) costs one cache look-up plus
one ``matmul`` per pairwise step. The plan can be inspected with
:func:`contraction_info`.

Equations use einsum notation with an explicit output (``"ab,bc->ac"``); an
equation without ``->`` takes numpy's implicit output (indices seen once, sorted).
Indices shared by both operands of a step and still needed later are batch
indices, handled by batched ``matmul``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import opt_einsum as oe

from .backend import astype, like, result_type
from .paths import get_optimizer

__all__ = [
    "contract",
    "contraction_info",
    "contract_strategy",
    "ContractionInfo",
    "contract_cache_info",
    "clear_contract_cache",
    "hashable_optimize",
    "current_strategy",
]

_DEFAULT_OPTIMIZE: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "tnkit_optimize", default="auto"
)
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class ContractionInfo:
    """The plan of one contraction.

    Attributes
    ----------
    equation : str
        The einsum equation, with its output made explicit.
    path : tuple of tuple of int
        Pairwise contraction order in opt_einsum's linear format.
    flops : int
        Floating point operations of the planned order (opt_einsum's count).
    naive_flops : int
        Operations of a single-pass einsum without intermediates.
    largest_intermediate : int
        Number of elements of the largest intermediate tensor.
    optimize : str
        The strategy that produced the path.
    """

    equation: str
    path: tuple[tuple[int, ...], ...]
    flops: int
    naive_flops: int
    largest_intermediate: int
    optimize: str

    @property
    def speedup(self) -> float:
        """``naive_flops / flops``."""
        return self.naive_flops / max(self.flops, 1)

    def __str__(self) -> str:
        return (
            f"ContractionInfo({self.equation!r}, optimize={self.optimize!r}): "
            f"path={list(self.path)}, flops={self.flops:.3e}, "
            f"largest intermediate={self.largest_intermediate:,} elements, "
            f"speedup over naive einsum={self.speedup:.1f}x"
        )


@contextlib.contextmanager
def contract_strategy(optimize: Any) -> Iterator[None]:
    """Use ``optimize`` as the default strategy of :func:`contract` inside a ``with`` block.

    The default is kept in a :mod:`contextvars` variable, so threads and asyncio tasks
    each see their own.

    Examples
    --------
    >>> import numpy as np, tnkit
    >>> with tnkit.contract_strategy("greedy"):
    ...     tnkit.contract("ab,bc->ac", np.eye(2), np.eye(2)).shape
    (2, 2)
    """
    hashable_optimize(optimize)  # validate before entering
    if isinstance(optimize, str):
        get_optimizer(optimize)
    token = _DEFAULT_OPTIMIZE.set(optimize)
    try:
        yield
    finally:
        _DEFAULT_OPTIMIZE.reset(token)


def current_strategy() -> Any:
    """The path strategy :func:`contract` uses when it is given ``optimize=None``.

    ``"auto"`` unless a :func:`contract_strategy` block set another; caches keyed on
    ``optimize=None`` must include it in their key.
    """
    return _DEFAULT_OPTIMIZE.get()


def contract(
    equation: str,
    *arrays: np.ndarray,
    optimize: Any = None,
    max_intermediate: int | None = None,
    executor: Any = None,
) -> np.ndarray:
    """Contract ``arrays`` according to the einsum ``equation``.

    Parameters
    ----------
    equation : str
        Einsum equation such as ``"xy,xsa,ysb->ab"``; no ellipsis.
    *arrays : numpy.ndarray
        One array per input term. torch tensors (all operands of one call) work
        too, through the same plan, and keep their autograd graph: the compiled
        steps are only permutes, reshapes and matmuls.
    optimize : str, sequence of index pairs or PathOptimizer, optional
        Path strategy (see :mod:`tnkit.core.paths`); defaults to the context's
        (``"auto"`` unless set by :func:`contract_strategy`).
    max_intermediate : int, optional
        Bound on the elements of any intermediate tensor: the contraction is cut into
        slices that respect it and whose results are summed (see
        :func:`tnkit.contract_sliced`).
    executor : concurrent.futures.Executor-like, optional
        Where the slices run (a process pool, a dask ``Client``, an
        ``MPIPoolExecutor``); ``None`` runs them in this process.

    Returns
    -------
    numpy.ndarray
        The contracted array, with the output indices in the order of the equation.

    Examples
    --------
    >>> import numpy as np, tnkit
    >>> a = np.arange(6.).reshape(2, 3)
    >>> tnkit.contract("ab,cb->ac", a, a)
    array([[ 5., 14.],
           [14., 50.]])
    """
    if max_intermediate is not None or executor is not None:
        from .sliced import contract_sliced

        return contract_sliced(
            equation, *arrays, max_intermediate=max_intermediate, executor=executor, optimize=optimize
        )
    if optimize is None:
        optimize = _DEFAULT_OPTIMIZE.get()
    key = optimize if type(optimize) is str else hashable_optimize(optimize)
    plan = _compiled_plan(
        equation,
        tuple(a.shape for a in arrays),  # numpy: tuples; torch: torch.Size, a tuple (same hash)
        tuple(a.dtype for a in arrays),
        key,
    )
    if plan.mixed:  # decided once per plan: numpy operands pay nothing here
        arrays = _common_arrays(arrays)
        plan = _compiled_plan(equation, tuple(a.shape for a in arrays), tuple(a.dtype for a in arrays), key)
    return plan(arrays)


def _common_arrays(arrays: Sequence[Any]) -> tuple[Any, ...]:
    """Operands of one library, device and dtype, for the libraries that do not promote in ``matmul``.

    numpy operands among torch (or cupy) ones, such as a gate or a local operator,
    are copied to the device of the first non-numpy operand; dtypes are promoted as
    numpy would (torch's ``matmul`` refuses mixed dtypes).
    """
    reference = next(a for a in arrays if not isinstance(a, np.ndarray))
    arrays = tuple(like(a, reference) if isinstance(a, np.ndarray) else a for a in arrays)
    dtype = result_type(*arrays)
    return tuple(a if a.dtype == dtype else astype(a, dtype) for a in arrays)


def _permute(x: Any, perm: tuple[int, ...]) -> Any:
    """``x`` with axes permuted: numpy's ``transpose(axes)``, torch's ``permute``."""
    return x.transpose(perm) if isinstance(x, np.ndarray) or not hasattr(x, "permute") else x.permute(*perm)


def contraction_info(
    equation: str,
    *arrays_or_shapes: np.ndarray | Sequence[int],
    optimize: Any = None,
    dtype: Any = np.float64,
) -> ContractionInfo:
    """Return the plan :func:`contract` uses for ``equation`` on these operands.

    Operands may be arrays or shapes (shapes are taken to be of ``dtype``);
    planning is shared with :func:`contract` (and cached), so inspecting a plan
    costs nothing afterwards.
    """
    if optimize is None:
        optimize = _DEFAULT_OPTIMIZE.get()
    shapes, dtypes = [], []
    for op in arrays_or_shapes:
        if hasattr(op, "shape") and hasattr(op, "dtype"):  # numpy array or tensor
            shapes.append(tuple(op.shape))
            dtypes.append(op.dtype)
        else:
            shapes.append(tuple(int(d) for d in op))
            dtypes.append(np.dtype(dtype))
    plan = _compiled_plan(equation, tuple(shapes), tuple(dtypes), hashable_optimize(optimize))
    return plan.info


def contract_cache_info() -> Any:
    """Hit/miss statistics of the plan cache (a :func:`functools.lru_cache` info tuple)."""
    return _compiled_plan.cache_info()


def clear_contract_cache() -> None:
    """Forget every cached contraction plan."""
    _compiled_plan.cache_clear()


# --------------------------------------------------------------------------- planning


def hashable_optimize(optimize: Any) -> Any:
    """A hashable stand-in for ``optimize`` (explicit paths become tuples of tuples), for plan caches.

    Raises ``TypeError`` unless ``optimize`` is a strategy name, an explicit path or a
    path optimizer (or another callable).
    """
    if isinstance(optimize, str):
        return optimize
    if isinstance(optimize, (list, tuple)):
        try:
            return tuple(tuple(int(i) for i in step) for step in optimize)
        except TypeError:
            raise TypeError(
                f"`optimize` given as a path must be a sequence of index tuples, got {optimize!r}."
            ) from None
    if isinstance(optimize, oe.paths.PathOptimizer) or callable(optimize):
        return optimize
    raise TypeError(
        "`optimize` must be a strategy name, an explicit path or a PathOptimizer, "
        f"got {type(optimize).__name__}."
    )


def _parse_equation(equation: str, shapes: tuple[tuple[int, ...], ...]) -> tuple[list[str], str]:
    if not isinstance(equation, str):
        raise TypeError(f"`equation` must be a str, got {type(equation).__name__}.")
    eq = equation.replace(" ", "")
    if "." in eq:
        raise ValueError(f"`equation` must not use an ellipsis, got {equation!r}.")
    if "->" in eq:
        lhs, output = eq.split("->")
    else:
        lhs = eq
        counts: dict[str, int] = {}
        for c in lhs.replace(",", ""):
            counts[c] = counts.get(c, 0) + 1
        output = "".join(sorted(c for c, n in counts.items() if n == 1))
    inputs = lhs.split(",")
    if len(inputs) != len(shapes):
        raise ValueError(
            f"`equation` {equation!r} has {len(inputs)} input terms but {len(shapes)} arrays were given."
        )
    sizes: dict[str, int] = {}
    for k, (term, shape) in enumerate(zip(inputs, shapes)):
        if len(term) != len(shape):
            raise ValueError(
                f"term {k} ({term!r}) of `equation` has {len(term)} indices but array {k} "
                f"has shape {shape}."
            )
        for c, d in zip(term, shape):
            if sizes.setdefault(c, d) != d:
                raise ValueError(
                    f"index {c!r} of `equation` {equation!r} has size {sizes[c]} in one "
                    f"operand and {d} in array {k}."
                )
    for c in output:
        if c not in sizes:
            raise ValueError(f"output index {c!r} of `equation` {equation!r} is in no input.")
    return inputs, output


def _plan_path(
    inputs: list[str], output: str, shapes: tuple, optimize_key: Any
) -> tuple[tuple[tuple[int, ...], ...], Any]:
    optimize = get_optimizer(optimize_key) if isinstance(optimize_key, str) else optimize_key
    if isinstance(optimize, tuple):
        optimize = list(optimize)
        if len(inputs) > 1 and not optimize:
            raise ValueError("`optimize` given as a path must not be empty.")
    eq = ",".join(inputs) + "->" + output
    path, info = oe.contract_path(eq, *shapes, shapes=True, optimize=optimize)
    return tuple(tuple(step) for step in path), info


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled_plan(
    equation: str, shapes: tuple, dtypes: tuple, optimize_key: Any
) -> _CompiledContraction:
    inputs, output = _parse_equation(equation, shapes)
    if len(inputs) == 1:
        if isinstance(optimize_key, str):
            get_optimizer(optimize_key)  # validate the name even though one operand needs no plan
        path: tuple[tuple[int, ...], ...] = ((0,),)
        flops = naive = math.prod(shapes[0]) if shapes[0] else 1
        largest = flops
    else:
        path, pinfo = _plan_path(inputs, output, shapes, optimize_key)
        flops, naive, largest = int(pinfo.opt_cost), int(pinfo.naive_cost), int(pinfo.largest_intermediate)
    name = optimize_key if isinstance(optimize_key, str) else type(optimize_key).__name__
    info = ContractionInfo(
        equation=",".join(inputs) + "->" + output,
        path=path,
        flops=flops,
        naive_flops=naive,
        largest_intermediate=largest,
        optimize=name,
    )
    numpy_dtypes = [isinstance(d, np.dtype) for d in dtypes]
    mixed = not all(numpy_dtypes) and (any(numpy_dtypes) or len(set(dtypes)) > 1)
    return _CompiledContraction(inputs, output, shapes, path, info, mixed)


# --------------------------------------------------------------------------- execution


class _CompiledContraction:
    """A contraction path turned into precomputed numpy calls."""

    __slots__ = ("steps", "final_perm", "info", "mixed")

    def __init__(self, inputs, output, shapes, path, info, mixed=False):
        # ``mixed``: operands of several libraries or dtypes that the library's matmul does not
        # promote (torch); :func:`contract` converts them first (see :func:`_common_arrays`)
        self.mixed = mixed
        sizes = {c: d for term, shape in zip(inputs, shapes) for c, d in zip(term, shape)}
        terms = list(inputs)
        # opt_einsum paths index a list from which operands are removed; ``live`` maps those
        # positions to slots of a list that only grows (inputs, then each step's result), so
        # a call is a plain loop of appends
        live = list(range(len(inputs)))
        steps = []
        for positions in path:
            operands = [terms[p] for p in positions]
            slots = tuple(live[p] for p in positions)
            for p in sorted(positions, reverse=True):
                del terms[p]
                del live[p]
            needed = set(output).union(*terms)
            step, result = _compile_step(operands, needed, sizes)
            steps.append((slots, step))
            terms.append(result)
            live.append(len(inputs) + len(steps) - 1)
        (final,) = terms
        perm = tuple(final.index(c) for c in output)
        self.steps = tuple(steps)
        self.final_perm = None if perm == tuple(range(len(perm))) else perm
        self.info = info

    def __call__(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        ops = list(arrays)
        for slots, step in self.steps:
            if len(slots) == 2:
                i, j = slots
                ops.append(step(ops[i], ops[j]))
                ops[i] = ops[j] = None  # every operand is used once: free intermediates early
            else:
                ops.append(step(*[ops[i] for i in slots]))
                for i in slots:
                    ops[i] = None
        result = ops[-1]
        if self.final_perm is not None:
            result = _permute(result, self.final_perm)
        return result


def _compile_step(operands: list[str], needed: set[str], sizes: dict[str, int]):
    """Return ``(callable, result_term)`` for contracting ``operands`` in one step."""
    if len(operands) == 2 and all(len(set(t)) == len(t) for t in operands):
        a, b = operands
        only_a = [c for c in a if c not in b]
        only_b = [c for c in b if c not in a]
        if all(c in needed for c in only_a) and all(c in needed for c in only_b):
            return _matmul_step(a, b, needed, sizes)
    kept = []
    for term in operands:
        for c in term:
            if c in needed and c not in kept:
                kept.append(c)
    result = "".join(kept)
    eq = ",".join(operands) + "->" + result
    return functools.partial(_einsum_step, eq), result


def _einsum_step(eq: str, *arrays: Any) -> Any:
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.einsum(eq, *arrays, optimize=False)
    backend = importlib.import_module(type(arrays[0]).__module__.split(".")[0])  # e.g. torch
    return backend.einsum(eq, *arrays)


def _matmul_step(a: str, b: str, needed: set[str], sizes: dict[str, int]):
    """One pairwise contraction as ``matmul(left, right)``, laid out to copy least.

    ``left`` is ``(batch, X, K)`` and ``right`` ``(batch, K, Y)``. Either operand may
    play ``left``, the summed indices may follow either operand's order, and an
    operand stored as ``(K, X)`` (or ``(Y, K)``) is passed as a transposed view,
    which BLAS takes without a copy. Among these layouts the one that transposes
    the fewest elements in memory is chosen (ties keep ``a`` on the left).
    """
    batch = [c for c in a if c in b and c in needed]
    free_a = [c for c in a if c not in b]
    free_b = [c for c in b if c not in a]
    orders = {tuple(c for c in t if c in a and c in b and c not in needed) for t in (a, b)}

    def size(term: str) -> int:
        return math.prod(sizes[c] for c in term)

    best = None
    for summed in sorted(orders):
        for swap in (False, True):
            (left, fl), (right, fr) = ((b, free_b), (a, free_a)) if swap else ((a, free_a), (b, free_b))
            lay_l = _operand_layout(left, batch, fl, list(summed), is_left=True)
            lay_r = _operand_layout(right, batch, fr, list(summed), is_left=False)
            cost = lay_l[2] * size(left) + lay_r[2] * size(right)
            key = (cost, swap)
            if best is None or key < best[0]:
                best = (key, swap, lay_l, lay_r, fl, fr, summed)
    if best[0][0] and not batch:
        broadcast = _broadcast_step(a, b, free_a, free_b, sizes, best[0][0])
        if broadcast is not None:
            return broadcast
    _, swap, (perm_l, trans_l, _), (perm_r, trans_r, _), fl, fr, summed = best
    nb = math.prod(sizes[c] for c in batch)
    x, k, y = (math.prod(sizes[c] for c in group) for group in (fl, summed, fr))
    shape_l = (x, k) if not trans_l else (k, x)
    shape_r = (k, y) if not trans_r else (y, k)
    if batch:
        shape_l, shape_r = (nb, *shape_l), (nb, *shape_r)
    out_shape = tuple(sizes[c] for c in batch + fl + fr)
    step = _MatmulStep(swap, perm_l, shape_l, trans_l, perm_r, shape_r, trans_r, out_shape)
    return step, "".join(batch + fl + fr)


#: Smallest ``K * Q`` of the matrices of a broadcast product: below it numpy's loop
#: over the stacked matrices costs more than the transpose copy it saves.
_BROADCAST_MIN_MATRIX = 256


def _broadcast_step(a: str, b: str, free_a: list[str], free_b: list[str], sizes: dict[str, int], copy_cost: int):
    """A product with the summed indices in the middle of one operand, without a copy.

    When ``big`` is laid out ``(P, K, Q)`` (free, summed, free) and the other operand
    is a ``(X, K)`` matrix, ``small @ big`` broadcasts over ``P`` and gives
    ``(P, X, Q)`` with no transpose of ``big`` (e.g. a matrix on a middle axis of a
    tree tensor). Returns ``None`` when no operand has that layout, when the small
    operand would cost as much to transpose, or when the matrices are too small.
    """
    summed = {c for c in a if c in b}
    for swap, (big, small, f_small) in enumerate(((b, a, free_a), (a, b, free_b))):
        positions = [i for i, c in enumerate(big) if c in summed]
        first, last = positions[0], positions[-1]
        if first == 0 or last == len(big) - 1 or last - first + 1 != len(positions):
            continue
        prefix, order, suffix = list(big[:first]), list(big[first : last + 1]), list(big[last + 1 :])
        perm, trans, copies = _operand_layout(small, [], f_small, order, is_left=True)
        k, q = (math.prod(sizes[c] for c in group) for group in (order, suffix))
        if copies * math.prod(sizes[c] for c in small) >= copy_cost or k * q < _BROADCAST_MIN_MATRIX:
            continue
        p, x = (math.prod(sizes[c] for c in group) for group in (prefix, f_small))
        step = _BroadcastMatmulStep(
            bool(swap), perm, (k, x) if trans else (x, k), trans, (p, k, q),
            tuple(sizes[c] for c in prefix + f_small + suffix),
        )
        return step, "".join(prefix + f_small + suffix)
    return None


class _BroadcastMatmulStep:
    """``small (X, K) @ big (P, K, Q) -> (P, X, Q)``, broadcasting ``small`` over ``P``."""

    __slots__ = ("swap", "perm_s", "shape_s", "trans_s", "shape_big", "out_shape")

    def __init__(self, swap, perm_s, shape_s, trans_s, shape_big, out_shape):
        self.swap, self.perm_s, self.shape_s, self.trans_s = swap, perm_s, shape_s, trans_s
        self.shape_big, self.out_shape = shape_big, out_shape

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        small, big = (y, x) if self.swap else (x, y)
        if self.perm_s is not None:
            small = _permute(small, self.perm_s)
        small = small.reshape(self.shape_s)
        if self.trans_s:
            small = small.swapaxes(-1, -2)
        return (small @ big.reshape(self.shape_big)).reshape(self.out_shape)


def _operand_layout(
    term: str, batch: list[str], free: list[str], summed: list[str], *, is_left: bool
) -> tuple[tuple[int, ...] | None, bool, int]:
    """``(perm, transposed, copies)`` to present ``term`` as a matmul operand.

    The natural order is ``batch + free + summed`` for the left operand and
    ``batch + summed + free`` for the right; the other order is usable as a
    transposed view. ``copies`` is 1 when neither matches and a transpose copy is made.
    """
    natural = batch + free + summed if is_left else batch + summed + free
    flipped = batch + summed + free if is_left else batch + free + summed
    if list(term) == natural:
        return None, False, 0
    if list(term) == flipped:
        return None, True, 0
    return tuple(term.index(c) for c in natural), False, 1


class _MatmulStep:
    __slots__ = ("swap", "perm_l", "shape_l", "trans_l", "perm_r", "shape_r", "trans_r", "out_shape")

    def __init__(self, swap, perm_l, shape_l, trans_l, perm_r, shape_r, trans_r, out_shape):
        self.swap = swap
        self.perm_l, self.shape_l, self.trans_l = perm_l, shape_l, trans_l
        self.perm_r, self.shape_r, self.trans_r = perm_r, shape_r, trans_r
        self.out_shape = out_shape

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.swap:
            x, y = y, x
        if self.perm_l is not None:
            x = _permute(x, self.perm_l)
        x = x.reshape(self.shape_l)
        if self.trans_l:
            x = x.swapaxes(-1, -2)
        if self.perm_r is not None:
            y = _permute(y, self.perm_r)
        y = y.reshape(self.shape_r)
        if self.trans_r:
            y = y.swapaxes(-1, -2)
        return (x @ y).reshape(self.out_shape)
