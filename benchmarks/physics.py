"""Physics benchmark: tnkit's DMRG and TDVP against quimb and TeNPy, same process, same Hamiltonians.

Usage::

    python benchmarks/physics.py [--quick] [--json] [--threads 1,2] [--repeats N] [--cases SUBSTRING]

Cases (full sizes; ``--quick`` shrinks them), each at every thread count, the name
ending in ``_t<threads>``:

* ``dmrg_heisenberg_n100_chi128``: ground state of the open spin-1/2 Heisenberg
  chain ``sum S_i . S_{i+1}``, N = 100, bond cap 128. tnkit
  :func:`tnkit.algorithms.dmrg` (defaults: two-site, bond schedule 16, 32, 64, 128,
  cutoff 1e-14, stop at energy change ``1e-10 |E|``; the variance is computed after
  timing) against ``quimb.tensor.DMRG2`` on the same MPO (``to_quimb()``) with the
  same schedule, ``cutoffs=1e-14``, ``solve(tol=1e-10 |E|)``, and TeNPy's
  ``TwoSiteDMRGEngine`` on its ``SpinChain`` (with its default conserved charge,
  Sz -- block-sparse tensors, its strength; ``--tenpy-conserve none`` runs dense
  tensors like the other two; ``chi_list`` the same schedule, ``max_E_err=1e-10``, ``svd_min=1e-7``,
  mixer off). Reported: seconds, ratio = tnkit / faster reference, and every code's
  energy per site with the largest difference to tnkit's (goal: <= 1e-8); also
  ``method="hybrid"`` (two-site passes until the bond cap, then one-site passes) as
  ``hybrid_seconds`` and ``hybrid_ratio``.
* ``dmrg_tfim_n64_chi64``: the same for the critical transverse-field Ising chain
  ``-sum Z Z - sum X`` (TeNPy: ``TFIChain``, g = 1), bond cap 64.
* ``tdvp_xxz_n50_chi64``: XXZ chain (Delta = 0.5) from the Néel state to t = 5,
  dt = 0.05, bond 64: tnkit :func:`tnkit.algorithms.tdvp` (two-site, the default, and
  ``method="hybrid"``), TeNPy's ``TwoSiteTDVPEngine`` (``svd_min=1e-10``, its default
  Sz charge) and quimb's ``TEBD`` (4th order, ``cutoff=1e-10``; quimb has no TDVP),
  each run once after a warm-up on 8 sites, one after the other in this process,
  wall and CPU seconds. Each returns its states at t = 1, 2, ..., 5; they are compared
  with a reference (tnkit two-site TDVP at bond 256, cutoff 1e-12, not timed) by the
  infidelity ``1 - |<ref|psi>|^2`` at each time and the largest errors of the staggered
  magnetisation and the half-chain entropy over t = 1..5. ``--tdvp-reference DIR`` keeps
  the reference states in ``DIR`` (``.npz``) and reuses them; ``--tdvp-size
  N,BOND,REF_BOND,T`` changes the sizes, ``--tdvp-delta`` the anisotropy; ``--tdvp-codes`` picks contestants, among them
  other time steps (``tnkit_hybrid_dt1/7``, ``quimb_tebd4_dt0.1``, ...: see ``_STEPS``)
  and step schedules, one call of ``tdvp`` each: ``tnkit_hybrid_dt0.05then0.2`` (hybrid
  TDVP with ``dt = 0.05`` to t = 2, then ``dt = 0.2``), ``tnkit_hybrid_dt0.1then0.5``
  (``dt = 0.1`` to t = 1, then ``dt = 0.5``; also ``dt0.05then0.5``), and the same with
  ``krylov_tol`` 1e-8 or 1e-6 (``..._ktol1e-8``, ``..._ktol1e-6``). TeNPy logs its CPU
  seconds after each unit of time.

DMRG times are one run each (``--repeats`` applies to runs under 2 s), all in this
process, interleaved. The load average is
reported with each row: on a shared machine absolute times mean little, ratios
measured in one process more.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import time
import warnings
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import (  # noqa: E402
    Reporter,
    base_parser,
    case_selected,
    fmt_float,
    fmt_seconds,
    freeze_gc,
    load_average,
    log,
    make_row,
    measure,
    thread_limit,
)

import tnkit  # noqa: E402
from tnkit.algorithms import dmrg, tdvp  # noqa: E402

BENCH = "physics"
ENERGY_TOL = 1e-10


def _schedule(chi: int) -> list[int]:
    out = [chi]
    while out[0] > 16:
        out.insert(0, max(out[0] // 2, 16))
    return out


# ---------------------------------------------------------------------- references


def _quimb():
    try:
        import quimb.tensor as qtn
    except ImportError:  # pragma: no cover
        return None
    return qtn


def _tenpy():
    try:
        import tenpy  # noqa: F401
    except ImportError:
        log("TeNPy is not installed (pip install physics-tenpy): its cases report null")
        return None
    logging.getLogger("tenpy").setLevel(logging.ERROR)
    return tenpy


def _quimb_dmrg(mpo, chi: int):
    qtn = _quimb()
    qh = mpo.to_quimb()

    def run():
        d = qtn.DMRG2(qh, bond_dims=_schedule(chi), cutoffs=1e-14)
        d.solve(tol=ENERGY_TOL * mpo.n_sites, max_sweeps=40, verbosity=0)
        return float(np.real(d.energy))

    return run


#: TeNPy's conserved charges: ``"default"`` its models' defaults (Sz for spin chains, parity for
#: the Ising chain: TeNPy's block-sparse strength), ``"none"`` dense tensors like tnkit and quimb.
TENPY_CONSERVE = {"default": {"heisenberg": "Sz", "xxz": "Sz", "tfim": "parity"},
                  "none": {"heisenberg": None, "xxz": None, "tfim": None}}
_CONSERVE = {"mode": "default"}
#: The anisotropy ``Delta`` of the TDVP case's XXZ chain (``--tdvp-delta``).
_QUENCH = {"delta": 0.5}


def _tenpy_model(model: str, n: int):
    conserve = TENPY_CONSERVE[_CONSERVE["mode"]][model]
    from tenpy.models.spins import SpinChain
    from tenpy.models.tf_ising import TFIChain

    if model == "heisenberg":
        return SpinChain(
            {"L": n, "S": 0.5, "Jx": 1.0, "Jy": 1.0, "Jz": 1.0, "bc_MPS": "finite", "conserve": conserve}
        ), ["up", "down"]
    if model == "xxz":
        return SpinChain(
            {"L": n, "S": 0.5, "Jx": 1.0, "Jy": 1.0, "Jz": _QUENCH["delta"], "bc_MPS": "finite",
             "conserve": conserve}
        ), ["up", "down"]
    return TFIChain({"L": n, "J": 1.0, "g": 1.0, "bc_MPS": "finite", "conserve": conserve}), ["up", "up"]


def _tenpy_dmrg(model: str, n: int, chi: int):
    from tenpy.algorithms import dmrg as tdmrg
    from tenpy.networks.mps import MPS as TMPS

    m, pattern = _tenpy_model(model, n)
    sched = _schedule(chi)

    def run():
        psi = TMPS.from_product_state(m.lat.mps_sites(), pattern * (n // 2), bc="finite")
        eng = tdmrg.TwoSiteDMRGEngine(
            psi,
            m,
            {
                "trunc_params": {"chi_max": chi, "svd_min": 1e-7},
                "chi_list": {k: b for k, b in enumerate(sched)},
                "max_E_err": ENERGY_TOL * n,
                "mixer": None,
                "max_sweeps": 40,
                "min_sweeps": 2,
            },
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            energy, _ = eng.run()
        return float(energy)

    return run


# ---------------------------------------------------------------------- DMRG cases


def dmrg_case(name: str, model: str, n: int, chi: int, args: Any, reporter: Reporter) -> None:
    mpo = tnkit.heisenberg_mpo(n) if model == "heisenberg" else tnkit.tfim_mpo(n, j=1.0, h=1.0)
    for threads in args.threads:
        case = f"{name}_t{threads}"
        if not case_selected(case, args.cases):
            continue
        fns = {
            "tnkit": lambda: dmrg(mpo, max_bond=chi, seed=0, progress=False, compute_variance=False),
            "tnkit_hybrid": lambda: dmrg(
                mpo, max_bond=chi, method="hybrid", seed=0, progress=False, compute_variance=False
            ),
        }
        if _quimb() is not None:
            fns["quimb"] = _quimb_dmrg(mpo, chi)
        if _tenpy() is not None:
            fns["tenpy"] = _tenpy_dmrg(model, n, chi)
        log(f"{case}: running {', '.join(fns)} (load {load_average()})")
        with thread_limit(threads):
            timings = measure(fns, repeats=args.repeats)
        res = timings["tnkit"].result
        ours = ("tnkit", "tnkit_hybrid")
        energies = {
            k: (t.result.energy if k in ours else t.result) for k, t in timings.items() if t.error is None
        }
        refs = {k: t.median for k, t in timings.items() if k not in ours and t.error is None}
        fastest = min(refs, key=refs.get) if refs else None
        e_tn = energies["tnkit"]
        diffs = {k: abs(e - e_tn) / n for k, e in energies.items() if k != "tnkit"}
        with thread_limit(threads):
            variance = tnkit.algorithms.energy_variance(res.state, mpo, energy=res.energy)
        reporter.emit(
            make_row(
                BENCH,
                case,
                timings["tnkit"].median,
                fastest,
                refs.get(fastest) if fastest else None,
                energy_per_site={k: e / n for k, e in energies.items()},
                max_energy_diff_per_site=max(diffs.values()) if diffs else None,
                reference_seconds=refs,
                hybrid_seconds=timings["tnkit_hybrid"].median,
                hybrid_ratio=timings["tnkit_hybrid"].median / refs[fastest] if fastest else None,
                tnkit_sweeps=res.n_sweeps,
                tnkit_variance=variance,
                tnkit_truncation_error=res.max_truncation_error,
                threads=threads,
                load=load_average(),
                errors={k: t.error for k, t in timings.items() if t.error} or None,
            )
        )


# ---------------------------------------------------------------------- TDVP case

TDVP_DT = 0.05
SZ = np.diag([0.5, -0.5])


def _observables(psi: tnkit.MPS) -> tuple[float, float]:
    """Staggered magnetisation ``(1/N) sum_i (-1)^i <Sz_i>`` and the half-chain entropy (nats)."""
    n = psi.n_sites
    m = np.real(psi.local_expectations(SZ))
    return float(np.mean(m * (-1.0) ** np.arange(n))), float(psi.entanglement_entropy(n // 2 - 1))


def _xxz_quench(n: int) -> tuple[tnkit.MPO, tnkit.MPS]:
    return tnkit.xxz_mpo(n, delta=_QUENCH["delta"]), tnkit.MPS.product_state("01" * (n // 2))


def _tnkit_tdvp(n: int, chi: int, t_final: int, method: str = "two-site", dt: float = TDVP_DT):
    mpo, neel = _xxz_quench(n)
    every = int(round(1.0 / dt))
    steps = t_final * every

    def run():
        keep = lambda t, state: state  # noqa: E731 - the states at t = 1, 2, ... (a view, no copy)
        res = tdvp(neel, mpo, dt=dt, n_steps=steps, max_bond=chi, method=method, progress=False,
                   callback=keep, record_every=every)
        return list(res.records[1:])

    return run


def _on_the_grid(t: float, state: tnkit.MPS) -> tnkit.MPS | None:
    """A callback that keeps the states at t = 1, 2, ... (a view, no copy) and drops the others."""
    return state if t > 0.5 and abs(t - round(t)) < 1e-9 else None


def _tnkit_tdvp_schedule(n: int, chi: int, t_final: int, early_dt: float = 0.05, late_dt: float = 0.2,
                         switch: int = 2, krylov_tol: float = 1e-12):
    """Hybrid TDVP in one call with the step schedule ``[early_dt] * (switch / early_dt) +
    [late_dt] * ((t_final - switch) / late_dt)``: small steps through the fast early dynamics,
    at small bonds, where a step is cheap, large ones after it."""
    mpo, neel = _xxz_quench(n)
    switch = min(switch, t_final)
    steps = [early_dt] * int(round(switch / early_dt)) + [late_dt] * int(round((t_final - switch) / late_dt))

    def run():
        res = tdvp(neel, mpo, dt=steps, max_bond=chi, method="hybrid", krylov_tol=krylov_tol, progress=False,
                   callback=_on_the_grid)
        return [st for st in res.records if st is not None]

    return run


def _tenpy_tdvp(n: int, chi: int, t_final: int):
    from tenpy.algorithms import tdvp as ttdvp
    from tenpy.networks.mps import MPS as TMPS

    m, pattern = _tenpy_model("xxz", n)
    every = int(round(1.0 / TDVP_DT))

    def run():
        states = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            psi = TMPS.from_product_state(m.lat.mps_sites(), pattern * (n // 2), bc="finite")
            eng = ttdvp.TwoSiteTDVPEngine(
                psi, m, {"trunc_params": {"chi_max": chi, "svd_min": 1e-10}, "dt": TDVP_DT, "N_steps": every}
            )
            c0 = time.process_time()
            for t in range(1, t_final + 1):
                eng.run()  # continues from the engine's current time
                states.append(_from_tenpy(psi))
                log(f"    tenpy: t = {t}, {time.process_time() - c0:.1f} s CPU so far, "
                    f"largest bond {max(psi.chi)} (load {load_average()})")
        return states

    return run


def _from_tenpy(psi) -> tnkit.MPS:
    """TeNPy's finite MPS (B form) as a tnkit MPS in the basis (up, down)."""
    tensors = []
    for i in range(psi.L):
        b = psi.get_B(i, "B").transpose(["vL", "p", "vR"]).to_ndarray()
        tensors.append(b[:, ::-1, :])  # SpinSite orders the basis by increasing Sz: down first
    out = tnkit.MPS(tensors)
    return out * psi.norm


