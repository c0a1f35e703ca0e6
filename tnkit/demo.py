"""``tnkit demo``: a short tour of every tnkit product on built-in examples, in seconds.

Sections (``--sections`` picks some; all by default):

``engine``
    A Néel state of an XXZ spin chain is quenched by a second-order
Trotter circuit written in Qiskit and simulated as an MPS; the demo then inspects
the state (energy, entanglement, magnetisation), compresses it by SVD and by
variational fitting, samples it exactly (every sample must keep total ``Sz = 0``,
    which the dynamics conserves), and saves and reloads it.
``tree``
    An 8x8 digit as a tree tensor network over the image grid and as an MPS, at
    equal parameter counts: the reconstruction errors side by side.
``classifier``
    An MPS classifier (Stoudenmire & Schwab) trained by two-site sweeps on
    scikit-learn's 8x8 digits; test accuracy and bond dimensions.
``generative``
    An MPS Born machine learns the 30 bars-and-stripes patterns to ``ln 30`` and
    samples only valid patterns; one pattern is inpainted from its top row.
``aqc``
    The quenched state of a short XXZ chain compiled into a shallow circuit
    seeded by Trotter angles; fidelity from the MPS objective and re-simulated
    by Qiskit.
``compress``
    A tiny random Llama's linear layers become whitened MPOs (truncated for the
    layer outputs on calibration activations) at half their parameters;
    perplexity before and after (needs the ``llm`` extra).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._argtypes import finite_float, int_in

__all__ = ["add_parser", "run_demo", "run_tour", "xxz_trotter_circuit", "SECTIONS"]

#: The tour's sections, in the order they run.
SECTIONS = ("engine", "tree", "classifier", "generative", "aqc", "compress")


#: Upper limits of the demo's options (the tour is meant to take seconds).
_LIMITS = {"n_sites": 1000, "steps": 10_000, "sim_bond": 4096, "max_bond": 4096, "samples": 10_000_000}


def _sections(text: str) -> list[str]:
    sections = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise argparse.ArgumentTypeError(f"must name some of {','.join(SECTIONS)}, got {text!r}")
    return sections


def _out_dir(text: str) -> str:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {str(existing)!r}")
    return text


def add_parser(sub: Any) -> None:
    """Register the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run a short tour of tnkit on built-in examples",
        description="A tour of every product on small built-in examples, printing each step: the MPS engine "
        "on a quenched XXZ chain (simulate, measure, compress, sample, save), a tree tensor network of an "
        "image, an MPS classifier on 8x8 digits, a Born machine on bars-and-stripes, approximate quantum "
        "compiling to a Qiskit circuit, and MPO compression of a tiny Llama. Runs in well under a minute. "
        "Every option is checked before the tour starts.",
    )
    p.add_argument("--sections", type=_sections, default=list(SECTIONS),
                   help=f"comma-separated sections to run, in tour order (default: all of {','.join(SECTIONS)})")
    p.add_argument("--n-sites", type=int_in(2, _LIMITS["n_sites"]), default=20,
                   help=f"number of spins in the chain, 2 to {_LIMITS['n_sites']} (default: 20)")
    p.add_argument("--time", type=finite_float, default=1.0, help="evolution time t of the quench (default: 1.0)")
    p.add_argument("--steps", type=int_in(1, _LIMITS["steps"]), default=10,
                   help=f"Trotter steps to reach t, 1 to {_LIMITS['steps']} (default: 10)")
    p.add_argument("--sim-bond", type=int_in(1, _LIMITS["sim_bond"]), default=64,
                   help="largest bond dimension while simulating the circuit (default: 64)")
    p.add_argument("--delta", type=finite_float, default=0.5, help="XXZ anisotropy Delta (default: 0.5)")
    p.add_argument("--max-bond", type=int_in(1, _LIMITS["max_bond"]), default=12,
                   help="bond dimension to compress to (default: 12)")
    p.add_argument("--samples", type=int_in(1, _LIMITS["samples"]), default=10_000,
                   help="number of exact samples to draw (default: 10000)")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0,
                   help="random seed for sampling and training (default: 0)")
    p.add_argument("--out", type=_out_dir, default=None, help="directory to write the state (.npz) and the "
                   "entanglement plot (.png) to, created if missing; default: a temporary directory, removed "
                   "afterwards")
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


