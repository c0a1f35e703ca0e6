"""Ansatz matrices, parameter layout and the fidelity gradient against dense references."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector
from scipy.stats import unitary_group

from tnkit import MPS
from tnkit.aqc import (
    Ansatz,
    Objective,
    ansatz_from_circuit,
    ansatz_from_gates,
    brickwall_ansatz,
    staircase_ansatz,
    to_qiskit,
)
from tnkit.aqc.ansatz import core_matrices
from tnkit.aqc.objective import schedule_layers
from tnkit.mps.qiskit import gate_matrix


def dense_circuit_state(ansatz: Ansatz, params: np.ndarray) -> np.ndarray:
    """Naive dense simulation of the ansatz (tnkit order, qubit 0 slowest)."""
    n = ansatz.n_qubits
    vecs = ansatz.initial_vectors(params)
    psi = vecs[0]
    for v in vecs[1:]:
        psi = np.kron(psi, v)
    psi = psi.reshape((2,) * n)
    for (lo, hi), g in zip(ansatz.pairs, ansatz.block_tensors(params)):
        psi = np.moveaxis(np.tensordot(g, psi, axes=([2, 3], [lo, hi])), [0, 1], [lo, hi])
    return psi.reshape(-1)


def test_core_matches_qiskit_gates():
    t = np.array([[0.3, -1.1, 0.7]])
    qc = QuantumCircuit(2)
    qc.rz(-np.pi / 2, 1)
    qc.cx(1, 0)
    qc.rz(0.3, 0)
    qc.ry(-1.1, 1)
    qc.cx(0, 1)
    qc.ry(0.7, 1)
    qc.cx(1, 0)
    qc.rz(np.pi / 2, 0)
    np.testing.assert_allclose(core_matrices(t)[0], gate_matrix(qc.to_gate()).reshape(4, 4), atol=1e-12)


def test_block_derivatives_match_finite_differences(rng):
    a = brickwall_ansatz(3, 2)
    p = a.random_params(rng)
    _, d = a.block_tensors(p, derivatives=True)
    eps = 1e-6
    for k in range(9):
        e = np.zeros_like(p)
        e[9 + k] = eps
        fd = (a.block_tensors(p + e) - a.block_tensors(p - e)) / (2 * eps)
        np.testing.assert_allclose(fd[0], d[0, k], atol=1e-8)


def test_ansatz_from_gates_reproduces_random_unitaries():
    gates = [
        ((0, 1), unitary_group.rvs(4, random_state=1)),
        ((1, 2), unitary_group.rvs(4, random_state=2)),
        ((1,), unitary_group.rvs(2, random_state=3)),
        ((2, 0), unitary_group.rvs(4, random_state=4)),
    ]
    ansatz, params = ansatz_from_gates(3, gates)
    psi = np.zeros((2, 2, 2), dtype=complex)
    psi[0, 0, 0] = 1
    for qubits, g in gates:
        if len(qubits) == 1:
            psi = np.moveaxis(np.tensordot(g, psi, axes=([1], [qubits[0]])), 0, qubits[0])
        else:
            q = list(qubits)
            psi = np.moveaxis(np.tensordot(g.reshape(2, 2, 2, 2), psi, axes=([2, 3], q)), [0, 1], q)
    assert ansatz.pairs == ((0, 1), (1, 2), (0, 2))
    assert abs(np.vdot(psi.reshape(-1), dense_circuit_state(ansatz, params))) ** 2 == pytest.approx(1, abs=1e-12)


def test_from_circuit_reproduces_the_circuit_and_emits_the_same_state():
    qc = QuantumCircuit(4)
    qc.x(1)
    qc.h(2)
    for q in (0, 2, 1, 0):
        qc.rxx(0.4, q, q + 1)
        qc.ryy(0.3, q, q + 1)
        qc.rzz(-0.2, q, q + 1)
        qc.rz(0.1 * q, q)
    qc.cx(3, 2)
    ansatz, params = ansatz_from_circuit(qc)
    assert ansatz.pairs == ((0, 1), (2, 3), (1, 2), (0, 1), (2, 3))  # one block per run on a pair
    v = Statevector(qc).data
    w = Statevector(to_qiskit(ansatz, params)).data
    assert abs(np.vdot(v, w)) ** 2 == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_fidelity_matches_dense_reference(rng, dtype):
    a = brickwall_ansatz(5, 3)
    target = MPS.random(5, 4, seed=3, dtype=dtype)
    p = a.random_params(rng)
    obj = Objective(a, target, cutoff=0.0)
    expected = abs(np.vdot(target.to_dense(), dense_circuit_state(a, p))) ** 2
    assert obj.fidelity(p) == pytest.approx(expected, rel=1e-10)
    f, _ = obj.fidelity_and_gradient(p)
    assert f == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    "ansatz",
    [brickwall_ansatz(5, 3), staircase_ansatz(4, 2), Ansatz(4, ((0, 2), (1, 3), (0, 3), (1, 2)))],
    ids=["brickwall", "staircase", "distant-pairs"],
)
def test_gradient_matches_finite_differences(rng, ansatz):
    target = MPS.random(ansatz.n_qubits, 4, seed=7, dtype=complex)
    obj = Objective(ansatz, target, cutoff=0.0)
    p = ansatz.random_params(rng)
    f, g = obj.fidelity_and_gradient(p)
    eps = 1e-6
    fd = np.array([(obj.fidelity(p + eps * e) - obj.fidelity(p - eps * e)) / (2 * eps) for e in np.eye(len(p))])
    np.testing.assert_allclose(g, fd, atol=1e-8)
    loss, minus_g = obj(p)
    assert loss == pytest.approx(1 - f) and np.allclose(minus_g, -g)


def test_schedule_layers_are_disjoint_and_keep_order():
    a = Ansatz(5, ((0, 1), (2, 3), (1, 2), (0, 4), (3, 4)))
    layers = schedule_layers(a)
    for layer in layers:
        sites = [s for op in layer for s in (op.site, op.site + 1)]
        assert len(sites) == len(set(sites))
    blocks = [op.block for layer in layers for op in layer if op.block >= 0]
    assert sorted(blocks) == list(range(5))


def test_brickwall_on_coupling_map_and_errors():
    a = brickwall_ansatz(4, 3, coupling_map=[(0, 1), (1, 2), (1, 3), (5, 6)])
    assert set(a.pairs) <= {(0, 1), (1, 2), (1, 3)}
    with pytest.raises(ValueError, match="must connect qubits"):
        brickwall_ansatz(4, 2, coupling_map=[(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="two different qubits"):
        Ansatz(3, ((0, 3),))
    with pytest.raises(ValueError, match="shape"):
        brickwall_ansatz(3, 1).check_params(np.zeros(2))


def test_objective_rejects_bad_targets():
    a = brickwall_ansatz(3, 1)
    with pytest.raises(ValueError, match="fewer than the target"):
        Objective(a, MPS.random(4, 2, seed=0))
    with pytest.raises(ValueError, match="normalised"):
        Objective(a, MPS.random(3, 2, seed=0) * 2.0)
    with pytest.raises(ValueError, match="finite"):
        Objective(a, np.array([np.nan, 0, 0, 0, 0, 0, 0, 1.0]))
    with pytest.raises(TypeError, match="Ansatz"):
        Objective("brickwall", MPS.random(3, 2, seed=0))


def test_exact_mode_is_chosen_from_the_light_cone_bonds(rng):
    a = brickwall_ansatz(6, 4)
    target = MPS.random(6, 3, seed=2, dtype=complex)
    forward, backward = Objective(a, target).exact_bonds()
    assert forward == 8 and backward == 8  # 2**min(b, n - b) caps both at the centre
    assert Objective(a, target, max_bond=backward).exact
    capped = Objective(a, target, max_bond=forward - 1)
    assert not capped.exact and not capped.forward_exact
    p = a.random_params(rng)
    expected = abs(np.vdot(target.to_dense(), dense_circuit_state(a, p))) ** 2
    assert Objective(a, target, max_bond=backward).fidelity_and_gradient(p)[0] == pytest.approx(expected, rel=1e-12)


def test_truncated_gradient_error_shrinks_with_the_discarded_weight(rng):
    """With a bond cap the gradient holds the truncations fixed: close to, not equal to, the slope."""
    a = brickwall_ansatz(8, 6)
    p0 = 0.4 * a.random_params(rng)
    target = Objective(a, MPS.product_state("0" * 8)).state(p0).normalized()
    p = p0 + 0.1 * rng.standard_normal(len(p0))
    d = rng.standard_normal(len(p))
    d /= np.linalg.norm(d)
    eps = 1e-6
    errors = {}
    for cap in (8, 12, 16):
        obj = Objective(a, target, max_bond=cap, cutoff=0.0)
        f, g = obj.fidelity_and_gradient(p)
        assert f == pytest.approx(abs(obj.overlap(p)) ** 2, rel=1e-12)
        fd = (obj.fidelity(p + eps * d) - obj.fidelity(p - eps * d)) / (2 * eps)
        errors[cap] = (abs(g @ d - fd) / abs(fd), obj.last_truncation)
    assert errors[16][1] == 0.0 and errors[16][0] < 1e-6  # exact mode
    assert errors[12][1] > 1e-4 and errors[12][0] < 0.1
    assert errors[8][1] > errors[12][1] and errors[8][0] > errors[12][0]
