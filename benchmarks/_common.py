"""Shared helpers for tnkit's benchmark scripts (conventions below; results in ``docs/benchmarks.md``).

Every script in ``benchmarks/`` follows the same conventions, implemented here:

* one argument parser (``--quick``, ``--json``, ``--threads 1,2``, ``--repeats N``,
  ``--cases SUBSTRING``) from :func:`base_parser`;
* BLAS/LAPACK thread control with :func:`thread_limit` (threadpoolctl), applied to
  tnkit and to the reference alike;
* timing with :func:`measure`: one warm-up call per function, then the repeats of
  all compared functions *interleaved* round by round, so that a noisy shared
  machine slows every side alike and the ratio stays meaningful; the median is
  reported;
* rows built by :func:`make_row` (``ratio`` = tnkit / reference for costs) and
  written by a :class:`Reporter`: with ``--json`` exactly one JSON object per line
  on stdout and nothing else (progress goes to stderr), otherwise an aligned table;
* data sets from ``--data DIR`` or ``$TNKIT_DATA`` (:func:`add_data_argument`,
  :func:`use_data_dir`): a directory holding ``mnist/`` (the four MNIST IDX files) and
  ``text/wikitext-2-raw/wiki.test.raw``; by default ``shared/data`` beside the checkout.

Importing this module also puts the checkout that holds it first on ``sys.path`` (and
on ``PYTHONPATH`` for the processes :func:`run_python` starts), so a script run as
``python benchmarks/x.py`` measures this checkout's tnkit, not an installed one.
Nothing here imports tnkit or any reference package.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "log",
    "base_parser",
    "parse_threads",
    "thread_limit",
    "Timing",
    "measure",
    "choose_repeats",
    "freeze_gc",
    "make_row",
    "json_safe",
    "Reporter",
    "format_table",
    "fmt_seconds",
    "fmt_float",
    "fmt_bytes",
    "fmt_value",
    "run_python",
    "load_average",
    "announce",
    "case_selected",
    "add_data_argument",
    "use_data_dir",
]

#: The checkout holding this file; its ``tnkit`` is the one benchmarked.
CHECKOUT = Path(__file__).resolve().parents[1]
#: The data directory when neither ``--data`` nor ``$TNKIT_DATA`` names one.
DEFAULT_DATA = CHECKOUT.parent / "shared" / "data"

# ``python benchmarks/x.py`` puts ``benchmarks/`` first on sys.path; the checkout goes
# right after it, ahead of site-packages (where an installed or editable tnkit sits).
if str(CHECKOUT) not in sys.path:
    sys.path.insert(1, str(CHECKOUT))


# ---------------------------------------------------------------------- output


def log(*parts: Any) -> None:
    """Progress and diagnostics: always stderr, so ``--json`` stdout stays clean."""
    print(*parts, file=sys.stderr, flush=True)


def load_average() -> float | None:
    """One-minute load average of the machine (``None`` where unavailable)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - not on Windows
        return None


def announce(benchmark: str, args: argparse.Namespace, **versions: str | None) -> None:
    """Log the header line of a run: the packages' versions, CPUs, load, threads and sizes.

    ``versions`` maps a package to its version, ``None`` for one not installed.
    """
    packages = ", ".join(f"{name} {version or 'not installed'}" for name, version in versions.items())
    log(
        f"{benchmark} benchmark: {packages}, {os.cpu_count()} CPUs, load {load_average()}, "
        f"threads {args.threads}, {'quick' if args.quick else 'full'} sizes"
    )


# ---------------------------------------------------------------------- arguments


