"""Compilation end to end, emitted circuits vs Qiskit, QASM, targets, Born-machine circuits, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qiskit.quantum_info import Statevector

from tnkit import MPS
from tnkit.aqc import (
    SpinChain,
    brickwall_ansatz,
    circuit_fidelity,
    compile_sequence,
    compile_state,
    gate_counts,
    mps_to_circuit,
    ran_initialization,
    read_qasm,
    time_evolved_state,
    to_qasm,
    to_qiskit,
    transpile_circuit,
    trotter_initialization,
    write_qasm,
)
from tnkit.aqc.targets import as_target


@pytest.fixture(scope="module")
def shallow_target():
    """A state that a known 2-layer brickwall prepares."""
    ansatz = brickwall_ansatz(5, 2)
    params = np.random.default_rng(5).uniform(-np.pi, np.pi, ansatz.n_params)
    return to_qiskit(ansatz, params)


def test_recovers_a_state_prepared_by_a_known_shallow_circuit(shallow_target):
    target = as_target(shallow_target)
    result = compile_state(target, brickwall_ansatz(5, 2), max_bond=None, max_iter=400,
                           target_fidelity=0.99999, progress=False)
    assert result.fidelity > 0.9999, result
    assert result.history and result.n_evaluations >= result.n_iterations
    qc = result.circuit()
    assert gate_counts(qc)["cx"] == result.cnot_count == 1 + 1 + 3 + 3  # first-layer blocks prepare states
    # the emitted circuit, simulated by Qiskit, agrees with the MPS objective
    assert circuit_fidelity(qc, target) == pytest.approx(result.fidelity, abs=1e-8)
    assert circuit_fidelity(qc, target, method="mps") == pytest.approx(result.fidelity, abs=1e-8)


def _circuit_above_the_statevector_limit(layers: int, seed: int):
    """A brickwall circuit on one qubit more than the ``Statevector`` limit, and a target overlapping its state."""
    from tnkit.aqc import circuits

    n = circuits.STATEVECTOR_MAX_QUBITS + 1
    ansatz = brickwall_ansatz(n, layers)
    qc = to_qiskit(ansatz, np.random.default_rng(seed).uniform(-np.pi, np.pi, ansatz.n_params))
    # a target with a real overlap: the circuit's own state mixed with a random one
    target = (MPS.from_qiskit(qc) + 0.5 * MPS.random(n, 4, seed=seed + 1).normalized()).normalized()
    return qc, target


def _count_statevector_calls(monkeypatch) -> list:
    """From now on, every ``Statevector`` built appends to the returned list."""
    calls: list = []
    real = Statevector.__init__

    def spy(self, *args, **kwargs):
        calls.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Statevector, "__init__", spy)
    return calls


def test_fidelity_above_the_statevector_limit_goes_through_the_exact_mps_route(monkeypatch):
    """Past STATEVECTOR_MAX_QUBITS ``auto`` simulates by MPS, exactly: the same number as Qiskit's Statevector."""
    qc, target = _circuit_above_the_statevector_limit(2, seed=11)
    dense = circuit_fidelity(qc, target, method="statevector")
    assert 0.3 < dense < 1.0
    calls = _count_statevector_calls(monkeypatch)
    assert circuit_fidelity(qc, target) == pytest.approx(dense, abs=1e-12)
    assert not calls  # auto took the MPS route


def test_fidelity_of_a_deep_circuit_above_the_limit_falls_back_to_the_state_vector(monkeypatch):
    """A circuit whose MPS bonds outgrow the cap: ``auto`` returns Qiskit's exact number, not a truncated one."""
    from tnkit.aqc import circuits

    assert circuits._mps_bond_cap(20) >= 64  # the real cap; a small one below keeps the circuit cheap
    monkeypatch.setattr(circuits, "_mps_bond_cap", lambda n_qubits: 4)
    qc, target = _circuit_above_the_statevector_limit(3, seed=13)  # bonds up to 8, past the cap of 4
    dense = circuit_fidelity(qc, target, method="statevector")
    capped = circuit_fidelity(qc, target, method="mps", max_bond=4)
    assert abs(capped - dense) > 1e-6  # the cap would have cost accuracy
    calls = _count_statevector_calls(monkeypatch)
    assert circuit_fidelity(qc, target) == pytest.approx(dense, abs=1e-12)
    assert calls


