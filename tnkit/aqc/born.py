"""Any normalised MPS to a circuit: the sequential isometry construction.

A right-canonical MPS ``B[0] ... B[N-1]`` with bonds ``D_i <= 2^m`` is prepared exactly
by ``N`` gates applied left to right (Schön et al., PRL 95, 110503, 2005): gate ``i``
acts on qubits ``i .. i + m_i`` and maps ``|a>|0>`` (the incoming bond ``a`` held by
qubits ``i .. i + m_left - 1``) to ``sum_{s, b} B[i][a, s, b] |s>_i |b>``, the outgoing
bond ``b`` held by qubits ``i + 1 .. i + m_right``. Right-isometry of ``B[i]`` makes
these columns orthonormal; they are completed to a unitary. For bond 2 every gate is
a two-qubit gate, the building block of Ran's layer-by-layer encoding
(:func:`tnkit.aqc.initial.ran_initialization`).

Measuring the prepared circuit samples the MPS's Born distribution ``|psi(s)|^2``, so
a trained Born machine (its ``.mps_``) becomes a circuit with :func:`mps_to_circuit`
(bond up to ``2^m`` exactly) or approximately at a chosen depth with
:func:`tnkit.aqc.initial.ran_initialization` and :func:`tnkit.aqc.compile_state`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.linalg import qr
from ..mps.mps import MatrixProductState
from ._qiskit import import_qiskit
from .targets import as_target

__all__ = ["sequential_unitaries", "centred_unitaries", "mps_to_circuit"]


def _qubits_for(dim: int) -> int:
    return max(0, math.ceil(math.log2(dim))) if dim > 1 else 0


def _complete_unitary(columns: np.ndarray, dim: int) -> np.ndarray:
    """A ``dim x dim`` unitary whose first columns are the orthonormal ``columns``."""
    k = columns.shape[1]
    rng = np.random.default_rng(0)
    filler = rng.standard_normal((dim, dim - k)) + 1j * rng.standard_normal((dim, dim - k))
    for _ in range(2):  # project twice: orthogonal to the columns to machine precision
        filler -= columns @ (columns.conj().T @ filler)
    q, _ = qr(filler)
    return np.concatenate([columns, q], axis=1)


def sequential_unitaries(mps: Any) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Gates preparing ``mps`` from ``|0...0>``, in time order.

    Parameters
    ----------
    mps : MatrixProductState (or anything :func:`~tnkit.aqc.targets.as_target` accepts)
        Normalised state of qubits.

    Returns
    -------
    list of (qubits, unitary)
        ``qubits`` are consecutive ``(i, ..., i + m)``; ``unitary`` is the
        ``2^(m+1) x 2^(m+1)`` matrix in tnkit's order (qubit ``i`` the slowest index).
    """
    psi = as_target(mps)
    if set(psi.phys_dims) != {2}:
        raise ValueError(f"`mps` must be a state of qubits (physical dimension 2), got {psi!r}.")
    psi = psi.canonicalize(0)
    psi.normalize_()
    return [(tuple(span), u) for span, u in _site_gates(list(psi.tensors))]


def _site_gates(tensors: list[np.ndarray]) -> list[tuple[range, np.ndarray]]:
    """One unitary per site of a right-canonical chain: input ``|a>|0..>`` -> ``sum B[a,s,b] |s>|b>``.

    Site ``i``'s gate acts on the chain positions ``i, ..., i + span - 1`` (returned
    as ``range``), position ``i`` the slowest index.
    """
    n = len(tensors)
    gates = []
    for i, b in enumerate(tensors):
        dl, d, dr = b.shape
        ml, mr = _qubits_for(dl), _qubits_for(dr)
        span = max(ml, 1 + mr)  # qubits i .. i + span - 1
        if i + span > n:
            raise ValueError(f"bond {dl} -> {dr} at site {i} needs more qubits than the chain has.")
        dim = 2**span
        # column a: the output sum_{s,b} B[a,s,b] |s>|b>|0..>, b on the mr qubits after s
        cols = np.zeros((2, 2 ** (span - 1), dl), dtype=complex)
        cols[:, np.arange(dr) * 2 ** (span - 1 - mr), :] = b.transpose(1, 2, 0)
        cols = cols.reshape(dim, dl)
        u_cols = _complete_unitary(cols, dim)
        # input |a>|0..>: a on the first ml qubits
        inputs = [a * 2 ** (span - ml) for a in range(dl)]
        others = sorted(set(range(dim)) - set(inputs))
        full = np.zeros((dim, dim), dtype=complex)
        full[:, inputs] = u_cols[:, :dl]
        full[:, others] = u_cols[:, dl:]
        gates.append((range(i, i + span), full))
    return gates


