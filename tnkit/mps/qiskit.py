"""Simulating Qiskit circuits as matrix product states.

Qubit ``q`` of the circuit becomes site ``q`` of the MPS. Qiskit orders state
vectors little-endian (qubit 0 the fastest index), so compare with
``mps.to_dense(little_endian=True)``. Consecutive gates within one qubit pair are
multiplied into a single two-qubit block (one SVD per block, not per gate), and
blocks are applied with :meth:`~tnkit.MatrixProductState.apply_gate_` (distant
qubits through swaps); gates on three or more qubits are first decomposed by
:func:`qiskit.transpile` into one- and two-qubit gates.
"""

from __future__ import annotations

import cmath
from typing import Any

import numpy as np

from ..core.linalg import DEFAULT_CUTOFF
from ..core.validate import check_cutoff, check_max_bond
from .truncation import TruncationReport
from .mps import MatrixProductState

__all__ = ["from_qiskit", "gate_matrix", "fused_gates"]

_IGNORED = {"barrier", "delay", "id"}


def _qiskit() -> Any:
    try:
        import qiskit
    except ImportError as exc:  # pragma: no cover - qiskit is a core dependency
        raise ImportError("simulating circuits needs qiskit: pip install qiskit") from exc
    return qiskit


def gate_matrix(operation: Any) -> np.ndarray:
    """Matrix of a Qiskit operation in tnkit's site order (first qubit the slowest index).

    Returns ``(2, 2)`` for one qubit and a ``(2, 2, 2, 2)`` tensor
    ``G[out_q0, out_q1, in_q0, in_q1]`` for two.
    """
    from qiskit.quantum_info import Operator

    try:
        m = Operator(operation).data
    except Exception as exc:  # qiskit raises QiskitError for non-unitary instructions
        raise ValueError(f"cannot simulate {operation.name!r}: it has no unitary matrix ({exc}).") from exc
    k = operation.num_qubits
    if k <= 1:  # a zero-qubit gate (global phase) is a 1x1 matrix
        return m
    # Qiskit: row index = b_q0 + 2 b_q1, i.e. tensor [o_q1, o_q0, i_q1, i_q0].
    return m.reshape(2, 2, 2, 2).transpose(1, 0, 3, 2)


def _unitary_instructions(circuit: Any):
    """``(qubits, matrix)`` of each gate, refusing non-unitary instructions."""
    for inst in circuit.data:
        op = inst.operation
        if op.name in _IGNORED:
            continue
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if op.name in {"measure", "reset", "initialize"} or inst.clbits or getattr(op, "condition", None) is not None:
            raise ValueError(
                f"`circuit` contains {op.name!r} on qubits {list(qubits)}; only unitary gates can be "
                "simulated (remove measurements with remove_final_measurements())."
            )
        yield qubits, gate_matrix(op)


def fused_gates(circuit: Any):
    """Gates with every run of gates inside one qubit pair multiplied into a single block.

    Yields ``(qubits, matrix)`` in circuit order: ``qubits`` a tuple of qubit indices
    (empty for a global phase) and ``matrix`` the gate as a tensor with its output
    axes before its input axes: ``(2, 2)`` on one qubit, ``(2, 2, 2, 2)`` on two, the
    phase factor for a global phase (qubit order as in :func:`gate_matrix`). Used by :func:`from_qiskit` (one
    SVD per block) and by the AQC compiler (one parametrised block per pair run).

    A block stays pending until a gate touches one of its qubits from outside the
    pair; blocks on other pairs and one-qubit gates on other qubits commute with it
    and pass by, so a Trotter layer written term by term (``XX`` on every even bond,
    then ``YY`` on every even bond, ...) fuses into one block per bond. The order yielded is a valid reordering of the circuit:
    gates only move past gates on disjoint qubits.
    """
    pending: dict[tuple[int, int], np.ndarray] = {}  # pair -> block, in order of creation
    for qubits, g in _unitary_instructions(circuit):
        if not qubits:  # a zero-qubit gate (GlobalPhaseGate): a phase, passed on as such
            yield qubits, g
            continue
        home = next((pair for pair in pending if set(qubits) <= set(pair)), None)
        if home is not None:
            pending[home] = np.einsum("abcd,cdef->abef", _on_pair(qubits, g, home), pending[home])
            continue
        for pair in [pair for pair in pending if set(pair) & set(qubits)]:
            yield pair, pending.pop(pair)
        if len(qubits) == 1:
            yield qubits, g
        else:
            pending[qubits] = g
    yield from pending.items()