def _quimb_tebd(n: int, chi: int, t_final: int, dt: float = TDVP_DT):
    qtn = _quimb()
    ham = qtn.ham_1d_heis(n, j=(1.0, 1.0, _QUENCH["delta"]), S=0.5, cyclic=False)

    def run():
        tebd = qtn.TEBD(qtn.MPS_neel_state(n), ham, dt=dt, split_opts={"max_bond": chi, "cutoff": 1e-10},
                        progbar=False)
        states = []
        for t in range(1, t_final + 1):
            tebd.update_to(float(t), order=4, progbar=False)
            states.append(tnkit.MPS.from_quimb(tebd.pt))
        return states

    return run


def _timed_once(fn) -> tuple[float, float, Any]:
    """Wall and CPU seconds (this process, all threads) of one call, and its result."""
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def _reference(n: int, ref_chi: int, t_final: int, cache: str | None) -> list[tnkit.MPS]:
    """The reference states at t = 1, 2, ...: tnkit two-site TDVP at bond ``ref_chi``, stored in
    ``cache`` (a directory; numpy ``.npz``, loaded without pickle) when given."""
    delta = "" if _QUENCH["delta"] == 0.5 else f"_delta{_QUENCH['delta']}"
    name = f"tdvp_xxz_ref_n{n}_chi{ref_chi}_dt{TDVP_DT}_t{t_final}{delta}.npz"
    path = os.path.join(cache, name) if cache else None
    if path and os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            return [tnkit.MPS([z[f"t{k}_s{i}"] for i in range(n)]) for k in range(t_final)]
    wall, cpu, states = _timed_once(_tnkit_tdvp(n, ref_chi, t_final))
    log(f"reference: {wall:.1f} s wall, {cpu:.1f} s CPU, largest bond {states[-1].max_bond_dim}")
    if path:
        os.makedirs(cache, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **{f"t{k}_s{i}": a for k, st in enumerate(states) for i, a in enumerate(st.tensors)})
        os.replace(tmp, path)
    return states


