"""Simulating Qiskit circuits as MPS, against qiskit.quantum_info.Statevector."""

from __future__ import annotations

import numpy as np
import pytest

from tnkit import MPS
from tnkit.mps.qiskit import from_qiskit, gate_matrix
from tnkit.testing import TOL

qiskit = pytest.importorskip("qiskit")
from qiskit import QuantumCircuit, QuantumRegister  # noqa: E402
from qiskit.circuit import Parameter  # noqa: E402
from qiskit.circuit.library import CXGate, GlobalPhaseGate, HGate, MCXGate, QFTGate, SwapGate, UnitaryGate  # noqa: E402
from qiskit.circuit.random import random_circuit  # noqa: E402
from qiskit.quantum_info import Statevector, random_unitary  # noqa: E402

ATOL = TOL[np.dtype(np.complex128)]  # 1e-10
CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=float)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(4242)


def statevector(qc, initial=None) -> np.ndarray:
    if initial is None:
        return Statevector(qc).data
    return Statevector(initial).evolve(qc).data


def ours(qc, **kwargs) -> np.ndarray:
    return MPS.from_qiskit(qc, **kwargs).to_dense(little_endian=True)


def dense_fidelity(v, w) -> float:
    return float(abs(np.vdot(v, w)) ** 2 / (np.vdot(v, v).real * np.vdot(w, w).real))


def random_layer(qc, rng):
    """Random single-qubit rotations on every qubit, so that gate orders matter."""
    for q in range(qc.num_qubits):
        qc.u(*rng.uniform(0, 2 * np.pi, 3), q)


# ----------------------------------------------------------------------------- exact simulation


@pytest.mark.parametrize("seed", range(8))
def test_random_circuits_match_statevector(seed):
    n = 3 + seed % 4  # 3..6 qubits
    qc = random_circuit(n, 5, max_operands=3, measure=True, seed=seed)
    qc.remove_final_measurements()
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


@pytest.mark.parametrize("seed", [11, 12])
def test_random_two_qubit_circuits_match_statevector(seed):
    qc = random_circuit(7, 8, max_operands=2, seed=seed)
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


def test_fused_gates_fuse_interleaved_layers_and_keep_the_state(rng):
    """Term-by-term Trotter layers (XX on bonds (0,1),(2,3), then YY, ZZ) fuse to one block per bond."""
    from tnkit.mps.qiskit import fused_gates

    qc = QuantumCircuit(5)
    random_layer(qc, rng)
    for term in (qc.rxx, qc.ryy, qc.rzz):
        for pair in ((0, 1), (3, 2)):  # one pair given in reverse order
            term(rng.uniform(0, 2), *pair)
        qc.rz(0.4, 4)  # a one-qubit gate on a qubit outside every pending pair
    qc.cx(1, 2)  # touches both pending blocks: both flush before it
    qc.h(0)
    blocks = [q for q, _ in fused_gates(qc) if len(q) == 2]
    assert sorted(blocks) == [(0, 1), (1, 2), (3, 2)]
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "gate",
    [
        lambda qc, a, b: qc.cx(a, b),
        lambda qc, a, b: qc.cry(0.7, a, b),
        lambda qc, a, b: qc.cp(1.1, a, b),
        lambda qc, a, b: qc.swap(a, b),
        lambda qc, a, b: qc.rzz(0.3, a, b),
        lambda qc, a, b: qc.append(UnitaryGate(random_unitary(4, seed=9)), [a, b]),
    ],
    ids=["cx", "cry", "cp", "swap", "rzz", "unitary"],
)
@pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 0), (0, 4), (4, 0), (1, 3), (3, 1)])
def test_two_qubit_gates_any_qubit_order(rng, gate, a, b):
    qc = QuantumCircuit(5)
    random_layer(qc, rng)
    gate(qc, a, b)
    random_layer(qc, rng)
    gate(qc, b, a)
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