def parse_threads(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``; each a positive integer, duplicates dropped, order kept."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"thread counts must be integers, got {part!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {n}")
        if n not in out:
            out.append(n)
    if not out:
        raise argparse.ArgumentTypeError("give at least one thread count, e.g. --threads 1,2")
    return out


def base_parser(description: str, *, default_threads: str = "1,2", default_repeats: int = 5) -> argparse.ArgumentParser:
    """The common command line of every benchmark script."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="reduced sizes, finishes in under a minute")
    p.add_argument("--json", action="store_true", help="one JSON object per case on stdout, nothing else")
    p.add_argument(
        "--threads",
        type=parse_threads,
        default=parse_threads(default_threads),
        help=f"comma-separated BLAS thread counts to run every case at (default {default_threads})",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=default_repeats,
        help=f"timed repeats per function after one warm-up (default {default_repeats}; "
        "fewer are used automatically for calls over 2 s)",
    )
    p.add_argument("--cases", default="", help="run only cases whose name contains this substring")
    return p


def add_data_argument(p: argparse.ArgumentParser) -> None:
    """Add ``--data DIR``: where the data sets are (default ``$TNKIT_DATA``, else :data:`DEFAULT_DATA`)."""
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory holding mnist/ (the four MNIST IDX files: train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) and "
        "text/wikitext-2-raw/wiki.test.raw (default: $TNKIT_DATA, else shared/data beside the checkout)",
    )


def use_data_dir(data: Path | None) -> Path:
    """The data directory (``data``, ``$TNKIT_DATA`` or :data:`DEFAULT_DATA`).

    When ``data`` or ``$TNKIT_DATA`` names one, tnkit's MNIST loader (and any worker
    process) is pointed at its ``mnist/`` through ``$TNKIT_MNIST_DIR``.
    """
    chosen = data if data is not None else os.environ.get("TNKIT_DATA")
    if not chosen:
        return DEFAULT_DATA
    os.environ["TNKIT_MNIST_DIR"] = str(Path(chosen) / "mnist")
    return Path(chosen)


def case_selected(name: str, pattern: str) -> bool:
    """Whether a case named ``name`` is selected by ``--cases pattern`` (substring, or empty)."""
    return not pattern or pattern in name


# ---------------------------------------------------------------------- threads


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """Limit every loaded BLAS/OpenMP pool to ``n`` threads inside the block.

    Import the libraries being compared *before* entering: threadpoolctl limits
    the pools loaded at that moment (numpy's OpenBLAS, scipy's, MKL, ...).
    """
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a bench dependency
        log(f"warning: threadpoolctl is not installed; cannot limit threads to {n}")
        yield
        return
    with threadpool_limits(limits=n):
        yield


# ---------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Times of one function: the warm-up call, the timed repeats and their median."""

    name: str
    warmup: float
    times: list[float] = field(default_factory=list)
    result: Any = None
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def repeats(self) -> int:
        return len(self.times)


def choose_repeats(warmup_seconds: float, requested: int) -> int:
    """Repeats for a call whose warm-up took ``warmup_seconds``.

    ``requested`` (at least 5 by convention) up to 2 s, 3 up to 20 s, 1 beyond.
    """
    requested = max(int(requested), 1)
    if warmup_seconds <= 2.0:
        return requested
    if warmup_seconds <= 20.0:
        return min(requested, 3)
    return 1


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def measure(
    fns: dict[str, Callable[[], Any]],
    *,
    repeats: int = 5,
    fixed_repeats: dict[str, int] | None = None,
    keep_result: bool = True,
    catch: bool = True,
) -> dict[str, Timing]:
    """Warm each function up once, then time the repeats interleaved round by round.

    Parameters
    ----------
    fns : dict of name -> zero-argument callable
        The functions compared (tnkit, the reference's methods, the floor).
    repeats : int
        Requested repeats; reduced per function by :func:`choose_repeats`.
    fixed_repeats : dict, optional
        Exact repeat counts for some functions (overrides the automatic choice).
    keep_result : bool
        Keep the warm-up call's return value in ``Timing.result`` (for accuracy checks).
    catch : bool
        Record an exception of a function in ``Timing.error`` instead of raising.

    Returns
    -------
    dict of name -> Timing
    """
    timings: dict[str, Timing] = {}
    counts: dict[str, int] = {}
    gc.collect()
    for name, fn in fns.items():
        try:
            warm, result = _timed(fn)
        except Exception as exc:  # noqa: BLE001 - a reference method may not apply
            if not catch:
                raise
            timings[name] = Timing(name, math.nan, error=f"{type(exc).__name__}: {exc}"[:300])
            continue
        timings[name] = Timing(name, warm, result=result if keep_result else None)
        counts[name] = (fixed_repeats or {}).get(name, choose_repeats(warm, repeats))
    rounds = max(counts.values(), default=0)
    for r in range(rounds):
        gc.collect()  # once per round, not inside any timed call
        for name, fn in fns.items():
            if name in counts and r < counts[name] and timings[name].error is None:
                try:
                    dt, _ = _timed(fn)
                except Exception as exc:  # noqa: BLE001
                    if not catch:
                        raise
                    timings[name].error = f"{type(exc).__name__}: {exc}"[:300]
                    continue
                timings[name].times.append(dt)
    return timings


def freeze_gc() -> None:
    """Move every object alive now (modules, inputs) out of the collector's reach.

    Call after imports and input set-up: with quimb, numba and cotengra loaded a
    full ``gc.collect()`` otherwise costs ~0.1 s, which would then land in
    whichever timed call triggers it.
    """
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()


# ---------------------------------------------------------------------- rows


def json_safe(obj: Any) -> Any:
    """Plain-JSON version of ``obj``: numpy scalars to Python, NaN/inf to ``None``."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, complex):
        return json_safe(obj.real) if obj.imag == 0 else [json_safe(obj.real), json_safe(obj.imag)]
    return str(obj)


def make_row(
    benchmark: str,
    case: str,
    tnkit: float | None,
    reference: str | None,
    reference_value: float | None,
    *,
    metric: str = "seconds",
    lower_is_better: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One result row in the shared format.

    ``ratio`` is ``tnkit / reference_value`` when lower is better (costs, errors);
    for higher-is-better metrics no ratio is formed. ``None`` values stay ``None``
    (a missing reference is reported, never dropped). Extra fields follow.
    """
    ratio = None
    if lower_is_better and tnkit is not None and reference_value not in (None, 0) and math.isfinite(reference_value):
        ratio = tnkit / reference_value
    row: dict[str, Any] = {
        "benchmark": benchmark,
        "case": case,
        "metric": metric,
        "tnkit": tnkit,
        "reference": reference,
        "reference_value": reference_value,
        "ratio": ratio,
    }
    row.update({k: v for k, v in extra.items() if v is not None})
    return json_safe(row)


def fmt_seconds(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 1e-3:
        return f"{x * 1e3:.2f}m"
    return f"{x * 1e6:.1f}u"


def fmt_float(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if x != 0 and (abs(x) < 10 ** -(digits) or abs(x) >= 1e6):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}f}"


def fmt_bytes(x: float | None) -> str:
    """A byte count with a binary unit: ``"512 B"``, ``"1.50 MiB"``."""
    if x is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(x) < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.2f} {unit}"
        x /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_value(x: float | None, metric: str) -> str:
    """``x`` with the unit its ``metric`` names: seconds, bytes, or a plain number followed by the metric."""
    if x is None:
        return "-"
    if metric == "seconds":
        return f"{fmt_seconds(x)}s"
    if metric == "bytes" or metric.endswith("_bytes"):
        return fmt_bytes(x)
    return f"{x:,} {metric}" if isinstance(x, int) else f"{fmt_float(x)} {metric}"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], str]]]) -> str:
    """Aligned text table; ``columns`` are ``(header, row -> text)`` pairs."""
    cells = [[h for h, _ in columns]] + [[f(r) for _, f in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = []
    for k, c in enumerate(cells):
        lines.append("  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(c, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Reporter:
    """Collects rows; prints JSON lines at once (``--json``) or a table at the end."""

    def __init__(self, json_mode: bool, columns: Sequence[tuple[str, Callable[[dict[str, Any]], str]]] = ()):
        self.json_mode = json_mode
        self.columns = list(columns)
        self.rows: list[dict[str, Any]] = []

    def emit(self, row: dict[str, Any]) -> None:
        row = json_safe(row)
        self.rows.append(row)
        if self.json_mode:
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        else:
            metric = row.get("metric", "seconds")
            log(
                f"  {row['case']}: tnkit {fmt_value(row.get('tnkit'), metric)}, "
                f"{row.get('reference')} {fmt_value(row.get('reference_value'), metric)}, "
                f"ratio {fmt_float(row.get('ratio'))}"
            )

    def finish(self, footer: str = "") -> None:
        if self.json_mode:
            return
        if self.rows and self.columns:
            print(format_table(self.rows, self.columns))
        if footer:
            print(footer)
        sys.stdout.flush()


# ---------------------------------------------------------------------- subprocesses


def run_python(code: str, *, threads: int | None = None, timeout: float = 600.0) -> str:
    """Run ``code`` with this interpreter in a fresh process; return its stdout.

    ``threads`` sets ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``
    of the child (a fresh process cannot inherit threadpoolctl's limits).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout
