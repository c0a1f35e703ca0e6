"""MPOs of sums of local terms, and the standard spin-chain Hamiltonians.

:func:`mpo_from_terms` builds the MPO of ``sum_k c_k prod_{i in S_k} O_{k,i}`` exactly
(no SVD, so no loss of accuracy however large ``||H||``) as a finite-state machine:
the states on bond ``b`` are "no operator placed yet", "term finished" and one
state per term whose support crosses the bond. Nearest-neighbour Hamiltonians thus
get bond dimension ``2 + (number of two-site terms per bond)``: 5 for Heisenberg,
3 for the transverse-field Ising chain.

Conventions (open boundaries)
-----------------------------
* ``heisenberg_mpo``: ``H = sum_i jx Sx_i Sx_{i+1} + jy Sy_i Sy_{i+1} + jz Sz_i Sz_{i+1} + h sum_i Sz_i``
* ``xxz_mpo``: the same with ``jx = jy = j``, ``jz = j * delta``
* ``tfim_mpo``: ``H = -j sum_i Z_i Z_{i+1} - h sum_i X_i``

``S`` are spin operators (``S = sigma / 2`` for spin 1/2); pass ``spin=None`` to
``heisenberg_mpo``/``xxz_mpo`` for Pauli matrices instead.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.validate import as_array, check_int, check_site
from .mpo import MatrixProductOperator

__all__ = [
    "mpo_from_terms",
    "parse_term",
    "site_dims",
    "spin_operators",
    "pauli_operators",
    "heisenberg_mpo",
    "xxz_mpo",
    "tfim_mpo",
]


def pauli_operators() -> dict[str, np.ndarray]:
    """``{"I", "X", "Y", "Z"}`` Pauli matrices."""
    return {
        "I": np.eye(2),
        "X": np.array([[0.0, 1.0], [1.0, 0.0]]),
        "Y": np.array([[0.0, -1j], [1j, 0.0]]),
        "Z": np.array([[1.0, 0.0], [0.0, -1.0]]),
    }


def spin_operators(spin: float = 0.5) -> dict[str, np.ndarray]:
    """Spin matrices ``I, Sx, Sy, Sz, Sp, Sm`` in the ``Sz``-eigenbasis, ``m = S, S-1, ..., -S``."""
    two_s = 2 * spin
    if two_s != round(two_s) or spin <= 0:
        raise ValueError(f"`spin` must be a positive multiple of 1/2, got {spin!r}.")
    d = int(round(two_s)) + 1
    m = spin - np.arange(d)
    sp = np.zeros((d, d))
    for k in range(1, d):  # <m+1|S+|m> = sqrt(S(S+1) - m(m+1)); row k-1 has m[k-1] = m[k] + 1
        sp[k - 1, k] = np.sqrt(spin * (spin + 1) - m[k] * (m[k] + 1))
    sm = sp.T
    return {
        "I": np.eye(d),
        "Sx": (sp + sm) / 2,
        "Sy": (sp - sm) / 2j,
        "Sz": np.diag(m),
        "Sp": sp,
        "Sm": sm,
    }


def mpo_from_terms(
    terms: Iterable[tuple[Any, Mapping[int, Any] | Sequence[tuple[int, Any]]]],
    phys_dims: int | Sequence[int],
    n_sites: int | None = None,
) -> MatrixProductOperator:
    """Exact MPO of ``sum_k coefficient_k * prod_i op_{k,i}``.

    Parameters
    ----------
    terms : iterable of (coefficient, ops)
        ``ops`` maps sites to ``(d_i, d_i)`` operators (a dict, or pairs
        ``(site, op)``); sites between the first and last of a term without an
        operator carry the identity.
    phys_dims : int or sequence of int
        Physical dimension of every site (int), or of each site.
    n_sites : int, optional
        Needed when ``phys_dims`` is an int.

    Examples
    --------
    >>> import numpy as np
    >>> from tnkit.mps.builders import mpo_from_terms, pauli_operators
    >>> P = pauli_operators()
    >>> h = mpo_from_terms([(1.0, {0: P["Z"], 2: P["Z"]}), (0.5, {1: P["X"]})], 2, n_sites=3)
    >>> np.allclose(h.to_dense(), np.kron(np.kron(P["Z"], np.eye(2)), P["Z"])
    ...             + 0.5 * np.kron(np.kron(np.eye(2), P["X"]), np.eye(2)))
    True
    """
    dims = site_dims(phys_dims, n_sites)
    n = len(dims)
    onsite: list[list[np.ndarray]] = [[] for _ in range(n)]
    long_terms: list[tuple[int, int, dict[int, np.ndarray]]] = []
    dtypes: list[Any] = [np.float64]
    for k, term in enumerate(terms):
        coef, ops = parse_term(k, term, dims)
        dtypes += [np.asarray(coef).dtype] + [o.dtype for o in ops.values()]
        sites = sorted(ops)
        if len(sites) == 1:
            onsite[sites[0]].append(coef * ops[sites[0]])
        else:
            first = sites[0]
            ops = dict(ops)
            ops[first] = coef * ops[first]
            long_terms.append((first, sites[-1], ops))
    dtype = np.result_type(*dtypes)
    # States on bond b (between sites b and b+1): 0 = start, 1 = done, then crossing terms.
    crossing = [[k for k, (lo, hi, _) in enumerate(long_terms) if lo <= b < hi] for b in range(n - 1)]
    tensors = []
    for i, d in enumerate(dims):
        left = ["start"] if i == 0 else ["start", "done", *crossing[i - 1]]
        right = ["done"] if i == n - 1 else ["start", "done", *crossing[i]]
        w = np.zeros((len(left), d, d, len(right)), dtype=dtype)
        lpos = {s: p for p, s in enumerate(left)}
        rpos = {s: p for p, s in enumerate(right)}
        eye = np.eye(d)
        if "start" in rpos:
            w[lpos["start"], :, :, rpos["start"]] = eye
        if "done" in lpos:
            w[lpos["done"], :, :, rpos["done"]] = eye
        for op in onsite[i]:
            w[lpos["start"], :, :, rpos["done"]] += op
        for k, (lo, hi, ops) in enumerate(long_terms):
            if i == lo:
                w[lpos["start"], :, :, rpos[k]] = ops[i]
            elif lo < i < hi:
                w[lpos[k], :, :, rpos[k]] = ops.get(i, eye)
            elif i == hi:
                w[lpos[k], :, :, rpos["done"]] = ops[i]
        tensors.append(w)
    return MatrixProductOperator.from_tensors(tensors, validate=False)


def site_dims(phys_dims: Any, n_sites: int | None) -> tuple[int, ...]:
    """Per-site physical dimensions from one integer (with ``n_sites``) or one per site.

    Raises
    ------
    ValueError, TypeError
        For a dimension below 1, or a count that does not match ``n_sites``.
    """
    if np.ndim(phys_dims) == 0:
        if n_sites is None:
            raise ValueError("`n_sites` is needed when `phys_dims` is a single integer.")
        return (check_int("phys_dims", phys_dims, minimum=1),) * check_int("n_sites", n_sites, minimum=1)
    dims = tuple(check_int(f"phys_dims[{i}]", d, minimum=1) for i, d in enumerate(phys_dims))
    if not dims or (n_sites is not None and len(dims) != n_sites):
        raise ValueError(f"`phys_dims` must give one dimension per site ({n_sites}), got {dims}.")
    return dims


def parse_term(k: int, term: Any, dims: tuple[int, ...]) -> tuple[Any, dict[int, np.ndarray]]:
    """Check term ``k`` of a Hamiltonian given as terms, as :func:`mpo_from_terms` takes them.

    Parameters
    ----------
    k : int
        Position of the term in the list (for error messages).
    term : (number, mapping or sequence of (site, operator))
        The coefficient and the one-site operators of the product term.
    dims : tuple of int
        Physical dimension of every site.

    Returns
    -------
    coef : number
    ops : dict of int to numpy.ndarray
        Site -> ``(d, d)`` operator.
    """
    try:
        coef, ops = term
    except (TypeError, ValueError):
        raise TypeError(f"`terms[{k}]` must be a pair (coefficient, ops), got {term!r}.") from None
    if not isinstance(coef, numbers.Number):
        raise TypeError(f"the coefficient of `terms[{k}]` must be a number, got {coef!r}.")
    if not np.isfinite(coef):
        raise ValueError(f"the coefficient of `terms[{k}]` must be finite, got {coef!r}.")
    pairs = ops.items() if isinstance(ops, Mapping) else ops
    parsed: dict[int, np.ndarray] = {}
    for site, op in pairs:
        i = check_site(f"terms[{k}] site", site, len(dims))
        if i in parsed:
            raise ValueError(f"`terms[{k}]` names site {i} twice.")
        op = as_array(f"terms[{k}] operator on site {i}", op, ndim=2)
        if op.shape != (dims[i], dims[i]):
            raise ValueError(
                f"`terms[{k}]`: the operator on site {i} must have shape ({dims[i]}, {dims[i]}), got {op.shape}."
            )
        parsed[i] = op
    if not parsed:
        raise ValueError(f"`terms[{k}]` acts on no site.")
    return coef, parsed


def _two_site_chain_terms(n_sites: int, couplings: Sequence[tuple[float, np.ndarray, np.ndarray]],
                          fields: Sequence[tuple[float, np.ndarray]]) -> list:
    terms = []
    for i in range(n_sites - 1):
        terms += [(c, {i: a, i + 1: b}) for c, a, b in couplings if c != 0]
    for i in range(n_sites):
        terms += [(c, {i: op}) for c, op in fields if c != 0]
    return terms


def heisenberg_mpo(
    n_sites: int, *, j: float | Sequence[float] = 1.0, h: float = 0.0, spin: float | None = 0.5
) -> MatrixProductOperator:
    """Open Heisenberg chain ``sum jx SxSx + jy SySy + jz SzSz + h sum Sz`` (real dtype).

    ``j`` is one coupling or ``(jx, jy, jz)``; ``spin=None`` uses Pauli matrices.
    """
    n_sites = check_int("n_sites", n_sites, minimum=1)
    jx, jy, jz = (j, j, j) if np.ndim(j) == 0 else tuple(j)
    if spin is None:
        p = pauli_operators()
        x, iy, z = p["X"], np.array([[0.0, 1.0], [-1.0, 0.0]]), p["Z"]  # iy = i * Y
    else:
        s = spin_operators(spin)
        x, iy, z = s["Sx"], (s["Sp"] - s["Sm"]) / 2, s["Sz"]  # iy = i * Sy, real
    # Sy (x) Sy = -(i Sy) (x) (i Sy), which keeps every tensor real.
    couplings = [(jx, x, x), (-jy, iy, iy), (jz, z, z)]
    return mpo_from_terms(_two_site_chain_terms(n_sites, couplings, [(h, z)]), x.shape[0], n_sites)


def xxz_mpo(
    n_sites: int, *, delta: float, j: float = 1.0, h: float = 0.0, spin: float | None = 0.5
) -> MatrixProductOperator:
    """Open XXZ chain ``sum j (SxSx + SySy + delta SzSz) + h sum Sz``."""
    return heisenberg_mpo(n_sites, j=(j, j, j * delta), h=h, spin=spin)


def tfim_mpo(n_sites: int, *, j: float = 1.0, h: float = 1.0) -> MatrixProductOperator:
    """Open transverse-field Ising chain ``-j sum Z_i Z_{i+1} - h sum X_i`` (Pauli matrices)."""
    n_sites = check_int("n_sites", n_sites, minimum=1)
    p = pauli_operators()
    return mpo_from_terms(_two_site_chain_terms(n_sites, [(-j, p["Z"], p["Z"])], [(-h, p["X"])]), 2, n_sites)
