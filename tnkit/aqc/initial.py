"""Initial parameters: Trotter angles, Ran's analytic layers, warm starts.

* :func:`trotter_initialization`: the ansatz of a shallow Trotter circuit of a
  :class:`~tnkit.aqc.targets.SpinChain`, with the angles that reproduce it exactly.
* :func:`ran_initialization`: no seed circuit; the target itself is decomposed layer
  by layer (S.-J. Ran, arXiv:1908.07958): truncate what is left to bond 2, prepare
  that bond-2 MPS exactly by a staircase of two-qubit gates
  (:func:`~tnkit.aqc.born.sequential_unitaries`), pull the target back through
  the layer, and repeat. Layer ``1`` is applied last in time.
* Warm starts along a schedule of targets: :func:`tnkit.aqc.compile_sequence`
  starts each compilation from the previous solution.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.validate import check_int
from .ansatz import Ansatz, ansatz_from_circuit, ansatz_from_gates, next_brick_layer
from .born import sequential_unitaries
from .targets import SpinChain, as_target

__all__ = [
    "trotter_initialization",
    "ran_initialization",
    "ran_layers",
    "extend_ansatz",
    "fill_cnot_budget",
    "as_staircase_gate",
]


def trotter_initialization(
    chain: SpinChain, t: float, steps: int, *, initial: str = "neel", first_parity: int = 1
) -> tuple[Ansatz, np.ndarray]:
    """Ansatz and angles of the ``steps``-step second-order Trotter circuit of ``chain``.

    The circuit is :meth:`SpinChain.trotter_circuit`; each fused run of two-qubit
    gates on a bond becomes one KAK block, so ``s`` steps give ``2 s + 1`` brick
    layers (for 20 qubits and ``first_parity=1``, 3 steps are 66 blocks, 198 CNOTs).
    """
    if not isinstance(chain, SpinChain):
        raise TypeError(f"`chain` must be a SpinChain, got {type(chain).__name__}.")
    return ansatz_from_circuit(chain.trotter_circuit(t, steps, initial=initial, first_parity=first_parity))


def ran_layers(
    target: Any, n_layers: int, *, max_bond: int | None = None
) -> list[list[tuple[tuple[int, ...], np.ndarray]]]:
    """Ran's layers as gate lists, layer 1 first (layer ``k`` is applied before ``k - 1``).

    Each layer is a staircase of two-qubit unitaries on ``(0, 1), ..., (n-2, n-1)``
    and a one-qubit unitary on the last qubit.
    """
    remaining = as_target(target).copy()
    n_layers = check_int("n_layers", n_layers, minimum=1)
    n = remaining.n_sites
    if n < 2:
        raise ValueError(f"`target` must have at least 2 qubits, got {n}.")
    cap = max_bond if max_bond is not None else max(64, 2 * remaining.max_bond_dim)
    layers = []
    for _ in range(n_layers):
        approx, _ = remaining.compress(max_bond=2)
        approx.normalize_()
        gates = [as_staircase_gate(q, u, n) for q, u in sequential_unitaries(approx)]
        layers.append(gates)
        for qubits, u in reversed(gates):
            remaining.apply_gate_(u.conj().T, qubits if len(qubits) == 2 else qubits[0], max_bond=cap)
        remaining.normalize_()
    return layers


def as_staircase_gate(qubits: tuple[int, ...], u: np.ndarray, n: int) -> tuple[tuple[int, ...], np.ndarray]:
    """A gate of Ran's staircase on ``n`` qubits as a two-qubit block ``(pair, (4, 4) unitary)``.

    A one-qubit gate (the bond-1 end of the staircase) is padded with the identity
    on the next qubit; two-qubit gates are returned unchanged.
    """
    if len(qubits) == 1 and qubits[0] < n - 1:  # a bond of 1: pad to a two-qubit gate
        return (qubits[0], qubits[0] + 1), np.kron(u, np.eye(2))
    return qubits, u


def ran_initialization(
    target: Any, n_layers: int, *, max_bond: int | None = None
) -> tuple[Ansatz, np.ndarray]:
    """Staircase ansatz of ``n_layers`` layers and angles from Ran's decomposition of ``target``.

    Parameters
    ----------
    target : MatrixProductState or anything :func:`~tnkit.aqc.targets.as_target` accepts
    n_layers : int
    max_bond : int, optional
        Bond cap while pulling the target back (default ``max(64, 2 * target bond)``).

    Returns
    -------
    ansatz : Ansatz
        Equal in structure to :func:`~tnkit.aqc.ansatz.staircase_ansatz`.
    params : numpy.ndarray
        Angles of the analytic layers.
    """
    layers = ran_layers(target, n_layers, max_bond=max_bond)
    gates = [g for layer in reversed(layers) for g in layer]
    n = as_target(target).n_sites
    ansatz, params = ansatz_from_gates(n, gates, family="staircase")
    return ansatz, params


def extend_ansatz(ansatz: Ansatz, params: Any, pairs: Any) -> tuple[Ansatz, np.ndarray]:
    """Append identity blocks on ``pairs``: a larger ansatz preparing the same state.

    Parameters
    ----------
    ansatz : Ansatz
    params : array_like
        Angles of ``ansatz``.
    pairs : sequence of (int, int)
        Qubit pairs of the new blocks, in time order.

    Returns
    -------
    ansatz : Ansatz
        ``ansatz`` with the blocks appended (same family).
    params : numpy.ndarray
        Angles with which the new ansatz prepares exactly the state of ``(ansatz, params)``.
    """
    from .sweeps import gates_to_params

    params = ansatz.check_params(params)
    bigger = Ansatz(ansatz.n_qubits, ansatz.pairs + tuple(tuple(p) for p in pairs), ansatz.family)
    identity = np.eye(4, dtype=complex).reshape(2, 2, 2, 2)
    gates = [*ansatz.block_tensors(params), *([identity] * (bigger.n_blocks - ansatz.n_blocks))]
    vecs = np.asarray(ansatz.initial_vectors(params), dtype=complex)
    return bigger, gates_to_params(bigger, gates, vecs)


def fill_cnot_budget(ansatz: Ansatz, params: Any, cnot_budget: int) -> tuple[Ansatz, np.ndarray]:
    """Spend the CNOTs that one-CNOT state-preparation blocks save on more blocks.

    Blocks acting first on two fresh qubits are emitted with one CNOT instead of
    three (:attr:`Ansatz.state_prep_blocks`), so a Trotter-shaped ansatz uses fewer
    CNOTs than ``3 x blocks``. This appends identity blocks on the next brick layer
    of the line (the bonds of the parity the last block does not use, nearest the
    centre first, where the entanglement is largest) while the CNOT count stays
    within ``cnot_budget``. The returned angles prepare the same state.

    Examples
    --------
    >>> from tnkit.aqc import SpinChain
    >>> from tnkit.aqc.initial import fill_cnot_budget, trotter_initialization
    >>> ansatz, x0 = trotter_initialization(SpinChain.xxz(20, delta=0.5), 1.0, 3)
    >>> ansatz.n_blocks, ansatz.cnot_count
    (66, 180)
    >>> bigger, x1 = fill_cnot_budget(ansatz, x0, 198)
    >>> bigger.n_blocks, bigger.cnot_count
    (72, 198)
    """
    cnot_budget = check_int("cnot_budget", cnot_budget, minimum=0)
    if ansatz.cnot_count > cnot_budget:
        raise ValueError(f"`cnot_budget` ({cnot_budget}) is below the ansatz's {ansatz.cnot_count} CNOTs.")
    extra = (cnot_budget - ansatz.cnot_count) // 3
    return extend_ansatz(ansatz, params, sorted(next_brick_layer(ansatz)[:extra]))
