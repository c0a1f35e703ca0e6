"""Time evolution of MPS under nearest-neighbour Hamiltonians by TEBD (Trotter-Suzuki).

Hamiltonian
-----------
``H = sum_b h_b`` with ``h_b`` acting on sites ``(b, b+1)``, given as one Hermitian
matrix per bond, shape ``(d_b d_{b+1}, d_b d_{b+1})`` or ``(d_b, d_{b+1}, d_b, d_{b+1})``
(rows: output indices ``(t_b, t_{b+1})``, site ``b`` the slower; columns: input
indices). :func:`nearest_neighbour_terms` builds them from the ``(coefficient, ops)``
terms that :func:`~tnkit.mps.builders.mpo_from_terms` takes, sharing each one-site
term between the bonds around its site.

Splitting
---------
The bonds split into two layers of commuting gates, ``A = sum_{b even} h_b`` and
``B = sum_{b odd} h_b``. One step of the second-order (Strang) splitting is
``S2(dt) = exp(-i A dt/2) exp(-i B dt) exp(-i A dt/2)`` with error ``O(dt^3)`` per
step; the fourth-order Suzuki step is
``S4(dt) = S2(p dt)^2 S2((1 - 4p) dt) S2(p dt)^2``, ``p = 1 / (4 - 4^(1/3))``, with error
``O(dt^5)``. Adjacent half layers inside a step are merged.

Each layer is applied in one sweep: the orthogonality centre moves along the chain
(QR), each gate acts on ``theta = A[b] A[b+1]``::

      t_b  t_{b+1}
       |     |
      [  U_b  ]
       |     |
    --A[b]--A[b+1]--      ->  truncated SVD  ->  --A[b]--A[b+1]--

and the truncated SVD (``max_bond``, ``cutoff``) splits it back, keeping the norm.
Consecutive layers sweep in opposite directions.

References
----------
G. Vidal, Phys. Rev. Lett. 93, 040502 (2004); M. Suzuki, Phys. Lett. A 146, 319 (1990).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.backend import astype, like, norm, permute, tensordot, to_numpy
from ..core.threads import GEMM_THREAD_BOND, blas_threads
from ..core.validate import as_array, check_option
from ..mps.builders import parse_term, site_dims
from ..mps.canonical import move_center
from ..mps.mps import MatrixProductState
from ._common import check_has_values, split_two_site, working_dtype
from .tdvp import EvolutionResult, check_evolution_options, check_time_steps, run_steps

__all__ = ["tebd", "nearest_neighbour_terms", "TEBD_ORDERS"]

_P4 = 1.0 / (4.0 - 4.0 ** (1.0 / 3.0))


def _second_order(tau: float) -> list[tuple[int, float]]:
    return [(0, tau / 2), (1, tau), (0, tau / 2)]


def _fourth_order(tau: float) -> list[tuple[int, float]]:
    return [part for p in (_P4, _P4, 1 - 4 * _P4, _P4, _P4) for part in _second_order(p * tau)]


#: Layer sequence of one step for each order: ``(layer, fraction of dt)``, layer 0 = even bonds.
TEBD_ORDERS: dict[int, Callable[[float], list[tuple[int, float]]]] = {2: _second_order, 4: _fourth_order}


def _merged(sequence: list[tuple[int, float]]) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    for layer, tau in sequence:
        if out and out[-1][0] == layer:
            out[-1] = (layer, out[-1][1] + tau)
        else:
            out.append((layer, tau))
    return out


def nearest_neighbour_terms(
    terms: Iterable[tuple[Any, Mapping[int, Any] | Sequence[tuple[int, Any]]]],
    phys_dims: int | Sequence[int],
    n_sites: int | None = None,
) -> list[np.ndarray]:
    """Bond Hamiltonians ``h_b`` (``b = 0 .. N-2``) of a sum of one- and two-site terms.

    Parameters
    ----------
    terms : iterable of (coefficient, ops)
        As for :func:`~tnkit.mps.builders.mpo_from_terms`; each term acts on one
        site or on two neighbouring sites.
    phys_dims : int or sequence of int
    n_sites : int, optional
        Needed when ``phys_dims`` is an int.

    Returns
    -------
    list of numpy.ndarray
        ``h_b`` of shape ``(d_b d_{b+1}, d_b d_{b+1})``, so that ``H = sum_b h_b``. A
        one-site term on site ``i`` is split equally between bonds ``i - 1`` and ``i``
        (wholly on the one bond at a chain end).

    Examples
    --------
    >>> from tnkit.mps.builders import pauli_operators
    >>> P = pauli_operators()
    >>> hs = nearest_neighbour_terms([(-1.0, {0: P["Z"], 1: P["Z"]}), (-0.5, {1: P["X"]})], 2, n_sites=3)
    >>> [h.shape for h in hs]
    [(4, 4), (4, 4)]
    """
    dims = site_dims(phys_dims, n_sites)
    n = len(dims)
    if n < 2:
        raise ValueError(f"nearest-neighbour terms need at least 2 sites, got {n}.")
    out: list[np.ndarray] = [np.zeros((dims[b] * dims[b + 1],) * 2) for b in range(n - 1)]
    for k, term in enumerate(terms):
        coef, ops = parse_term(k, term, dims)
        sites = sorted(ops)
        if len(sites) == 1:
            i = sites[0]
            bonds = [b for b in (i - 1, i) if 0 <= b < n - 1]
            for b in bonds:
                left, right = (ops[i], np.eye(dims[b + 1])) if b == i else (np.eye(dims[b]), ops[i])
                out[b] = out[b] + (coef / len(bonds)) * np.kron(left, right)
        elif len(sites) == 2 and sites[1] == sites[0] + 1:
            b = sites[0]
            out[b] = out[b] + coef * np.kron(ops[b], ops[b + 1])
        else:
            raise ValueError(f"`terms[{k}]` acts on sites {sites}: TEBD needs one site or two neighbours.")
    return out


def _check_bond_terms(bond_terms: Sequence[Any], dims: tuple[int, ...]) -> list[np.ndarray]:
    n = len(dims)
    if not isinstance(bond_terms, Sequence) or len(bond_terms) != n - 1:
        got = len(bond_terms) if isinstance(bond_terms, Sequence) else type(bond_terms).__name__
        raise ValueError(f"`bond_terms` must hold one matrix per bond ({n - 1} for {n} sites), got {got}.")
    out = []
    for b, h in enumerate(bond_terms):
        size = dims[b] * dims[b + 1]
        h = to_numpy(as_array(f"bond_terms[{b}]", h))  # small matrices: exponentiated on the host
        if h.shape == (dims[b], dims[b + 1], dims[b], dims[b + 1]):
            h = h.reshape(size, size)
        if h.shape != (size, size):
            raise ValueError(
                f"`bond_terms[{b}]` must have shape ({size}, {size}) for sites of dimensions "
                f"{dims[b]} and {dims[b + 1]}, got {h.shape}."
            )
        if not np.allclose(h, h.conj().T, atol=1e-12 * max(1.0, float(np.abs(h).max()))):
            raise ValueError(f"`bond_terms[{b}]` must be Hermitian.")
        out.append(h)
    return out


def tebd(
    psi: MatrixProductState,
    bond_terms: Sequence[Any],
    *,
    dt: float | Sequence[float],
    n_steps: int | None = None,
    order: int = 2,
    max_bond: int | None = 64,
    cutoff: float = 1e-12,
    imaginary: bool = False,
    callback: Callable[[float, MatrixProductState], Any] | None = None,
    record_every: int = 1,
    progress: bool | None = None,
) -> EvolutionResult:
    """Evolve ``psi`` by ``exp(-i H t)`` (or ``exp(-H t)``), ``H = sum_b h_b``, with TEBD.

    Parameters
    ----------
    psi : MatrixProductState
        Initial state (not modified). The run goes where its tensors are (numpy, or
        torch on the CPU or a GPU).
    bond_terms : sequence of array_like
        ``h_b`` for ``b = 0 .. N-2`` (see the module docstring, and
        :func:`nearest_neighbour_terms`); any array library: the gates are computed on
        the host and placed with ``psi``.
    dt : float or sequence of float
        Time step (> 0), or the schedule of steps (each > 0; the final time is their sum).
    n_steps : int, optional
        Number of steps of a single ``dt`` (required then); the final time is
        ``n_steps * dt``. With a schedule, omit it (or give ``len(dt)``).
    order : {2, 4}
        Trotter-Suzuki order: the error at fixed final time scales as ``dt**order``.
    max_bond : int or None
        Bond cap.
    cutoff : float
        Largest relative discarded weight per gate.
    imaginary : bool
        Imaginary-time evolution, renormalised after each step.
    callback : callable, optional
        ``callback(t, state) -> value`` at ``t = 0`` and every ``record_every`` steps.
    record_every : int
        Steps between callback calls.
    progress : bool, optional
        Show a tqdm bar (default: when stderr is a terminal).

    Returns
    -------
    EvolutionResult
    """
    if not isinstance(psi, MatrixProductState):
        raise TypeError(f"`psi` must be a MatrixProductState, got {type(psi).__name__}.")
    check_has_values("psi", psi)
    if psi.n_sites < 2:
        raise ValueError(f"`psi` must have at least 2 sites for TEBD, got {psi.n_sites}.")
    hs = _check_bond_terms(bond_terms, psi.phys_dims)
    steps = check_time_steps(dt, n_steps)
    max_bond, cutoff, record_every = check_evolution_options(max_bond, cutoff, record_every, callback)
    check_option("order", order, TEBD_ORDERS)
    dtype = working_dtype(psi.backend, psi.dtype, *(h.dtype for h in hs), complex_=not imaginary)
    with blas_threads(max(max_bond or psi.max_bond_dim, psi.max_bond_dim), GEMM_THREAD_BOND):
        return _evolve(
            psi, hs, steps, order, max_bond, cutoff, imaginary, callback, record_every, progress, dtype
        )


class _Gates:
    """``exp(-i tau h_b)`` (or ``exp(-tau h_b)``) for every bond, cached by ``tau``.

    The gates are computed on the host and placed once in ``reference``'s library and device.
    """

    def __init__(
        self, hs: list[np.ndarray], dims: tuple[int, ...], imaginary: bool, dtype: np.dtype, reference: Any
    ) -> None:
        self.eig = [np.linalg.eigh(h) for h in hs]
        self.dims, self.imaginary, self.dtype, self.reference = dims, imaginary, dtype, reference
        self.cache: dict[tuple[int, float], np.ndarray] = {}

    def __call__(self, b: int, tau: float) -> np.ndarray:
        key = (b, tau)
        if key not in self.cache:
            e, v = self.eig[b]
            phase = np.exp(-tau * e) if self.imaginary else np.exp(-1j * tau * e)
            u = (v * phase) @ v.conj().T
            d1, d2 = self.dims[b], self.dims[b + 1]
            self.cache[key] = like(u.reshape(d1, d2, d1, d2), self.reference, dtype=self.dtype)
        return self.cache[key]


def _apply_layer(
    tensors: list[np.ndarray],
    center: int,
    bonds: list[int],
    gates: _Gates,
    tau: float,
    max_bond: int | None,
    cutoff: float,
) -> tuple[int, float]:
    """Apply the gates ``exp(-i tau h_b)`` of ``bonds`` (in this order), moving the centre.

    Returns the new centre and the summed relative discarded weight.
    """
    discarded = 0.0
    to_right = len(bonds) < 2 or bonds[0] < bonds[1]
    for b in bonds:
        target = b if to_right else b + 1
        move_center(tensors, *(center, center + 1), target)
        theta = tensordot(tensors[b], tensors[b + 1], (2, 0))  # (a, s1, s2, c)
        theta = permute(tensordot(gates(b, tau), theta, ([2, 3], [1, 2])), (2, 0, 1, 3))
        tensors[b], tensors[b + 1], err = split_two_site(
            theta, max_bond=max_bond, cutoff=cutoff, center_right=to_right
        )
        discarded += err
        center = b + 1 if to_right else b
    return center, discarded


def _evolve(
    psi, hs, steps, order, max_bond, cutoff, imaginary, callback, record_every, progress, dtype
) -> EvolutionResult:
    psi = psi.canonicalize(0)
    norm0 = psi.norm()
    tensors = [astype(a, dtype) for a in psi.tensors]
    n = len(tensors)
    gates = _Gates(hs, psi.phys_dims, imaginary, dtype, tensors[0])
    layers = [list(range(0, n - 1, 2)), list(range(1, n - 1, 2))]
    fractions = _merged(TEBD_ORDERS[order](1.0))
    center, to_right = 0, True  # consecutive layers sweep in opposite directions

    def step(dt: float) -> tuple[float, int]:
        nonlocal center, to_right
        discarded = 0.0
        for layer, fraction in fractions:
            tau = fraction * dt
            if not layers[layer]:
                continue
            order_bonds = layers[layer] if to_right else layers[layer][::-1]
            center, err = _apply_layer(tensors, center, order_bonds, gates, tau, max_bond, cutoff)
            discarded += err
            to_right = not to_right
        if imaginary:
            tensors[center] = tensors[center] * (norm0 / norm(tensors[center]))
        return discarded, center

    return run_steps(
        step,
        tensors,
        steps=steps,
        callback=callback,
        record_every=record_every,
        progress=progress,
        desc="TEBD steps",
    )
