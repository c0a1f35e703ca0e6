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
  dt = 0.05. tnkit two-site :func:`tnkit.algorithms.tdvp` at bond 64 against
  TeNPy's ``TwoSiteTDVPEngine`` at bond 64 and quimb's ``TEBD`` (4th order; quimb
  has no TDVP) at bond 64; the error of each is ``1 - |<ref|psi>|^2`` against a
  tnkit two-site TDVP run at bond 256 (the reference, not timed), and the largest
  deviation of the local ``<Sz_i>``. ``--tdvp-size N,BOND,REF_BOND,T`` changes the sizes
  (the bond-256 reference alone takes hours on a loaded two-core machine).

Times are one run each (DMRG and TDVP runs take seconds to minutes; ``--repeats``
applies to runs under 2 s), all in this process, interleaved. The load average is
reported with each row: on a shared machine absolute times mean little, ratios
measured in one process more.
"""

from __future__ import annotations

import logging
import os
import sys
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
            {"L": n, "S": 0.5, "Jx": 1.0, "Jy": 1.0, "Jz": 0.5, "bc_MPS": "finite", "conserve": conserve}
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


def _sz_profile(psi: tnkit.MPS) -> np.ndarray:
    return np.real(psi.local_expectations(np.diag([0.5, -0.5])))


def _tenpy_tdvp(n: int, chi: int, dt: float, steps: int):
    from tenpy.algorithms import tdvp as ttdvp
    from tenpy.networks.mps import MPS as TMPS

    m, pattern = _tenpy_model("xxz", n)

    def run():
        psi = TMPS.from_product_state(m.lat.mps_sites(), pattern * (n // 2), bc="finite")
        eng = ttdvp.TwoSiteTDVPEngine(
            psi, m, {"trunc_params": {"chi_max": chi, "svd_min": 1e-10}, "dt": dt, "N_steps": steps}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eng.run()
        return _from_tenpy(psi)

    return run


def _from_tenpy(psi) -> tnkit.MPS:
    """TeNPy's finite MPS (B form) as a tnkit MPS in the basis (up, down)."""
    tensors = []
    for i in range(psi.L):
        b = psi.get_B(i, "B").transpose(["vL", "p", "vR"]).to_ndarray()
        tensors.append(b[:, ::-1, :])  # SpinSite orders the basis by increasing Sz: down first
    out = tnkit.MPS(tensors)
    return out * psi.norm


def _quimb_tebd(n: int, chi: int, dt: float, t_final: float):
    qtn = _quimb()
    ham = qtn.ham_1d_heis(n, j=(1.0, 1.0, 0.5), S=0.5, cyclic=False)

    def run():
        p0 = qtn.MPS_neel_state(n)
        tebd = qtn.TEBD(p0, ham, dt=dt, split_opts={"max_bond": chi, "cutoff": 1e-10}, progbar=False)
        tebd.update_to(t_final, order=4, progbar=False)
        return tnkit.MPS.from_quimb(tebd.pt)

    return run


def tdvp_case(
    name: str, n: int, chi: int, ref_chi: int, t_final: float, args: Any, reporter: Reporter
) -> None:
    dt = 0.05
    steps = int(round(t_final / dt))
    mpo = tnkit.xxz_mpo(n, delta=0.5)
    neel = tnkit.MPS.product_state("01" * (n // 2))
    for threads in args.threads:
        case = f"{name}_t{threads}"
        if not case_selected(case, args.cases):
            continue
        with thread_limit(threads):
            log(f"{case}: reference at bond {ref_chi} (load {load_average()})")
            ref = tdvp(neel, mpo, dt=dt, n_steps=steps, max_bond=ref_chi, progress=False).state
            fns = {"tnkit": lambda: tdvp(neel, mpo, dt=dt, n_steps=steps, max_bond=chi, progress=False).state}
            if _tenpy() is not None:
                fns["tenpy"] = _tenpy_tdvp(n, chi, dt, steps)
            if _quimb() is not None:
                fns["quimb_tebd4"] = _quimb_tebd(n, chi, dt, t_final)
            log(f"{case}: running {', '.join(fns)} (load {load_average()})")
            timings = measure(fns, repeats=args.repeats)
        sz_ref = _sz_profile(ref)
        errors, sz_err = {}, {}
        for k, t in timings.items():
            if t.error is None:
                errors[k] = 1.0 - ref.fidelity(t.result)
                sz_err[k] = float(np.max(np.abs(_sz_profile(t.result) - sz_ref)))
        refs = {k: t.median for k, t in timings.items() if k != "tnkit" and t.error is None}
        fastest = min(refs, key=refs.get) if refs else None
        reporter.emit(
            make_row(
                BENCH,
                case,
                timings["tnkit"].median,
                fastest,
                refs.get(fastest) if fastest else None,
                infidelity_vs_reference=errors,
                max_sz_error=sz_err,
                reference_seconds=refs,
                reference_bond=int(ref.max_bond_dim),
                threads=threads,
                load=load_average(),
                errors={k: t.error for k, t in timings.items() if t.error} or None,
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], default_repeats=1)
    parser.add_argument("--tenpy-conserve", choices=sorted(TENPY_CONSERVE), default="default",
                        help="TeNPy's conserved charges: its defaults (Sz, parity) or none")
    parser.add_argument("--tdvp-size", default=None,
                        help="override the TDVP case as N,BOND,REF_BOND,T (e.g. 50,64,128,5)")
    args = parser.parse_args(argv)
    _CONSERVE["mode"] = args.tenpy_conserve
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
        tdvp_case("tdvp_xxz_n16_chi16", 16, 16, 64, 2.0, args, reporter)
    else:
        dmrg_case("dmrg_heisenberg_n100_chi128", "heisenberg", 100, 128, args, reporter)
        dmrg_case("dmrg_tfim_n64_chi64", "tfim", 64, 64, args, reporter)
        n, chi, ref_chi, t_final = (50, 64, 256, 5.0)
        if args.tdvp_size:
            n, chi, ref_chi = (int(x) for x in args.tdvp_size.split(",")[:3])
            t_final = float(args.tdvp_size.split(",")[3])
        tdvp_case(f"tdvp_xxz_n{n}_chi{chi}", n, chi, ref_chi, t_final, args, reporter)
    reporter.finish(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
