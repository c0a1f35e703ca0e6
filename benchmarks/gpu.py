"""GPU benchmark: tnkit's engine on torch tensors on a device vs tnkit on numpy (CPU) vs quimb on torch.

Every case runs the same seeded network three ways in one process: tnkit with numpy
arrays on the CPU (the reference the ratio is taken against), tnkit with the network
moved by ``.to("torch", device=...)``, and, where quimb has the operation, quimb
with its arrays converted to torch tensors on the same device (quimb dispatches
through autoray, so its work runs on the device too). Device work is synchronised
before each timer stops.

Usage::

    python benchmarks/gpu.py [--device cuda|cpu] [--dtype float64|float32] [--quick] [--json]
                             [--repeats N] [--cases SUBSTRING]

Without a CUDA device the default ``--device cuda`` prints why and exits 0 (nothing
is measured); ``--device cpu`` runs the same cases with torch on the CPU, which
exercises the torch path anywhere.

Cases (full sizes; ``--quick`` shrinks them):

* ``compress``: SVD compression of a random, non-canonical MPS (N=32, 256 -> 64);
* ``overlap``: <a|b> of two random MPS (N=64, bond 256);
* ``canonicalize``: mixed canonical form about N/2 (N=32, bond 256);
* ``apply_heis``: Heisenberg MPO on a random MPS, zip-up to bond 64 (N=32);
* ``sample``: 10,000 exact samples (N=32, bond 64);
* ``svd_small_k``: one ``k x k`` SVD on the device against the same on the CPU
  (k = 16 ... 512), the measurement behind ``tnkit.core.linalg.SMALL_GPU_SVD``
  (CUDA only).

``ratio`` is tnkit-on-device / tnkit-on-numpy; ``quimb_ratio`` is
tnkit-on-device / quimb-on-device.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as bench  # noqa: E402

import tnkit  # noqa: E402
from tnkit.mps.builders import heisenberg_mpo  # noqa: E402

COLUMNS = [
    ("case", lambda r: r["case"]),
    ("device", lambda r: r.get("device", "-")),
    ("tnkit torch s", lambda r: bench.fmt_seconds(r.get("tnkit"))),
    ("tnkit numpy s", lambda r: bench.fmt_seconds(r.get("reference_value"))),
    ("ratio", lambda r: bench.fmt_float(r.get("ratio"), 3)),
    ("quimb torch s", lambda r: bench.fmt_seconds(r.get("quimb_torch"))),
    ("quimb ratio", lambda r: bench.fmt_float(r.get("quimb_ratio"), 3)),
    ("check", lambda r: bench.fmt_float(r.get("max_rel_diff"), 2)),
]


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(compress=(16, 64, 16), overlap=(32, 64), canonicalize=(16, 64), apply=(16, 16, 16),
                    sample=(16, 16, 2000), svd=(16, 64, 256))
    return dict(compress=(32, 256, 64), overlap=(64, 256), canonicalize=(32, 256), apply=(32, 64, 64),
                sample=(32, 64, 10_000), svd=(16, 32, 64, 128, 256, 512))


class Runner:
    def __init__(self, torch: Any, device: str, dtype: str, repeats: int, reporter: bench.Reporter) -> None:
        self.torch, self.device, self.dtype = torch, device, dtype
        self.repeats, self.reporter = repeats, reporter

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def synced(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            out = fn()
            self.sync()
            return out

        return call

    def on_device(self, chain: Any) -> Any:
        return chain.to("torch", device=self.device)

    def quimb_on_device(self, chain: Any) -> Any | None:
        try:
            q = chain.to_quimb()
        except ImportError:
            return None
        torch, device = self.torch, self.device
        q.apply_to_arrays(lambda x: torch.as_tensor(np.ascontiguousarray(x), device=device))
        return q

    def compare(self, case: str, numpy_fn, torch_fn, quimb_fn=None, check=None) -> None:
        fns = {"numpy": numpy_fn, "torch": self.synced(torch_fn)}
        if quimb_fn is not None:
            fns["quimb"] = self.synced(quimb_fn)
        t = bench.measure(fns, repeats=self.repeats)
        torch_s, numpy_s = t["torch"].median, t["numpy"].median
        quimb_s = t["quimb"].median if "quimb" in t else None
        extra = {}
        if check is not None and t["numpy"].result is not None and t["torch"].result is not None:
            extra["max_rel_diff"] = check(t["numpy"].result, t["torch"].result)
        errors = {k: v.error for k, v in t.items() if v.error}
        self.reporter.emit(bench.make_row(
            "gpu", case, torch_s, "tnkit-numpy-cpu", numpy_s,
            device=self.device, dtype=self.dtype, quimb_torch=quimb_s,
            quimb_ratio=None if not quimb_s or torch_s is None else torch_s / quimb_s,
            errors=errors or None, load1=bench.load_average(), **extra,
        ))


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), 1e-300)


def case_compress(r: Runner, n: int, chi_in: int, chi_out: int) -> None:
    psi = tnkit.MPS.random(n, chi_in, seed=100 + chi_in, normalize=False, dtype=r.dtype)
    t, q = r.on_device(psi), r.quimb_on_device(psi)

    def quimb_fn():
        out = q.copy()
        out.compress(max_bond=chi_out, cutoff=1e-10)
        return out

    r.compare(
        f"compress_n{n}_chi{chi_in}to{chi_out}",
        lambda: psi.compress(max_bond=chi_out)[1].error,
        lambda: t.compress(max_bond=chi_out)[1].error,
        None if q is None else quimb_fn,
        check=_rel,
    )


def case_overlap(r: Runner, n: int, chi: int) -> None:
    a = tnkit.MPS.random(n, chi, seed=200 + chi, dtype=r.dtype)
    b = tnkit.MPS.random(n, chi, seed=300 + chi, dtype=r.dtype)
    ta, tb = r.on_device(a), r.on_device(b)
    qa, qb = r.quimb_on_device(a), r.quimb_on_device(b)
    r.compare(
        f"overlap_n{n}_chi{chi}", lambda: a.inner(b), lambda: ta.inner(tb),
        None if qa is None else (lambda: qa.H @ qb), check=_rel,
    )


def case_canonicalize(r: Runner, n: int, chi: int) -> None:
    psi = tnkit.MPS.random(n, chi, seed=400 + chi, normalize=False, dtype=r.dtype)
    t, q = r.on_device(psi), r.quimb_on_device(psi)
    r.compare(
        f"canonicalize_n{n}_chi{chi}",
        lambda: psi.canonicalize(n // 2).log_norm(),
        lambda: t.canonicalize(n // 2).log_norm(),
        None if q is None else (lambda: q.copy().canonicalize(n // 2)),
        check=_rel,
    )


def case_apply(r: Runner, n: int, chi: int, chi_out: int) -> None:
    psi = tnkit.MPS.random(n, chi, seed=500 + chi, dtype=r.dtype)
    h = heisenberg_mpo(n).to(dtype=r.dtype)
    t, th = r.on_device(psi), r.on_device(h)
    r.compare(
        f"apply_heis_n{n}_chi{chi}to{chi_out}",
        lambda: h.apply(psi, max_bond=chi_out).log_norm(),
        lambda: th.apply(t, max_bond=chi_out).log_norm(),
        check=_rel,
    )


def case_sample(r: Runner, n: int, chi: int, count: int) -> None:
    psi = tnkit.MPS.random(n, chi, seed=600 + chi, dtype=r.dtype)
    t = r.on_device(psi)
    r.compare(
        f"sample_n{n}_chi{chi}_s{count}",
        lambda: psi.sample(count, seed=1),
        lambda: t.sample(count, seed=1),
        check=lambda a, b: float(np.mean(a != b)),
    )


def case_svd(r: Runner, ks: tuple[int, ...]) -> None:
    if not r.device.startswith("cuda"):
        bench.log("  svd_small: skipped on the CPU (both sides would be the same call)")
        return
    torch = r.torch
    for k in ks:
        m = torch.as_tensor(np.random.default_rng(k).standard_normal((k, k)), dtype=getattr(torch, r.dtype))
        on_device, on_cpu = m.to(r.device), m
        t = bench.measure({
            "device": r.synced(lambda m=on_device: torch.linalg.svd(m, full_matrices=False)),
            "cpu": lambda m=on_cpu: torch.linalg.svd(m, full_matrices=False),
        }, repeats=r.repeats)
        r.reporter.emit(bench.make_row(
            "gpu", f"svd_small_{k}", t["device"].median, "torch-cpu", t["cpu"].median,
            device=r.device, dtype=r.dtype, load1=bench.load_average(),
        ))


def plan(quick: bool) -> list[tuple[str, Callable[[Runner], None]]]:
    s = sizes(quick)
    return [
        ("compress", lambda r: case_compress(r, *s["compress"])),
        ("overlap", lambda r: case_overlap(r, *s["overlap"])),
        ("canonicalize", lambda r: case_canonicalize(r, *s["canonicalize"])),
        ("apply_heis", lambda r: case_apply(r, *s["apply"])),
        ("sample", lambda r: case_sample(r, *s["sample"])),
        ("svd_small", lambda r: case_svd(r, s["svd"])),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = bench.base_parser(__doc__.split("\n\n")[0], default_threads="1")
    parser.add_argument("--device", default="cuda", help="torch device: cuda (default), cuda:N or cpu")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        bench.log("gpu benchmark skipped: torch is not installed (pip install 'tnkit[llm]').")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        bench.log("gpu benchmark skipped: no CUDA device; --device cpu exercises the torch path on the CPU.")
        return 0
    reporter = bench.Reporter(args.json, COLUMNS)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    bench.log(
        f"gpu benchmark: tnkit {tnkit.__version__}, torch {torch.__version__} on {args.device} ({name}), "
        f"{os.cpu_count()} CPUs, load {bench.load_average()}, {args.dtype}, "
        f"{'quick' if args.quick else 'full'} sizes"
    )
    runner = Runner(torch, args.device, args.dtype, args.repeats, reporter)
    bench.freeze_gc()
    start = time.perf_counter()
    with tnkit.core.threads.blas_threads(1):  # the numpy reference at one BLAS thread
        for case, run in plan(args.quick):
            if bench.case_selected(case, args.cases):
                bench.log(f"[{case}] ...")
                run(runner)
    reporter.finish(
        f"\nratio = tnkit on torch/{args.device} / tnkit on numpy (CPU); quimb ratio = tnkit / quimb, "
        f"both on torch/{args.device}; check = largest relative difference of the numbers compared "
        f"(sample: fraction of differing entries); medians of {args.repeats} repeats; "
        f"{time.perf_counter() - start:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
