"""Emitting compiled circuits: Qiskit circuits, transpilation, QASM, independent checks.

:func:`to_qiskit` writes an ansatz with bound angles as a ``qiskit.QuantumCircuit``
in standard gates (``rz``, ``rx``, ``ry``, ``cx``), without rotations by a multiple of
``2 pi`` (no-ops up to a global phase), optionally transpiled to a basis and a
coupling map. :func:`ansatz_circuit` gives the same circuit with free parameters
(one ``ParameterVector``) and the values that bind it to the compiled circuit. :func:`circuit_fidelity` re-simulates any emitted circuit
independently of the objective: with Qiskit's ``Statevector`` up to 24 qubits and
with the engine's MPS simulation beyond. :func:`to_qasm` / :func:`write_qasm` export
OpenQASM 2 or 3 (written atomically); :func:`read_qasm` parses it back (no code is
executed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.contract import contract
from ..core.linalg import svd
from ..core.validate import check_option
from ..io import atomic_write
from ..mps.mps import MatrixProductState
from ._qiskit import import_qiskit
from .ansatz import Ansatz, zxz_angles
from .targets import as_target

__all__ = [
    "to_qiskit",
    "ansatz_circuit",
    "transpile_circuit",
    "circuit_fidelity",
    "to_qasm",
    "write_qasm",
    "read_qasm",
    "gate_counts",
    "FIDELITY_METHODS",
    "STATEVECTOR_MAX_QUBITS",
    "STATEVECTOR_FALLBACK_QUBITS",
    "NOOP_ANGLE_ATOL",
]

#: A rotation whose angle is within this of a multiple of ``2 pi`` is a no-op up to a
#: global phase (``Rz(2 pi) = -I``) and is left out of :func:`to_qiskit`'s circuit; its
#: effect on the fidelity is below ``NOOP_ANGLE_ATOL**2``.
NOOP_ANGLE_ATOL = 1e-10

#: Largest circuit :func:`circuit_fidelity` simulates with Qiskit's ``Statevector`` by default
#: (``method="auto"``). Qiskit's ``Statevector`` applies each gate to all ``2**n`` amplitudes:
#: for the 20-qubit, 198-CNOT XXZ circuit of the AQC benchmark it took 6.5 s against 0.1 s
#: for the engine's MPS simulation, with the same fidelity to 1e-15.
STATEVECTOR_MAX_QUBITS = 16

#: Up to this many qubits ``method="auto"`` falls back to ``Statevector`` when the MPS
#: simulation's bonds would grow past :func:`_mps_bond_cap` (deep circuits), where a two-qubit
#: gate on the MPS would cost more than on the state vector (``2**24`` amplitudes: 256 MiB).
STATEVECTOR_FALLBACK_QUBITS = 24


def _mps_bond_cap(n_qubits: int) -> int:
    """Bond at which a two-qubit gate on the MPS costs about one on Qiskit's state vector.

    An MPS gate costs ~``D**3`` (its SVD), a state-vector gate ~``2**n``. Calibrated on
    the development machine: 0.5 ms per gate at bond 128 (20 qubits, the AQC
    benchmark's Trotter circuit, bonds up to 127: 0.1 s in all) against 16 ms per gate
    for ``Statevector`` at 20 qubits (6.5 s), so equal near bond 400 at 20 qubits:
    ``2**((n + 6) / 3)`` (203 at 17 qubits, 1024 at 24, where the MPS holds a few
    hundred MB like the 256 MiB state vector).
    """
    return max(64, int(2.0 ** ((n_qubits + 6) / 3.0)))


# A circuit as a list of operations: ("rz" | "rx" | "ry", angle, qubit, free) where
# ``free`` marks an angle of the ansatz (fixed angles belong to the block core), or
# ("cx", control, target).
_Op = tuple


def _zxz(ops: list[_Op], angles: np.ndarray, q: int) -> None:
    a, b, c = (float(x) for x in angles)
    ops += [("rz", c, q, True), ("rx", b, q, True), ("rz", a, q, True)]


def _prepare_pair(ops: list[_Op], state: np.ndarray, lo: int, hi: int) -> None:
    """Prepare the two-qubit state ``state[i_lo, i_hi]`` from ``|00>`` with one CNOT.

    With the Schmidt form ``state = U diag(s) V^T``: ``Ry`` puts ``s`` on ``lo``, the
    CNOT copies it to ``hi``, and ``U``, ``V`` rotate the two Schmidt bases.
    """
    u, s, vh = svd(state)
    ops += [("ry", 2.0 * math.atan2(float(s[1]), float(s[0])), lo, True), ("cx", lo, hi)]
    _zxz(ops, zxz_angles(u), lo)
    _zxz(ops, zxz_angles(vh.T), hi)


def _core(ops: list[_Op], angles: np.ndarray, lo: int, hi: int) -> None:
    t1, t2, t3 = (float(x) for x in angles)
    ops += [
        ("rz", -math.pi / 2, hi, False), ("cx", hi, lo), ("rz", t1, lo, True), ("ry", t2, hi, True),
        ("cx", lo, hi), ("ry", t3, hi, True), ("cx", hi, lo), ("rz", math.pi / 2, lo, False),
    ]


def _ansatz_ops(ansatz: Ansatz, params: np.ndarray) -> list[_Op]:
    """The emitted circuit of ``(ansatz, params)`` as operations (state-preparation blocks with one CNOT)."""
    first, blocks = ansatz.split_params(params)
    prep = set(ansatz.state_prep_blocks)
    fresh = {q for k in prep for q in ansatz.pairs[k]}
    vecs = ansatz.initial_vectors(params)
    tensors = ansatz.block_tensors(params) if prep else None
    ops: list[_Op] = []
    for q in range(ansatz.n_qubits):
        if q not in fresh:
            _zxz(ops, first[q], q)
    for k, ((lo, hi), row) in enumerate(zip(ansatz.pairs, blocks)):
        if k in prep:
            state = contract("uvst,s,t->uv", tensors[k], vecs[lo], vecs[hi])
            _prepare_pair(ops, state, lo, hi)
            continue
        _core(ops, row[0:3], lo, hi)
        _zxz(ops, row[3:6], lo)
        _zxz(ops, row[6:9], hi)
    return ops


def _is_noop(angle: float) -> bool:
    return abs(math.remainder(angle, 2.0 * math.pi)) <= NOOP_ANGLE_ATOL


def to_qiskit(
    ansatz: Ansatz,
    params: Any,
    *,
    basis_gates: list[str] | None = None,
    coupling_map: Any = None,
    optimization_level: int = 1,
    seed: int = 0,
) -> Any:
    """The ansatz with angles ``params`` as a bound ``qiskit.QuantumCircuit``.

    Parameters
    ----------
    ansatz : Ansatz
    params : array_like
    basis_gates : list of str, optional
        Transpile to this basis (e.g. ``["ecr", "rz", "sx", "x"]``).
    coupling_map : qiskit CouplingMap or list of pairs, optional
        Transpile for this connectivity. Virtual qubit ``q`` is placed on physical
        qubit ``q``; if the ansatz only uses coupled pairs no SWAPs are added.
    optimization_level : int
        Qiskit's transpiler level when transpiling.
    seed : int
        ``seed_transpiler``.

    Returns
    -------
    qiskit.QuantumCircuit
        Acting on ``|0...0>`` it prepares the compiled state (up to a global phase).
        Rotations by a multiple of ``2 pi`` (within :data:`NOOP_ANGLE_ATOL`) are
        left out.
    """
    qiskit = import_qiskit()
    if not isinstance(ansatz, Ansatz):
        raise TypeError(f"`ansatz` must be an Ansatz, got {type(ansatz).__name__}.")
    params = ansatz.check_params(params)
    qc = qiskit.QuantumCircuit(ansatz.n_qubits, name="aqc")
    for op in _ansatz_ops(ansatz, params):
        if op[0] == "cx":
            qc.cx(op[1], op[2])
        elif not _is_noop(op[1]):
            getattr(qc, op[0])(op[1], op[2])
    if basis_gates is None and coupling_map is None:
        return qc
    return transpile_circuit(
        qc, basis_gates=basis_gates, coupling_map=coupling_map, optimization_level=optimization_level, seed=seed
    )


def ansatz_circuit(ansatz: Ansatz, params: Any, *, name: str = "theta") -> tuple[Any, np.ndarray]:
    """The circuit of :func:`to_qiskit` with its angles as free parameters, and their values.

    The gates are those :func:`to_qiskit` emits (state-preparation blocks with one
    CNOT, the cores' fixed ``Rz(+-pi/2)`` kept as numbers), but every angle of the
    ansatz is an element of one ``ParameterVector``, also where its value is a no-op:
    the circuit is an ansatz to re-optimise (for instance on hardware), and
    ``values`` is its starting point.

    Parameters
    ----------
    ansatz : Ansatz
    params : array_like
        Angles of ``ansatz`` (e.g. ``result.params`` of a compilation).
    name : str
        Name of the ``ParameterVector``.

    Returns
    -------
    circuit : qiskit.QuantumCircuit
        With ``circuit.num_parameters == len(values)``; its parameters, in order,
        are ``name[0], name[1], ...``.
    values : numpy.ndarray
        ``circuit.assign_parameters(values)`` prepares the state of
        ``to_qiskit(ansatz, params)``. A state-preparation block's 7 angles are those
        of its one-CNOT form, so ``values`` is not ``params`` itself.

    Examples
    --------
    >>> from tnkit.aqc import brickwall_ansatz
    >>> from tnkit.aqc.circuits import ansatz_circuit
    >>> qc, values = ansatz_circuit(brickwall_ansatz(4, 2), brickwall_ansatz(4, 2).random_params(0))
    >>> qc.num_parameters == len(values), qc.count_ops()["cx"]
    (True, 5)
    """
    qiskit = import_qiskit()
    if not isinstance(ansatz, Ansatz):
        raise TypeError(f"`ansatz` must be an Ansatz, got {type(ansatz).__name__}.")
    params = ansatz.check_params(params)
    ops = _ansatz_ops(ansatz, params)
    values = np.array([op[1] for op in ops if op[0] != "cx" and op[3]], dtype=float)
    theta = qiskit.circuit.ParameterVector(name, len(values))
    qc = qiskit.QuantumCircuit(ansatz.n_qubits, name="aqc_ansatz")
    k = 0
    for op in ops:
        if op[0] == "cx":
            qc.cx(op[1], op[2])
        elif op[3]:
            getattr(qc, op[0])(theta[k], op[2])
            k += 1
        else:
            getattr(qc, op[0])(op[1], op[2])
    return qc, values


def transpile_circuit(
    circuit: Any,
    *,
    basis_gates: list[str] | None = None,
    coupling_map: Any = None,
    optimization_level: int = 1,
    seed: int = 0,
) -> Any:
    """Transpile ``circuit`` to a basis and a coupling map, keeping virtual qubit ``q`` on physical ``q``.

    Raises
    ------
    ValueError
        If the coupling map has fewer qubits than the circuit or does not connect them.
    """
    qiskit = import_qiskit()
    CouplingMap = import_qiskit("qiskit.transpiler").CouplingMap

    n = circuit.num_qubits
    layout = None
    if coupling_map is not None:
        if not isinstance(coupling_map, CouplingMap):
            coupling_map = CouplingMap([list(map(int, e)) for e in coupling_map])
        if coupling_map.size() < n:
            raise ValueError(f"`coupling_map` has {coupling_map.size()} qubits, fewer than the circuit's {n}.")
        from .ansatz import check_connected

        check_connected(
            sorted({(min(a, b), max(a, b)) for a, b in coupling_map.get_edges() if max(a, b) < n}), n
        )
        layout = list(range(n))
    return qiskit.transpile(
        circuit,
        basis_gates=basis_gates,
        coupling_map=coupling_map,
        initial_layout=layout,
        optimization_level=optimization_level,
        seed_transpiler=seed,
    )


def gate_counts(circuit: Any) -> dict[str, int]:
    """Gate counts, plus ``"two_qubit"`` (all two-qubit gates) and ``"two_qubit_depth"``."""
    counts = {str(k): int(v) for k, v in circuit.count_ops().items()}
    counts["two_qubit"] = sum(1 for inst in circuit.data if inst.operation.num_qubits == 2)
    counts["two_qubit_depth"] = int(circuit.depth(lambda inst: inst.operation.num_qubits == 2))
    counts["depth"] = int(circuit.depth())
    return counts


def _final_positions(circuit: Any, n_target: int) -> list[int]:
    layout = getattr(circuit, "layout", None)
    if layout is None:
        return list(range(n_target))
    return [int(p) for p in layout.final_index_layout(filter_ancillas=True)][:n_target]


def circuit_fidelity(
    circuit: Any, target: Any, *, method: str = "auto", max_bond: int | None = None
) -> float:
    """``|<target|circuit|0...0>|^2`` by an independent simulation of ``circuit``.

    Parameters
    ----------
    circuit : qiskit.QuantumCircuit
        Possibly transpiled (ancillas must end in ``|0>``; the final layout of
        a transpiled circuit is read from ``circuit.layout`` and must keep virtual
        qubit ``q`` on physical qubit ``q``).
    target : MatrixProductState or anything :func:`~tnkit.aqc.targets.as_target` accepts
    method : {"auto", "statevector", "mps"}
        ``"auto"`` uses Qiskit's ``Statevector`` up to :data:`STATEVECTOR_MAX_QUBITS`
        qubits and the engine's MPS simulation beyond; up to
        :data:`STATEVECTOR_FALLBACK_QUBITS` qubits it returns to ``Statevector`` when
        the MPS bonds would outgrow :func:`_mps_bond_cap` (a deep circuit).
    max_bond : int, optional
        Bond cap of the MPS simulation (``None``: exact).
    """
    check_option("method", method, FIDELITY_METHODS)
    psi = as_target(target)
    n = psi.n_sites
    m = circuit.num_qubits
    if m < n:
        raise ValueError(f"`circuit` has {m} qubits, fewer than the target's {n}.")
    positions = _final_positions(circuit, n)
    if positions != list(range(n)):
        raise ValueError(
            f"`circuit` moves virtual qubits to physical qubits {positions[:8]}...; transpile with "
            "transpile_circuit (which keeps qubit q on physical qubit q) to compare with the target."
        )
    if m > n:  # ancillas stay in |0>
        psi = MatrixProductState(list(psi.tensors) + [np.array([1.0, 0.0]).reshape(1, 2, 1)] * (m - n))
    circuit = circuit.remove_final_measurements(inplace=False)
    return FIDELITY_METHODS[method](circuit, psi, max_bond)


def _auto_fidelity(circuit: Any, psi: MatrixProductState, max_bond: int | None) -> float:
    """``Statevector`` for few qubits, the MPS simulation beyond (see :func:`circuit_fidelity`)."""
    m = circuit.num_qubits
    if m <= STATEVECTOR_MAX_QUBITS:
        return _statevector_fidelity(circuit, psi)
    if m <= STATEVECTOR_FALLBACK_QUBITS and max_bond is None:
        cap = _mps_bond_cap(m)
        phi, report = MatrixProductState.from_qiskit(circuit, max_bond=cap, return_report=True)
        if max(report.bond_dims, default=1) < cap and report.error <= 1e-12:  # the cap never bit: exact
            return float(abs(psi.inner(phi)) ** 2)
        return _statevector_fidelity(circuit, psi)  # a deep circuit: the state vector is cheaper
    return _mps_fidelity(circuit, psi, max_bond)


def _mps_fidelity(circuit: Any, psi: MatrixProductState, max_bond: int | None) -> float:
    """``|<psi|circuit|0...0>|^2`` with the engine's MPS simulation of ``circuit`` (bond cap ``max_bond``)."""
    phi = MatrixProductState.from_qiskit(circuit, max_bond=max_bond)
    return float(abs(psi.inner(phi)) ** 2)


def _statevector_fidelity(circuit: Any, psi: MatrixProductState, max_bond: int | None = None) -> float:
    """``|<psi|circuit|0...0>|^2`` with Qiskit's ``Statevector`` (``psi`` padded to the circuit's qubits).

    ``max_bond`` is unused (the state vector is exact).
    """
    Statevector = import_qiskit("qiskit.quantum_info").Statevector

    v = Statevector(circuit).data
    w = psi.to_dense(little_endian=True, max_size=2**circuit.num_qubits)
    return float(abs(np.vdot(w, v)) ** 2)


#: Simulations of :func:`circuit_fidelity`: ``(circuit, padded target, max_bond) -> fidelity``.
FIDELITY_METHODS = {
    "auto": _auto_fidelity,
    "statevector": _statevector_fidelity,
    "mps": _mps_fidelity,
}


def to_qasm(circuit: Any, *, version: int = 2) -> str:
    """OpenQASM text of ``circuit`` (``version`` 2 or 3)."""
    check_option("version", version, (2, 3))
    return import_qiskit(f"qiskit.qasm{version}").dumps(circuit)


def write_qasm(circuit: Any, path: Any, *, version: int = 2) -> Path:
    """Write ``circuit`` as OpenQASM to ``path`` atomically; return the path."""
    text = to_qasm(circuit, version=version)
    path = Path(path)
    with atomic_write(path) as fh:
        fh.write(text.encode())
    return path


def read_qasm(path: Any) -> Any:
    """Parse an OpenQASM 2 or 3 file into a ``qiskit.QuantumCircuit`` (no code is executed)."""
    text = Path(path).read_text()
    if "OPENQASM 3" in text:
        return import_qiskit("qiskit.qasm3").loads(text)
    qasm2 = import_qiskit("qiskit.qasm2")
    return qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