def _on_pair(qubits: tuple[int, ...], g: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """Gate ``g`` on ``qubits`` (a subset of ``pair``) as a ``(2, 2, 2, 2)`` tensor on ``pair``."""
    if len(qubits) == 1:
        g = np.kron(g, np.eye(2)) if qubits[0] == pair[0] else np.kron(np.eye(2), g)
        return g.reshape(2, 2, 2, 2)
    return g if qubits == pair else g.transpose(1, 0, 3, 2)


def from_qiskit(
    circuit: Any,
    *,
    max_bond: int | None = None,
    cutoff: float = DEFAULT_CUTOFF,
    initial_state: MatrixProductState | None = None,
    return_report: bool = False,
) -> MatrixProductState | tuple[MatrixProductState, TruncationReport]:
    """The state ``circuit |0...0>`` (or ``circuit |initial_state>``) as an MPS.

    Parameters
    ----------
    circuit : qiskit.QuantumCircuit
        Bound parameters, no measurements, resets or classical control.
    max_bond, cutoff
        Truncation after every two-qubit gate.
    initial_state : MatrixProductState, optional
        Starting state on ``circuit.num_qubits`` qubits.
    return_report : bool
        Also return a report whose ``error`` is ``1 - prod(1 - e_g)`` over the
        relative discarded weights ``e_g`` of the gates, the fidelity estimate
        of Zhou, Stoudenmire & Waintal (PRX 10, 041038, 2020).

    Raises
    ------
    ValueError
        For unbound parameters, measurements, resets or conditional operations.
    """
    qiskit = _qiskit()
    if not isinstance(circuit, qiskit.QuantumCircuit):
        raise TypeError(f"`circuit` must be a qiskit QuantumCircuit, got {type(circuit).__name__}.")
    max_bond = check_max_bond(max_bond)
    cutoff = check_cutoff(cutoff)
    if circuit.parameters:
        names = sorted(p.name for p in circuit.parameters)
        raise ValueError(f"`circuit` has unbound parameters {names[:5]}; bind them with assign_parameters.")
    n = circuit.num_qubits
    if initial_state is None:
        psi = MatrixProductState.product_state([0] * n)
    else:
        if not isinstance(initial_state, MatrixProductState):
            raise TypeError(f"`initial_state` must be a MatrixProductState, got {type(initial_state).__name__}.")
        if initial_state.phys_dims != (2,) * n:
            raise ValueError(f"`initial_state` must be an MPS of {n} qubits, got {initial_state!r}.")
        psi = initial_state.copy()
    if any(inst.operation.num_qubits > 2 for inst in circuit.data):
        circuit = qiskit.transpile(circuit, basis_gates=["u", "cx"], optimization_level=0)
    discarded = []
    phase = cmath.exp(1j * float(circuit.global_phase))
    for qubits, matrix in fused_gates(circuit):
        if not qubits:
            phase *= complex(np.asarray(matrix).reshape(-1)[0])
            continue
        disc = psi.apply_gate_(matrix, qubits, max_bond=max_bond, cutoff=cutoff)
        if disc:
            discarded.append(disc)
    fidelity = float(np.prod([1.0 - d for d in discarded]))
    if phase != 1:
        psi = psi * phase
    if not return_report:
        return psi
    report = TruncationReport("gates", 1.0 - fidelity, tuple(discarded), psi.bond_dims, fidelity=fidelity)
    return psi, report