def test_cx_both_orders_on_basis_states():
    # |q1 q0> = |01> (qubit 0 set): cx(0, 1) flips qubit 1, cx(1, 0) does nothing.
    qc = QuantumCircuit(2)
    qc.x(0)
    qc.cx(0, 1)
    psi = MPS.from_qiskit(qc)
    assert psi.amplitude([1, 1]) == pytest.approx(1.0)
    qc = QuantumCircuit(2)
    qc.x(0)
    qc.cx(1, 0)
    psi = MPS.from_qiskit(qc)
    assert psi.amplitude([1, 0]) == pytest.approx(1.0)  # site q = qubit q
    np.testing.assert_allclose(psi.to_dense(little_endian=True), statevector(qc), atol=ATOL)


def test_three_qubit_gates_are_decomposed():
    qc = QuantumCircuit(4)
    qc.h([0, 1, 2, 3])
    qc.ccx(0, 3, 1)
    qc.cswap(2, 0, 3)
    qc.rx(0.4, 1)
    qc.ccz(3, 1, 0)
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


def test_library_gates_and_custom_gates_with_phase():
    qc = QuantumCircuit(5)
    qc.h(range(4))
    qc.append(QFTGate(4), [4, 0, 2, 1])
    qc.append(MCXGate(4), [0, 1, 2, 3, 4])
    sub = QuantumCircuit(2, global_phase=0.4)
    sub.cx(0, 1)
    sub.ry(0.2, 1)
    qc.append(sub.to_gate(), [3, 0])
    qc.append(sub.to_instruction(), [1, 4])
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


def test_global_phase_gate_instruction():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.append(GlobalPhaseGate(0.3), [])
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


def test_global_phase():
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 2)
    qc.global_phase = 0.7
    v = ours(qc)
    np.testing.assert_allclose(v, statevector(qc), atol=ATOL, rtol=0)
    assert v[0] == pytest.approx(np.exp(0.7j) / np.sqrt(2))


def test_global_phase_from_gates():
    # rz differs from p by a global phase; both must be reproduced exactly.
    qc = QuantumCircuit(2)
    qc.h([0, 1])
    qc.rz(0.9, 0)
    qc.p(0.9, 1)
    qc.crz(0.3, 1, 0)
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


def test_bound_parameters_and_ignored_instructions():
    theta = Parameter("theta")
    qc = QuantumCircuit(3)
    qc.ry(theta, 0)
    qc.barrier()
    qc.id(1)
    qc.delay(100, 2)
    qc.cx(0, 2)
    qc.global_phase = theta / 2
    bound = qc.assign_parameters({theta: 0.8})
    np.testing.assert_allclose(ours(bound), statevector(bound), atol=ATOL, rtol=0)


def test_multiple_registers():
    a, b = QuantumRegister(2, "a"), QuantumRegister(2, "b")
    qc = QuantumCircuit(a, b)
    qc.h(a[1])
    qc.cx(a[1], b[1])
    qc.ry(0.3, b[0])
    qc.cz(b[0], a[0])
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL, rtol=0)


def test_empty_and_one_qubit_circuits():
    psi = MPS.from_qiskit(QuantumCircuit(3))
    np.testing.assert_allclose(psi.to_dense(), np.eye(8)[0], atol=ATOL)
    qc = QuantumCircuit(1)
    qc.h(0)
    qc.s(0)
    np.testing.assert_allclose(ours(qc), statevector(qc), atol=ATOL)


def test_initial_state(rng):
    init = MPS.random(4, 3, dtype=np.complex128, seed=rng)
    before = [t.copy() for t in init.tensors]
    qc = random_circuit(4, 4, max_operands=2, seed=5)
    got = MPS.from_qiskit(qc, initial_state=init).to_dense(little_endian=True)
    np.testing.assert_allclose(got, statevector(qc, init.to_dense(little_endian=True)), atol=ATOL, rtol=0)
    assert all(np.array_equal(x, y) for x, y in zip(before, init.tensors, strict=True))  # input untouched


