"""Target states for compiling: given states, Trotter circuits and accurate time evolution.

Spin chains use Pauli matrices and open boundaries::

    H = sum_b (jx X_b X_{b+1} + jy Y_b Y_{b+1} + jz Z_b Z_{b+1}) + sum_q (hx X_q + hz Z_q)

:class:`SpinChain` builds it (``xxz``, ``heisenberg``, ``tfim``), gives its MPO and its
second-order Trotter circuit in standard Qiskit gates. :func:`time_evolved_state`
simulates a fine Trotter circuit as an MPS and reports the error: the truncation
error of the simulation and an estimate of the Trotter error from the same run at
half the number of steps (second order: the state error scales as ``dt^2``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.linalg import DEFAULT_CUTOFF
from ..core.validate import as_array, check_int, check_number
from ..mps.builders import mpo_from_terms, pauli_operators
from ..mps.mpo import MatrixProductOperator
from ..mps.mps import MatrixProductState
from ._qiskit import import_qiskit

__all__ = [
    "as_target",
    "SpinChain",
    "EvolutionReport",
    "time_evolved_state",
    "initial_circuit",
    "initial_bits",
    "INITIAL_STATES",
    "MAX_TROTTER_STEPS",
]

#: Default cap on the Trotter steps of :func:`time_evolved_state` (and of
#: :meth:`SpinChain.trotter_circuit`): past it the simulation would run for hours
#: (every step is a circuit layer on the MPS), so the call refuses up front.
MAX_TROTTER_STEPS = 10_000


def as_target(target: Any, *, atol: float = 1e-8) -> MatrixProductState:
    """A normalised target MPS from an MPS, a quimb MPS, a dense vector or a Qiskit circuit.

    Parameters
    ----------
    target : MatrixProductState, quimb MatrixProductState, array_like or QuantumCircuit
        A dense vector is read in tnkit's order (qubit 0 the slowest index); a
        circuit is simulated exactly as an MPS from ``|0...0>``.
    atol : float
        Allowed deviation of the norm from 1.

    Raises
    ------
    ValueError
        If the state is not normalised or holds NaN or infinity.
    TypeError
        For any other kind of object.
    """
    if isinstance(target, MatrixProductState):
        psi = target
    elif type(target).__module__.startswith("quimb"):
        psi = MatrixProductState.from_quimb(target)
    elif type(target).__name__ == "QuantumCircuit":
        psi = MatrixProductState.from_qiskit(target)
    elif isinstance(target, (np.ndarray, list, tuple)):
        v = as_array("target", target, ndim=1)
        n = int(round(math.log2(max(len(v), 1))))
        if 2**n != len(v) or n < 1:
            raise ValueError(f"`target` as a dense vector must have length 2**n, got {len(v)}.")
        psi = MatrixProductState.from_dense(v, 2)
    else:
        raise TypeError(
            "`target` must be a tnkit or quimb MPS, a dense vector or a qiskit QuantumCircuit, "
            f"got {type(target).__name__}."
        )
    for i, t in enumerate(psi.tensors):
        if not np.isfinite(t).all():
            raise ValueError(f"`target` must hold finite numbers; site {i} has NaN or infinity.")
    norm = psi.norm()
    if not abs(norm - 1.0) <= atol:
        raise ValueError(
            f"`target` must be normalised, got norm {norm:.12g}; pass target.normalized() if "
            "the direction is what you want."
        )
    return psi


@dataclass(frozen=True)
class SpinChain:
    """Open spin-1/2 chain with nearest-neighbour couplings and uniform fields (Pauli matrices)."""

    n_sites: int
    jx: float = 1.0
    jy: float = 1.0
    jz: float = 1.0
    hx: float = 0.0
    hz: float = 0.0

    def __post_init__(self) -> None:
        check_int("n_sites", self.n_sites, minimum=2)
        for name in ("jx", "jy", "jz", "hx", "hz"):
            value = getattr(self, name)
            if not np.isfinite(value) or np.iscomplexobj(value):
                raise ValueError(f"`{name}` must be a finite real number, got {value!r}.")

    @classmethod
    def xxz(cls, n_sites: int, *, delta: float, j: float = 1.0, h: float = 0.0) -> SpinChain:
        """``sum j (XX + YY + delta ZZ) + h sum Z``."""
        return cls(n_sites, j, j, j * delta, 0.0, h)

    @classmethod
    def heisenberg(cls, n_sites: int, *, j: float = 1.0, h: float = 0.0) -> SpinChain:
        """``sum j (XX + YY + ZZ) + h sum Z``."""
        return cls(n_sites, j, j, j, 0.0, h)

    @classmethod
    def tfim(cls, n_sites: int, *, j: float = 1.0, h: float = 1.0) -> SpinChain:
        """Transverse-field Ising ``-j sum ZZ - h sum X`` (as :func:`tnkit.tfim_mpo`)."""
        return cls(n_sites, 0.0, 0.0, -j, -h, 0.0)

    def mpo(self) -> MatrixProductOperator:
        """The Hamiltonian as an exact MPO."""
        p = pauli_operators()
        terms: list[Any] = []
        for b in range(self.n_sites - 1):
            for c, op in ((self.jx, p["X"]), (self.jy, p["Y"]), (self.jz, p["Z"])):
                if c:
                    terms.append((c, {b: op, b + 1: op}))
        for q in range(self.n_sites):
            for c, op in ((self.hx, p["X"]), (self.hz, p["Z"])):
                if c:
                    terms.append((c, {q: op}))
        return mpo_from_terms(terms, 2, self.n_sites)

    def trotter_circuit(self, t: float, steps: int, *, initial: str = "neel", first_parity: int = 1) -> Any:
        """Second-order Trotter circuit of ``exp(-i t H)`` on ``initial`` in standard gates.

        Groups: the bonds of parity ``first_parity`` (A), the other bonds (B) and,
        when there are fields, the one-site terms (F, outermost). One step is
        ``F/2 A/2 B A/2 F/2``; the half steps of the outer group are merged between
        steps, so ``s`` steps without fields have ``2 s + 1`` brick layers. A bond term
        is ``RXX(2 tau jx) RYY(2 tau jy) RZZ(2 tau jz)`` (these commute), a field term
        ``RV(2 tau hx, 0, 2 tau hz)``.
        """
        steps = check_int("steps", steps, minimum=1)
        if steps > MAX_TROTTER_STEPS:
            raise ValueError(f"`steps` must be at most {MAX_TROTTER_STEPS} (MAX_TROTTER_STEPS), got {steps}.")
        if first_parity not in (0, 1):
            raise ValueError(f"`first_parity` must be 0 or 1, got {first_parity!r}.")
        t = _check_time(t)
        qc = initial_circuit(self.n_sites, initial)
        dt = float(t) / steps
        groups = ([self._field_layer] if (self.hx or self.hz) else []) + [
            lambda c, tau: self._bond_layer(c, tau, first_parity),
            lambda c, tau: self._bond_layer(c, tau, 1 - first_parity),
        ]
        sequence: list[tuple[int, float]] = []
        for _ in range(steps):
            for g in range(len(groups) - 1):
                sequence.append((g, dt / 2))
            sequence.append((len(groups) - 1, dt))
            for g in range(len(groups) - 2, -1, -1):
                sequence.append((g, dt / 2))
        merged: list[tuple[int, float]] = []
        for g, tau in sequence:
            if merged and merged[-1][0] == g:
                merged[-1] = (g, merged[-1][1] + tau)
            else:
                merged.append((g, tau))
        for g, tau in merged:
            groups[g](qc, tau)
        return qc

    def _bond_layer(self, qc: Any, tau: float, parity: int) -> None:
        for q in range(parity, self.n_sites - 1, 2):
            if self.jx:
                qc.rxx(2 * tau * self.jx, q, q + 1)
            if self.jy:
                qc.ryy(2 * tau * self.jy, q, q + 1)
            if self.jz:
                qc.rzz(2 * tau * self.jz, q, q + 1)

    def _field_layer(self, qc: Any, tau: float) -> None:
        for q in range(self.n_sites):
            qc.rv(2 * tau * self.hx, 0.0, 2 * tau * self.hz, q)


def _neel_bits(n_qubits: int) -> str:
    return "01" * (n_qubits // 2) + "0" * (n_qubits % 2)


def _zero_bits(n_qubits: int) -> str:
    return "0" * n_qubits


#: Named initial product states: ``n_qubits -> bit string`` (bit ``q`` is qubit ``q``).
INITIAL_STATES = {
    "neel": _neel_bits,
    "zeros": _zero_bits,
}


def initial_bits(n_qubits: int, initial: str = "neel") -> str:
    """The bit string of ``initial``: a name of :data:`INITIAL_STATES` or a bit string.

    ``"neel"`` gives ``0101...``, ``"zeros"`` ``00...0``. Bit ``q`` of the string is qubit ``q``.
    """
    if isinstance(initial, str) and initial in INITIAL_STATES:
        return INITIAL_STATES[initial](n_qubits)
    if isinstance(initial, str) and set(initial) <= {"0", "1"} and len(initial) == n_qubits:
        return initial
    names = ", ".join(repr(name) for name in INITIAL_STATES)
    raise ValueError(f"`initial` must be {names} or a bit string of length {n_qubits}, got {initial!r}.")


def initial_circuit(n_qubits: int, initial: str = "neel") -> Any:
    """A circuit preparing ``initial``: ``"neel"`` (``|0101...>``), ``"zeros"`` or a bit string.

    Bit ``q`` of the string is qubit ``q``.
    """
    qc = import_qiskit().QuantumCircuit(n_qubits)
    bits = initial_bits(n_qubits, initial)
    for q, bit in enumerate(bits):
        if bit == "1":
            qc.x(q)
    return qc


def _check_time(t: object) -> float:
    """``t`` as a finite real float."""
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise TypeError(f"`t` must be a real number, got {t!r} of type {type(t).__name__}.")
    if not math.isfinite(float(t)):
        raise ValueError(f"`t` must be a finite number, got {t!r}.")
    return float(t)


@dataclass(frozen=True)
class EvolutionReport:
    """Accuracy of a time-evolved target.

    Attributes
    ----------
    steps : int
        Second-order Trotter steps.
    dt : float
    truncation_error : float
        ``1 - prod(1 - e_g)`` over the relative discarded weights of the gates.
    trotter_error : float
        Estimated infidelity from the Trotter splitting, ``||psi_{s/2} - psi_s||^2 / 9``.
    max_bond : int
        Largest bond of the result.
    """

    steps: int
    dt: float
    truncation_error: float
    trotter_error: float
    max_bond: int

    @property
    def error(self) -> float:
        """Estimated total infidelity with the exact evolved state."""
        return self.truncation_error + self.trotter_error

    def __str__(self) -> str:
        return (
            f"EvolutionReport(steps={self.steps}, dt={self.dt:g}, truncation={self.truncation_error:.2e}, "
            f"trotter~{self.trotter_error:.2e}, max bond={self.max_bond})"
        )


def time_evolved_state(
    chain: SpinChain,
    t: float,
    *,
    steps: int | None = None,
    dt: float = 0.025,
    initial: str = "neel",
    max_bond: int | None = None,
    cutoff: float = DEFAULT_CUTOFF,
    max_steps: int = MAX_TROTTER_STEPS,
) -> tuple[MatrixProductState, EvolutionReport]:
    """``exp(-i t H)|initial>`` as an MPS by fine second-order Trotter steps (TEBD).

    Parameters
    ----------
    chain : SpinChain
    t : float
        Evolution time.
    steps : int, optional
        Number of steps (rounded up to even); default ``ceil(t / dt)``.
    dt : float
        Step used when ``steps`` is not given.
    initial : str
        See :func:`initial_circuit`.
    max_bond, cutoff
        Truncation of the simulation after every gate.
    max_steps : int
        Refuse (``ValueError``, before any simulation) when the number of steps
        would exceed this.

    Returns
    -------
    psi : MatrixProductState
        The normalised evolved state.
    report : EvolutionReport
    """
    if not isinstance(chain, SpinChain):
        raise TypeError(f"`chain` must be a SpinChain, got {type(chain).__name__}.")
    t = _check_time(t)
    max_steps = check_int("max_steps", max_steps, minimum=2)
    if steps is None:
        dt = check_number("dt", dt)
        n_steps = max(2.0, math.ceil(abs(t) / dt))
        if n_steps > max_steps:
            raise ValueError(
                f"`t` = {t:g} with `dt` = {dt:g} needs {n_steps:.3g} Trotter steps, more than `max_steps` "
                f"= {max_steps}; pass fewer `steps`, a larger `dt` or a larger `max_steps`."
            )
        steps = int(n_steps)
    steps = check_int("steps", steps, minimum=1)
    steps += steps % 2
    if steps > max_steps:
        raise ValueError(f"`steps` must be at most `max_steps` = {max_steps}, got {steps}.")
    psi, rep = MatrixProductState.from_qiskit(
        chain.trotter_circuit(t, steps, initial=initial), max_bond=max_bond, cutoff=cutoff, return_report=True
    )
    half = MatrixProductState.from_qiskit(
        chain.trotter_circuit(t, steps // 2, initial=initial), max_bond=max_bond, cutoff=cutoff
    )
    psi.normalize_()
    half.normalize_()
    diff2 = max(0.0, 2.0 - 2.0 * float(np.real(half.inner(psi))))
    report = EvolutionReport(steps, float(t) / steps, rep.error, diff2 / 9.0, psi.max_bond_dim)
    return psi, report
