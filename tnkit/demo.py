"""``tnkit demo``: a short tour of tnkit on a built-in example, in seconds.

Engine part: a Néel state of an XXZ spin chain is quenched by a second-order
Trotter circuit written in Qiskit and simulated as an MPS; the demo then inspects
the state (energy, entanglement, magnetisation), compresses it by SVD and by
variational fitting, samples it exactly (every sample must keep total ``Sz = 0``,
which the dynamics conserves), and saves and reloads it.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "run_demo", "xxz_trotter_circuit"]


def add_parser(sub: Any) -> None:
    """Register the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run a short tour of tnkit on built-in examples",
        description="Build, evolve, compress, measure, sample and save an MPS of a quenched XXZ chain, "
        "printing each step. Runs in a few seconds.",
    )
    p.add_argument("--n-sites", type=int, default=20, help="number of spins in the chain (default: 20)")
    p.add_argument("--time", type=float, default=1.0, help="evolution time t of the quench (default: 1.0)")
    p.add_argument("--steps", type=int, default=10, help="Trotter steps to reach t (default: 10)")
    p.add_argument("--sim-bond", type=int, default=64,
                   help="largest bond dimension while simulating the circuit (default: 64)")
    p.add_argument("--delta", type=float, default=0.5, help="XXZ anisotropy Delta (default: 0.5)")
    p.add_argument("--max-bond", type=int, default=12, help="bond dimension to compress to (default: 12)")
    p.add_argument("--samples", type=int, default=10_000, help="number of exact samples to draw (default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling (default: 0)")
    p.add_argument("--out", default=None, help="directory to write the state (.npz) and the entanglement "
                   "plot (.png) to; default: a temporary directory, removed afterwards")
    p.set_defaults(func=_run)


def xxz_trotter_circuit(n_sites: int, t: float, steps: int, delta: float, *, neel: bool = True) -> Any:
    """Qiskit circuit of second-order Trotter evolution under ``H = sum XX + YY + delta ZZ``.

    Starts from the Néel state ``|0101...>`` when ``neel``. Each bond term is
    ``exp(-i tau (XX + YY + delta ZZ)) = RXX(2 tau) RYY(2 tau) RZZ(2 delta tau)``.
    """
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(n_sites)
    if neel:
        for q in range(1, n_sites, 2):
            qc.x(q)
    dt = t / steps

    def layer(parity: int, tau: float) -> None:
        for q in range(parity, n_sites - 1, 2):
            qc.rxx(2 * tau, q, q + 1)
            qc.ryy(2 * tau, q, q + 1)
            qc.rzz(2 * delta * tau, q, q + 1)

    for _ in range(steps):
        layer(0, dt / 2)
        layer(1, dt)
        layer(0, dt / 2)
    return qc


def run_demo(
    n_sites: int = 20,
    t: float = 1.0,
    steps: int = 10,
    delta: float = 0.5,
    sim_bond: int = 64,
    max_bond: int = 12,
    samples: int = 10_000,
    seed: int = 0,
    out: str | None = None,
) -> dict[str, float]:
    """Run the engine demo, print each step, and return the headline numbers."""
    from . import MPS, contract_cache_info
    from .mps.builders import heisenberg_mpo, pauli_operators

    results: dict[str, float] = {}
    say = _Printer()
    say.title(f"tnkit demo: quench of an XXZ chain, N={n_sites}, Delta={delta}, t={t}")

    qc = xxz_trotter_circuit(n_sites, t, steps, delta)
    psi, report = MPS.from_qiskit(qc, max_bond=sim_bond, return_report=True)
    say.step(
        "simulate",
        f"Qiskit Trotter circuit ({qc.size()} gates, {steps} second-order steps) -> {psi!r}; "
        f"bond dims up to {psi.max_bond_dim}, estimated truncation error {report.error:.1e}",
    )
    h = heisenberg_mpo(n_sites, j=(1.0, 1.0, delta), spin=None)
    neel = MPS.product_state([k % 2 for k in range(n_sites)])
    e0, e1 = h.expectation(neel), h.expectation(psi)
    say.step("energy", f"<H> = {e1:.6f} after the quench vs {e0:.6f} before (conserved up to Trotter error)")
    results["energy"] = e1

    z = pauli_operators()["Z"]
    mz = psi.local_expectations(z)
    entropy = psi.entanglement_entropy()
    say.step("measure", f"staggered magnetisation {np.mean(mz * (-1) ** np.arange(n_sites)):+.4f} (1 at t=0); "
             f"half-chain entropy {entropy[n_sites // 2 - 1]:.4f} nats")
    say.bars("entanglement entropy per bond (nats)", entropy)
    results["half_chain_entropy"] = float(entropy[n_sites // 2 - 1])

    exact = psi.normalized()
    for method in ("svd", "fit"):
        small, rep = exact.compress(max_bond=max_bond, method=method)
        fid = small.fidelity(exact)
        say.step(
            f"compress {method}",
            f"bond {psi.max_bond_dim} -> {small.max_bond_dim}: {exact.num_params:,} -> {small.num_params:,} "
            f"parameters, fidelity {fid:.6f} (report {rep.fidelity:.6f}), <H> = {h.expectation(small):.6f}",
        )
        results[f"fidelity_{method}"] = fid

    t0 = time.perf_counter()
    configs = exact.sample(samples, seed=seed)
    elapsed = time.perf_counter() - t0
    total_sz = (1 - 2 * configs).sum(axis=1)
    say.step(
        "sample",
        f"{samples:,} exact samples in {elapsed:.3f} s; samples with total Sz = 0: "
        f"{np.mean(total_sz == 0) * 100:.1f}% (the quench conserves Sz)",
    )
    results["fraction_sz0"] = float(np.mean(total_sz == 0))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "xxz_quench.npz"
        exact.save(path)
        back = MPS.load(path)
        say.step("save/load", f"wrote {path.name} ({path.stat().st_size / 1024:.1f} KiB); reloaded fidelity "
                 f"{back.fidelity(exact):.15f}")
        if out:
            _plot_entropy(entropy, folder / "xxz_entropy.png")
            say.step("plot", f"entanglement profile written to {folder / 'xxz_entropy.png'}")
    info = contract_cache_info()
    say.step("contractions", f"{info.currsize} planned contractions cached, {info.hits:,} cache hits")
    return results


def _plot_entropy(entropy: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(len(entropy)), entropy, "o-")
    ax.set_xlabel("bond")
    ax.set_ylabel("entanglement entropy (nats)")
    ax.set_title("XXZ quench: entanglement profile")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class _Printer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def title(self, text: str) -> None:
        print(text)
        print("=" * len(text))

    def step(self, name: str, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.2f}s] {name:<13} {text}")

    def bars(self, title: str, values: np.ndarray) -> None:
        top = max(float(np.max(values)), 1e-12)
        print(f"{'':22}{title}")
        for i, v in enumerate(values):
            print(f"{'':22}{i:3d} {'#' * int(math.ceil(30 * v / top)):<30} {v:.3f}")


def _run(args: argparse.Namespace) -> int:
    run_demo(
        args.n_sites, args.time, args.steps, args.delta, args.sim_bond, args.max_bond, args.samples, args.seed, args.out
    )
    return 0