def test_transpiled_to_a_coupling_map_and_basis_keeps_the_fidelity(shallow_target):
    target = as_target(shallow_target)
    coupling = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    ansatz = brickwall_ansatz(5, 2, coupling_map=coupling)
    result = compile_state(target, ansatz, max_bond=None, max_iter=60, progress=False)
    qc = result.circuit(basis_gates=["ecr", "rz", "sx", "x"], coupling_map=coupling)
    ops = set(qc.count_ops())
    assert ops <= {"ecr", "rz", "sx", "x"} and qc.num_qubits == 6
    assert circuit_fidelity(qc, target) == pytest.approx(result.fidelity, abs=1e-8)
    with pytest.raises(ValueError, match="must connect"):
        transpile_circuit(result.circuit(), coupling_map=[(0, 1), (2, 3), (3, 4), (4, 5)])


@pytest.mark.parametrize("version", [2, 3])
def test_qasm_round_trip(tmp_path, shallow_target, version):
    path = write_qasm(shallow_target, tmp_path / f"c{version}.qasm", version=version)
    text = path.read_text()
    assert text.startswith(f"OPENQASM {version}")
    assert text == to_qasm(shallow_target, version=version)
    if version == 3:
        pytest.importorskip("qiskit_qasm3_import", reason="qiskit_qasm3_import is needed to read QASM 3")
    back = read_qasm(path)
    assert abs(np.vdot(Statevector(back).data, Statevector(shallow_target).data)) ** 2 == pytest.approx(1, abs=1e-10)


def test_time_evolved_state_matches_exact_evolution():
    from scipy.linalg import expm

    chain = SpinChain.xxz(6, delta=0.5, h=0.3)
    psi, report = time_evolved_state(chain, 0.7, steps=40)
    h = chain.mpo().to_dense()
    neel = MPS.product_state([0, 1, 0, 1, 0, 1]).to_dense()
    exact = expm(-0.7j * h) @ neel
    infidelity = 1 - abs(np.vdot(exact, psi.to_dense())) ** 2
    assert infidelity < 1e-5
    # the reported Trotter error estimate is of the right size (within a factor 10)
    assert report.trotter_error / 10 < infidelity < 10 * report.trotter_error + 1e-12
    tfim = SpinChain.tfim(4, j=1.0, h=0.7)
    np.testing.assert_allclose(tfim.mpo().to_dense(), __import__("tnkit").tfim_mpo(4, j=1.0, h=0.7).to_dense())


def test_trotter_initialization_reproduces_the_trotter_circuit():
    chain = SpinChain.xxz(8, delta=0.5)
    ansatz, params = trotter_initialization(chain, 1.0, 3)
    assert ansatz.n_blocks == 4 * 3 + 3 * 4  # odd bonds first: 4 odd layers of 3, 3 even layers of 4
    v = Statevector(chain.trotter_circuit(1.0, 3)).data
    w = Statevector(to_qiskit(ansatz, params)).data
    assert abs(np.vdot(v, w)) ** 2 == pytest.approx(1, abs=1e-10)


def test_trotter_seed_compiles_and_warm_starts_along_t():
    chain = SpinChain.xxz(8, delta=0.5)
    targets = [time_evolved_state(chain, t, steps=20)[0] for t in (0.4, 0.45)]
    ansatz, params = trotter_initialization(chain, 0.4, 1)
    results = compile_sequence(targets, ansatz, params, max_bond=None, max_iter=25, target_fidelity=None,
                               progress=False)
    assert results[0].fidelity > max(0.99, results[0].initial_fidelity)
    assert results[1].initial_fidelity > 0.8  # warm start from t = 0.4
    assert results[1].fidelity >= results[1].initial_fidelity


