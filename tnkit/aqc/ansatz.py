"""Parametrised circuit ansätze: the three families and their parameter layout.

An :class:`Ansatz` on ``n_qubits`` qubits is

1. a layer of single-qubit **ZXZ blocks**, one per qubit, acting on ``|0...0>``;
2. a sequence of two-qubit **KAK blocks** on qubit pairs ``(lo, hi)``, ``lo < hi``, in
   time order. Each block is a 3-CNOT *core* carrying the interaction angles,
   followed by a ZXZ block on each of its two qubits.

Parameter layout (a flat float array of length ``3 * n_qubits + 9 * n_blocks``):

* ``params[3 q : 3 q + 3]`` are the angles ``(a, b, c)`` of qubit ``q``'s first ZXZ
  block, the unitary ``Rz(a) Rx(b) Rz(c)`` (``Rz(c)`` acts first);
* block ``k`` owns ``params[3 n + 9 k : 3 n + 9 k + 9]``: the three core angles
  ``(t1, t2, t3)``, then the ZXZ angles on ``lo``, then those on ``hi``.

The core is the Vatan-Williams circuit (Phys. Rev. A 69, 032315, 2004)::

    lo: ──────────X─Rz(t1)─■────────────X─Rz(pi/2)─
    hi: ─Rz(-pi/2)─■─Ry(t2)─X─Ry(t3)────■──────────

which equals ``exp(i (a XX + b YY + c ZZ))`` up to a global phase for
``t1 = pi/2 - 2c``, ``t2 = 2a - pi/2``, ``t3 = pi/2 - 2b``; with the ZXZ blocks on both
sides (the one before a block is the previous block's, or the first layer) every
two-qubit unitary is reachable (KAK decomposition).

Matrices use tnkit's site order: a block is a ``(2, 2, 2, 2)`` tensor
``G[out_lo, out_hi, in_lo, in_hi]`` (``lo`` the slower index of the ``4 x 4`` matrix).

Families: :func:`brickwall_ansatz` (on a line or on a coupling map),
:func:`staircase_ansatz` (sequential layers, as in Ran's MPS-to-circuit
decomposition) and :func:`ansatz_from_circuit` (the two-qubit structure of a given
circuit, angles freed, initial parameters reproducing it exactly).

References
----------
Robertson et al., "Approximate Quantum Compiling for Quantum Simulation: A Tensor
Network based approach", arXiv:2301.08609. S.-J. Ran, "Encoding of matrix product
states into quantum circuits of one- and two-qubit gates", arXiv:1908.07958.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.contract import contract
from ..core.validate import as_array, check_int
from ._qiskit import import_qiskit

__all__ = [
    "Ansatz",
    "brickwall_ansatz",
    "staircase_ansatz",
    "next_brick_layer",
    "ansatz_from_circuit",
    "ansatz_from_gates",
    "zxz_matrices",
    "check_connected",
    "core_matrices",
    "zxz_angles",
    "kak_params",
    "BLOCK_PARAMS",
    "CNOTS_PER_BLOCK",
]

#: Parameters per two-qubit block: 3 core angles + two ZXZ blocks.
BLOCK_PARAMS = 9
#: CNOTs in one block's core.
CNOTS_PER_BLOCK = 3

_I2 = np.eye(2)
_X = np.array([[0.0, 1.0], [1.0, 0.0]])
_Y = np.array([[0.0, -1j], [1j, 0.0]])
_Z = np.diag([1.0, -1.0])
_P0 = np.diag([1.0, 0.0])
_P1 = np.diag([0.0, 1.0])
_CX_LO_HI = np.kron(_P0, _I2) + np.kron(_P1, _X)  # control lo, target hi
_CX_HI_LO = np.kron(_I2, _P0) + np.kron(_X, _P1)  # control hi, target lo


def _rz(t: np.ndarray) -> np.ndarray:
    """Batched ``Rz(t) = diag(exp(-i t/2), exp(i t/2))``, shape ``(..., 2, 2)``."""
    out = np.zeros(np.shape(t) + (2, 2), dtype=complex)
    out[..., 0, 0] = np.exp(-0.5j * t)
    out[..., 1, 1] = np.exp(0.5j * t)
    return out


def _rx(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(0.5 * t), np.sin(0.5 * t)
    out = np.empty(np.shape(t) + (2, 2), dtype=complex)
    out[..., 0, 0] = out[..., 1, 1] = c
    out[..., 0, 1] = out[..., 1, 0] = -1j * s
    return out


def _ry(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(0.5 * t), np.sin(0.5 * t)
    out = np.empty(np.shape(t) + (2, 2), dtype=complex)
    out[..., 0, 0] = out[..., 1, 1] = c
    out[..., 0, 1], out[..., 1, 0] = -s, s
    return out


def _kron_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched ``kron(a, b)`` of ``(..., 2, 2)`` matrices as ``(..., 4, 4)``."""
    batch = "zyxw"[: a.ndim - 2]
    k = contract(f"{batch}ij,{batch}kl->{batch}ikjl", a, b)
    return k.reshape(k.shape[:-4] + (4, 4))


