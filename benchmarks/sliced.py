"""Sliced contraction benchmark: a bounded-memory contraction on worker processes vs the unsliced one.

The network is the closed square lattice of ``L x L`` random tensors joined by bonds of
dimension ``d`` (every index summed, a scalar result: the shape of a PEPS norm or a
2D partition function). ``tnkit.plan_sliced`` finds a cotengra contraction tree and
slices it until every intermediate has at most ``max_intermediate`` elements; the
bound is the unsliced tree's largest intermediate divided by 16. Compared, in this
process on the same seeded arrays, with ``W`` from ``--threads`` (default 2, the whole
of a 2-core machine):

* ``unsliced`` (the reference): ``tnkit.contract`` along the same tree, unsliced
  (``optimize=plan.unsliced_path``), with one BLAS thread and with ``W``;
* ``serial_t1``: ``tnkit.contract(..., max_intermediate=bound)``, the slices one after
  another in this process, on one BLAS thread; against the unsliced contraction on one;
* ``pool_wW``: the same with ``executor=`` a ``ProcessPoolExecutor`` of ``W`` worker
  processes, each on one BLAS thread; against the unsliced contraction on ``W``
  threads (so both use ``W`` cores), with the one-thread time as
  ``unsliced_t1_seconds``.

Times are the median of the repeats, interleaved round by round
(``_common.measure``) after a warm-up that also starts the workers. Peak memory is
measured once per side with :mod:`tracemalloc` (numpy reports its array buffers to it):
the largest amount of memory allocated at one time during the contraction above what
was held before it, in this process and, for the pool, in each worker (the largest is
reported as ``tnkit``; ``parent_peak_bytes`` is this process's). Inputs are held by the
caller and not counted; a worker's peak includes the input pieces it receives.

Usage::

    python benchmarks/sliced.py [--quick] [--json] [--threads 2] [--repeats N]

Cases: ``lattice5x5_d16`` (unsliced largest intermediate 16**6 = 16.8 million
elements, 134 MB in float64; 16 slices); ``--quick`` runs ``lattice4x4_d16`` (16**4 elements;
256 slices, a poor case for slicing: a smoke test, not a figure).
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as bench  # noqa: E402

import tnkit  # noqa: E402

BENCHMARK = "sliced"
#: The bound is the unsliced tree's largest intermediate divided by this.
REDUCTION = 16

#: In each worker process: the ``threadpoolctl`` limit kept alive and the pool's barrier.
_WORKER_STATE: dict = {}


def lattice_network(side: int, bond: int, seed: int) -> tuple[str, list[np.ndarray]]:
    """The closed ``side x side`` square lattice: an equation and its seeded tensors.

    Each site holds one index per neighbour (open boundaries: 2 to 4 indices); all are
    summed. Entries are Gaussian scaled by ``bond ** -0.5`` per index, so the scalar
    result stays of order one.
    """
    import opt_einsum as oe

    bonds: dict[tuple, str] = {}
    terms = []
    for r in range(side):
        for c in range(side):
            term = ""
            for other in [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]:
                if 0 <= other[0] < side and 0 <= other[1] < side:
                    key = tuple(sorted([(r, c), other]))
                    bonds.setdefault(key, oe.get_symbol(len(bonds)))
                    term += bonds[key]
            terms.append(term)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((bond,) * len(t)) * bond ** (-0.25 * len(t)) for t in terms]
    return ",".join(terms) + "->", arrays


def _init_worker(barrier) -> None:
    """Worker initializer: one BLAS thread; keep the barrier (it can only be inherited)."""
    import threadpoolctl

    _WORKER_STATE.update(limits=threadpoolctl.threadpool_limits(1), barrier=barrier)


def _trace_start() -> tuple[int, int]:
    """In a worker: start tracing; wait until every worker has one such task. ``(pid, bytes held)``."""
    tracemalloc.start()
    _WORKER_STATE["barrier"].wait(timeout=60)
    return os.getpid(), tracemalloc.get_traced_memory()[0]


def _trace_stop() -> tuple[int, int]:
    """In a worker: ``(pid, peak bytes)`` since :func:`_trace_start`; stop tracing."""
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    _WORKER_STATE["barrier"].wait(timeout=60)
    return os.getpid(), peak


def _on_every_worker(pool: ProcessPoolExecutor, fn, workers: int) -> list:
    """Run ``fn()`` once on each worker: a task blocks at the barrier until all have one."""
    return [f.result() for f in [pool.submit(fn) for _ in range(workers)]]


def peak_in_process(fn) -> int:
    """Bytes allocated at the peak of ``fn()`` above what was allocated before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def peak_on_pool(pool: ProcessPoolExecutor, workers: int, fn) -> tuple[int, int]:
    """``(largest worker peak, parent peak)`` of ``fn()``, each above what its process held before."""
    starts = dict(_on_every_worker(pool, _trace_start, workers))
    parent = peak_in_process(fn)
    stops = dict(_on_every_worker(pool, _trace_stop, workers))
    return max(peak - starts[pid] for pid, peak in stops.items()), parent