def test_ran_initialization_is_exact_for_a_bond_two_state(rng):
    target = MPS.random(6, 2, seed=11, dtype=complex)
    ansatz, params = ran_initialization(target, 1)
    assert ansatz.pairs == tuple((q, q + 1) for q in range(5))
    assert circuit_fidelity(to_qiskit(ansatz, params), target) == pytest.approx(1, abs=1e-10)
    deeper = MPS.random(6, 4, seed=12, dtype=complex)
    f = [circuit_fidelity(to_qiskit(*ran_initialization(deeper, k)), deeper) for k in (1, 3)]
    assert f[1] > f[0]


@pytest.mark.parametrize("bond", [2, 3, 4])
def test_mps_to_circuit_reproduces_the_born_distribution(bond):
    psi = MPS.random(6, bond, seed=bond, dtype=complex)
    qc = mps_to_circuit(psi)
    probs = Statevector(qc).probabilities_dict()
    configs = np.array([[int(b) for b in reversed(key)] for key in probs])  # Qiskit keys: qubit 0 last
    np.testing.assert_allclose(psi.probabilities(configs), list(probs.values()), atol=1e-10)
    assert sum(probs.values()) == pytest.approx(1)


def test_cli_end_to_end(tmp_path, capsys):
    from tnkit.cli import main

    out = tmp_path / "xxz.qasm"
    code = main(["aqc", "--model", "xxz", "--n-sites", "6", "--time", "0.5", "--depth", "2", "--max-iter", "30",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["fidelity"] == pytest.approx(report["circuit_fidelity"], abs=1e-8)
    assert report["fidelity"] >= max(0.999, report["initial_fidelity"]) and report["cnots"] == report["gate_counts"]["cx"]
    assert report["target_reached"] is True and report["settings"]["n_sites"] == 6
    assert read_qasm(out).num_qubits == 6
    assert "fidelity" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # checked before any work: a usage error
        main(["aqc", "--mps", str(tmp_path / "missing.npz"), "--out", str(out)])
    assert exc.value.code == 2 and "no such file" in capsys.readouterr().err
    code = main(["aqc", "--n-sites", "6", "--time", "0.5", "--depth", "1", "--cnot-budget", "23", "--method",
                 "sweep+lbfgs", "--max-iter", "20", "--allow-miss", "--out", str(out), "--no-progress"])
    report = json.loads(out.with_suffix(".json").read_text())
    assert code == 0 and report["method"] == "sweep+lbfgs"
    assert report["cnots"] == report["gate_counts"]["cx"] == 2 * 1 + 7 * 3  # 7 blocks + 2 added, 2 preparations
    assert report["fidelity"] == pytest.approx(report["circuit_fidelity"], abs=1e-8)
    code = main(["aqc", "--n-sites", "6", "--time", "0.5", "--depth", "0", "--grow", "brickwall", "--cnot-budget",
                 "30", "--max-iter", "15", "--allow-miss", "--out", str(out), "--no-progress"])
    report = json.loads(out.with_suffix(".json").read_text())
    assert code == 0 and report["grow"] == "brickwall" and report["stages"][0]["cnots"] == 0  # no seed circuit
    assert [s["cnots"] for s in report["stages"]] == sorted(s["cnots"] for s in report["stages"])
    assert report["cnots"] == report["stages"][-1]["cnots"] == report["gate_counts"]["cx"] <= 30
    assert report["fidelity"] == pytest.approx(report["circuit_fidelity"], abs=1e-8)


def test_polar_sweeps_never_lose_fidelity_and_convert_back_to_angles(shallow_target):
    from tnkit.aqc import Objective
    from tnkit.aqc.sweeps import sweep_compile

    hard = MPS.random(5, 4, seed=1, dtype=complex)  # not reachable by two layers
    ansatz = brickwall_ansatz(5, 2)
    objective = Objective(ansatz, hard)
    params, history = sweep_compile(objective, ansatz.zero_params(), max_sweeps=30, tol=0.0)
    assert len(history) >= 5 and history[-1] < 1 - 1e-6
    assert np.all(np.diff(history) >= -1e-12)  # monotone in the exact mode
    assert objective.fidelity(params) == pytest.approx(history[-1], abs=1e-10)
    target = as_target(shallow_target)
    result = compile_state(target, ansatz, method="sweep+lbfgs", max_sweeps=200, max_iter=100,
                           target_fidelity=0.99999, progress=False)
    assert result.fidelity > 0.9999
    assert circuit_fidelity(result.circuit(), target) == pytest.approx(result.fidelity, abs=1e-8)
    mixed = Objective(brickwall_ansatz(6, 2), MPS.random(6, 8, seed=2, dtype=complex), max_bond=4)
    assert mixed.forward_exact and not mixed.backward_exact
    p, h = sweep_compile(mixed, mixed.ansatz.zero_params(), max_sweeps=3)
    assert h[-1] > mixed.fidelity(mixed.ansatz.zero_params()) and mixed.fidelity(p) == pytest.approx(h[-1], abs=1e-10)
    with pytest.raises(Exception, match="`method` must be one of"):
        compile_state(target, ansatz, method="adam", progress=False)


def test_state_preparation_blocks_use_one_cnot_and_keep_the_state():
    ansatz = brickwall_ansatz(6, 3)
    assert ansatz.state_prep_blocks == (0, 1, 2)
    assert ansatz.cnot_count == 3 * 1 + 2 * 3 + 3 * 3 and ansatz.cnot_depth == 1 + 3 + 3
    params = ansatz.random_params(3)
    from tnkit.aqc import Objective

    state = Objective(ansatz, MPS.product_state("0" * 6)).state(params).to_dense()
    qc = to_qiskit(ansatz, params)
    assert gate_counts(qc)["cx"] == ansatz.cnot_count
    v = Statevector(qc.reverse_bits()).data
    assert abs(np.vdot(state, v)) ** 2 == pytest.approx(1.0, abs=1e-12)


def test_fill_cnot_budget_keeps_the_state_and_the_budget():
    from tnkit.aqc import Objective
    from tnkit.aqc.initial import fill_cnot_budget

    chain = SpinChain.xxz(8, delta=0.5)
    ansatz, x0 = trotter_initialization(chain, 0.5, 1)
    assert ansatz.cnot_count == 3 * ansatz.n_blocks - 2 * len(ansatz.state_prep_blocks)
    bigger, x1 = fill_cnot_budget(ansatz, x0, ansatz.cnot_count + 7)
    assert bigger.n_blocks == ansatz.n_blocks + 2 and bigger.cnot_count == ansatz.cnot_count + 6
    assert bigger.pairs[-2:] == ((2, 3), (4, 5))  # next layer's bonds nearest the centre
    a = Objective(ansatz, MPS.product_state("0" * 8)).state(x0).to_dense()
    b = Objective(bigger, MPS.product_state("0" * 8)).state(x1).to_dense()
    assert abs(np.vdot(a, b)) ** 2 == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="cnot_budget"):
        fill_cnot_budget(ansatz, x0, 10)


def test_growth_kinds_are_a_registry_of_growth_steps(monkeypatch):
    """A growth kind is one GrowthKind entry; compile_growing runs its step and refuses unknown names."""
    import warnings

    import tnkit.aqc.growth as growth
    from tnkit.errors import ConvergenceWarning

    calls = []

    def one_brick_layer(target, ansatz, params, budget, max_bond):
        calls.append(ansatz.n_blocks)
        return growth.add_identity_layer(ansatz, params, cnot_budget=budget)

    kind = growth.GrowthKind("brickwall", one_brick_layer, lambda n: 3, compile_empty_seed=True)
    monkeypatch.setitem(growth.GROWTH_KINDS, "counted", kind)
    target = MPS.random(4, max_bond=2, seed=3, dtype=complex)
    with warnings.catch_warnings():  # five iterations per stage may miss the target: not the point here
        warnings.simplefilter("ignore", ConvergenceWarning)
        stages = growth.compile_growing(
            target, grow="counted", max_layers=2, target_fidelity=1.0, max_iter=5, seed=0, progress=False
        )
    assert calls == [0, stages[1].ansatz.n_blocks] and len(stages) == 3
    assert stages[-1].ansatz.n_blocks > stages[0].ansatz.n_blocks
    with pytest.raises(ValueError, match="'counted'"):
        growth.compile_growing(target, grow="nope")