def zxz_matrices(angles: np.ndarray, *, derivatives: bool = False) -> Any:
    """``Rz(a) Rx(b) Rz(c)`` for rows ``(a, b, c)`` of ``angles`` (shape ``(K, 3)``).

    Returns the ``(K, 2, 2)`` matrices, and with ``derivatives=True`` also their
    derivatives ``(K, 3, 2, 2)`` with respect to ``a``, ``b``, ``c``.
    """
    za, xb, zc = _rz(angles[:, 0]), _rx(angles[:, 1]), _rz(angles[:, 2])
    xz = xb @ zc
    u = za @ xz
    if not derivatives:
        return u
    half = -0.5j
    d = np.empty(u.shape[:1] + (3, 2, 2), dtype=complex)
    d[:, 0] = half * (_Z @ u)
    d[:, 1] = half * (za @ (_X @ xz))
    d[:, 2] = half * (u @ _Z)
    return u, d


_F1 = _CX_HI_LO @ np.kron(_I2, np.diag([np.exp(0.25j * np.pi), np.exp(-0.25j * np.pi)]))
_F3 = np.kron(np.diag([np.exp(-0.25j * np.pi), np.exp(0.25j * np.pi)]), _I2) @ _CX_HI_LO


def core_matrices(angles: np.ndarray, *, derivatives: bool = False) -> Any:
    """The 3-CNOT cores for rows ``(t1, t2, t3)`` of ``angles`` (``(K, 3)``) as ``(K, 4, 4)``.

    With ``derivatives=True`` also returns ``(K, 3, 4, 4)`` derivatives.
    """
    m1 = _kron_batch(_rz(angles[:, 0]), _ry(angles[:, 1]))  # after the first CNOT
    m2 = _kron_batch(np.broadcast_to(_I2, m1.shape[:1] + (2, 2)), _ry(angles[:, 2]))
    pre = m1 @ _F1  # (K, 4, 4)
    mid = _CX_LO_HI @ pre
    post = _F3 @ m2  # (K, 4, 4)
    u = post @ mid
    if not derivatives:
        return u
    half = -0.5j
    d = np.empty(u.shape[:1] + (3, 4, 4), dtype=complex)
    d[:, 0] = half * (post @ (_CX_LO_HI @ (np.kron(_Z, _I2) @ pre)))
    d[:, 1] = half * (post @ (_CX_LO_HI @ (np.kron(_I2, _Y) @ pre)))
    d[:, 2] = half * (_F3 @ (np.kron(_I2, _Y) @ (m2 @ mid)))
    return u, d


