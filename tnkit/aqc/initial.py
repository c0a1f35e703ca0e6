"""Initial parameters: Trotter angles, Ran's analytic layers, warm starts.

* :func:`trotter_initialization`: the ansatz of a shallow Trotter circuit of a
  :class:`~tnkit.aqc.targets.SpinChain`, with the angles that reproduce it exactly.
* :func:`ran_initialization`: no seed circuit; the target itself is decomposed layer
  by layer (S.-J. Ran, arXiv:1908.07958): truncate what is left to bond 2, prepare
  that bond-2 MPS exactly by a staircase of two-qubit gates
  (:func:`~tnkit.aqc.born.sequential_unitaries`), pull the target back through
  the layer, and repeat. Layer ``1`` is applied last in time.
* :func:`hva_initialization`: the Hamiltonian variational ansatz of a
  Heisenberg/XXZ ground state: singlets on the even bonds, then alternating
  odd/even brick layers of ``exp(-i (a (XX + YY) + b ZZ))`` blocks whose angles are
  tied per half-layer (four parameters a layer), optimised on a doubling schedule
  of layer counts, each started from the previous one's angles stretched over
  the new depth.
* Warm starts along a schedule of targets: :func:`tnkit.aqc.compile_sequence`
  starts each compilation from the previous solution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.validate import check_int, check_max_bond
from .ansatz import Ansatz, ansatz_from_circuit, ansatz_from_gates, brickwall_ansatz, next_brick_layer
from .born import sequential_unitaries
from .targets import SpinChain, as_target

__all__ = [
    "trotter_initialization",
    "ran_initialization",
    "ran_layers",
    "extend_ansatz",
    "fill_cnot_budget",
    "as_staircase_gate",
    "hva_ansatz",
    "hva_initialization",
    "hva_default_layers",
    "HVAStage",
]

logger = logging.getLogger(__name__)


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


# ------------------------------------------------------------------ Hamiltonian variational ansatz

#: A two-qubit unitary whose first column is the singlet ``(|01> - |10>) / sqrt(2)``:
#: ``Z_lo CX(lo -> hi) H_lo X_hi`` on ``|00>`` (tnkit's order, ``lo`` the slower index).
_SINGLET_PREP = np.array(
    [[0, 1, 0, 1], [1, 0, 1, 0], [-1, 0, 1, 0], [0, -1, 0, 1]], dtype=complex
) / np.sqrt(2)


def hva_ansatz(n_qubits: int, n_layers: int) -> tuple[Ansatz, np.ndarray]:
    """Structure of the Hamiltonian variational ansatz and its dimer start.

    The circuit is a brickwall of ``2 n_layers + 1`` brick layers on the line
    (:func:`~tnkit.aqc.ansatz.brickwall_ansatz`): its first layer, on the even
    bonds ``(0, 1), (2, 3), ...``, prepares singlets (one CNOT each, a
    state-preparation block); each of the ``n_layers`` layers that follow is a
    brick layer on the odd bonds, then one on the even bonds.

    Parameters
    ----------
    n_qubits : int
        At least 2; with an odd number the last qubit starts in ``|0>``.
    n_layers : int
        Odd/even layer pairs after the singlets, >= 0.

    Returns
    -------
    ansatz : Ansatz
        ``2 n_layers + 1`` brick layers.
    params : numpy.ndarray
        Angles of the singlet product state: the singlet blocks prepared exactly,
        every later block the identity.
    """
    n = check_int("n_qubits", n_qubits, minimum=2)
    n_layers = check_int("n_layers", n_layers, minimum=0)
    dimers, dimer_params = ansatz_from_gates(n, [((q, q + 1), _SINGLET_PREP) for q in range(0, n - 1, 2)])
    ansatz = brickwall_ansatz(n, 2 * n_layers + 1)
    blocks = np.zeros((ansatz.n_blocks - dimers.n_blocks, 9))
    blocks[:, :3] = _core_angles(np.zeros(len(blocks)), np.zeros(len(blocks)))
    return ansatz, np.concatenate([dimer_params, blocks.ravel()])


def _core_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Core angles ``(K, 3)`` of ``exp(-i (a (XX + YY) + b ZZ))`` (see :mod:`tnkit.aqc.ansatz`)."""
    return np.stack([np.pi / 2 + 2 * b, -np.pi / 2 - 2 * a, np.pi / 2 + 2 * a], axis=-1)