def centred_unitaries(mps: Any) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Gates preparing a bond-2 ``mps`` from ``|0...0>`` outwards from the centre, in time order.

    The state is put in mixed canonical form about qubit ``m = n // 2``. A staircase
    on ``(m-1, m), (m, m+1), ..., (n-2, n-1)`` prepares ``sum_a |a>_{m-1} |R_a>``
    (``a`` the bond left of ``m``), while a second staircase on ``(m-1, m-2), ...,
    (1, 0)`` expands ``|a>_{m-1}`` into the left-canonical ``|L_a>``: two chains
    running in parallel, so the CNOT depth is about half that of
    :func:`sequential_unitaries`'s single staircase. Chains of fewer than 3 qubits
    get :func:`sequential_unitaries`'s gates.

    Parameters
    ----------
    mps : MatrixProductState (or anything :func:`~tnkit.aqc.targets.as_target` accepts)
        Normalised state of qubits with every bond at most 2.

    Returns
    -------
    list of (qubits, unitary)
        Two-qubit gates on neighbouring qubits (``qubits[0]`` the slower index, which
        on the left staircase is the higher qubit) and one-qubit gates.
    """
    psi = as_target(mps)
    if set(psi.phys_dims) != {2} or psi.max_bond_dim > 2:
        raise ValueError(f"`mps` must be a state of qubits with bonds at most 2, got {psi!r}.")
    n = psi.n_sites
    if n < 3:
        return sequential_unitaries(psi)
    m = n // 2
    psi = psi.canonicalize(m)
    psi.normalize_()
    tensors = [np.asarray(t) for t in psi.tensors]
    dim_a = tensors[m].shape[0]
    carrier = np.eye(2, dtype=complex)[:dim_a].reshape(1, 2, dim_a)  # |a> on qubit m-1
    right = MatrixProductState([carrier, *tensors[m:]])
    gates = [((m - 1 + q[0], *(m - 1 + k for k in q[1:])), u) for q, u in sequential_unitaries(right)]
    mirrored = [t.transpose(2, 1, 0) for t in tensors[m - 1 :: -1]]  # right-canonical read right to left
    for span, u in _site_gates(mirrored):
        gates.append((tuple(m - 1 - k for k in span), u))
    return gates


def mps_to_circuit(mps: Any, *, basis_gates: list[str] | None = None, optimization_level: int = 1) -> Any:
    """Exact circuit preparing ``mps`` from ``|0...0>`` by sequential isometries.

    Parameters
    ----------
    mps : MatrixProductState
        Normalised qubit MPS (e.g. a trained Born machine's ``.mps_``).
    basis_gates : list of str, optional
        Gate basis to transpile to (default ``["cx", "rz", "sx", "x"]``).

    Returns
    -------
    qiskit.QuantumCircuit
        Measuring it samples ``|psi(s)|^2`` (qubit ``q`` is site ``q``).
    """
    qiskit = import_qiskit()
    UnitaryGate = import_qiskit("qiskit.circuit.library").UnitaryGate

    psi = as_target(mps)
    qc = qiskit.QuantumCircuit(psi.n_sites, name="mps")
    for qubits, u in sequential_unitaries(psi):
        # Qiskit's matrix order is little-endian in the listed qubits: list them reversed.
        qc.append(UnitaryGate(u, check_input=False), list(reversed(qubits)))
    return qiskit.transpile(
        qc, basis_gates=basis_gates or ["cx", "rz", "sx", "x"], optimization_level=optimization_level,
        seed_transpiler=0,
    )