@dataclass(frozen=True)
class Ansatz:
    """A parametrised circuit: first-layer ZXZ blocks, then two-qubit KAK blocks.

    Parameters
    ----------
    n_qubits : int
        Number of qubits.
    pairs : tuple of (int, int)
        Qubits ``(lo, hi)``, ``lo < hi``, of each two-qubit block, in time order.
    family : str
        ``"brickwall"``, ``"staircase"``, ``"circuit"`` or ``"custom"`` (informational).
    """

    n_qubits: int
    pairs: tuple[tuple[int, int], ...]
    family: str = "custom"

    def __post_init__(self) -> None:
        n = check_int("n_qubits", self.n_qubits, minimum=1)
        pairs = []
        for k, pair in enumerate(self.pairs):
            if len(pair) != 2:
                raise ValueError(f"`pairs[{k}]` must name two qubits, got {pair!r}.")
            a, b = (check_int(f"pairs[{k}]", q, minimum=0) for q in pair)
            if a == b or max(a, b) >= n:
                raise ValueError(
                    f"`pairs[{k}]` must be two different qubits in [0, {n}), got {tuple(pair)}."
                )
            pairs.append((min(a, b), max(a, b)))
        object.__setattr__(self, "pairs", tuple(pairs))

    @property
    def n_blocks(self) -> int:
        """Number of two-qubit blocks."""
        return len(self.pairs)

    @property
    def n_params(self) -> int:
        """Length of the parameter vector."""
        return 3 * self.n_qubits + BLOCK_PARAMS * self.n_blocks

    @property
    def state_prep_blocks(self) -> tuple[int, ...]:
        """Blocks whose two qubits no earlier block touches.

        Such a block acts on a product state ``ZXZ|0> (x) ZXZ|0>``, so only the
        two-qubit state it outputs matters, and any two-qubit state is prepared by
        one CNOT (Schmidt decomposition); :func:`~tnkit.aqc.circuits.to_qiskit`
        emits these blocks with one CNOT instead of three.
        """
        touched: set[int] = set()
        out = []
        for k, (lo, hi) in enumerate(self.pairs):
            if lo not in touched and hi not in touched:
                out.append(k)
            touched.update((lo, hi))
        return tuple(out)

    def block_cnots(self) -> list[int]:
        """CNOTs of each block in the emitted circuit (1 for state-preparation blocks, else 3)."""
        prep = set(self.state_prep_blocks)
        return [1 if k in prep else CNOTS_PER_BLOCK for k in range(self.n_blocks)]

    @property
    def cnot_count(self) -> int:
        """CNOTs of the emitted circuit (3 per block, 1 per state-preparation block)."""
        return sum(self.block_cnots())

    @property
    def cnot_depth(self) -> int:
        """CNOT depth of the emitted circuit (blocks scheduled as early as possible)."""
        level = [0] * self.n_qubits
        for (lo, hi), c in zip(self.pairs, self.block_cnots()):
            level[lo] = level[hi] = max(level[lo], level[hi]) + c
        return max(level, default=0)

    def __repr__(self) -> str:
        return (
            f"Ansatz(family={self.family!r}, n_qubits={self.n_qubits}, blocks={self.n_blocks}, "
            f"cnots={self.cnot_count}, params={self.n_params})"
        )

    def check_params(self, params: Any) -> np.ndarray:
        """Validate a parameter vector; return it as a float array."""
        p = as_array("params", params, ndim=1)
        if p.dtype.kind == "c":
            raise TypeError("`params` must be real angles, got a complex array.")
        if p.shape != (self.n_params,):
            raise ValueError(f"`params` must have shape ({self.n_params},) for {self!r}, got {p.shape}.")
        return p.astype(np.float64, copy=False)

    def split_params(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(first-layer angles (n, 3), block angles (B, 9))``."""
        n = self.n_qubits
        return params[: 3 * n].reshape(n, 3), params[3 * n :].reshape(self.n_blocks, BLOCK_PARAMS)

    def initial_vectors(self, params: np.ndarray, *, derivatives: bool = False) -> Any:
        """First-layer states ``ZXZ_q |0>`` as ``(n, 2)`` (and derivatives ``(n, 3, 2)``)."""
        first, _ = self.split_params(params)
        if not derivatives:
            return zxz_matrices(first)[:, :, 0]
        u, d = zxz_matrices(first, derivatives=True)
        return u[:, :, 0], d[:, :, :, 0]

    def block_tensors(self, params: np.ndarray, *, derivatives: bool = False) -> Any:
        """Block unitaries as ``(B, 2, 2, 2, 2)`` tensors ``G[out_lo, out_hi, in_lo, in_hi]``.

        With ``derivatives=True`` also ``(B, 9, 2, 2, 2, 2)``: the derivative of each
        block with respect to each of its nine parameters.
        """
        _, blocks = self.split_params(params)
        b = len(blocks)
        if b == 0:
            empty = np.zeros((0, 2, 2, 2, 2), dtype=complex)
            return (empty, np.zeros((0, 9, 2, 2, 2, 2), dtype=complex)) if derivatives else empty
        if not derivatives:
            core = core_matrices(blocks[:, 0:3])
            local = _kron_batch(zxz_matrices(blocks[:, 3:6]), zxz_matrices(blocks[:, 6:9]))
            return (local @ core).reshape(b, 2, 2, 2, 2)
        core, dcore = core_matrices(blocks[:, 0:3], derivatives=True)
        zlo, dlo = zxz_matrices(blocks[:, 3:6], derivatives=True)
        zhi, dhi = zxz_matrices(blocks[:, 6:9], derivatives=True)
        local = _kron_batch(zlo, zhi)
        u = local @ core
        d = np.empty((b, BLOCK_PARAMS, 4, 4), dtype=complex)
        d[:, 0:3] = local[:, None] @ dcore
        d[:, 3:6] = _kron_batch(dlo, np.broadcast_to(zhi[:, None], dlo.shape)) @ core[:, None]
        d[:, 6:9] = _kron_batch(np.broadcast_to(zlo[:, None], dhi.shape), dhi) @ core[:, None]
        return u.reshape(b, 2, 2, 2, 2), d.reshape(b, BLOCK_PARAMS, 2, 2, 2, 2)

    def random_params(self, seed: Any = None, *, scale: float = np.pi) -> np.ndarray:
        """Uniform random angles in ``[-scale, scale]``."""
        from ..core.rng import as_generator

        return as_generator(seed).uniform(-scale, scale, self.n_params)

    def zero_params(self) -> np.ndarray:
        """Parameters of the circuit closest to the identity (every angle 0)."""
        return np.zeros(self.n_params)


# ---------------------------------------------------------------------------- families


def _line_pairs(n: int, parity: int) -> list[tuple[int, int]]:
    return [(q, q + 1) for q in range(parity, n - 1, 2)]


def brickwall_ansatz(
    n_qubits: int,
    n_layers: int,
    *,
    coupling_map: Any = None,
    first_parity: int = 0,
) -> Ansatz:
    """Brickwall layers of general two-qubit (KAK) blocks.

    Parameters
    ----------
    n_qubits : int
    n_layers : int
        Number of brick layers; a layer is one colour class of the coupling graph
        (on a line: the even bonds, then the odd bonds, alternating).
    coupling_map : qiskit CouplingMap or sequence of (int, int), optional
        Allowed qubit pairs; ``None`` is the line ``0 - 1 - ... - (n-1)``. Pairs with a
        qubit ``>= n_qubits`` are ignored. The pairs must connect all qubits.
    first_parity : {0, 1}
        On a line, whether the first layer uses the even (``0``) or odd (``1``) bonds.

    Raises
    ------
    ValueError
        If the coupling map does not connect the ``n_qubits`` qubits.
    """
    n = check_int("n_qubits", n_qubits, minimum=2)
    n_layers = check_int("n_layers", n_layers, minimum=0)
    if first_parity not in (0, 1):
        raise ValueError(f"`first_parity` must be 0 or 1, got {first_parity!r}.")
    if coupling_map is None:
        colours = [_line_pairs(n, first_parity), _line_pairs(n, 1 - first_parity)]
        colours = [c for c in colours if c]
    else:
        colours = _edge_colouring(_coupling_edges(coupling_map, n), n)
    pairs: list[tuple[int, int]] = []
    for layer in range(n_layers):
        pairs += colours[layer % len(colours)]
    return Ansatz(n, tuple(pairs), "brickwall")


def staircase_ansatz(n_qubits: int, n_layers: int) -> Ansatz:
    """Sequential layers: blocks on ``(0, 1), (1, 2), ..., (n-2, n-1)``, repeated.

    This is the circuit shape of Ran's layer-by-layer MPS encoding, where each layer
    prepares a bond-2 MPS exactly.
    """
    n = check_int("n_qubits", n_qubits, minimum=2)
    n_layers = check_int("n_layers", n_layers, minimum=0)
    return Ansatz(n, tuple([(q, q + 1) for q in range(n - 1)] * n_layers), "staircase")


def next_brick_layer(ansatz: Ansatz) -> list[tuple[int, int]]:
    """Bonds ``(q, q + 1)`` of the next brick layer on a line, central bonds first.

    The parity is the one not used by the ansatz's last layer (its blocks scheduled
    as early as possible; even bonds for an ansatz without blocks). The bonds are
    ordered by distance from the chain's centre, where the entanglement is largest,
    so a prefix of the list is the most useful partial layer.
    """
    n = ansatz.n_qubits
    parity = 0
    if ansatz.pairs:
        level = [0] * n
        levels = []
        for lo, hi in ansatz.pairs:
            level[lo] = level[hi] = max(level[lo], level[hi]) + 1
            levels.append(level[lo])
        last = max(range(len(levels)), key=lambda k: (levels[k], k))
        parity = 1 - ansatz.pairs[last][0] % 2
    return sorted(((q, q + 1) for q in range(parity, n - 1, 2)), key=lambda p: (abs(p[0] + 0.5 - (n - 1) / 2), p))


def _coupling_edges(coupling_map: Any, n: int) -> list[tuple[int, int]]:
    edges = coupling_map.get_edges() if hasattr(coupling_map, "get_edges") else coupling_map
    try:
        edges = [tuple(int(q) for q in e) for e in edges]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "`coupling_map` must be a qiskit CouplingMap or a sequence of qubit pairs, "
            f"got {type(coupling_map).__name__}."
        ) from exc
    unique = sorted({(min(a, b), max(a, b)) for a, b in edges if a != b and max(a, b) < n})
    check_connected(unique, n)
    return unique


def check_connected(edges: Sequence[tuple[int, int]], n: int) -> None:
    """``ValueError`` unless the pairs ``edges`` connect qubits ``0 .. n - 1`` (a coupling map's graph)."""
    parent = list(range(n))

    def find(q: int) -> int:
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    for a, b in edges:
        parent[find(a)] = find(b)
    roots = {find(q) for q in range(n)}
    if len(roots) > 1:
        lonely = sorted(q for q in range(n) if find(q) != find(0))
        raise ValueError(
            f"`coupling_map` must connect qubits 0..{n - 1}, but it splits them into {len(roots)} "
            f"groups (qubits {lonely[:8]} are not reachable from qubit 0)."
        )


def _edge_colouring(edges: Sequence[tuple[int, int]], n: int) -> list[list[tuple[int, int]]]:
    """Greedy proper edge colouring: each colour class is a layer of disjoint pairs."""
    colours: list[list[tuple[int, int]]] = []
    busy: list[set[int]] = []
    for a, b in edges:
        for c, used in enumerate(busy):
            if a not in used and b not in used:
                colours[c].append((a, b))
                used.update((a, b))
                break
        else:
            colours.append([(a, b)])
            busy.append({a, b})
    return colours


# ---------------------------------------------------------------------------- from gates


def zxz_angles(u: np.ndarray) -> np.ndarray:
    """Angles ``(a, b, c)`` with ``u = e^{i g} Rz(a) Rx(b) Rz(c)`` for a 2x2 unitary ``u``."""
    OneQubitEulerDecomposer = import_qiskit("qiskit.synthesis").OneQubitEulerDecomposer

    theta, phi, lam = OneQubitEulerDecomposer("ZXZ").angles(np.asarray(u, dtype=complex))
    return np.array([phi, theta, lam])


def kak_params(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """KAK form of a two-qubit unitary for the block core.

    Returns ``(core_angles, k1_lo, k1_hi, k2_lo, k2_hi)`` with
    ``u = e^{i g} kron(k1_lo, k1_hi) @ core(core_angles) @ kron(k2_lo, k2_hi)`` for the
    ``4 x 4`` matrix ``u`` in tnkit's order (``lo`` the slower index).
    """
    TwoQubitWeylDecomposition = import_qiskit("qiskit.synthesis").TwoQubitWeylDecomposition

    d = TwoQubitWeylDecomposition(np.asarray(u, dtype=complex).reshape(4, 4), fidelity=None)
    angles = np.array([np.pi / 2 - 2 * d.c, 2 * d.a - np.pi / 2, np.pi / 2 - 2 * d.b])
    return angles, d.K1l, d.K1r, d.K2l, d.K2r


def ansatz_from_gates(
    n_qubits: int, gates: Iterable[tuple[tuple[int, ...], np.ndarray]], *, family: str = "circuit"
) -> tuple[Ansatz, np.ndarray]:
    """Ansatz with one block per two-qubit gate, and the parameters reproducing the gates.

    Parameters
    ----------
    n_qubits : int
    gates : iterable of (qubits, matrix)
        In time order: ``((q,), u)`` with a ``2 x 2`` unitary or ``((q0, q1), g)`` with a
        ``4 x 4`` unitary (or ``(2, 2, 2, 2)`` tensor) in tnkit's order, ``q0`` slower.

    Returns
    -------
    ansatz : Ansatz
    params : numpy.ndarray
        Angles with which the ansatz equals the gate sequence up to a global phase.
    """
    n = check_int("n_qubits", n_qubits, minimum=1)
    first = np.zeros((n, 3))
    slots: list[tuple[np.ndarray, Any]] = [(np.eye(2, dtype=complex), first[q]) for q in range(n)]
    pairs: list[tuple[int, int]] = []
    blocks: list[np.ndarray] = []
    for qubits, g in gates:
        g = np.asarray(g, dtype=complex)
        if len(qubits) == 0:
            continue
        if len(qubits) == 1:
            q = qubits[0]
            slots[q] = (g @ slots[q][0], slots[q][1])
            continue
        q0, q1 = qubits
        g = g.reshape(2, 2, 2, 2)
        if q0 > q1:
            q0, q1, g = q1, q0, g.transpose(1, 0, 3, 2)
        core, k1lo, k1hi, k2lo, k2hi = kak_params(g.reshape(4, 4))
        for q, k2 in ((q0, k2lo), (q1, k2hi)):
            u, where = slots[q]
            where[:] = zxz_angles(k2 @ u)
        row = np.zeros(BLOCK_PARAMS)
        row[0:3] = core
        blocks.append(row)
        pairs.append((q0, q1))
        slots[q0] = (k1lo, row[3:6])
        slots[q1] = (k1hi, row[6:9])
    for u, where in slots:
        where[:] = zxz_angles(u)
    ansatz = Ansatz(n, tuple(pairs), family)
    params = np.concatenate([first.reshape(-1)] + [b for b in blocks])
    return ansatz, params


def ansatz_from_circuit(circuit: Any) -> tuple[Ansatz, np.ndarray]:
    """The two-qubit structure of ``circuit`` with its angles freed.

    Every run of two-qubit gates on one pair (with the one-qubit gates between them)
    becomes one KAK block, also when gates on other qubits are interleaved (the runs
    are found in the circuit's DAG); one-qubit gates elsewhere are absorbed into the
    ZXZ blocks.
    The returned parameters reproduce ``circuit`` exactly (up to a global phase).

    Parameters
    ----------
    circuit : qiskit.QuantumCircuit
        Bound parameters, no measurements; gates on three or more qubits are
        decomposed first.

    Returns
    -------
    ansatz : Ansatz
    params : numpy.ndarray
    """
    qiskit = import_qiskit()

    from ..mps.qiskit import fused_gates

    if not isinstance(circuit, qiskit.QuantumCircuit):
        raise TypeError(f"`circuit` must be a qiskit QuantumCircuit, got {type(circuit).__name__}.")
    if circuit.parameters:
        raise ValueError("`circuit` has unbound parameters; bind them with assign_parameters first.")
    if any(inst.operation.num_qubits > 2 for inst in circuit.data):
        circuit = qiskit.transpile(circuit, basis_gates=["u", "cx"], optimization_level=0)
    gates = list(fused_gates(circuit))
    consolidated = list(fused_gates(_consolidate_pair_runs(circuit)))
    if _two_qubit_count(consolidated) < _two_qubit_count(gates):
        gates = consolidated  # runs on a pair interleaved with gates on other qubits
    return ansatz_from_gates(circuit.num_qubits, gates, family="circuit")


def _two_qubit_count(gates: list[tuple[tuple[int, ...], Any]]) -> int:
    return sum(len(q) == 2 for q, _ in gates)


def _consolidate_pair_runs(circuit: Any) -> Any:
    """``circuit`` with every maximal run of gates on one qubit pair (in its DAG) as one unitary.

    Unlike a pass over the gate list, the DAG sees through gates on other qubits: a
    Suzuki-Trotter step that visits bond ``(1, 2)`` forwards and backwards with other
    bonds in between becomes one block, as in qiskit-addon-aqc-tensor.
    """
    PassManager = import_qiskit("qiskit.transpiler").PassManager
    passes = import_qiskit("qiskit.transpiler.passes")
    Collect2qBlocks, ConsolidateBlocks = passes.Collect2qBlocks, passes.ConsolidateBlocks

    return PassManager([Collect2qBlocks(), ConsolidateBlocks(force_consolidate=True)]).run(circuit)