def _quenched_state(n_sites: int, t: float, steps: int, delta: float, sim_bond: int) -> tuple[Any, str, float]:
    """The Trotter-evolved Néel state: through a Qiskit circuit when Qiskit is installed, else gate by gate.

    Returns the state, a description of how it was made and the estimated truncation error.
    """
    from . import MPS

    try:
        qc = xxz_trotter_circuit(n_sites, t, steps, delta)
    except ImportError:
        return _quenched_state_by_gates(n_sites, t, steps, delta, sim_bond)
    psi, report = MPS.from_qiskit(qc, max_bond=sim_bond, return_report=True)
    return psi, f"Qiskit Trotter circuit ({qc.size()} gates)", report.error


def _quenched_state_by_gates(n_sites: int, t: float, steps: int, delta: float,
                             sim_bond: int) -> tuple[Any, str, float]:
    """The same second-order Trotter evolution as :func:`xxz_trotter_circuit`, with tnkit's own gates."""
    from . import MPS
    from .mps.builders import pauli_operators

    ops = pauli_operators()
    term = np.real(np.kron(ops["X"], ops["X"]) + np.kron(ops["Y"], ops["Y"])) + delta * np.kron(ops["Z"], ops["Z"])
    energies, vectors = np.linalg.eigh(term)

    def bond_gate(tau: float) -> np.ndarray:  # exp(-i tau (XX + YY + delta ZZ)), (2, 2, 2, 2) out-out-in-in
        return ((vectors * np.exp(-1j * tau * energies)) @ vectors.conj().T).reshape(2, 2, 2, 2)

    psi = MPS.product_state([k % 2 for k in range(n_sites)], dtype=np.complex128)
    dt, kept = t / steps, 1.0
    half, full = bond_gate(dt / 2), bond_gate(dt)
    for _ in range(steps):
        for parity, gate in ((0, half), (1, full), (0, half)):
            for q in range(parity, n_sites - 1, 2):
                kept *= 1.0 - psi.apply_gate_(gate, (q, q + 1), max_bond=sim_bond)
    n_gates = steps * (2 * (n_sites // 2) + (n_sites - 1) // 2)
    return psi, f"Trotter gates applied with tnkit ({n_gates} two-site gates; Qiskit not installed)", 1.0 - kept


def _missing(exc: ImportError) -> str:
    from .cli import missing_extra_message

    return missing_extra_message(exc) or str(exc)


def run_demo(
    *,
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
    """Run the engine demo, print each step, and return the headline numbers.

    Parameters
    ----------
    n_sites : int
        Spins of the XXZ chain (at least 2).
    t : float
        Evolution time.
    steps : int
        Second-order Trotter steps (at least 1).
    delta : float
        XXZ anisotropy.
    sim_bond, max_bond : int
        Bond cap of the simulation, and of the compressions (at least 1).
    samples : int
        Exact samples drawn (at least 1).
    seed : int
        Seed of the sampling.
    out : str, optional
        Directory for the state and the entanglement plot.

    Raises
    ------
    ValueError, TypeError
        For an option out of range, before any work.
    """
    from . import MPS, contract_cache_info
    from .core.validate import check_int
    from .mps.builders import heisenberg_mpo, pauli_operators

    check_int("n_sites", n_sites, minimum=2)
    for name, value in (("steps", steps), ("sim_bond", sim_bond), ("max_bond", max_bond), ("samples", samples)):
        check_int(name, value, minimum=1)
    check_int("seed", seed, minimum=0)
    for name, value in (("t", t), ("delta", delta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"`{name}` must be a finite real number, got {value!r}.")

    results: dict[str, float] = {}
    say = _Printer()
    say.title(f"tnkit demo: quench of an XXZ chain, N={n_sites}, Delta={delta}, t={t}")

    psi, how, error = _quenched_state(n_sites, t, steps, delta, sim_bond)
    say.step(
        "simulate",
        f"{how} ({steps} second-order steps) -> {psi!r}; "
        f"bond dims up to {psi.max_bond_dim}, estimated truncation error {error:.1e}",
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
            try:
                _plot_entropy(entropy, folder / "xxz_entropy.png")
                say.step("plot", f"entanglement profile written to {folder / 'xxz_entropy.png'}")
            except ImportError as exc:
                say.step("plot", f"skipped: {_missing(exc)}")
    info = contract_cache_info()
    say.step("contractions", f"{info.currsize} planned contractions cached, {info.hits:,} cache hits")
    return results


def _plot_entropy(entropy: np.ndarray, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = _entropy_figure(entropy)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _entropy_figure(entropy: np.ndarray) -> Any:
    """The entanglement profile: entropy against bond index (integer ticks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(len(entropy)), entropy, "o-")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("bond")
    ax.set_ylabel("entanglement entropy (nats)")
    ax.set_title("XXZ quench: entanglement profile")
    fig.tight_layout()
    return fig


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
    sections = args.sections  # checked by the parser
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        if "engine" in sections:
            run_demo(n_sites=args.n_sites, t=args.time, steps=args.steps, delta=args.delta, sim_bond=args.sim_bond,
                     max_bond=args.max_bond, samples=args.samples, seed=args.seed, out=args.out)
        run_tour([s for s in sections if s != "engine"], seed=args.seed, out=out)
    return 0


def run_tour(sections: Any = SECTIONS, *, seed: int = 0, out: Any = None) -> dict[str, float]:
    """Run the product sections of the demo (all but ``engine``); return headline numbers."""
    results: dict[str, float] = {}
    say = _Printer()
    for name in sections:
        if name == "engine":
            continue
        say.title(f"tnkit demo: {_TOUR_TITLES[name]}")
        try:
            results.update(_TOURS[name](say, seed, Path(out) if out else None))
        except ImportError as exc:  # a product whose optional stack is not installed
            say.step(name, f"skipped: {_missing(exc)}")
    return results


def _tour_tree(say: _Printer, seed: int, out: Path | None) -> dict[str, float]:
    from .datasets import load_digits
    from .ttn import TTN, Tree

    # A 32x32 mosaic of 16 digits as a tensor of 10 bits, row and column bits interleaved
    # from the coarsest scale: a balanced tree pairs them scale by scale (see
    # examples/ttn_image_compression.py for the full comparison).
    digits = load_digits(flatten=False).data[:16]
    mosaic = digits.reshape(4, 4, 8, 8).transpose(0, 2, 1, 3).reshape(32, 32)
    bits = mosaic.reshape((2,) * 10).transpose([axis for i in range(5) for axis in (i, 5 + i)])
    results = {}
    for bond in (4, 8):
        ttn, rep_t = TTN.from_dense(bits, Tree.balanced(10), max_bond=bond, return_report=True)
        mps, rep_m = _largest_mps_within(bits.ravel(), ttn.num_params)
        say.step("tree", f"32x32 digit mosaic, tree bond {bond}: TTN {ttn.num_params:,} parameters, relative "
                 f"error {rep_t.error:.4f}; MPS (bond {mps.max_bond_dim}) {mps.num_params:,} parameters, "
                 f"error {rep_m.error:.4f}")
        results[f"ttn_error_bond{bond}"] = rep_t.error
    say.step("entanglement", f"entropy across each tree edge (nats): {np.round(ttn.entropies(), 2).tolist()}")
    return results


def _largest_mps_within(vector: np.ndarray, budget: int) -> tuple[Any, Any]:
    """The TT-SVD of ``vector`` at the largest bond whose parameter count fits ``budget``."""
    from . import MPS

    best = MPS.from_dense(vector, 2, max_bond=1, return_report=True)
    for bond in range(2, 65):
        candidate = MPS.from_dense(vector, 2, max_bond=bond, return_report=True)
        if candidate[0].num_params > budget or candidate[0].max_bond_dim < bond:
            break
        best = candidate
    return best


def _tour_classifier(say: _Printer, seed: int, out: Path | None) -> dict[str, float]:
    from sklearn.model_selection import train_test_split

    from .datasets import load_digits
    from .ml import MPSClassifier

    x, y = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    t0 = time.perf_counter()
    clf = MPSClassifier(max_bond=10, solver="sweep", n_sweeps=2, random_state=seed).fit(x_train, y_train)
    accuracy = clf.score(x_test, y_test)
    say.step("classifier", f"MPS classifier (64 pixels, cos/sin feature map, label index swept along) on 8x8 "
             f"digits: test accuracy {accuracy:.3f} after 2 sweeps in {time.perf_counter() - t0:.1f} s; "
             f"bond dims up to {max(clf.bond_dims_)}")
    return {"classifier_accuracy": accuracy}


def _tour_generative(say: _Printer, seed: int, out: Path | None) -> dict[str, float]:
    from .datasets import bars_and_stripes
    from .ml import MPSBornMachine, TTNBornMachine

    patterns = bars_and_stripes(4)
    t0 = time.perf_counter()
    model = MPSBornMachine(max_bond=32, init_bond=16, n_sweeps=2, random_state=seed).fit(patterns)
    nll = -float(np.mean(model.score_samples(patterns)))
    samples = model.sample(10_000, random_state=seed)
    valid = {p.tobytes() for p in patterns}
    n_valid = sum(s.tobytes() in valid for s in samples.astype(patterns.dtype))
    say.step("generative", f"Born machine on the 30 4x4 bars-and-stripes: NLL {nll:.4f} (ln 30 = {math.log(30):.4f}) "
             f"in {time.perf_counter() - t0:.2f} s; {n_valid:,} of 10,000 exact samples valid, "
             f"{len({s.tobytes() for s in samples.astype(patterns.dtype)})} distinct")
    bars = next(p for p in patterns if len(set(p[:4].tolist())) > 1)  # a top row that only bars explain
    observed = np.arange(16) < 4  # only the top row is given
    filled = model.inpaint(bars[None, :], observed)[0]
    say.step("inpaint", f"top row {bars[:4].tolist()} -> most likely completion of the other 12 pixels "
             f"{'recovers' if np.array_equal(filled, bars) else 'misses'} the bars pattern")
    t0 = time.perf_counter()
    tree = TTNBornMachine(max_bond=24, n_sweeps=2, random_state=seed).fit(patterns)
    tree_nll = -tree.score(patterns)
    say.step("tree-born", f"the same data on a 4x4 grid tree (TTN Born machine, bond 24): NLL {tree_nll:.4f} "
             f"in {time.perf_counter() - t0:.2f} s")
    return {"born_nll": nll, "born_valid_fraction": n_valid / 10_000, "ttn_born_nll": tree_nll}


def _tour_aqc(say: _Printer, seed: int, out: Path | None) -> dict[str, float]:
    from .aqc import SpinChain, circuit_fidelity, compile_state, time_evolved_state, trotter_initialization

    chain = SpinChain.xxz(8, delta=0.5)
    target, _ = time_evolved_state(chain, 1.0, steps=20)
    ansatz, x0 = trotter_initialization(chain, 1.0, 2)
    goal = 0.98  # the 2-step structure's optimum is near 0.987; a deeper one goes further
    result = compile_state(target, ansatz, x0, max_bond=None, max_iter=40, target_fidelity=goal, progress=False)
    check = circuit_fidelity(result.circuit(), target)
    say.step("aqc", f"XXZ chain, 8 qubits, t = 1: a 2-step Trotter circuit ({ansatz.cnot_count} CNOTs) has fidelity "
             f"{result.initial_fidelity:.4f}; compiled with exact gradients to the target {goal}: "
             f"{result.fidelity:.4f} (Qiskit re-simulation {check:.4f}) in {result.n_iterations} iterations, "
             f"{result.seconds:.1f} s")
    return {"aqc_fidelity": result.fidelity}


def _tour_compress(say: _Printer, seed: int, out: Path | None) -> dict[str, float]:
    import tnkit.compress as tc

    model = tc.tiny_llama(seed=seed)
    ids = np.random.default_rng(seed).integers(0, 256, 2000)
    calibration = tc.token_batches(ids, seq_len=64, batch_size=4, n_batches=2)
    before = tc.perplexity(model, ids[:512], window=128, stride=64)
    result = tc.compress_model(model, method="mpo-whiten", ratio=0.5, calibration=calibration, progress=False)
    after = tc.perplexity(model, ids[:512], window=128, stride=64)
    say.step("compress", f"tiny random Llama, linear layers as whitened MPOs: {result.params_before:,} -> "
             f"{result.params_after:,} parameters ({result.ratio:.0%}); perplexity {before:.1f} -> {after:.1f} "
             f"(random weights and tokens: only the mechanics are shown)")
    return {"compress_ratio": result.ratio}


_TOURS = {
    "tree": _tour_tree,
    "classifier": _tour_classifier,
    "generative": _tour_generative,
    "aqc": _tour_aqc,
    "compress": _tour_compress,
}
_TOUR_TITLES = {
    "tree": "a digit image as a tree tensor network",
    "classifier": "an MPS classifier on handwritten digits",
    "generative": "MPS and tree Born machines on bars-and-stripes",
    "aqc": "approximate quantum compiling of a quenched chain",
    "compress": "MPO compression of a (tiny) language model",
}

