"""Ground state, entanglement and a quench of the XXZ chain with tnkit's DMRG and TDVP.

1. Two-site DMRG (:func:`tnkit.algorithms.dmrg`) finds the ground state of the open
   spin-1/2 XXZ chain ``H = sum_i Sx Sx + Sy Sy + Delta Sz Sz`` and checks it with the
   energy variance ``<H^2> - <H>^2``.
2. The entanglement entropy across every bond is fitted to the Calabrese-Cardy form
   ``S(l) = c/6 log[(2N/pi) sin(pi l/N)] + const`` (even cuts; ``c = 1``).
3. A quench: the Néel state ``|0101...>`` evolves under the same ``H`` with two-site
   TDVP (:func:`tnkit.algorithms.tdvp`); a callback records the staggered
   magnetisation, the half-chain entropy and the energy (conserved up to truncation).
4. The quenched state as a circuit: a shorter quench of ``--circuit-n`` qubits
   (to ``--circuit-time``) compiled by :func:`tnkit.aqc.compile_growing` (Ran's
   analytic layer, then brick layers, until fidelity 0.999), re-simulated
   independently by :func:`tnkit.aqc.circuit_fidelity` (needs Qiskit;
   ``--circuit-n 0`` skips it).

It prints a summary and writes ``physics_quench.png`` (four panels) and
``physics_quench.json`` (the numbers) to ``--out``. The defaults (N = 32, bond 48,
quench to t = 3; the circuit of 10 qubits at t = 1) run in about a minute on two
cores.

Run ``python examples/physics_quench.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import tnkit
from tnkit.algorithms import dmrg, tdvp


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="XXZ chain: DMRG ground state and entanglement profile, "
        "then a TDVP quench from the Néel state.",
    )
    parser.add_argument("--n", type=int, default=32, help="number of sites, even (default: 32)")
    parser.add_argument("--delta", type=float, default=0.5, help="anisotropy Delta (default: 0.5)")
    parser.add_argument("--bond", type=int, default=48, help="largest bond dimension (default: 48)")
    parser.add_argument("--time", type=float, default=3.0, help="final time of the quench (default: 3)")
    parser.add_argument("--dt", type=float, default=0.05, help="TDVP time step (default: 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seed of DMRG's random start (default: 0)")
    parser.add_argument("--circuit-n", type=int, default=10,
                        help="qubits of the quench compiled to a circuit, even; 0 skips it (default: 10)")
    parser.add_argument("--circuit-time", type=float, default=1.0,
                        help="final time of the compiled quench (default: 1)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "output",
        help="directory for the figure and the JSON summary (default: examples/output)",
    )
    args = parser.parse_args(argv)
    if args.n < 4 or args.n % 2:
        parser.error(f"--n must be an even number >= 4, got {args.n}")
    if args.bond < 1 or args.time <= 0 or args.dt <= 0:
        parser.error("--bond, --time and --dt must be positive")
    if args.circuit_n and (args.circuit_n < 4 or args.circuit_n % 2):
        parser.error(f"--circuit-n must be 0 or an even number >= 4, got {args.circuit_n}")
    if args.circuit_time <= 0:
        parser.error(f"--circuit-time must be positive, got {args.circuit_time}")
    return args


def ground_state(n: int, delta: float, bond: int, seed: int) -> dict:
    h = tnkit.xxz_mpo(n, delta=delta)
    res = dmrg(h, max_bond=bond, seed=seed, progress=False)
    entropy = np.asarray(res.state.entanglement_entropy())
    cuts = np.arange(1, n)
    chord = np.log(2 * n / np.pi * np.sin(np.pi * cuts / n))
    even = cuts % 2 == 0
    slope, intercept = np.polyfit(chord[even], entropy[even], 1)
    return {
        "result": res,
        "entropy": entropy,
        "cuts": cuts,
        "chord": chord,
        "central_charge": 6 * slope,
        "intercept": intercept,
    }


def quench(n: int, delta: float, bond: int, t_final: float, dt: float) -> dict:
    h = tnkit.xxz_mpo(n, delta=delta)
    sz = np.diag([0.5, -0.5])
    signs = (-1.0) ** np.arange(n)

    def observe(t: float, state: tnkit.MPS) -> tuple[float, float, float]:
        m = state.local_expectations(sz).real
        return (
            float(np.mean(m * signs)),
            float(state.entanglement_entropy(n // 2 - 1)),
            float(state.expectation(h).real),
        )

    steps = int(round(t_final / dt))
    run = tdvp(
        tnkit.MPS.product_state("01" * (n // 2)),
        h,
        dt=dt,
        n_steps=steps,
        max_bond=bond,
        callback=observe,
        progress=False,
    )
    stag, ent, energy = (np.array(x) for x in zip(*run.records, strict=True))
    return {"result": run, "times": np.array(run.times), "staggered": stag, "entropy": ent, "energy": energy}


def circuit(n: int, delta: float, t_final: float, dt: float, seed: int) -> dict:
    """Compile the quenched state of ``n`` qubits at ``t_final`` to a circuit, layer by layer."""
    from tnkit.aqc import circuit_fidelity, compile_growing

    state = tdvp(tnkit.MPS.product_state("01" * (n // 2)), tnkit.xxz_mpo(n, delta=delta), dt=dt,
                 n_steps=int(round(t_final / dt)), max_bond=64, progress=False).state
    stages = compile_growing(state, grow="ran-brickwall", target_fidelity=0.999, seed=seed, progress=False)
    qc = stages[-1].circuit()
    return {
        "cnots": [s.cnot_count for s in stages],
        "fidelities": [s.fidelity for s in stages],
        "resimulated_fidelity": circuit_fidelity(qc, state),
        "circuit_cnots": qc.count_ops().get("cx", 0),
    }


def plot(gs: dict, qu: dict, circ: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4 if circ else 3, figsize=(16 if circ else 12, 3.4))
    ax[0].plot(gs["cuts"], gs["entropy"], "o", ms=3, label="DMRG")
    fit = gs["central_charge"] / 6 * gs["chord"] + gs["intercept"]
    ax[0].plot(gs["cuts"], fit, "-", label=f"Calabrese-Cardy, c = {gs['central_charge']:.2f}")
    ax[0].set(xlabel="cut l", ylabel="S(l)", title="ground-state entanglement")
    ax[0].legend(fontsize=8)
    ax[1].plot(qu["times"], qu["staggered"])
    ax[1].set(xlabel="t", ylabel="staggered magnetisation", title="quench from Néel")
    ax[2].plot(qu["times"], qu["entropy"])
    ax[2].set(xlabel="t", ylabel="half-chain entropy", title="entanglement growth")
    if circ:
        ax[3].semilogy(circ["cnots"], [max(1 - f, 1e-16) for f in circ["fidelities"]], "o-")
        ax[3].axhline(1e-3, color="grey", lw=0.6, ls=":")
        ax[3].set(xlabel="CNOTs", ylabel="infidelity 1 - F", title="the quench as a circuit")
    fig.tight_layout()
    _atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    gs = ground_state(args.n, args.delta, args.bond, args.seed)
    res = gs["result"]
    print(
        f"DMRG: E = {res.energy:.12f} ({res.energy / args.n:.12f} per site), variance {res.variance:.2e}, "
        f"{res.n_sweeps} sweeps, bond {res.state.max_bond_dim}, max discarded weight "
        f"{res.max_truncation_error:.1e}, {sum(res.sweep_times):.2f} s"
    )
    print(f"central charge from the even cuts: {gs['central_charge']:.3f}")
    qu = quench(args.n, args.delta, args.bond, args.time, args.dt)
    run = qu["result"]
    drift = float(np.max(np.abs(qu["energy"] - qu["energy"][0])))
    print(
        f"TDVP to t = {args.time}: bond {run.state.max_bond_dim}, total discarded weight "
        f"{run.total_truncation_error:.1e}, energy drift {drift:.1e}, {run.wall_time:.2f} s"
    )
    print(
        f"staggered magnetisation at t = {args.time}: {qu['staggered'][-1]:.4f}; "
        f"half-chain entropy {qu['entropy'][-1]:.4f}"
    )
    circ = None
    if args.circuit_n:
        circ = circuit(args.circuit_n, args.delta, args.circuit_time, args.dt, args.seed)
        print(
            f"circuit of the {args.circuit_n}-qubit quench at t = {args.circuit_time}: "
            f"{circ['circuit_cnots']} CNOTs, fidelity {circ['fidelities'][-1]:.4f} "
            f"(re-simulated {circ['resimulated_fidelity']:.4f}) after {len(circ['cnots'])} stages"
        )
    plot(gs, qu, circ, args.out / "physics_quench.png")
    summary = {
        "n_sites": args.n,
        "delta": args.delta,
        "max_bond": args.bond,
        "ground_energy": res.energy,
        "variance": res.variance,
        "sweeps": res.n_sweeps,
        "central_charge_even_cuts": gs["central_charge"],
        "entropy": gs["entropy"].tolist(),
        "times": qu["times"].tolist(),
        "staggered": qu["staggered"].tolist(),
        "half_chain_entropy": qu["entropy"].tolist(),
        "energy_drift": drift,
        "tdvp_total_truncation_error": run.total_truncation_error,
        "circuit": circ,
    }
    _atomic(args.out / "physics_quench.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    print(
        f"wrote {args.out / 'physics_quench.png'} and physics_quench.json "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
