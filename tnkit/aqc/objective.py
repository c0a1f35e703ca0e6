"""The AQC objective: fidelity ``|<target|C(theta)|0...0>|^2`` and its exact gradient.

The circuit ``C(theta)`` of an :class:`~tnkit.aqc.ansatz.Ansatz` is scheduled into
layers of gates on neighbouring sites of the MPS (a block on distant qubits is
wrapped in SWAPs, which are fixed gates). With ``L`` layers ``C = U_{L-1} ... U_0``:

* **backward pass**: ``phi_L = |target>``, ``phi_l = U_l^dagger phi_{l+1}`` (the target
  pulled back through the circuit), stored for every ``l``;
* **forward pass**: ``psi_0 = ZXZ_0|0> (x) ... (x) ZXZ_{n-1}|0>``, ``psi_{l+1} = U_l psi_l``.
  Before applying layer ``l``, the sandwich ``<phi_{l+1}| U_l |psi_l>`` is contracted
  with left and right environments; removing one gate ``G`` from it leaves its
  *environment* ``E[u, v, s, t]`` with ``<target|C|0> = sum E * G``, from which the
  derivative with respect to the gate's nine angles follows by the chain rule.

One evaluation of fidelity and full gradient therefore costs two circuit simulations
plus one environment sweep per layer; no finite differences and no per-parameter
circuits. States are MPS truncated to ``max_bond`` / ``cutoff`` after every gate
(see :mod:`tnkit.mps.gates`). Without truncation the gradient is exact; with
truncation it is the gradient of the circuit with the truncation projectors held
fixed, and ``Objective.last_truncation`` reports the discarded weight.

For ``o = <target|C|0>``, ``F = |o|^2`` and ``dF/dtheta = 2 Re(conj(o) do/dtheta)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.contract import contract
from ..core.threads import blas_threads
from ..core.validate import check_cutoff, check_max_bond
from ..mps.gates import swap_gate
from ..mps.mps import MatrixProductState
from .ansatz import Ansatz
from .targets import as_target

__all__ = ["Objective", "schedule_layers", "ScheduledGate"]

#: Default relative discarded weight per gate in the objective's simulations.
DEFAULT_OBJECTIVE_CUTOFF = 1e-12

_SWAP = swap_gate(2, 2)


@dataclass(frozen=True)
class ScheduledGate:
    """One gate on sites ``(site, site + 1)``: block ``block`` of the ansatz, or a SWAP (-1)."""

    site: int
    block: int


def schedule_layers(ansatz: Ansatz) -> list[list[ScheduledGate]]:
    """Layers of gates on disjoint neighbouring site pairs, as early as possible.

    A block on qubits ``(lo, hi)`` with ``hi > lo + 1`` moves qubit ``hi`` next to
    ``lo`` with SWAPs, acts on ``(lo, lo + 1)`` and swaps back.
    """
    ops: list[ScheduledGate] = []
    for k, (lo, hi) in enumerate(ansatz.pairs):
        swaps = [ScheduledGate(s, -1) for s in range(hi - 1, lo, -1)]
        ops += swaps + [ScheduledGate(lo, k)] + swaps[::-1]
    level = [0] * ansatz.n_qubits
    layers: list[list[ScheduledGate]] = []
    for op in ops:
        depth = max(level[op.site], level[op.site + 1])
        level[op.site] = level[op.site + 1] = depth + 1
        if depth == len(layers):
            layers.append([])
        layers[depth].append(op)
    return layers


class Objective:
    """Fidelity of an ansatz with a target MPS, with its gradient by environments.

    Parameters
    ----------
    ansatz : Ansatz
    target : MatrixProductState or anything :func:`~tnkit.aqc.targets.as_target` accepts
        Normalised target state on ``ansatz.n_qubits`` qubits.
    max_bond : int, optional
        Bond cap of the simulated states (``None``: no cap).
    cutoff : float
        Relative discarded weight allowed per gate.

    Examples
    --------
    >>> import numpy as np
    >>> from tnkit.aqc import Objective, brickwall_ansatz
    >>> from tnkit import MPS
    >>> ansatz = brickwall_ansatz(4, 2)
    >>> obj = Objective(ansatz, MPS.product_state("0000"))
    >>> round(obj.fidelity(ansatz.zero_params()), 12)
    1.0
    """

    def __init__(
        self,
        ansatz: Ansatz,
        target: Any,
        *,
        max_bond: int | None = None,
        cutoff: float = DEFAULT_OBJECTIVE_CUTOFF,
    ) -> None:
        if not isinstance(ansatz, Ansatz):
            raise TypeError(f"`ansatz` must be an Ansatz, got {type(ansatz).__name__}.")
        self.target = as_target(target)
        if self.target.n_sites > ansatz.n_qubits:
            raise ValueError(
                f"`ansatz` has {ansatz.n_qubits} qubits, fewer than the target's {self.target.n_sites}."
            )
        if self.target.n_sites < ansatz.n_qubits:
            raise ValueError(
                f"`target` has {self.target.n_sites} sites but the ansatz has {ansatz.n_qubits} qubits; "
                "they must match."
            )
        if self.target.phys_dims != (2,) * ansatz.n_qubits:
            raise ValueError(f"`target` must be a state of qubits (physical dimension 2), got {self.target!r}.")
        self.ansatz = ansatz
        self.max_bond = check_max_bond(max_bond)
        self.cutoff = check_cutoff(cutoff)
        self.layers = schedule_layers(ansatz)
        self.n_evaluations = 0
        #: Summed relative discarded weight of the last evaluation's simulations.
        self.last_truncation = 0.0

    def __repr__(self) -> str:
        return (
            f"Objective({self.ansatz!r}, target={self.target!r}, layers={len(self.layers)}, "
            f"max_bond={self.max_bond}, cutoff={self.cutoff:g})"
        )

    # ------------------------------------------------------------------ public

    def _bond_hint(self) -> int:
        return self.max_bond if self.max_bond is not None else 2 ** (self.ansatz.n_qubits // 2)

    def state(self, params: Any) -> MatrixProductState:
        """The (possibly truncated) circuit state ``C(theta)|0...0>`` as an MPS."""
        with blas_threads(self._bond_hint()):
            return self._state(params)

    def _state(self, params: Any) -> MatrixProductState:
        params = self.ansatz.check_params(params)
        gates = self.ansatz.block_tensors(params)
        psi = MatrixProductState.product_state(list(self.ansatz.initial_vectors(params)))
        self.last_truncation = 0.0
        for layer in self.layers:
            self._apply_layer(psi, layer, gates, adjoint=False)
        return psi

    def overlap(self, params: Any) -> complex:
        """``<target|C(theta)|0...0>``."""
        return complex(self.target.inner(self.state(params)))

    def fidelity(self, params: Any) -> float:
        """``|<target|C(theta)|0...0>|^2``."""
        self.n_evaluations += 1
        return abs(self.overlap(params)) ** 2

    def fidelity_and_gradient(self, params: Any) -> tuple[float, np.ndarray]:
        """Fidelity and its gradient with respect to every parameter, in one sweep."""
        with blas_threads(self._bond_hint()):
            return self._fidelity_and_gradient(params)

    def _fidelity_and_gradient(self, params: Any) -> tuple[float, np.ndarray]:
        params = self.ansatz.check_params(params)
        self.n_evaluations += 1
        ansatz = self.ansatz
        gates, dgates = ansatz.block_tensors(params, derivatives=True)
        vecs, dvecs = ansatz.initial_vectors(params, derivatives=True)
        self.last_truncation = 0.0
        phis = self._pull_back_target(gates)
        psi = MatrixProductState.product_state(list(vecs))
        env_first = _product_environments(phis[0], vecs)  # (n, 2)
        envs = np.zeros(gates.shape, dtype=complex)
        for l, layer in enumerate(self.layers):
            self._layer_environments(phis[l + 1], psi, layer, gates, envs)
            self._apply_layer(psi, layer, gates, adjoint=False)
        o = complex(self.target.inner(psi))
        do_first = contract("qs,qps->qp", env_first, dvecs).reshape(-1)
        do_blocks = contract("kuvst,kpuvst->kp", envs, dgates).reshape(-1)
        do = np.concatenate([do_first, do_blocks])
        grad = 2.0 * (np.conj(o) * do).real
        return abs(o) ** 2, grad

    def __call__(self, params: Any) -> tuple[float, np.ndarray]:
        """``(1 - F, -dF/dtheta)``, the loss and gradient for :func:`scipy.optimize.minimize`."""
        f, g = self.fidelity_and_gradient(params)
        return 1.0 - f, -g

    # ------------------------------------------------------------------ internals

    def _gate(self, op: ScheduledGate, gates: np.ndarray, adjoint: bool) -> np.ndarray:
        g = _SWAP if op.block < 0 else gates[op.block]
        return g.conj().transpose(2, 3, 0, 1) if adjoint else g

    def _apply_layer(
        self, psi: MatrixProductState, layer: list[ScheduledGate], gates: np.ndarray, *, adjoint: bool
    ) -> None:
        centre = psi.center
        order = layer if centre is None or centre <= psi.n_sites // 2 else layer[::-1]
        for op in order:
            self.last_truncation += psi.apply_gate_(
                self._gate(op, gates, adjoint), (op.site, op.site + 1), max_bond=self.max_bond, cutoff=self.cutoff
            )

    def _pull_back_target(self, gates: np.ndarray) -> list[MatrixProductState]:
        phis = [self.target]
        phi = self.target.copy()
        for layer in reversed(self.layers):
            self._apply_layer(phi, layer, gates, adjoint=True)
            phis.append(phi.copy())
        return phis[::-1]

    def _layer_environments(
        self,
        bra: MatrixProductState,
        ket: MatrixProductState,
        layer: list[ScheduledGate],
        gates: np.ndarray,
        envs: np.ndarray,
    ) -> None:
        """Fill ``envs[k]`` for every block ``k`` in ``layer`` from ``<bra| layer |ket>``."""
        b = [t.conj() for t in bra.tensors]
        k = ket.tensors
        n = ket.n_sites
        starts = {op.site: op for op in layer}
        segments: list[tuple[int, ScheduledGate | None]] = []
        i = 0
        while i < n:
            op = starts.get(i)
            segments.append((i, op))
            i += 2 if op is not None else 1
        right = [np.ones((1, 1))]
        for i, op in reversed(segments[1:]):
            r = right[-1]
            if op is None:
                right.append(contract("asb,xsy,by->ax", k[i], b[i], r))
            else:
                g = self._gate(op, gates, False)
                right.append(contract("asb,btc,uvst,xuy,yvz,cz->ax", k[i], k[i + 1], g, b[i], b[i + 1], r))
        right.reverse()
        left = np.ones((1, 1))
        for (i, op), r in zip(segments, right):
            if op is None:
                left = contract("ax,asb,xsy->by", left, k[i], b[i])
                continue
            if op.block >= 0:
                envs[op.block] = contract("ax,asb,btc,xuy,yvz,cz->uvst", left, k[i], k[i + 1], b[i], b[i + 1], r)
            g = self._gate(op, gates, False)
            left = contract("ax,asb,btc,uvst,xuy,yvz->cz", left, k[i], k[i + 1], g, b[i], b[i + 1])


def _product_environments(bra: MatrixProductState, vecs: np.ndarray) -> np.ndarray:
    """``e[q, s]`` with ``<bra|v_0 (x) ... (x) v_{n-1}> = sum_s e[q, s] v_q[s]`` for every ``q``."""
    b = [t.conj() for t in bra.tensors]
    n = len(b)
    right = [np.ones(1)]
    for q in range(n - 1, 0, -1):
        right.append(contract("xsy,s,y->x", b[q], vecs[q], right[-1]))
    right.reverse()
    left = np.ones(1)
    out = np.empty((n, 2), dtype=complex)
    for q in range(n):
        out[q] = contract("x,xsy,y->s", left, b[q], right[q])
        left = contract("x,xsy,s->y", left, b[q], vecs[q])
    return out

