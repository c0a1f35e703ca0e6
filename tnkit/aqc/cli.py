"""``tnkit aqc``: compile a time-evolved spin chain or a saved MPS into a QASM circuit.

Examples::

    tnkit aqc --model xxz --n-sites 20 --delta 0.5 --time 1 --ansatz trotter --depth 3 \\
        --out xxz.qasm --report xxz.json
    tnkit aqc --mps state.npz --ansatz ran --depth 4 --out state.qasm --report state.json

The JSON report holds the fidelity from the objective and from an independent
simulation of the emitted circuit, the CNOT count and depth, and the times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run_aqc"]

_MODELS = ("xxz", "heisenberg", "tfim")
_ANSATZE = ("trotter", "brickwall", "staircase", "ran")


def add_parser(sub: Any) -> None:
    """Register the ``aqc`` subcommand."""
    p = sub.add_parser(
        "aqc",
        help="compile a target state into a short circuit (QASM + JSON report)",
        description="Approximate quantum compiling: optimise a parametrised circuit to prepare a target "
        "MPS (a time-evolved spin chain or a saved MPS) and write it as OpenQASM with a JSON report.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", choices=_MODELS, default="xxz", help="spin chain to evolve (default: xxz)")
    src.add_argument("--mps", default=None, help="a saved MPS (.npz from MPS.save) to compile instead")
    p.add_argument("--n-sites", type=int, default=10, help="number of spins (default: 10)")
    p.add_argument("--delta", type=float, default=0.5, help="XXZ anisotropy (default: 0.5)")
    p.add_argument("--j", type=float, default=1.0, help="coupling J (default: 1)")
    p.add_argument("--h", type=float, default=0.0, help="field h (Z for xxz/heisenberg, X for tfim; default 0)")
    p.add_argument("--time", type=float, default=1.0, help="evolution time t (default: 1)")
    p.add_argument("--initial", default="neel", help="initial state: neel, zeros or a bit string (default: neel)")
    p.add_argument("--target-steps", type=int, default=40, help="Trotter steps of the target (default: 40)")
    p.add_argument("--ansatz", choices=_ANSATZE, default="trotter",
                   help="trotter: Trotter-circuit structure and angles; brickwall/staircase: from zero angles; "
                   "ran: staircase from Ran's analytic layers (default: trotter)")
    p.add_argument("--depth", type=int, default=3, help="Trotter steps, or layers of the other ansätze (default: 3)")
    p.add_argument("--max-bond", type=int, default=64, help="bond cap in the objective (default: 64)")
    p.add_argument("--max-iter", type=int, default=200, help="L-BFGS-B iterations (default: 200)")
    p.add_argument("--target-fidelity", type=float, default=0.999, help="stop at this fidelity (default: 0.999)")
    p.add_argument("--method", choices=("lbfgs", "sweep", "sweep+lbfgs"), default="lbfgs",
                   help="optimiser: L-BFGS-B on the angles, polar-decomposition sweeps, or sweeps then "
                   "L-BFGS-B (default: lbfgs)")
    p.add_argument("--cnot-budget", type=int, default=None,
                   help="trotter ansatz: add central blocks up to this many CNOTs (the one-CNOT "
                   "state-preparation blocks leave room; default: none)")
    p.add_argument("--grow", choices=("none", "brickwall", "ran"), default="none",
                   help="grow the ansatz layer by layer until --target-fidelity or --cnot-budget: identity brick "
                   "layers, or Ran's analytic layers first in time; with --depth 0 start from no seed circuit "
                   "(default: none)")
    p.add_argument("--max-layers", type=int, default=8, help="with --grow: most layers added (default: 8)")
    p.add_argument("--basis", default=None, help="comma-separated basis gates to transpile to, e.g. ecr,rz,sx,x")
    p.add_argument("--qasm-version", type=int, choices=(2, 3), default=2, help="OpenQASM version (default: 2)")
    p.add_argument("--out", required=True, help="QASM file to write")
    p.add_argument("--report", default=None, help="JSON report to write (default: OUT with .json)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _chain(args: argparse.Namespace) -> Any:
    from .targets import SpinChain

    if args.model == "xxz":
        return SpinChain.xxz(args.n_sites, delta=args.delta, j=args.j, h=args.h)
    if args.model == "heisenberg":
        return SpinChain.heisenberg(args.n_sites, j=args.j, h=args.h)
    return SpinChain.tfim(args.n_sites, j=args.j, h=args.h)


def run_aqc(args: argparse.Namespace) -> dict[str, Any]:
    """Run the subcommand; return the report it writes."""
    from ..io import atomic_write
    from ..mps.mps import MatrixProductState
    from . import ansatz as ans
    from .circuits import circuit_fidelity, gate_counts, to_qiskit, transpile_circuit, write_qasm
    from .compiler import compile_state
    from .init import ran_initialization, trotter_initialization
    from .targets import as_target, time_evolved_state

    start = time.perf_counter()
    report: dict[str, Any] = {"ansatz": args.ansatz, "depth": args.depth, "method": args.method, "grow": args.grow}
    if args.mps is not None:
        target = as_target(MatrixProductState.load(args.mps))
        report["target"] = {"mps": str(args.mps), "n_sites": target.n_sites, "max_bond": target.max_bond_dim}
        chain = None
    else:
        chain = _chain(args)
        target, evo = time_evolved_state(chain, args.time, steps=args.target_steps, initial=args.initial)
        report["target"] = {"model": args.model, "n_sites": args.n_sites, "delta": args.delta, "j": args.j,
                            "h": args.h, "time": args.time, "initial": args.initial, "steps": evo.steps,
                            "max_bond": evo.max_bond, "estimated_error": evo.error}
    report["target_seconds"] = time.perf_counter() - start
    n = target.n_sites
    params = None
    growing = args.grow != "none"
    if growing and args.depth == 0:
        ansatz = None  # no seed circuit: compile_growing starts from the best product state
    elif args.ansatz == "trotter":
        if chain is None:
            raise ValueError("`--ansatz trotter` needs a spin-chain model, not --mps; use brickwall or ran.")
        ansatz, params = trotter_initialization(chain, args.time, args.depth, initial=args.initial)
        if args.cnot_budget is not None and not growing:
            from .init import fill_cnot_budget

            ansatz, params = fill_cnot_budget(ansatz, params, args.cnot_budget)
    elif args.ansatz == "ran":
        ansatz, params = ran_initialization(target, args.depth)
    elif args.ansatz == "staircase":
        ansatz = ans.staircase_ansatz(n, args.depth)
    else:
        ansatz = ans.brickwall_ansatz(n, args.depth)
    options = dict(max_bond=args.max_bond, max_iter=args.max_iter, target_fidelity=args.target_fidelity,
                   progress=not args.no_progress, method=args.method)
    if growing:
        from .growth import compile_growing

        stages = compile_growing(target, ansatz, params, grow=args.grow, cnot_budget=args.cnot_budget,
                                 max_layers=args.max_layers, **options)
        report["stages"] = [{"cnots": r.cnot_count, "cnot_depth": r.cnot_depth, "fidelity": r.fidelity,
                             "iterations": r.n_iterations} for r in stages]
        result = stages[-1]
    else:
        result = compile_state(target, ansatz, params, **options)
    qc = to_qiskit(result.ansatz, result.params)
    if args.basis:
        qc = transpile_circuit(qc, basis_gates=[g.strip() for g in args.basis.split(",") if g.strip()])
    counts = gate_counts(qc)
    report.update({
        "fidelity": result.fidelity,
        "initial_fidelity": result.initial_fidelity,
        "circuit_fidelity": circuit_fidelity(qc, target, max_bond=max(args.max_bond, 128)),
        "cnots": result.cnot_count,
        "cnot_depth": result.cnot_depth,
        "two_qubit_gates": counts["two_qubit"],
        "two_qubit_depth": counts["two_qubit_depth"],
        "depth": counts["depth"],
        "gate_counts": {k: v for k, v in counts.items() if k not in ("two_qubit", "two_qubit_depth", "depth")},
        "iterations": result.n_iterations,
        "evaluations": result.n_evaluations,
        "compile_seconds": result.seconds,
        "total_seconds": time.perf_counter() - start,
        "message": result.message,
    })
    out = write_qasm(qc, args.out, version=args.qasm_version)
    report["qasm"] = str(out)
    path = Path(args.report) if args.report else out.with_suffix(".json")
    with atomic_write(path) as fh:
        fh.write(json.dumps(report, indent=2).encode())
    return report


def _run(args: argparse.Namespace) -> int:
    report = run_aqc(args)
    print(
        f"tnkit aqc: fidelity {report['fidelity']:.6f} (circuit re-simulated: {report['circuit_fidelity']:.6f}), "
        f"{report['cnots']} CNOTs, CNOT depth {report['cnot_depth']}, {report['total_seconds']:.1f} s -> {report['qasm']}"
    )
    return 0
