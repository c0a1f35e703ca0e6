"""TTN benchmark: tnkit's tree tensor networks vs the same trees built from quimb tensors.

quimb has no tree class (quimb#69), so the reference is the same network as a
``quimb.tensor.TensorNetwork`` (``psi.to_quimb()``: identical tensors), handled by
quimb's own routines. Both run in this process on the same seeded inputs; the
timed calls are interleaved round by round (``_common.measure``) and the median
is reported. ``ratio`` = tnkit / quimb (the fastest quimb method that works where
several are listed in ``quimb_methods``).

Usage::

    python benchmarks/ttn.py [--quick] [--json] [--threads 1,2] [--repeats N] [--cases SUBSTRING]

Cases (full sizes; ``--quick`` shrinks them), each at every thread count, the
name ending in ``_t<threads>``:

* ``batch_n64_chi32_b1000``: a balanced binary TTN over 64 leaves (d=2, bond 32)
  contracted with 1,000 product inputs (the forward pass of a tree classifier):
  ``contract_product_inputs`` (one planned contraction) against quimb contracting
  the network plus 64 feature tensors sharing a ``batch`` hyperindex, output
  ``batch``. quimb's default optimizer (``greedy``) is tried only if its largest
  intermediate fits in 2 GiB; ``auto-hq`` is timed with its path found once
  beforehand (path search reported, not timed). Also timed, right after (in
  rounds of its own, so it cannot disturb the comparison): ``floor``, the matrix
  products of tnkit's contraction alone (:func:`product_floor`: every node's
  multiply-adds as one BLAS product per row chunk, without the per-row
  reductions that join a node's other children), reported as ``floor_seconds``,
  ``floor_ratio`` (floor / quimb) and ``tnkit_over_floor``. tnkit's contraction
  cannot beat its own floor; a ``floor_ratio`` above the goal says the goal
  needs faster matrix products than this BLAS gives these shapes.
* ``norm_n64_chi64``: ``norm()`` of a binary TTN over 64 leaves at bond 64 with
  no gauge information vs quimb's ``TensorNetwork.norm()``; with the ``floor`` of
  its products on the six ``64**3`` nodes alone (:func:`norm_floor`), timed like
  the batch's.
* ``canonicalize_n64_chi64``: canonical form towards the root, from no gauge
  information, vs ``TensorNetwork.canonize_around("TTN_ROOT")``.
* ``compress_n64_chi64to32``: SVD truncation of every bond to 32 (leaves to
  root, exact error) vs ``TensorNetwork.compress_all_tree(max_bond=32, cutoff=0)``;
  both results' fidelities with the input are reported.

Goal: ratio <= 0.5 in every case, at 1 and at 2 threads. tnkit picks
its BLAS threads itself: TTN operations use the caller's threads when their
largest matrix product reaches 2**22 multiply-adds (``tnkit.ttn.threads``; every
case here does), one thread below; ``--threads`` limits both libraries' pools.
On a loaded machine two-thread timings of both libraries are dominated by BLAS
threads spinning against other jobs: compare them on a quiet machine.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as bench  # noqa: E402

import tnkit  # noqa: E402
from tnkit.ttn import TTN, Tree  # noqa: E402

try:  # import before any thread limit, so threadpoolctl sees every BLAS pool
    warnings.filterwarnings("ignore", category=FutureWarning)
    import quimb
    import quimb.tensor as qtn

    QUIMB_VERSION: str | None = quimb.__version__
except ImportError:  # pragma: no cover - quimb is a core dependency
    qtn = None
    QUIMB_VERSION = None

BENCH = "ttn"
GOAL = 0.5
#: Largest intermediate (elements) quimb may allocate in the batch case: 2 GiB of float64.
MAX_INTERMEDIATE = 2**28


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"batch": (16, 16, 200), "tree": (16, 16, 8)}
    return {"batch": (64, 32, 1000), "tree": (64, 64, 32)}


def raw_network(n_leaves: int, bond: int, seed: int) -> TTN:
    """A random binary TTN with no gauge information (as if built from raw tensors)."""
    psi = TTN.random(Tree.balanced(n_leaves), 2, bond, seed=seed, normalize=False)
    return TTN(psi.tree, psi.tensors)


def emit(
    reporter: bench.Reporter, case: str, threads: int, timings: dict, *, tnkit_key: str = "tnkit", **extra: Any
) -> None:
    tk = timings[tnkit_key]
    if tk.error:
        raise RuntimeError(f"{case}: tnkit failed: {tk.error}")
    methods = {}
    for name, t in timings.items():
        if name.startswith("quimb:"):
            methods[name] = {"seconds": t.median, "repeats": t.repeats, **({"error": t.error} if t.error else {})}
    best, ref = fastest_quimb(timings)
    ratio = tk.median / ref if ref else None
    row = bench.make_row(
        BENCH,
        f"{case}_t{threads}",
        tk.median,
        best or ("quimb (not installed)" if qtn is None else "quimb (no method ran)"),
        ref,
        threads=threads,
        repeats=tk.repeats,
        quimb_methods=methods,
        goal=f"ratio<={GOAL:g}",
        goal_met=None if ratio is None else ratio <= GOAL,
        load=bench.load_average(),
        **extra,
    )
    reporter.emit(row)


def fastest_quimb(timings: dict) -> tuple[str | None, float | None]:
    """Name and median seconds of the fastest quimb method that ran (``(None, None)`` if none did)."""
    ok = {name: t.median for name, t in timings.items() if name.startswith("quimb:") and t.median is not None}
    if not ok:
        return None, None
    best = min(ok, key=ok.get)
    return best, ok[best]


def add_floor(extra: dict[str, Any], timings: dict, floor_fn: Callable[[], Any], repeats: int) -> None:
    """Time ``floor_fn`` in rounds of its own (after the comparison) and add ``floor_*`` fields to ``extra``.

    Timed separately because a third function inside the comparison's rounds would
    change the cache and allocator state each library meets.
    """
    floor = bench.measure({"floor": floor_fn}, repeats=repeats)["floor"].median
    _, quimb_seconds = fastest_quimb(timings)
    extra["floor_seconds"] = floor
    extra["tnkit_over_floor"] = timings["tnkit"].median / floor
    extra["floor_ratio"] = floor / quimb_seconds if quimb_seconds else None


def norm_floor(psi: TTN) -> Callable[[], None]:
    """The matrix products of ``norm()`` on its largest nodes, alone, as one callable.

    For every node whose tensor holds at least half as many numbers as the
    largest (the six ``64**3`` nodes of the benchmark's tree), what
    :func:`tnkit.ttn.network.log_norm` multiplies there: an upper triangular
    factor on each child axis (:func:`tnkit.core.linalg.apply_matrix` with
    ``upper=True``, into scratch buffers) and the Gram matrix of the result, with
    random triangular factors. Cholesky factorisations, rescaling and the smaller
    nodes are left out.
    """
    from tnkit.core.linalg import apply_matrix, gram
    from tnkit.core.workspace import scratch

    tensors = list(psi.tensors)
    largest = max(t.size for t in tensors)
    rng = np.random.default_rng(0)
    work = [(t, [np.triu(rng.standard_normal((d, d))) for d in t.shape[:-1]])
            for t in tensors if 2 * t.size >= largest and t.ndim == 3]

    def run() -> None:
        for t, factors in work:
            m = t
            for axis, f in enumerate(factors):
                m = apply_matrix(m, f, axis, upper=True, out=scratch(f"bench.floor.{axis % 2}", t.shape, t.dtype))
            gram(m.reshape(-1, t.shape[-1]))

    return run


def product_floor(psi: TTN, batch: int) -> Callable[[], None]:
    """The matrix products of ``contract_product_inputs`` for ``batch`` inputs, alone, as one callable.

    For every internal node and every row chunk of the batch (the chunks tnkit
    uses), the product of a ``(rows, D_first)`` input with the node tensor as a
    ``(D_first, rest)`` matrix: the first child absorbed, which carries all of the
    node's ``rows * T.size`` multiply-adds. One input and one output buffer per
    shape are allocated beforehand and reused, as a contraction reuses its cache.
    The per-row reductions that absorb the other children are left out, so this
    is a floor for contracting in tnkit's layout: the multiply-adds as BLAS
    products of these shapes. (Other layouts of the same multiply-adds, such as
    a row-wise Kronecker product of the children times the node tensor, ran at
    similar rates here: 21-23 against 21 GMAC/s for one node at one thread.)
    """
    from tnkit.ttn import network

    tensors = list(psi.tensors)
    chunks = network._row_chunks(tensors, batch)
    rng = np.random.default_rng(0)
    inputs: dict[tuple[int, int], np.ndarray] = {}
    outputs: dict[tuple[int, int], np.ndarray] = {}
    work = []
    for t in tensors:
        matrix = t.reshape(t.shape[0], -1)
        for rows in chunks:
            m = rows.stop - rows.start
            a = inputs.setdefault((m, matrix.shape[0]), rng.standard_normal((m, matrix.shape[0])))
            out = outputs.setdefault((m, matrix.shape[1]), np.empty((m, matrix.shape[1])))
            work.append((a, matrix, out))

    def run() -> None:
        for a, b, out in work:
            np.matmul(a, b, out=out)

    return run


# ---------------------------------------------------------------------- cases


def case_batch(args: Any, threads: int, reporter: bench.Reporter, inputs: dict) -> None:
    n, bond, batch = sizes(args.quick)["batch"]
    case = f"batch_n{n}_chi{bond}_b{batch}"
    if not bench.case_selected(case, args.cases):
        return
    if "batch" not in inputs:
        psi = TTN.random(Tree.balanced(n), 2, bond, seed=0, normalize=False)
        x = np.random.default_rng(1).standard_normal((batch, n, 2))
        inputs["batch"] = (psi, x)
    psi, x = inputs["batch"]
    fns: dict[str, Callable[[], Any]] = {"tnkit": lambda: psi.contract_product_inputs(x)}
    extra: dict[str, Any] = {}
    if qtn is not None:
        feats = [qtn.Tensor(x[:, leaf], inds=("batch", f"k{leaf}")) for leaf in range(n)]
        full = psi.to_quimb() & qtn.TensorNetwork(feats)
        for opt in ("greedy", "auto-hq"):
            t0 = time.perf_counter()
            tree = full.contraction_tree(optimize=opt, output_inds=("batch",))
            search = time.perf_counter() - t0
            width = 2.0 ** tree.contraction_width()
            extra[f"quimb_{opt}_path"] = {"search_seconds": search, "largest_intermediate": width,
                                          "cost": float(tree.contraction_cost())}
            if width > MAX_INTERMEDIATE:
                extra[f"quimb_{opt}_path"]["skipped"] = (
                    f"largest intermediate {width:.3g} elements ({width * 8 / 2**30:.1f} GiB) > 2 GiB"
                )
                continue
            fns[f"quimb:{opt}"] = lambda tree=tree: full.contract(output_inds=("batch",), optimize=tree)
        extra["quimb_default_strategy"] = qtn.contraction.get_contract_strategy()
    timings = bench.measure(fns, repeats=args.repeats)
    add_floor(extra, timings, product_floor(psi, batch), args.repeats)
    for name, t in timings.items():
        if name.startswith("quimb:") and t.result is not None:
            q = np.asarray(t.result.data if hasattr(t.result, "data") else t.result)
            extra[f"max_rel_diff_{name}"] = float(
                np.abs(q - timings["tnkit"].result).max() / np.abs(timings["tnkit"].result).max()
            )
    emit(reporter, case, threads, timings, **extra)


def _tree_inputs(args: Any, inputs: dict) -> tuple[TTN, Any]:
    if "tree" not in inputs:
        n, bond, _ = sizes(args.quick)["tree"]
        psi = raw_network(n, bond, seed=2)
        inputs["tree"] = (psi, psi.to_quimb() if qtn is not None else None)
        bench.freeze_gc()
    return inputs["tree"]


def case_norm(args: Any, threads: int, reporter: bench.Reporter, inputs: dict) -> None:
    n, bond, _ = sizes(args.quick)["tree"]
    case = f"norm_n{n}_chi{bond}"
    if not bench.case_selected(case, args.cases):
        return
    psi, tn = _tree_inputs(args, inputs)
    assert psi.center is None
    fns: dict[str, Callable[[], Any]] = {"tnkit": psi.norm}
    if tn is not None:
        fns["quimb:norm"] = tn.norm
    timings = bench.measure(fns, repeats=args.repeats)
    extra: dict[str, Any] = {}
    if "quimb:norm" in timings and timings["quimb:norm"].result is not None:
        extra["rel_diff"] = abs(timings["tnkit"].result / timings["quimb:norm"].result - 1.0)
    add_floor(extra, timings, norm_floor(psi), args.repeats)
    emit(reporter, case, threads, timings, **extra)


def case_canonicalize(args: Any, threads: int, reporter: bench.Reporter, inputs: dict) -> None:
    n, bond, _ = sizes(args.quick)["tree"]
    case = f"canonicalize_n{n}_chi{bond}"
    if not bench.case_selected(case, args.cases):
        return
    psi, tn = _tree_inputs(args, inputs)
    fns: dict[str, Callable[[], Any]] = {"tnkit": psi.canonicalize}  # a copy, from no gauge information
    if tn is not None:
        fns["quimb:canonize_around"] = lambda: tn.canonize_around("TTN_ROOT", inplace=False)
    timings = bench.measure(fns, repeats=args.repeats)
    out = timings["tnkit"].result
    extra = {"tnkit_is_canonical": bool(out.is_canonical(out.tree.root))}
    emit(reporter, case, threads, timings, **extra)


def case_compress(args: Any, threads: int, reporter: bench.Reporter, inputs: dict) -> None:
    n, bond, target = sizes(args.quick)["tree"]
    case = f"compress_n{n}_chi{bond}to{target}"
    if not bench.case_selected(case, args.cases):
        return
    psi, tn = _tree_inputs(args, inputs)
    fns: dict[str, Callable[[], Any]] = {"tnkit": lambda: psi.compress(max_bond=target, cutoff=0.0)}
    if tn is not None:
        fns["quimb:compress_all_tree"] = lambda: tn.compress_all_tree(max_bond=target, cutoff=0.0)
    timings = bench.measure(fns, repeats=args.repeats)
    small, report = timings["tnkit"].result
    extra: dict[str, Any] = {"tnkit_fidelity": report.fidelity, "tnkit_fidelity_check": small.fidelity(psi)}
    q = timings.get("quimb:compress_all_tree")
    if q is not None and q.result is not None:
        ov = abs(tn.H @ q.result) ** 2
        extra["reference_fidelity"] = float(ov / ((tn.H @ tn).real * (q.result.H @ q.result).real))
    emit(reporter, case, threads, timings, **extra)


CASES = [case_batch, case_norm, case_canonicalize, case_compress]

COLUMNS = [
    ("case", lambda r: r["case"]),
    ("tnkit s", lambda r: bench.fmt_seconds(r.get("tnkit"))),
    ("quimb s", lambda r: bench.fmt_seconds(r.get("reference_value"))),
    ("quimb method", lambda r: str(r.get("reference", "-")).replace("quimb:", "")),
    ("ratio", lambda r: bench.fmt_float(r.get("ratio"), 3)),
    ("fid tnkit", lambda r: bench.fmt_float(r.get("tnkit_fidelity"), 6)),
    ("fid quimb", lambda r: bench.fmt_float(r.get("reference_fidelity"), 6)),
    ("floor ratio", lambda r: bench.fmt_float(r.get("floor_ratio"), 3)),
    ("met", lambda r: {True: "yes", False: "NO"}.get(r.get("goal_met"), "-")),
]


def main(argv: list[str] | None = None) -> int:
    parser = bench.base_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    reporter = bench.Reporter(args.json, COLUMNS)
    bench.announce("ttn", args, tnkit=tnkit.__version__, quimb=QUIMB_VERSION, numpy=np.__version__)
    inputs: dict = {}
    t0 = time.perf_counter()
    for threads in args.threads:
        with bench.thread_limit(threads):
            for case in CASES:
                case(args, threads, reporter, inputs)
    elapsed = time.perf_counter() - t0
    bench.log(f"done in {elapsed:.1f} s")
    if not reporter.rows:
        bench.log(f"no case matches --cases {args.cases!r}")
        return 1
    reporter.finish(
        f"\nratio = tnkit / fastest working quimb method on the same tree network; times are medians "
        f"(m = ms). quimb {QUIMB_VERSION}, {os.cpu_count()} CPUs, load {bench.load_average()}, "
        f"{elapsed:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
