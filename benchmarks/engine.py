"""Engine benchmark: tnkit's MPS/MPO operations vs quimb vs the raw LAPACK floor.

Runs tnkit and quimb side by side in one process on the same (seeded) inputs and
reports, per case, the median time of each, the ratio tnkit / quimb and the time
of a plain-numpy implementation of the same QR/SVD/matmul sequence (the "floor").
quimb is compared through its *fastest* applicable method: every method is timed
and listed in ``quimb_methods``; ``reference`` names the fastest. For truncating
cases the fidelity of every result against the exact (untruncated) state is
computed with the same independent numpy transfer-matrix code, so accuracy can be
compared too. "Equal accuracy": where fidelities are known, ``reference`` is the
fastest quimb method at least as accurate as tnkit (infidelity at most 1.1x
tnkit's, fidelity at least 0.95x), and ``reference_fastest_any_accuracy`` names the
fastest method regardless of accuracy when that differs (e.g. quimb's randomised
``src`` on a random MPS).

Usage::

    python benchmarks/engine.py [--quick] [--json] [--threads 1,2] [--repeats N] [--cases SUBSTRING]

Cases (full sizes; ``--quick`` shrinks them), each at every thread count, the
name ending in ``_t<threads>``:

* ``compress``: SVD compression of a random, non-canonical MPS (N=64, 256 -> 64,
  and 32->8, 64->16, 128->32); floor = numpy LQ sweep + truncated SVD sweep.
* ``overlap``: <a|b> of two random MPS (N=100, bond 128, 8, 16, 32); floor =
  numpy transfer-matrix loop.
* ``apply_heis``: Heisenberg MPO times the XXZ(Delta=0.5) DMRG ground state
  (N=32, bond 64, 8, 16, 32), truncated back to that bond; floor = numpy zip-up.
* ``canonicalize``: mixed canonical form about N/2 of a non-canonical MPS (N=64).
* ``expectation_heis``: <psi|H|psi> of the Heisenberg MPO (N=64).
* ``sample``: exact samples from an MPS (N=64, 1,000 and 10,000 samples at bond
  64; 10,000 at bond 8, 16, 32). quimb draws one sample at a time, so it is timed
  on fewer samples and scaled linearly (stated in ``note``).
* ``entropy``: entanglement entropy at every bond (N=64).
* ``cold_start``: import plus first compress of a small MPS in a fresh process.

Goals checked per row (``goal`` / ``goal_met``, against the equal-accuracy
reference; ``goal_met_any_accuracy`` against the fastest quimb method when that
differs): ratio <= 1 everywhere; <= 0.5 at bond <= 32 and for overlaps; <= 0.01
for sampling; tnkit / floor <= 1.3 at bond >= 64; cold start under 1 s.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as bench  # noqa: E402

import tnkit  # noqa: E402
from tnkit.mps.apply import apply_mpo  # noqa: E402
from tnkit.mps.builders import heisenberg_mpo  # noqa: E402

try:  # import before any thread limit, so threadpoolctl sees scipy's BLAS too
    warnings.filterwarnings("ignore", category=FutureWarning)
    import quimb
    import quimb.tensor as qtn
    from quimb.tensor.tn1d.compress import tensor_network_1d_compress

    QUIMB_VERSION = quimb.__version__
except ImportError:  # pragma: no cover - quimb is a dependency of tnkit's bench extra
    qtn = None
    QUIMB_VERSION = None

BENCH = "engine"
TNKIT_CUTOFF = 1e-20  # relative discarded weight; ~ quimb's relative singular-value cutoff below
QUIMB_CUTOFF = 1e-10


# ====================================================================== numpy floors
# Plain loops of np.linalg.qr / np.linalg.svd / matmul: the same factorisation
# sequence as tnkit's algorithms, with no library layer around it.


def np_log_overlap(bra, ket, mpo=None) -> tuple[float, float]:
    """``<bra|ket>`` or ``<bra|W|ket>`` as ``(sign_or_phase, log|value|)``, rescaled per site."""
    log_scale = 0.0
    if mpo is None:
        env = np.ones((1, 1))
        for a, b in zip(bra, ket):
            x = (env @ b.reshape(b.shape[0], -1)).reshape(-1, b.shape[2])
            env = a.reshape(-1, a.shape[2]).conj().T @ x
            peak = float(np.abs(env).max())
            if peak > 0:
                env = env / peak
                log_scale += math.log(peak)
    else:
        env = np.ones((1, 1, 1))
        for a, w, b in zip(bra, mpo, ket):
            da, ww, db = env.shape
            s, db2 = b.shape[1], b.shape[2]
            t, v = w.shape[1], w.shape[3]
            x = (env.reshape(da * ww, db) @ b.reshape(db, s * db2)).reshape(da, ww, s, db2)
            x = x.transpose(0, 3, 1, 2).reshape(da * db2, ww * s)
            y = x @ w.transpose(0, 2, 1, 3).reshape(ww * s, t * v)
            y = y.reshape(da, db2, t, v).transpose(0, 2, 3, 1).reshape(da * t, v * db2)
            env = (a.reshape(da * t, a.shape[2]).conj().T @ y).reshape(a.shape[2], v, db2)
            peak = float(np.abs(env).max())
            if peak > 0:
                env = env / peak
                log_scale += math.log(peak)
    value = env.reshape(-1)[0]
    if value == 0:
        return 0.0, -math.inf
    return value / abs(value), log_scale + math.log(abs(value))


def np_fidelity(a, b, *, log_bb: float | None = None) -> float:
    """``|<a|b>|**2 / (<a|a><b|b>)`` in log space (meaningful down to ~1e-300)."""
    _, l_ab = np_log_overlap(a, b)
    if l_ab == -math.inf:
        return 0.0
    _, l_aa = np_log_overlap(a, a)
    if log_bb is None:
        _, log_bb = np_log_overlap(b, b)
    return min(math.exp(2 * l_ab - l_aa - log_bb), 1.0)


def _qr_site_left(ts, i):
    dl, d, dr = ts[i].shape
    q, r = np.linalg.qr(ts[i].reshape(dl * d, dr))
    k = q.shape[1]
    ts[i] = q.reshape(dl, d, k)
    nxt = ts[i + 1]
    ts[i + 1] = (r @ nxt.reshape(dr, -1)).reshape(k, nxt.shape[1], nxt.shape[2])


def _lq_site_right(ts, i):
    dl, d, dr = ts[i].shape
    q, r = np.linalg.qr(ts[i].reshape(dl, d * dr).T)
    k = q.shape[1]
    ts[i] = q.T.reshape(k, d, dr)
    prev = ts[i - 1]
    ts[i - 1] = (prev.reshape(-1, dl) @ r.T).reshape(prev.shape[0], prev.shape[1], k)


def np_canonicalize(tensors, center):
    """QR sweep from the left and LQ sweep from the right to ``center``."""
    ts = list(tensors)
    for i in range(center):
        _qr_site_left(ts, i)
    for i in range(len(ts) - 1, center, -1):
        _lq_site_right(ts, i)
    return ts


def np_compress(tensors, max_bond):
    """LQ sweep to centre 0, then truncated SVD sweep to the right (tnkit's order)."""
    ts = np_canonicalize(tensors, 0)
    for i in range(len(ts) - 1):
        dl, d, dr = ts[i].shape
        u, s, vh = np.linalg.svd(ts[i].reshape(dl * d, dr), full_matrices=False)
        k = min(max_bond, len(s))
        ts[i] = u[:, :k].reshape(dl, d, k)
        nxt = ts[i + 1]
        ts[i + 1] = ((s[:k, None] * vh[:k]) @ nxt.reshape(dr, -1)).reshape(k, nxt.shape[1], nxt.shape[2])
    return ts


def _svd_sweep_left(ts, max_bond=None):
    """Truncated SVD sweep from the last site to the first (centre at N-1 on entry)."""
    svals = []
    for i in range(len(ts) - 1, 0, -1):
        dl, d, dr = ts[i].shape
        u, s, vh = np.linalg.svd(ts[i].reshape(dl, d * dr), full_matrices=False)
        k = len(s) if max_bond is None else min(max_bond, len(s))
        ts[i] = vh[:k].reshape(k, d, dr)
        prev = ts[i - 1]
        ts[i - 1] = (prev.reshape(-1, dl) @ (u[:, :k] * s[:k])).reshape(prev.shape[0], prev.shape[1], k)
        svals.append(s[:k])
    return svals[::-1]


def np_entropy(tensors):
    """Right-canonical input: QR sweep to the right; the singular values of each R
    factor (no vectors) are the Schmidt values of that bond (tnkit's sequence)."""
    ts = list(tensors)
    out = []
    for i in range(len(ts) - 1):
        dl, d, dr = ts[i].shape
        q, r = np.linalg.qr(ts[i].reshape(dl * d, dr))
        ts[i] = q.reshape(dl, d, q.shape[1])
        nxt = ts[i + 1]
        ts[i + 1] = (r @ nxt.reshape(dr, -1)).reshape(r.shape[0], nxt.shape[1], nxt.shape[2])
        s = np.linalg.svd(r, compute_uv=False)
        p = s * s
        p = p / p.sum()
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


def np_direct_product(mpo, mps):
    """Exact ``W|psi>`` site tensors (bond ``w * D``)."""
    out = []
    for w, a in zip(mpo, mps):
        t = np.einsum("wtsv,asb->awtbv", w, a)
        s = t.shape
        out.append(t.reshape(s[0] * s[1], s[2], s[3] * s[4]))
    return out


def np_zipup(mpo, mps, max_bond):
    """Zip-up (right-canonical ``mps``): contract and split left to right, then an SVD sweep back."""
    n = len(mps)
    carry = np.ones((1, 1, 1))  # (new bond x, mpo bond w, psi bond b)
    out = []
    for i in range(n):
        w, a = mpo[i], mps[i]
        x, ww, b = carry.shape
        s, c = a.shape[1], a.shape[2]
        t, v = w.shape[1], w.shape[3]
        y = (carry.reshape(x * ww, b) @ a.reshape(b, s * c)).reshape(x, ww, s, c)
        y = y.transpose(0, 3, 1, 2).reshape(x * c, ww * s) @ w.transpose(0, 2, 1, 3).reshape(ww * s, t * v)
        y = y.reshape(x, c, t, v).transpose(0, 2, 3, 1).reshape(x * t, v * c)
        if i == n - 1:
            out.append(y.reshape(x, t, 1))
            break
        u, sv, vh = np.linalg.svd(y, full_matrices=False)
        k = min(max_bond, len(sv))
        out.append(u[:, :k].reshape(x, t, k))
        carry = (sv[:k, None] * vh[:k]).reshape(k, v, c)
    _svd_sweep_left(out, max_bond)
    return out


def np_sample(tensors, n_samples, seed):
    """Vectorised perfect sampling from a right-canonical MPS (tnkit's algorithm)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n_samples)
    out = np.empty((n_samples, len(tensors)), dtype=np.intp)
    left = np.ones((n_samples, 1))
    for i, a in enumerate(tensors):
        dl, d, dr = a.shape
        t = (left @ a.reshape(dl, d * dr)).reshape(n_samples, d, dr)
        wts = np.einsum("nsb,nsb->ns", t, t)
        cum = np.cumsum(wts, axis=1)
        u = rng.random((n_samples, 1)) * cum[:, -1:]
        s = np.minimum((cum < u).sum(axis=1), d - 1)
        p = wts[rows, s]
        out[:, i] = s
        left = t[rows, s] / np.sqrt(p)[:, None]
    return out


# ====================================================================== quimb helpers


def quimb_arrays(qmps) -> tuple[np.ndarray, ...]:
    """Site tensors ``(Dl, d, Dr)`` of a quimb MPS (for the fidelity checks)."""
    return tnkit.MPS.from_quimb(qmps).tensors


def _quimb_compress_inplace(q, **opts):
    c = q.copy()
    c.compress(**opts)
    return c


def _quimb_entropies(q, n, info_start):
    c = q.copy()
    info = {"cur_orthog": info_start} if info_start is not None else None
    if info is None:
        return [c.entropy(i) for i in range(1, n)]
    return [c.entropy(i, info=info) for i in range(1, n)]


def dmrg_state(n: int, chi: int, seed: int = 7) -> tnkit.MPS:
    """Ground state of the XXZ chain (Delta = 0.5) by quimb's DMRG2, as a tnkit MPS."""
    ham = qtn.MPO_ham_heis(n, j=(1.0, 1.0, 0.5))
    p0 = tnkit.MPS.random(n, 8, seed=seed).to_quimb()
    bonds = [b for b in (8, 16, 32, 64, 128) if b < chi] + [chi]
    dmrg = qtn.DMRG2(ham, bond_dims=bonds, cutoffs=1e-14, p0=p0)
    with contextlib.redirect_stdout(sys.stderr):
        dmrg.solve(tol=1e-9, max_sweeps=6, verbosity=0)
    psi = tnkit.MPS.from_quimb(dmrg.state)
    psi.canonicalize_(0)
    return psi.normalize_()


# ====================================================================== running cases


@dataclass
class Ctx:
    quick: bool
    repeats: int
    threads: int
    reporter: bench.Reporter
    pattern: str


_INPUT_CACHE: dict[Any, Any] = {}


def cached(key, build: Callable[[], Any]):
    """Inputs are built once (seeded) and shared by all thread counts."""
    if key not in _INPUT_CACHE:
        _INPUT_CACHE[key] = build()
        bench.freeze_gc()
    return _INPUT_CACHE[key]


def quick_subset(ctx: Ctx, fns: dict[str, Callable[[], Any]], keep: tuple[str, ...]) -> dict:
    """With ``--quick``, time only the reference methods in ``keep`` (the usual fastest)."""
    return {m: f for m, f in fns.items() if m in keep} if ctx.quick else fns


def goal_for(kind: str, bond: int) -> tuple[float | None, bool]:
    """(ratio limit, whether the floor goal applies) for a case."""
    if kind == "sample":
        ratio = 0.01
    elif kind == "overlap" or bond <= 32:
        ratio = 0.5
    else:
        ratio = 1.0
    return ratio, bond >= 64


def compare(
    ctx: Ctx,
    name: str,
    *,
    kind: str,
    bond: int,
    tnkit_fn: Callable[[], Any],
    quimb_fns: dict[str, Callable[[], Any]],
    floor_fn: Callable[[], Any] | None = None,
    tnkit_alt: dict[str, Callable[[], Any]] | None = None,
    tnkit_name: str = "default",
    fidelity: Callable[[Any, str], float] | None = None,
    check: Callable[[Any, Any], dict[str, Any]] | None = None,
    quimb_scale: float = 1.0,
    quimb_timings: dict | None = None,
    note: str | None = None,
) -> dict:
    """Time tnkit, every quimb method and the floor; emit one row; return the quimb timings.

    ``fidelity(result, side)`` (side ``"tnkit"`` or ``"quimb"``) gives the fidelity of a
    result against the exact state. ``quimb_scale`` multiplies quimb's times (sampling
    on fewer samples). ``quimb_timings`` reuses an earlier measurement of quimb.
    """
    fns: dict[str, Callable[[], Any]] = {"tnkit": tnkit_fn}
    for m, f in (tnkit_alt or {}).items():
        fns[f"tnkit:{m}"] = f
    if quimb_timings is None and qtn is not None:
        for m, f in quimb_fns.items():
            fns[f"quimb:{m}"] = f
    if floor_fn is not None:
        fns["floor"] = floor_fn
    bench.log(f"[{name}] timing {len(fns)} functions ...")
    timings = bench.measure(fns, repeats=ctx.repeats)
    if quimb_timings is None:
        quimb_timings = {k.split(":", 1)[1]: v for k, v in timings.items() if k.startswith("quimb:")}

    tk = timings["tnkit"]
    if tk.error:
        raise RuntimeError(f"{name}: tnkit failed: {tk.error}")
    t_tnkit = tk.median
    fid_tnkit = fidelity(tk.result, "tnkit") if fidelity else None

    methods: dict[str, dict[str, Any]] = {}
    for m, t in quimb_timings.items():
        entry: dict[str, Any] = {"seconds": None if t.median is None else t.median * quimb_scale, "repeats": t.repeats}
        if t.error:
            entry["error"] = t.error
        elif fidelity is not None:
            try:
                entry["fidelity"] = fidelity(t.result, "quimb")
            except Exception as exc:  # noqa: BLE001
                entry["fidelity_error"] = f"{type(exc).__name__}: {exc}"[:200]
        methods[m] = entry
    ok = {m: e for m, e in methods.items() if e.get("seconds") is not None}
    fastest = min(ok, key=lambda m: ok[m]["seconds"]) if ok else None

    def reference_for(fid: float | None) -> str | None:
        """Fastest quimb method at least as accurate as a tnkit result of fidelity ``fid``."""
        if fidelity is None or fid is None or not ok:
            return fastest
        # "equal accuracy": at most 10% more infidelity and at least 95% of the fidelity
        accurate = [
            m
            for m, e in ok.items()
            if e.get("fidelity") is not None
            and 1.0 - e["fidelity"] <= 1.1 * (1.0 - fid) + 1e-9
            and e["fidelity"] >= 0.95 * fid
        ]
        return min(accurate, key=lambda m: ok[m]["seconds"]) if accurate else None

    alt = {}
    for m in tnkit_alt or {}:
        t = timings[f"tnkit:{m}"]
        alt[m] = {"seconds": t.median, "repeats": t.repeats}
        if t.error:
            alt[m]["error"] = t.error
        elif fidelity is not None:
            alt[m]["fidelity"] = fidelity(t.result, "tnkit")

    # tnkit's best method against quimb's best at equal accuracy (the default is one candidate).
    candidates = {tnkit_name: (t_tnkit, fid_tnkit)}
    candidates.update({m: (a["seconds"], a.get("fidelity")) for m, a in alt.items() if "error" not in a})
    scored = {}
    for m, (sec, fid) in candidates.items():
        ref = reference_for(fid)
        if ref is not None:
            scored[m] = (sec / ok[ref]["seconds"], ref)
    extra: dict[str, Any] = {}
    chosen = min(scored, key=lambda m: scored[m][0]) if scored else tnkit_name
    best = scored[chosen][1] if scored else fastest
    if fidelity is not None and ok and not scored:
        extra["reference_note"] = "no quimb method reached tnkit's fidelity; reference = fastest"
    if chosen != tnkit_name:
        extra["tnkit_default"] = {"method": tnkit_name, "seconds": t_tnkit, "fidelity": fid_tnkit}
        t_tnkit, fid_tnkit = candidates[chosen]
    if best is not None and best != fastest:
        extra["reference_fastest_any_accuracy"] = {
            "method": f"quimb:{fastest}",
            "seconds": ok[fastest]["seconds"],
            "fidelity": ok[fastest].get("fidelity"),
            "ratio": t_tnkit / ok[fastest]["seconds"],
        }

    floor = timings.get("floor")
    t_floor = floor.median if floor is not None else None

    ratio_goal, floor_goal = goal_for(kind, bond)
    ref_value = ok[best]["seconds"] if best else None
    goal_parts, met = [], []
    if ratio_goal is not None:
        goal_parts.append(f"ratio<={ratio_goal:g}")
        met.append(ref_value is not None and t_tnkit / ref_value <= ratio_goal)
    if floor_goal and t_floor:
        goal_parts.append("tnkit/floor<=1.3")
        met.append(t_tnkit / t_floor <= 1.3)
    if ratio_goal is not None and "reference_fastest_any_accuracy" in extra:
        extra["goal_met_any_accuracy"] = all(met[1:]) and extra["reference_fastest_any_accuracy"]["ratio"] <= ratio_goal

    if check is not None and best is not None:
        try:
            extra["check"] = check(tk.result, quimb_timings[best].result)
        except Exception as exc:  # noqa: BLE001
            extra["check"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}

    row = bench.make_row(
        BENCH,
        f"{name}_t{ctx.threads}",
        t_tnkit,
        f"quimb:{best}" if best else ("quimb" if qtn is not None else "quimb (not installed)"),
        ref_value,
        threads=ctx.threads,
        floor=t_floor,
        tnkit_over_floor=(t_tnkit / t_floor) if t_floor else None,
        tnkit_fidelity=fid_tnkit,
        reference_fidelity=ok[best].get("fidelity") if best else None,
        goal="; ".join(goal_parts),
        goal_met=all(met) if met else None,
        repeats=tk.repeats,
        quimb_methods=methods or None,
        tnkit_method=chosen if tnkit_alt else None,
        tnkit_methods=alt or None,
        note=note,
        load1=bench.load_average(),
        **extra,
    )
    ctx.reporter.emit(row)
    return quimb_timings


# ---------------------------------------------------------------------- the cases


def case_compress(ctx: Ctx, n: int, chi_in: int, chi_out: int) -> None:
    def build():
        psi = tnkit.MPS.random(n, chi_in, seed=100 + chi_in, normalize=False)  # no canonical form
        exact = psi.tensors
        return psi, psi.to_quimb(), exact, np_log_overlap(exact, exact)[1]

    psi, q, exact, log_ee = cached(("compress", n, chi_in), build)

    def fidelity(res, side):
        arrays = res.tensors if side == "tnkit" else quimb_arrays(res)
        return np_fidelity(arrays, exact, log_bb=log_ee)

    quimb_fns = {"MPS.compress": lambda: _quimb_compress_inplace(q, max_bond=chi_out, cutoff=QUIMB_CUTOFF)}
    for m in ("direct", "dm", "zipup", "src", "srcmps", "fit"):
        quimb_fns[m] = lambda m=m: tensor_network_1d_compress(q, max_bond=chi_out, cutoff=QUIMB_CUTOFF, method=m)
    quimb_fns = quick_subset(ctx, quimb_fns, ("MPS.compress", "direct", "src"))
    compare(
        ctx,
        f"compress_n{n}_chi{chi_in}to{chi_out}",
        kind="compress",
        bond=chi_out if chi_out < 64 else chi_in,
        tnkit_fn=lambda: psi.compress(max_bond=chi_out, cutoff=TNKIT_CUTOFF)[0],
        tnkit_name="svd",
        tnkit_alt={
            "dm": lambda: psi.compress(max_bond=chi_out, cutoff=TNKIT_CUTOFF, method="dm")[0],
            "src": lambda: psi.compress(max_bond=chi_out, method="src", seed=1)[0],
        },
        quimb_fns=quimb_fns,
        floor_fn=lambda: np_compress(exact, chi_out),
        fidelity=fidelity,
        note="random non-canonical MPS: truncation of a random state keeps little fidelity by nature",
    )


def case_overlap(ctx: Ctx, n: int, chi: int) -> None:
    def build():
        a = tnkit.MPS.random(n, chi, seed=200 + chi)
        b = tnkit.MPS.random(n, chi, seed=300 + chi)
        return a, b, a.to_quimb(), b.to_quimb()

    a, b, qa, qb = cached(("overlap", n, chi), build)
    ta, tb = a.tensors, b.tensors

    def check(vt, vq):
        return {"rel_diff_vs_quimb": abs(vt - vq) / max(abs(vq), 1e-300)}

    compare(
        ctx,
        f"overlap_n{n}_chi{chi}",
        kind="overlap",
        bond=chi,
        tnkit_fn=lambda: a.inner(b),
        quimb_fns={
            "H@": lambda: qa.H @ qb,
            "overlap": lambda: qb.overlap(qa),
            "expec_TN_1D": lambda: qtn.expec_TN_1D(qa.H, qb),
        },
        floor_fn=lambda: np_log_overlap(ta, tb),
        check=check,
    )


def case_apply(ctx: Ctx, n: int, chi: int, chi_state: int) -> None:
    def build():
        ground = cached(("dmrg", n, chi_state), lambda: dmrg_state(n, chi_state))
        psi = ground if chi == chi_state else ground.compress(max_bond=chi)[0].canonicalize_(0).normalize_()
        h = heisenberg_mpo(n)
        exact = np_direct_product(h.tensors, psi.tensors)
        return psi, psi.to_quimb(), h, h.to_quimb(), exact, np_log_overlap(exact, exact)[1]

    psi, q, h, qh, exact, log_ee = cached(("apply", n, chi), build)
    ht, pt = h.tensors, psi.tensors

    def fidelity(res, side):
        arrays = res.tensors if side == "tnkit" else quimb_arrays(res)
        return np_fidelity(arrays, exact, log_bb=log_ee)

    opts = {"max_bond": chi, "cutoff": QUIMB_CUTOFF}
    quimb_fns: dict[str, Callable[[], Any]] = {}
    for m in ("direct", "dm", "zipup", "zipup-first", "src", "srcmps", "fit"):
        quimb_fns[m] = lambda m=m: q.gate_with_mpo(qh, method=m, **opts)
    quimb_fns["zipup(canonize=False)"] = lambda: q.gate_with_mpo(qh, method="zipup", canonize=False, **opts)
    quimb_fns["MPO.apply(compress=True)"] = lambda: qh.apply(q, compress=True, **opts)
    quimb_fns = quick_subset(ctx, quimb_fns, ("zipup", "zipup(canonize=False)", "src"))
    compare(
        ctx,
        f"apply_heis_n{n}_chi{chi}",
        kind="apply",
        bond=chi,
        tnkit_fn=lambda: apply_mpo(h, psi, method="zipup", max_bond=chi, cutoff=TNKIT_CUTOFF),
        tnkit_name="zipup",
        tnkit_alt={
            **{
                m: (lambda m=m: apply_mpo(h, psi, method=m, max_bond=chi, cutoff=TNKIT_CUTOFF))
                for m in (("dm",) if ctx.quick else ("dm", "direct", "fit"))
            },
            "src": lambda: apply_mpo(h, psi, method="src", max_bond=chi, seed=1),
        },
        quimb_fns=quimb_fns,
        floor_fn=lambda: np_zipup(ht, pt, chi),
        fidelity=fidelity,
        note=f"XXZ(Delta=0.5) DMRG ground state (right-canonical), Heisenberg MPO (bond 5), "
        f"truncated to {chi}; tnkit main row: method='zipup' (default)",
    )


def case_canonicalize(ctx: Ctx, n: int, chi: int) -> None:
    def build():
        psi = tnkit.MPS.random(n, chi, seed=400 + chi, normalize=False)  # no canonical form
        return psi, psi.to_quimb()

    psi, q = cached(("canon", n, chi), build)
    t, c = psi.tensors, n // 2
    compare(
        ctx,
        f"canonicalize_n{n}_chi{chi}",
        kind="canonicalize",
        bond=chi,
        tnkit_fn=lambda: psi.copy().canonicalize_(c),
        quimb_fns={
            "canonicalize(cur_orthog=None)": lambda: q.canonicalize(c, cur_orthog=None),
            "canonicalize": lambda: q.canonicalize(c),
        },
        floor_fn=lambda: np_canonicalize(t, c),
        note=f"centre {c} from a non-canonical MPS (QR from the left, LQ from the right)",
    )


def case_expectation(ctx: Ctx, n: int, chi: int) -> None:
    def build():
        psi = tnkit.MPS.random(n, chi, seed=500 + chi)
        h = heisenberg_mpo(n)
        return psi, psi.to_quimb(), h, h.to_quimb()

    psi, q, h, qh = cached(("expec", n, chi), build)
    pt, ht = psi.tensors, h.tensors

    def check(vt, vq):
        return {"abs_diff_vs_quimb": abs(float(vt) - float(np.real(vq)))}

    compare(
        ctx,
        f"expectation_heis_n{n}_chi{chi}",
        kind="expectation",
        bond=chi,
        tnkit_fn=lambda: psi.expectation(h),
        quimb_fns={
            "expec_TN_1D": lambda: qtn.expec_TN_1D(q.H, qh, q),
            "H@MPO.apply": lambda: q.H @ qh.apply(q),
        },
        floor_fn=lambda: np_log_overlap(pt, pt, ht),
        check=check,
        note="normalised random MPS (tnkit knows its canonical centre, so the norm is free)",
    )


def case_sample(ctx: Ctx, n: int, chi: int, counts: list[int], n_quimb: int) -> None:
    def build():
        psi = tnkit.MPS.random(n, chi, seed=600 + chi)  # right-canonical, centre 0
        return psi, psi.to_quimb()

    psi, q = cached(("sample", n, chi), build)
    t = psi.tensors
    p1_exact = float(np.real(psi.reduced_density_matrix(0)[1, 1]))

    def quimb_sample():
        return list(q.sample(n_quimb, seed=1, info={"cur_orthog": (0, 0)}))

    quimb_timings = None
    for count in counts:

        def check(samples, qsamples, count=count):
            out = {"p(s0=1) exact": p1_exact, "p(s0=1) tnkit": float(np.mean(samples[:, 0]))}
            if qsamples:
                out[f"p(s0=1) quimb ({len(qsamples)} samples)"] = float(np.mean([c[0] for c, _ in qsamples]))
            return out

        quimb_timings = compare(
            ctx,
            f"sample_n{n}_chi{chi}_s{count}",
            kind="sample",
            bond=chi,
            tnkit_fn=lambda count=count: psi.sample(count, seed=1),
            quimb_fns={"sample(cur_orthog=0)": quimb_sample},
            quimb_timings=quimb_timings,
            floor_fn=lambda count=count: np_sample(t, count, 1),
            quimb_scale=count / n_quimb,
            check=check,
            note=f"quimb draws one sample at a time: timed on {n_quimb} samples and scaled "
            f"linearly to {count}; quimb told the centre is site 0 (its fastest call)",
        )


def case_entropy(ctx: Ctx, n: int, chi: int) -> None:
    def build():
        psi = tnkit.MPS.random(n, chi, seed=700 + chi)  # right-canonical, centre 0
        return psi, psi.to_quimb()

    psi, q = cached(("entropy", n, chi), build)
    t = psi.tensors

    def check(st, sq):
        return {"max_abs_diff_vs_quimb_nats": float(np.max(np.abs(np.asarray(st) - np.asarray(sq) * math.log(2))))}

    compare(
        ctx,
        f"entropy_n{n}_chi{chi}",
        kind="entropy",
        bond=chi,
        tnkit_fn=lambda: psi.copy().entanglement_entropy(),  # centre 0 each time, like quimb's copy
        quimb_fns={
            "entropy(info, centre 0)": lambda: _quimb_entropies(q, n, (0, 0)),
            "entropy": lambda: _quimb_entropies(q, n, None),
        },
        floor_fn=lambda: np_entropy(t),
        check=check,
        note="right-canonical random MPS (a fresh copy per call on both sides); quimb given its centre "
        "and moving it one site per bond; floor = QR sweep + singular values of each R",
    )


_COLD_TNKIT = """
import time
t0 = time.perf_counter()
import tnkit
t1 = time.perf_counter()
psi = tnkit.MPS.random({n}, {chi}, seed=0, normalize=False)
psi.compress(max_bond={out})
t2 = time.perf_counter()
print(t1 - t0, t2 - t0)
"""

_COLD_QUIMB = """
import time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import quimb.tensor as qtn
t1 = time.perf_counter()
psi = qtn.MPS_rand_state({n}, {chi}, seed=0)
psi.compress(max_bond={out})
t2 = time.perf_counter()
print(t1 - t0, t2 - t0)
"""


def case_cold_start(ctx: Ctx, repeats: int) -> None:
    n, chi, out = 16, 8, 4
    results: dict[str, list[tuple[float, float, float]]] = {"tnkit": [], "quimb": []}
    bench.log(f"[cold_start] {repeats} fresh processes per library ...")
    for _ in range(repeats):
        for lib, code in (("tnkit", _COLD_TNKIT), ("quimb", _COLD_QUIMB)):
            if lib == "quimb" and qtn is None:
                continue
            t0 = time.perf_counter()
            stdout = bench.run_python(code.format(n=n, chi=chi, out=out), threads=ctx.threads)
            wall = time.perf_counter() - t0
            imp, total = (float(x) for x in stdout.split()[-2:])
            results[lib].append((imp, total, wall))

    def med(lib, k):
        vals = [r[k] for r in results[lib]]
        return float(np.median(vals)) if vals else None

    t_tnkit = med("tnkit", 1)
    row = bench.make_row(
        BENCH,
        f"cold_start_t{ctx.threads}",
        t_tnkit,
        "quimb:MPS.compress" if results["quimb"] else "quimb (not installed)",
        med("quimb", 1),
        threads=ctx.threads,
        tnkit_import=med("tnkit", 0),
        reference_import=med("quimb", 0),
        tnkit_process=med("tnkit", 2),
        reference_process=med("quimb", 2),
        reference_first_run=results["quimb"][0][1] if results["quimb"] else None,
        goal="tnkit<=1s",
        goal_met=t_tnkit is not None and t_tnkit <= 1.0,
        repeats=repeats,
        note=f"fresh process: import + first compress (N={n}, bond {chi}->{out}), timed inside the "
        f"process; *_process adds interpreter start-up; quimb's numba cache may already be warm",
        load1=bench.load_average(),
    )
    ctx.reporter.emit(row)


# ---------------------------------------------------------------------- plan


def plan(quick: bool) -> list[tuple[str, Callable[[Ctx], None]]]:
    """(case-name, runner) pairs; the names are matched by ``--cases``."""
    p: list[tuple[str, Callable[[Ctx], None]]] = []
    if quick:
        comp = [(16, 64, 16), (16, 32, 8)]
        ov = (32, [32, 8])
        ap = (16, [16, 8], 16)
        can = (16, [32, 8])
        ex = (16, [32, 8])
        samp = [(16, 16, [1000], 20)]
        ent = (16, [32, 8])
        cold = 1
    else:
        comp = [(64, 256, 64), (64, 32, 8), (64, 64, 16), (64, 128, 32)]
        ov = (100, [128, 8, 16, 32])
        ap = (32, [64, 8, 16, 32], 64)
        can = (64, [128, 8, 16, 32])
        ex = (64, [128, 8, 16, 32])
        samp = [(64, 64, [1000, 10000], 100), (64, 8, [10000], 100), (64, 16, [10000], 100), (64, 32, [10000], 100)]
        ent = (64, [128, 8, 16, 32])
        cold = 3
    for n, a, b in comp:
        p.append((f"compress_n{n}_chi{a}to{b}", lambda c, n=n, a=a, b=b: case_compress(c, n, a, b)))
    for chi in ov[1]:
        p.append((f"overlap_n{ov[0]}_chi{chi}", lambda c, chi=chi: case_overlap(c, ov[0], chi)))
    for chi in ap[1]:
        p.append((f"apply_heis_n{ap[0]}_chi{chi}", lambda c, chi=chi: case_apply(c, ap[0], chi, ap[2])))
    for chi in can[1]:
        p.append((f"canonicalize_n{can[0]}_chi{chi}", lambda c, chi=chi: case_canonicalize(c, can[0], chi)))
    for chi in ex[1]:
        p.append((f"expectation_heis_n{ex[0]}_chi{chi}", lambda c, chi=chi: case_expectation(c, ex[0], chi)))
    for n, chi, counts, nq in samp:
        names = "_".join(f"s{k}" for k in counts)
        p.append((f"sample_n{n}_chi{chi}_{names}", lambda c, n=n, chi=chi, k=counts, q=nq: case_sample(c, n, chi, k, q)))
    for chi in ent[1]:
        p.append((f"entropy_n{ent[0]}_chi{chi}", lambda c, chi=chi: case_entropy(c, ent[0], chi)))
    p.append(("cold_start", lambda c: case_cold_start(c, cold)))
    return p


# ---------------------------------------------------------------------- table


def _ratio_cell(r: dict) -> str:
    return bench.fmt_float(r.get("ratio"), 3)


COLUMNS = [
    ("case", lambda r: r["case"]),
    ("tnkit s", lambda r: bench.fmt_seconds(r.get("tnkit"))),
    ("tnkit method", lambda r: r.get("tnkit_method") or "default"),
    ("quimb best s", lambda r: bench.fmt_seconds(r.get("reference_value"))),
    ("quimb method", lambda r: str(r.get("reference", "-")).replace("quimb:", "")),
    ("ratio", _ratio_cell),
    ("ratio any-acc", lambda r: bench.fmt_float((r.get("reference_fastest_any_accuracy") or {}).get("ratio"))),
    ("floor s", lambda r: bench.fmt_seconds(r.get("floor"))),
    ("tnkit/floor", lambda r: bench.fmt_float(r.get("tnkit_over_floor"), 2)),
    ("fid tnkit", lambda r: bench.fmt_float(r.get("tnkit_fidelity"), 6)),
    ("fid quimb", lambda r: bench.fmt_float(r.get("reference_fidelity"), 6)),
    ("goal", lambda r: r.get("goal", "")),
    ("met", lambda r: {True: "yes", False: "NO"}.get(r.get("goal_met"), "-")),
]


def main(argv: list[str] | None = None) -> int:
    parser = bench.base_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    reporter = bench.Reporter(args.json, COLUMNS)
    bench.announce("engine", args, tnkit=tnkit.__version__, quimb=QUIMB_VERSION, numpy=np.__version__)
    cases = [(name, run) for name, run in plan(args.quick) if bench.case_selected(name, args.cases)]
    if not cases:
        bench.log(f"no case matches --cases {args.cases!r}")
        return 1
    bench.freeze_gc()
    t_start = time.perf_counter()
    for threads in args.threads:
        ctx = Ctx(args.quick, args.repeats, threads, reporter, args.cases)
        with bench.thread_limit(threads):
            for name, run in cases:
                run(ctx)
    elapsed = time.perf_counter() - t_start
    bench.log(f"done in {elapsed:.1f} s")
    reporter.finish(
        f"\nratio = tnkit / fastest quimb method at least as accurate as tnkit (fid quimb); ratio any-acc = "
        f"tnkit / fastest quimb method regardless of accuracy, where that differs; floor = plain numpy "
        f"QR/SVD/matmul loop of the same sequence; fid = fidelity against the exact state; times are "
        f"medians (m = ms, u = us). quimb {QUIMB_VERSION}, "
        f"{os.cpu_count()} CPUs, {elapsed:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