#: Further time steps of the TDVP case (each divides 1, so that t = 1, 2, ... are on the grid).
_STEPS = {"0.1": 0.1, "1/8": 1 / 8, "1/7": 1 / 7, "1/6": 1 / 6, "0.2": 0.2}

#: The TDVP case's contestants: ``make(n, chi, t_final)`` returns a call that evolves the Néel
#: state of the XXZ chain and returns the states at t = 1, 2, ..., t_final.
TDVP_CODES: dict[str, Any] = {
    "tnkit": _tnkit_tdvp,
    "tnkit_hybrid": lambda n, chi, t_final: _tnkit_tdvp(n, chi, t_final, "hybrid"),
    **{f"tnkit_hybrid_dt{k}": functools.partial(_tnkit_tdvp, method="hybrid", dt=dt)
       for k, dt in _STEPS.items()},
    "tnkit_hybrid_dt0.05then0.2": _tnkit_tdvp_schedule,
    **{f"tnkit_hybrid_dt{early}then0.5{name}": functools.partial(_tnkit_tdvp_schedule, early_dt=early,
                                                                late_dt=0.5, switch=1, krylov_tol=tol)
       for early in (0.05, 0.1) for name, tol in (("", 1e-12), ("_ktol1e-8", 1e-8), ("_ktol1e-6", 1e-6))},
    "quimb_tebd4": _quimb_tebd,
    **{f"quimb_tebd4_dt{name}": functools.partial(_quimb_tebd, dt=dt) for name, dt in _STEPS.items()},
    "tenpy": _tenpy_tdvp,
}


