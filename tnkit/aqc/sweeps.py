"""Gate-by-gate optimisation by polar decompositions of the environments.

For a fidelity objective ``|<target|C|0>|`` linear in every single gate ``G``
(``<target|C|0> = sum(E * G)`` with the environment ``E`` of ``G``), the unitary
maximising it with all other gates fixed is the polar factor of ``E`` (see
:func:`~tnkit.aqc.objective.polar_unitary`). A *sweep* pulls the target back
through the circuit once, then walks up the layers, replacing every block by its
optimum (left to right inside a layer, each update seen by the next) and every
first-layer state ``ZXZ_q|0>`` by the unit vector that maximises the overlap. In the
exact mode of :class:`~tnkit.aqc.objective.Objective` the fidelity never decreases
from sweep to sweep, one sweep costs about one gradient evaluation, and each step
is a global optimum in its own gate; this escapes the slow valleys where
gradient methods in angle space crawl (Evenbly and Vidal, PRB 79, 144108 (2009);
Lin et al., PRX Quantum 2, 010342 (2021)).

The optimised blocks are general two-qubit unitaries; :func:`sweep_compile`
converts them back to the ansatz's angles (KAK and ZXZ decompositions), so the
result is the same 3-CNOT-per-block circuit and L-BFGS-B can polish it further.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.threads import blas_threads
from ..core.validate import check_int
from ..mps.mps import MatrixProductState
from .ansatz import Ansatz, ansatz_from_gates
from .objective import (
    Objective,
    apply_gate_exact,
    as_mps,
    layer_environments,
    product_environments,
    site_tensors,
)

__all__ = ["polar_sweep", "sweep_compile", "gates_to_params"]


def polar_sweep(objective: Objective, gates: list[np.ndarray], vecs: np.ndarray) -> float:
    """One upward sweep, updating ``gates`` (list of ``(2, 2, 2, 2)``) and ``vecs`` in place.

    Parameters
    ----------
    objective : Objective
        Supplies the layers, the target and the simulation mode.
    gates : list of numpy.ndarray
        One ``(2, 2, 2, 2)`` unitary ``G[out_lo, out_hi, in_lo, in_hi]`` per block, then
        the SWAP (as :meth:`Objective.gate_table` builds it).
    vecs : numpy.ndarray, shape (n_qubits, 2)
        First-layer single-qubit states (complex, writable).

    Returns
    -------
    float
        The fidelity after the sweep (exact mode: of the updated circuit).
    """
    phis = objective.backward_states(np.asarray(gates[:-1]))
    product_environments(site_tensors(phis[0]), vecs, update=True)
    envs = np.zeros((len(gates) - 1, 2, 2, 2, 2), dtype=complex)
    if objective.forward_exact:
        psi: Any = [v.reshape(1, 2, 1) for v in vecs]
    else:
        psi = MatrixProductState.product_state(list(vecs))
    sandwich = 0j
    for l, layer in enumerate(objective.layers):
        sandwich = layer_environments(site_tensors(phis[l + 1]), site_tensors(psi), layer, gates, envs, polar=True)
        if objective.forward_exact:
            psi = list(psi)
            for op in layer:
                apply_gate_exact(psi, op.site, gates[op.block])
        else:
            objective.apply_layer_truncated(psi, layer, gates, adjoint=False)
    if objective.exact:
        return abs(sandwich) ** 2
    return abs(complex(objective.target.inner(as_mps(psi)))) ** 2


def gates_to_params(ansatz: Ansatz, gates: Any, vecs: np.ndarray) -> np.ndarray:
    """Angles of ``ansatz`` that reproduce block unitaries ``gates`` and first-layer states ``vecs``.

    Parameters
    ----------
    ansatz : Ansatz
    gates : sequence of numpy.ndarray
        ``(2, 2, 2, 2)`` unitaries, one per block in ``ansatz.pairs`` order.
    vecs : numpy.ndarray, shape (n_qubits, 2)
        Unit vectors ``ZXZ_q|0>``.

    Returns
    -------
    numpy.ndarray
        Parameters with ``C(params)|0> = e^{i g} (gates applied to vecs)``.
    """
    prep = [((q,), np.array([[v[0], -np.conj(v[1])], [v[1], np.conj(v[0])]])) for q, v in enumerate(vecs)]
    blocks = [(pair, np.asarray(g).reshape(4, 4)) for pair, g in zip(ansatz.pairs, gates)]
    rebuilt, params = ansatz_from_gates(ansatz.n_qubits, prep + blocks, family=ansatz.family)
    if rebuilt.pairs != ansatz.pairs:  # pragma: no cover - ansatz_from_gates keeps one block per gate
        raise RuntimeError("internal error: block structure changed while converting gates to angles")
    return params


def sweep_compile(
    objective: Objective,
    params: Any,
    *,
    max_sweeps: int = 50,
    target_fidelity: float = 1.0,
    tol: float = 1e-7,
    progress: Any = None,
) -> tuple[np.ndarray, list[float]]:
    """Polar sweeps from ``params`` until the fidelity stops improving.

    Parameters
    ----------
    objective : Objective
    params : array_like
        Starting angles.
    max_sweeps : int
        Largest number of sweeps.
    target_fidelity : float
        Stop once the fidelity reaches it.
    tol : float
        Stop when a sweep gains less than ``tol`` in fidelity.
    progress : tqdm bar, optional
        Updated once per sweep with the fidelity.

    Returns
    -------
    params : numpy.ndarray
        Angles of the best circuit found.
    history : list of float
        Fidelity after each sweep.
    """
    ansatz = objective.ansatz
    params = ansatz.check_params(params)
    max_sweeps = check_int("max_sweeps", max_sweeps, minimum=0)
    gates = objective.gate_table(ansatz.block_tensors(params))
    vecs = np.array(ansatz.initial_vectors(params), dtype=complex)
    history: list[float] = []
    with blas_threads(objective.bond_hint()):
        for _ in range(max_sweeps):
            f = polar_sweep(objective, gates, vecs)
            objective.n_evaluations += 1
            history.append(f)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(fidelity=f"{f:.6f}")
            if f >= target_fidelity or (len(history) > 1 and f - history[-2] < tol):
                break
    if not history:
        return params, history
    return gates_to_params(ansatz, gates[:-1], vecs), history