@dataclass(frozen=True)
class _TiedHVA:
    """The HVA's angles tied per half-layer: ``x = base + map(tied)``, tied = ``(a_h, b_h)`` rows."""

    ansatz: Ansatz
    base: np.ndarray
    half_layer: np.ndarray  # half-layer index of each tied block
    offset: int  # index in the parameter vector of the first tied block's angles

    @classmethod
    def build(cls, n_qubits: int, n_layers: int) -> _TiedHVA:
        ansatz, base = hva_ansatz(n_qubits, n_layers)
        n_dimers = len(range(0, n_qubits - 1, 2))
        parity = np.array([lo % 2 for lo, _ in ansatz.pairs[n_dimers:]])
        half_layer = np.concatenate([[0], np.cumsum(parity[1:] != parity[:-1])]) if len(parity) else parity
        return cls(ansatz, base, half_layer.astype(int), 3 * n_qubits + 9 * n_dimers)

    @property
    def n_half_layers(self) -> int:
        return int(self.half_layer.max(initial=-1)) + 1

    def params(self, tied: np.ndarray) -> np.ndarray:
        """Full angles from the tied ``(a_0, b_0, a_1, b_1, ...)``."""
        ab = tied.reshape(-1, 2)[self.half_layer]
        x = self.base.copy()
        x[self.offset :].reshape(-1, 9)[:, :3] = _core_angles(ab[:, 0], ab[:, 1])
        return x

    def gradient(self, g: np.ndarray) -> np.ndarray:
        """Gradient in the tied angles from the gradient ``g`` in the full angles."""
        core = g[self.offset :].reshape(-1, 9)[:, :3]
        da = np.bincount(self.half_layer, 2 * (core[:, 2] - core[:, 1]), minlength=self.n_half_layers)
        db = np.bincount(self.half_layer, 2 * core[:, 0], minlength=self.n_half_layers)
        return np.stack([da, db], axis=1).ravel()


@dataclass(frozen=True)
class HVAStage:
    """One stage of :func:`hva_initialization`: the tied optimum at ``n_layers`` layers.

    Attributes
    ----------
    n_layers : int
    fidelity : float
        Fidelity of the tied optimum (from the objective at ``max_bond``).
    iterations : int
        L-BFGS-B iterations of the stage.
    cnots : int
        CNOTs of the emitted circuit at this depth.
    angles : numpy.ndarray
        Tied angles ``(2 n_layers, 2)``: ``(a, b)`` of each half-layer, odd bonds first.
    """

    n_layers: int
    fidelity: float
    iterations: int
    cnots: int
    angles: np.ndarray = field(repr=False)


def _stretch(angles: np.ndarray, n_layers: int) -> np.ndarray:
    """Tied angles ``(2 L, 2)`` resampled to ``(2 n_layers, 2)`` (each curve interpolated linearly)."""
    old = angles.reshape(-1, 2, 2)  # (layer, odd/even, a/b)
    xs, xn = np.linspace(0.0, 1.0, len(old)), np.linspace(0.0, 1.0, n_layers)
    new = np.empty((n_layers, 2, 2))
    for parity in range(2):
        for k in range(2):
            new[:, parity, k] = np.interp(xn, xs, old[:, parity, k]) if len(old) > 1 else old[0, parity, k]
    return new.reshape(-1, 2)


def _layer_schedule(n_layers: int) -> list[int]:
    """``1, 2, 4, ...`` doubling up to ``n_layers`` (always ending there)."""
    schedule, k = [], 1
    while k < n_layers:
        schedule.append(k)
        k *= 2
    return schedule + [n_layers]