def _quality(ref: list[tnkit.MPS], states: list[tnkit.MPS]) -> dict[str, Any]:
    """Infidelity at each recorded time and the largest errors of the two observables."""
    obs_ref = [_observables(st) for st in ref]
    obs = [_observables(st) for st in states]
    return {
        "infidelity": [1.0 - r.fidelity(st) for r, st in zip(ref, states, strict=True)],
        "staggered_error": max(abs(a[0] - b[0]) for a, b in zip(obs, obs_ref, strict=True)),
        "entropy_error": max(abs(a[1] - b[1]) for a, b in zip(obs, obs_ref, strict=True)),
    }


def tdvp_case(
    name: str, n: int, chi: int, ref_chi: int, t_final: int, args: Any, reporter: Reporter
) -> None:
    available = {"tenpy": _tenpy() is not None, "quimb_tebd4": _quimb() is not None}
    chosen = args.tdvp_codes.split(",") if args.tdvp_codes else list(TDVP_CODES)
    codes = {k: TDVP_CODES[k] for k in chosen if available.get(k, True)}
    for threads in args.threads:
        case = f"{name}_t{threads}"
        if not case_selected(case, args.cases):
            continue
        with thread_limit(threads):
            log(f"{case}: reference at bond {ref_chi} (load {load_average()})")
            ref = _reference(n, ref_chi, t_final, args.tdvp_reference)
            for make in codes.values():  # warm-up on 8 sites (imports, caches), not timed
                make(8, 4, 1)()
            log(f"{case}: running {', '.join(codes)} one after the other (load {load_average()})")
            runs, quality = {}, {}
            for k, make in codes.items():
                try:
                    runs[k] = _timed_once(make(n, chi, t_final))
                except Exception as exc:  # noqa: BLE001 - a reference may fail; report it
                    runs[k] = (None, None, f"{type(exc).__name__}: {exc}"[:300])
                    log(f"  {k}: {runs[k][2]}")
                    continue
                quality[k] = _quality(ref, runs[k][2])
                log(f"  {k}: {runs[k][0]:.1f} s wall, {runs[k][1]:.1f} s CPU (load {load_average()}); "
                    f"infidelity {quality[k]['infidelity'][-1]:.2e}, staggered magnetisation error "
                    f"{quality[k]['staggered_error']:.1e}, entropy error {quality[k]['entropy_error']:.1e}")
        obs_ref = [_observables(st) for st in ref]
        wall = {k: r[0] for k, r in runs.items() if r[0] is not None}
        cpu = {k: r[1] for k, r in runs.items() if r[1] is not None}
        refs = {k: v for k, v in wall.items() if not k.startswith("tnkit")}
        fastest = min(refs, key=refs.get) if refs else None
        hybrid = wall.get("tnkit_hybrid")
        reporter.emit(
            make_row(
                BENCH,
                case,
                wall.get("tnkit"),
                fastest,
                refs.get(fastest) if fastest else None,
                seconds=wall,
                cpu_seconds=cpu,
                hybrid_ratio=hybrid / refs[fastest] if fastest and hybrid else None,
                infidelity_vs_reference={k: q["infidelity"][-1] for k, q in quality.items()},
                infidelity_by_time={k: q["infidelity"] for k, q in quality.items()},
                max_staggered_magnetisation_error=_pick(quality, "staggered_error"),
                max_entropy_error=_pick(quality, "entropy_error"),
                reference_bond=ref_chi,
                reference_largest_bond=int(ref[-1].max_bond_dim),
                reference_observables=obs_ref,
                threads=threads,
                load=load_average(),
                errors={k: r[2] for k, r in runs.items() if r[0] is None} or None,
            )
        )