def _limited(threads: int, fn):
    def run():
        with bench.thread_limit(threads):
            return fn()

    return run


def run_case(name: str, side: int, bond: int, workers: int, repeats: int, reporter: bench.Reporter) -> None:
    import multiprocessing

    equation, arrays = lattice_network(side, bond, seed=0)
    t0 = time.perf_counter()
    # the bound: the largest intermediate of cotengra's best unsliced tree, divided by 16
    best = tnkit.contraction_info(equation, *arrays, optimize="cotengra")
    bound = max(1, best.largest_intermediate // REDUCTION)
    plan = tnkit.plan_sliced(equation, *arrays, max_intermediate=bound)
    bench.log(f"{name}: planned in {time.perf_counter() - t0:.1f} s: {plan}")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)

    def unsliced():
        return tnkit.contract(equation, *arrays, optimize=plan.unsliced_path)

    def serial():
        return tnkit.contract(equation, *arrays, max_intermediate=bound)

    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(barrier,)
    ) as pool:
        fns = {
            "unsliced_t1": _limited(1, unsliced),
            f"unsliced_t{workers}": _limited(workers, unsliced),
            "serial_t1": _limited(1, serial),
            "pool": lambda: tnkit.contract(equation, *arrays, max_intermediate=bound, executor=pool),
        }
        timings = bench.measure(fns, repeats=repeats, catch=False)
        reference = timings["unsliced_t1"].result
        for key, timing in timings.items():
            error = abs(timing.result - reference) / max(abs(reference), 1e-300)
            if not error < 1e-10:
                raise RuntimeError(f"{key} differs from the unsliced result: relative error {error:.2e}")
        peaks = {key: peak_in_process(fns[key]) for key in ("unsliced_t1", "serial_t1")}
        worker_peak, parent_peak = peak_on_pool(pool, workers, fns["pool"])
    common = dict(
        max_intermediate=bound,
        unsliced_largest_intermediate=plan.unsliced_largest_intermediate,
        largest_intermediate=plan.largest_intermediate,
        n_slices=plan.n_slices,
        flops_overhead=round(plan.overhead, 3),
        load=bench.load_average(),
    )
    rows = [
        (f"{name}_serial_t1", "serial_t1", "unsliced_t1", {"threads": 1}),
        (f"{name}_pool_w{workers}", "pool", f"unsliced_t{workers}",
         {"workers": workers, "threads": workers, "unsliced_t1_seconds": timings["unsliced_t1"].median}),
    ]  # fmt: skip
    for case, key, ref, extra in rows:
        reporter.emit(
            bench.make_row(
                BENCHMARK,
                case,
                timings[key].median,
                f"unsliced {ref[9:]}",
                timings[ref].median,
                repeats=timings[key].repeats,
                **extra,
                **common,
            )  # fmt: skip
        )
    reporter.emit(bench.make_row(BENCHMARK, rows[0][0], peaks["serial_t1"], "unsliced", peaks["unsliced_t1"],
                           metric="peak_bytes", **common))  # fmt: skip
    reporter.emit(bench.make_row(BENCHMARK, rows[1][0], worker_peak, "unsliced", peaks["unsliced_t1"],
                           metric="peak_bytes", parent_peak_bytes=parent_peak, **common))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = bench.base_parser(__doc__.splitlines()[0], default_threads="2")
    args = parser.parse_args(argv)
    cases = [("lattice4x4_d16", 4, 16)] if args.quick else [("lattice5x5_d16", 5, 16)]
    columns = [
        ("case", lambda r: r["case"]),
        ("metric", lambda r: r["metric"]),
        ("sliced", lambda r: bench.fmt_value(r["tnkit"], r["metric"])),
        ("unsliced", lambda r: bench.fmt_value(r["reference_value"], r["metric"])),
        ("ratio", lambda r: bench.fmt_float(r["ratio"])),
        ("slices", lambda r: str(r["n_slices"])),
        ("load", lambda r: str(r["load"])),
    ]
    reporter = bench.Reporter(args.json, columns)
    for name, side, bond in cases:
        if not bench.case_selected(name, args.cases):
            continue
        for workers in args.threads:
            run_case(name, side, bond, workers, args.repeats, reporter)
    reporter.finish(f"machine load average (1 min) at the end: {bench.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