def test_function_and_classmethod_agree():
    qc = random_circuit(4, 3, max_operands=2, seed=1)
    np.testing.assert_allclose(from_qiskit(qc).to_dense(), MPS.from_qiskit(qc).to_dense(), atol=0)


# ----------------------------------------------------------------------------- truncation


def test_report_without_truncation():
    qc = random_circuit(5, 4, max_operands=2, seed=3)
    psi, report = MPS.from_qiskit(qc, return_report=True)
    assert report.error == pytest.approx(0.0, abs=1e-12)
    assert report.fidelity == pytest.approx(1.0, abs=1e-12)
    assert report.bond_dims == psi.bond_dims


def test_ghz_truncated_to_product():
    n = 6
    qc = QuantumCircuit(n)
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    psi, report = MPS.from_qiskit(qc, max_bond=1, return_report=True)
    assert psi.max_bond_dim == 1
    true_fid = dense_fidelity(statevector(qc), psi.to_dense(little_endian=True))
    assert true_fid == pytest.approx(0.5, abs=1e-10)
    assert 0.0 <= report.error < 1.0
    assert report.fidelity == pytest.approx(1.0 - report.error)
    assert report.fidelity == pytest.approx(0.5, abs=1e-10)
    assert report.method == "gates"
    assert len(report.discarded) == 1  # only the first CNOT discards weight
    # the exact GHZ state needs bond 2
    exact = MPS.from_qiskit(qc, max_bond=2)
    np.testing.assert_allclose(exact.to_dense(little_endian=True), statevector(qc), atol=ATOL)


@pytest.mark.parametrize("seed", [0, 2, 3, 5])
def test_random_circuit_truncation_report_is_sane(seed):
    qc = random_circuit(8, 10, max_operands=2, seed=seed)
    psi, report = MPS.from_qiskit(qc, max_bond=4, return_report=True)
    assert psi.max_bond_dim <= 4
    true_fid = dense_fidelity(statevector(qc), psi.to_dense(little_endian=True))
    assert 0.0 <= report.error < 1.0
    assert report.fidelity == pytest.approx(1.0 - report.error)
    assert all(0.0 <= e < 1.0 for e in report.discarded)
    assert report.fidelity == pytest.approx(np.prod([1 - e for e in report.discarded]), rel=1e-12)
    assert true_fid >= report.fidelity - 0.05
    assert true_fid <= 1.0 + 1e-12


def test_cutoff_truncation():
    qc = random_circuit(6, 6, max_operands=2, seed=8)
    psi, report = MPS.from_qiskit(qc, cutoff=1e-3, return_report=True)
    true_fid = dense_fidelity(statevector(qc), psi.to_dense(little_endian=True))
    assert all(e <= 1e-3 * (1 + 1e-9) for e in report.discarded)
    assert true_fid >= report.fidelity - 0.05


# ----------------------------------------------------------------------------- errors


def test_unbound_parameters():
    theta, phi = Parameter("theta"), Parameter("phi")
    qc = QuantumCircuit(2)
    qc.rx(theta, 0)
    qc.rz(phi, 1)
    with pytest.raises(ValueError, match=r"unbound parameters \['phi', 'theta'\]"):
        MPS.from_qiskit(qc)


def test_measurement_rejected():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.measure_all()
    with pytest.raises(ValueError, match="'measure'.*remove_final_measurements"):
        MPS.from_qiskit(qc)


def test_mid_circuit_measurement_rejected():
    qc = QuantumCircuit(3, 1)
    qc.h(0)
    qc.measure(1, 0)
    qc.ccx(0, 1, 2)  # forces the transpile path as well
    with pytest.raises(ValueError, match="measure"):
        MPS.from_qiskit(qc)