def _pick(quality: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    return {k: q[key] for k, q in quality.items()}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], default_repeats=1)
    parser.add_argument("--tenpy-conserve", choices=sorted(TENPY_CONSERVE), default="default",
                        help="TeNPy's conserved charges: its defaults (Sz, parity) or none")
    parser.add_argument("--tdvp-size", default=None,
                        help="override the TDVP case as N,BOND,REF_BOND,T (e.g. 50,64,128,5; T an integer)")
    parser.add_argument("--tdvp-codes", default=None,
                        help=f"comma-separated subset of the TDVP case's codes ({', '.join(TDVP_CODES)})")
    parser.add_argument("--tdvp-delta", type=float, default=0.5,
                        help="anisotropy Delta of the TDVP case's XXZ chain (default 0.5)")
    parser.add_argument("--tdvp-reference", default=None, metavar="DIR",
                        help="directory where the TDVP reference states are stored and looked up (.npz)")
    args = parser.parse_args(argv)
    _CONSERVE["mode"] = args.tenpy_conserve
    _QUENCH["delta"] = args.tdvp_delta
    _quimb(), _tenpy()
    freeze_gc()
    reporter = Reporter(
        args.json,
        [
            ("case", lambda r: r["case"]),
            ("tnkit", lambda r: fmt_seconds(r["tnkit"])),
            ("fastest ref", lambda r: f"{r['reference']} {fmt_seconds(r['reference_value'])}"),
            ("ratio", lambda r: fmt_float(r["ratio"])),
            (
                "dE/site or infidelity",
                lambda r: (
                    fmt_float(r.get("max_energy_diff_per_site"))
                    if "max_energy_diff_per_site" in r
                    else str({k: f"{v:.1e}" for k, v in r["infidelity_vs_reference"].items()})
                ),
            ),
            ("load", lambda r: str(r["load"])),
        ],
    )
    if args.quick:
        dmrg_case("dmrg_heisenberg_n32_chi32", "heisenberg", 32, 32, args, reporter)
        dmrg_case("dmrg_tfim_n32_chi32", "tfim", 32, 32, args, reporter)
        tdvp_case("tdvp_xxz_n16_chi16", 16, 16, 64, 2, args, reporter)
    else:
        dmrg_case("dmrg_heisenberg_n100_chi128", "heisenberg", 100, 128, args, reporter)
        dmrg_case("dmrg_tfim_n64_chi64", "tfim", 64, 64, args, reporter)
        n, chi, ref_chi, t_final = (50, 64, 256, 5)
        if args.tdvp_size:
            n, chi, ref_chi, t_final = (int(x) for x in args.tdvp_size.split(","))
        delta = "" if args.tdvp_delta == 0.5 else f"_delta{args.tdvp_delta}"
        tdvp_case(f"tdvp_xxz_n{n}_chi{chi}{delta}", n, chi, ref_chi, t_final, args, reporter)
    reporter.finish(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
