"""The AQC objective: fidelity ``|<target|C(theta)|0...0>|^2`` and its gradient.

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
circuits.

Two ways to carry the states
----------------------------
**Exact** (no bond cap, or a cap no state can reach): a two-site gate is applied
by contracting ``theta = A_i A_{i+1} G`` and splitting it *without any
factorisation*: the smaller side becomes an identity isometry and the other side
keeps ``theta`` reshaped. The new bond is ``min(2 D_left, 2 D_right)``, which is
never above the largest Schmidt rank the state can have (``2**min(b, n - b)``
on bond ``b``, and at most doubling per layer as the light cone allows), so the
states are exact, no SVD or QR is on the hot path, and the gradient is exact to
rounding. :meth:`Objective.exact_bonds` gives the bonds of this mode, and
``Objective.exact`` says whether it is in use.

**Truncated** (a bond cap below those bonds): the states are
:class:`~tnkit.mps.mps.MatrixProductState` objects in canonical form, each gate
split by a truncated SVD (see :mod:`tnkit.mps.gates`). The fidelity is then that of
the truncated forward state, and the gradient is computed with the truncation
projectors held fixed and the pulled-back target truncated independently; it is
an approximation whose error is of the order of the discarded weight
(``Objective.last_truncation``). Each direction uses the exact mode when its own
bonds fit under the cap, so an exactly simulated circuit against a large target
still gets the exact fidelity.

For ``o = <target|C|0>``, ``F = |o|^2`` and ``dF/dtheta = 2 Re(conj(o) do/dtheta)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.contract import contract
from ..core.linalg import svd
from ..core.threads import blas_threads
from ..core.validate import check_cutoff, check_max_bond
from ..mps.gates import swap_gate
from ..mps.mps import MatrixProductState
from .ansatz import Ansatz
from .targets import as_target

__all__ = [
    "Objective",
    "schedule_layers",
    "ScheduledGate",
    "polar_unitary",
    "apply_gate_exact",
    "layer_environments",
    "product_environments",
    "site_tensors",
    "as_mps",
]

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
        Bond cap of the simulated states (``None``: no cap, always exact). A cap at
        or above :meth:`exact_bonds` changes nothing: the states are carried exactly.
    cutoff : float
        Relative discarded weight allowed per gate when truncating.

    Attributes
    ----------
    exact : bool
        ``True`` when both directions are simulated without truncation, so fidelity
        and gradient are exact to rounding.
    last_truncation : float
        Summed relative discarded weight of the last evaluation's simulations.

    Examples
    --------
    >>> import numpy as np
    >>> from tnkit.aqc import Objective, brickwall_ansatz
    >>> from tnkit import MPS
    >>> ansatz = brickwall_ansatz(4, 2)
    >>> obj = Objective(ansatz, MPS.product_state("0000"))
    >>> round(obj.fidelity(ansatz.zero_params()), 12), obj.exact
    (1.0, True)
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
        forward, backward = self._exact = self.exact_bonds()
        self.forward_exact = self.max_bond is None or forward <= self.max_bond
        self.backward_exact = self.max_bond is None or backward <= self.max_bond
        self.exact = self.forward_exact and self.backward_exact
        self._target_tensors = list(self.target.tensors)
        self.n_evaluations = 0
        self.last_truncation = 0.0

    def __repr__(self) -> str:
        return (
            f"Objective({self.ansatz!r}, target={self.target!r}, layers={len(self.layers)}, "
            f"max_bond={self.max_bond}, cutoff={self.cutoff:g}, exact={self.exact})"
        )

    def exact_bonds(self) -> tuple[int, int]:
        """Largest bonds of the exactly carried forward and backward states.

        Returns
        -------
        forward, backward : int
            Largest bond of ``psi_l`` (from ``|0...0>``) and of ``phi_l`` (from the
            target) over all layers, when no truncation is done.
        """
        n = self.ansatz.n_qubits
        fwd = _bond_profile([1] * (n + 1), self.layers)
        back = _bond_profile([1, *(t.shape[2] for t in self.target.tensors)], self.layers[::-1])
        return fwd, back

    # ------------------------------------------------------------------ public

    def bond_hint(self) -> int:
        """Largest bond the simulations reach (the cap, or the exact bonds), to size BLAS threads."""
        forward, backward = self._exact
        cap = self.max_bond if self.max_bond is not None else max(forward, backward)
        return min(cap, max(forward, backward))

    def state(self, params: Any) -> MatrixProductState:
        """The circuit state ``C(theta)|0...0>`` as an MPS (truncated in the truncated mode)."""
        with blas_threads(self.bond_hint()):
            params = self.ansatz.check_params(params)
            gates = self.ansatz.block_tensors(params)
            self.last_truncation = 0.0
            psi = self.forward_states(gates, self.ansatz.initial_vectors(params), keep=False)[-1]
            return psi if isinstance(psi, MatrixProductState) else MatrixProductState.from_tensors(psi, validate=False)

    def overlap(self, params: Any) -> complex:
        """``<target|C(theta)|0...0>``."""
        return complex(self.target.inner(self.state(params)))

    def fidelity(self, params: Any) -> float:
        """``|<target|C(theta)|0...0>|^2``."""
        self.n_evaluations += 1
        return abs(self.overlap(params)) ** 2

    def fidelity_and_gradient(self, params: Any) -> tuple[float, np.ndarray]:
        """Fidelity and its gradient with respect to every parameter, in one sweep."""
        with blas_threads(self.bond_hint()):
            return self._fidelity_and_gradient(params)

    def __call__(self, params: Any) -> tuple[float, np.ndarray]:
        """``(1 - F, -dF/dtheta)``, the loss and gradient for :func:`scipy.optimize.minimize`."""
        f, g = self.fidelity_and_gradient(params)
        return 1.0 - f, -g

    # ------------------------------------------------------------------ simulation steps (used by the sweeps)

    def _fidelity_and_gradient(self, params: Any) -> tuple[float, np.ndarray]:
        params = self.ansatz.check_params(params)
        self.n_evaluations += 1
        gates, dgates = self.ansatz.block_tensors(params, derivatives=True)
        vecs, dvecs = self.ansatz.initial_vectors(params, derivatives=True)
        self.last_truncation = 0.0
        phis = self.backward_states(gates)
        psis = self.forward_states(gates, vecs, keep=True)
        envs = np.zeros(gates.shape, dtype=complex)
        table = self.gate_table(gates)
        sandwich = complex(self.target.inner(as_mps(psis[0]))) if not self.layers else 0j
        for l, layer in enumerate(self.layers):
            sandwich = layer_environments(site_tensors(phis[l + 1]), site_tensors(psis[l]), layer, table, envs)
        # exact: every sandwich equals <target|psi_L>; truncated: use the truncated state itself
        o = sandwich if self.exact else complex(self.target.inner(as_mps(psis[-1])))
        env_first = product_environments(site_tensors(phis[0]), vecs)  # (n, 2)
        do_first = contract("qs,qps->qp", env_first, dvecs).reshape(-1)
        do_blocks = contract("kuvst,kpuvst->kp", envs, dgates).reshape(-1)
        do = np.concatenate([do_first, do_blocks])
        grad = 2.0 * (np.conj(o) * do).real
        return abs(o) ** 2, grad

    def gate_table(self, gates: np.ndarray) -> list[np.ndarray]:
        """The gates indexed by :attr:`ScheduledGate.block`: ``gates`` then the SWAP (index ``-1``).

        ``gates`` has shape ``(n_blocks, 2, 2, 2, 2)``; the returned list may be
        updated in place by :func:`layer_environments` with ``polar=True``.
        """
        return [*gates, _SWAP]  # index -1 is the SWAP

    def forward_states(self, gates: np.ndarray, vecs: np.ndarray, *, keep: bool) -> list[Any]:
        """``psi_0, ..., psi_L`` (only ``psi_L`` unless ``keep``) from first-layer states ``vecs``.

        Each state is a list of site tensors in the exact mode and a
        :class:`~tnkit.mps.mps.MatrixProductState` in the truncated mode (see
        :func:`site_tensors` and :func:`as_mps` to read either).
        """
        table = self.gate_table(gates)
        if self.forward_exact:
            psi = [v.reshape(1, 2, 1) for v in vecs]
            states = [list(psi)]
            for layer in self.layers:
                for op in layer:
                    apply_gate_exact(psi, op.site, table[op.block])
                states.append(list(psi))
            return states if keep else states[-1:]
        mps = MatrixProductState.product_state(list(vecs))
        states = [mps.copy()]
        for layer in self.layers:
            self.apply_layer_truncated(mps, layer, table, adjoint=False)
            states.append(mps.copy())
        return states if keep else states[-1:]

    def backward_states(self, gates: np.ndarray) -> list[Any]:
        """``phi_0, ..., phi_L`` with ``phi_L = target`` and ``phi_l = U_l^dagger phi_{l+1}``.

        ``gates`` as in :meth:`gate_table`; states as in :meth:`forward_states`.
        """
        table = [_adjoint(g) for g in self.gate_table(gates)]
        if self.backward_exact:
            phi = list(self._target_tensors)
            states = [list(phi)]
            for layer in reversed(self.layers):
                for op in layer:
                    apply_gate_exact(phi, op.site, table[op.block])
                states.append(list(phi))
            return states[::-1]
        mps = self.target.copy()
        states = [mps.copy()]
        for layer in reversed(self.layers):
            self.apply_layer_truncated(mps, layer, table, adjoint=True)
            states.append(mps.copy())
        return states[::-1]

    def apply_layer_truncated(
        self, psi: MatrixProductState, layer: list[ScheduledGate], table: list[np.ndarray], *, adjoint: bool
    ) -> None:
        """Apply ``layer`` (gates from ``table``) to ``psi`` in place with the objective's truncation.

        The discarded weight is added to ``last_truncation``; ``adjoint`` says
        whether ``table`` holds the adjoint gates (the backward pass).
        """
        centre = psi.center
        order = layer if centre is None or centre <= psi.n_sites // 2 else layer[::-1]
        for op in order:
            self.last_truncation += psi.apply_gate_(
                table[op.block], (op.site, op.site + 1), max_bond=self.max_bond, cutoff=self.cutoff
            )


def _adjoint(g: np.ndarray) -> np.ndarray:
    return g.conj().transpose(2, 3, 0, 1)


def site_tensors(state: Any) -> list[np.ndarray]:
    """Site tensors of a state of either mode (a list of tensors, or an MPS)."""
    return list(state.tensors) if isinstance(state, MatrixProductState) else state


def as_mps(state: Any) -> MatrixProductState:
    """A state of either mode as a :class:`~tnkit.mps.mps.MatrixProductState` (no copy, no checks)."""
    return state if isinstance(state, MatrixProductState) else MatrixProductState.from_tensors(state, validate=False)


def _bond_profile(bonds: list[int], layers: list[list[ScheduledGate]]) -> int:
    """Largest bond reached by :func:`apply_gate_exact` from ``bonds`` through ``layers``."""
    bonds = list(bonds)
    largest = max(bonds)
    for layer in layers:
        for op in layer:
            i = op.site
            bonds[i + 1] = 2 * min(bonds[i], bonds[i + 2])
        largest = max(largest, *bonds)
    return largest


def apply_gate_exact(tensors: list[np.ndarray], i: int, gate: np.ndarray) -> None:
    """Apply a two-site ``gate`` ``(2, 2, 2, 2)`` on ``(i, i + 1)`` of ``tensors`` in place, exactly.

    ``theta[a, u, v, c]`` is kept whole on the side with the larger bond; the other
    side becomes the identity isometry, so the new bond is ``2 min(D_a, D_c)``.
    """
    theta = contract("asb,btc,uvst->auvc", tensors[i], tensors[i + 1], gate)
    dl, _, _, dr = theta.shape
    if dl <= dr:
        tensors[i] = _identity(2 * dl).reshape(dl, 2, 2 * dl)
        tensors[i + 1] = theta.reshape(2 * dl, 2, dr)
    else:
        tensors[i] = theta.reshape(dl, 2, 2 * dr)
        tensors[i + 1] = _identity(2 * dr).reshape(2 * dr, 2, dr)


_IDENTITIES: dict[int, np.ndarray] = {}


def _identity(dim: int) -> np.ndarray:
    """A cached, read-only ``dim x dim`` identity (complex)."""
    eye = _IDENTITIES.get(dim)
    if eye is None:
        eye = np.eye(dim, dtype=complex)
        eye.flags.writeable = False
        _IDENTITIES[dim] = eye
    return eye


def layer_environments(
    bra: list[np.ndarray],
    ket: list[np.ndarray],
    layer: list[ScheduledGate],
    table: list[np.ndarray],
    envs: np.ndarray,
    *,
    polar: bool = False,
) -> complex:
    """Fill ``envs[k]`` for every block ``k`` in ``layer``; return ``<bra| layer |ket>``.

    ``bra`` and ``ket`` are site tensors ``(D_left, 2, D_right)``; ``table[k]`` is the
    gate of block ``k`` (``table[-1]`` the SWAP). With ``polar=True`` each block is
    replaced, left to right, by the unitary maximising ``|<bra| layer |ket>|`` with
    the others fixed (:func:`polar_unitary` of its environment), and the returned
    value is the sandwich after the updates.
    """
    b = [t.conj() for t in bra]
    k = ket
    n = len(ket)
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
            right.append(
                contract("asb,btc,uvst,xuy,yvz,cz->ax", k[i], k[i + 1], table[op.block], b[i], b[i + 1], r)
            )
    right.reverse()
    left = np.ones((1, 1))
    for (i, op), r in zip(segments, right):
        if op is None:
            left = contract("ax,asb,xsy->by", left, k[i], b[i])
            continue
        # the open sandwich, shared by the gate's environment and the next left environment
        opened = contract("ax,asb,btc,xuy,yvz->uvstcz", left, k[i], k[i + 1], b[i], b[i + 1])
        if op.block >= 0:
            envs[op.block] = contract("uvstcz,cz->uvst", opened, r)
            if polar:
                table[op.block] = polar_unitary(envs[op.block])
        left = contract("uvstcz,uvst->cz", opened, table[op.block])
    return complex(left[0, 0])


def polar_unitary(env: np.ndarray) -> np.ndarray:
    """The two-qubit gate ``G`` maximising ``|sum(env * G)|``, as a ``(2, 2, 2, 2)`` tensor.

    With ``env`` reshaped to ``E (4, 4)`` and the SVD ``E^T = X S Y^dagger``, the
    maximum ``sum(S)`` is reached at ``G = Y X^dagger`` (polar decomposition).
    """
    x, _, yh = svd(env.reshape(4, 4).T)
    return (yh.conj().T @ x.conj().T).reshape(2, 2, 2, 2)


def product_environments(bra: list[np.ndarray], vecs: np.ndarray, *, update: bool = False) -> np.ndarray:
    """``e[q, s]`` with ``<bra|v_0 (x) ... (x) v_{n-1}> = sum_s e[q, s] v_q[s]`` for every ``q``.

    With ``update=True`` the rows of ``vecs`` (a writable ``(n, 2)`` array) are replaced
    left to right by the unit vectors ``conj(e[q]) / |e[q]|`` maximising the overlap.
    """
    b = [t.conj() for t in bra]
    n = len(b)
    right = [np.ones(1)]
    for q in range(n - 1, 0, -1):
        right.append(contract("xsy,s,y->x", b[q], vecs[q], right[-1]))
    right.reverse()
    left = np.ones(1)
    out = np.empty((n, 2), dtype=complex)
    for q in range(n):
        out[q] = contract("x,xsy,y->s", left, b[q], right[q])
        if update:
            norm = np.linalg.norm(out[q])
            if norm > 0:
                vecs[q] = out[q].conj() / norm
        left = contract("x,xsy,s->y", left, b[q], vecs[q])
    return out