def test_reset_rejected():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.reset(1)
    with pytest.raises(ValueError, match=r"'reset' on qubits \[1\]"):
        MPS.from_qiskit(qc)


def test_initialize_rejected_as_reset():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.initialize([0, 1], 1)
    with pytest.raises(ValueError, match="reset|initialize"):
        MPS.from_qiskit(qc)


def test_classical_control_rejected():
    qc = QuantumCircuit(2, 1)
    qc.h(0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(1)
    with pytest.raises(ValueError, match="only unitary gates"):
        MPS.from_qiskit(qc)


def test_wrong_circuit_type():
    with pytest.raises(TypeError, match="QuantumCircuit"):
        MPS.from_qiskit("h 0; cx 0 1")
    with pytest.raises(TypeError, match="QuantumCircuit"):
        from_qiskit(np.eye(4))


def test_initial_state_wrong_size(rng):
    qc = QuantumCircuit(3)
    qc.h(0)
    with pytest.raises(ValueError, match="initial_state.*3 qubits"):
        MPS.from_qiskit(qc, initial_state=MPS.random(4, 2, seed=rng))
    with pytest.raises(ValueError, match="initial_state"):
        MPS.from_qiskit(qc, initial_state=MPS.random(3, 2, phys_dim=3, seed=rng))
    with pytest.raises((TypeError, ValueError), match="initial_state"):
        MPS.from_qiskit(qc, initial_state=np.eye(8)[0])


def test_bad_truncation_options():
    qc = QuantumCircuit(2)
    with pytest.raises(ValueError, match="max_bond"):
        MPS.from_qiskit(qc, max_bond=0)
    with pytest.raises(ValueError, match="cutoff"):
        MPS.from_qiskit(qc, cutoff=1.0)


# ----------------------------------------------------------------------------- gate_matrix


def test_gate_matrix_cx():
    g = gate_matrix(CXGate())
    assert g.shape == (2, 2, 2, 2)
    # G[out_q0, out_q1, in_q0, in_q1]: the first qubit (control) is the slowest index.
    np.testing.assert_array_equal(g.reshape(4, 4).real, CNOT)
    assert g[1, 1, 1, 0] == 1 and g[1, 0, 1, 1] == 1 and g[0, 1, 0, 1] == 1


def test_gate_matrix_cx_on_both_qubit_orders(rng):
    # The matrix is per instruction; the qubits it acts on come from the circuit.
    for qubits in [(0, 1), (1, 0)]:
        qc = QuantumCircuit(2)
        random_layer(qc, rng)
        qc.cx(*qubits)
        inst = qc.data[-1]
        np.testing.assert_array_equal(gate_matrix(inst.operation).reshape(4, 4).real, CNOT)
        # tnkit applying G to sites `qubits` reproduces qiskit
        before = QuantumCircuit(2)
        for prev in qc.data[:-1]:
            before.append(prev)
        psi = MPS.from_qiskit(before)
        psi.apply_gate_(gate_matrix(inst.operation), qubits)
        np.testing.assert_allclose(psi.to_dense(little_endian=True), statevector(qc), atol=ATOL)


def test_gate_matrix_general_two_qubit_gate():
    u = random_unitary(4, seed=17).data
    g = gate_matrix(UnitaryGate(u))
    # qiskit: row index = b_q0 + 2 b_q1
    for o0, o1, i0, i1 in np.ndindex(2, 2, 2, 2):
        assert g[o0, o1, i0, i1] == pytest.approx(u[o0 + 2 * o1, i0 + 2 * i1])


def test_gate_matrix_one_qubit_and_symmetric():
    np.testing.assert_allclose(gate_matrix(HGate()), np.array([[1, 1], [1, -1]]) / np.sqrt(2), atol=1e-15)
    swap = gate_matrix(SwapGate())
    np.testing.assert_array_equal(swap, swap.transpose(1, 0, 3, 2))