def hva_default_layers(n_qubits: int) -> int:
    """Odd/even layer pairs of the HVA for an ``n_qubits`` Heisenberg ground state: ``max(1, n // 3)``.

    The open chain's ground state needs about ``n / 3`` tied layer pairs for F = 0.99:
    3 give 0.989 at 12 qubits (4 give 0.996), 16 give 0.989 at 50 qubits; the untied
    refinement (:func:`tnkit.aqc.compile_state`) gains the rest with the same CNOTs.

    Examples
    --------
    >>> from tnkit.aqc.initial import hva_default_layers
    >>> hva_default_layers(10), hva_default_layers(50)
    (3, 16)
    """
    return max(1, check_int("n_qubits", n_qubits, minimum=2) // 3)


#: Starting angle ``a = b`` of every half-layer of the one-layer stage (radians): a
#: small rotation towards the neighbouring singlets (the angles 0 are a stationary
#: point of a real target's fidelity).
HVA_START_ANGLE = 0.1


def hva_initialization(
    target: Any,
    n_layers: int,
    *,
    max_bond: int | None = 64,
    max_iter: int = 100,
    target_fidelity: float | None = None,
    return_stages: bool = False,
) -> Any:
    """Hamiltonian variational start for a Heisenberg/XXZ ground state.

    The singlet product state on the even bonds, then ``n_layers`` pairs of odd/even
    brick layers of ``exp(-i (a (XX + YY) + b ZZ))`` blocks, all blocks of a
    half-layer sharing ``(a, b)`` (:func:`hva_ansatz`). The ``4 n_layers`` tied
    angles are optimised by L-BFGS-B with the exact gradient of
    :class:`~tnkit.aqc.objective.Objective` on the layer counts ``1, 2, 4, ...,
    n_layers``, each stage starting from the previous optimum stretched over the
    new depth (linear interpolation of the angles against the layer's relative
    position). The result is the start of an untied refinement
    (:func:`tnkit.aqc.compile_state`): every block is then a free KAK block.

    Parameters
    ----------
    target : MatrixProductState or anything :func:`~tnkit.aqc.targets.as_target` accepts
        A state of at least 2 qubits (e.g. the DMRG ground state of
        ``SpinChain.heisenberg(n).mpo()``).
    n_layers : int
        Odd/even layer pairs of the last stage, >= 1 (the circuit has ``2 n_layers + 1``
        brick layers; the open Heisenberg chain needs about ``n / 3`` for F = 0.99,
        see :func:`hva_default_layers`).
    max_bond : int, optional
        Bond cap of the objective's simulations (``None``: exact).
    max_iter : int
        L-BFGS-B iterations per stage.
    target_fidelity : float, optional
        Stop as soon as a stage reaches it (checked at every L-BFGS-B iteration), with
        fewer layers than ``n_layers`` when an earlier stage gets there.
    return_stages : bool
        Also return the list of :class:`HVAStage`.

    Returns
    -------
    ansatz : Ansatz
        :func:`hva_ansatz` at the last stage's depth.
    params : numpy.ndarray
        Its full (untied) angles.
    stages : list of HVAStage
        Only with ``return_stages=True``.

    Examples
    --------
    >>> from tnkit.algorithms import dmrg
    >>> from tnkit.aqc import SpinChain
    >>> from tnkit.aqc.initial import hva_initialization
    >>> gs = dmrg(SpinChain.heisenberg(8).mpo(), max_bond=16, seed=0, progress=False).state
    >>> ansatz, params = hva_initialization(gs, 2)
    >>> ansatz.n_blocks, ansatz.cnot_count
    (18, 46)
    """
    from scipy.optimize import minimize

    from .objective import Objective

    target = as_target(target)
    n_layers = check_int("n_layers", n_layers, minimum=1)
    max_bond = check_max_bond(max_bond)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    if target_fidelity is not None and not 0.0 <= float(target_fidelity) <= 1.0:
        raise ValueError(f"`target_fidelity` must lie in [0, 1] or be None, got {target_fidelity!r}.")
    if target.n_sites < 2:
        raise ValueError(f"`target` must have at least 2 qubits, got {target.n_sites}.")
    goal = np.inf if target_fidelity is None else float(target_fidelity)
    stages: list[HVAStage] = []
    angles = np.full((2, 2), HVA_START_ANGLE)
    for layers in _layer_schedule(n_layers):
        tied = _TiedHVA.build(target.n_sites, layers)
        objective = Objective(tied.ansatz, target, max_bond=max_bond)

        def loss(theta: np.ndarray, tied: _TiedHVA = tied, objective: Objective = objective) -> Any:
            f, g = objective.fidelity_and_gradient(tied.params(theta))
            return 1.0 - f, -tied.gradient(g)

        def reached(intermediate_result: Any) -> None:  # the target is checked at every iteration
            if 1.0 - float(intermediate_result.fun) >= goal:
                raise StopIteration

        start = _stretch(angles, layers).ravel()
        res = minimize(loss, start, jac=True, method="L-BFGS-B", callback=reached,
                       options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-10})
        angles, fidelity = res.x.reshape(-1, 2), 1.0 - float(res.fun)  # L-BFGS-B never ends above its start
        stages.append(HVAStage(layers, fidelity, int(res.nit), tied.ansatz.cnot_count, angles.copy()))
        logger.info("HVA stage %r", stages[-1])
        if fidelity >= goal:
            break
    out = (tied.ansatz, tied.params(angles.ravel()))
    return (*out, stages) if return_stages else out
