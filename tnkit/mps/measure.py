"""Measurements on a matrix product state: expectation values, correlations,
reduced density matrices, entanglement and mutual information.

All values are for the normalised state ``|psi> / ||psi||``. The functions move the
orthogonality centre of the MPS they are given (a change of gauge, not of the state)
so that consecutive measurements reuse the canonical form. A state whose norm no
single tensor can hold (a long chain of unnormalised tensors, say ``1e1000``) is
measured on a normalised copy instead, and the MPS given is left as it was.

Conventions: a one-site operator is a ``(d, d)`` matrix ``O[out, in]``; a two-site
operator on sites ``(i, j)`` is a ``(d_i d_j, d_i d_j)`` matrix (or a
``(d_i, d_j, d_i, d_j)`` tensor) with site ``i`` the slower index. The reduced
density matrix ``rho[s, s']`` is ``sum psi[..s..] conj(psi[..s'..])``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.validate import as_array, check_site
from .canonical import centred_state, orthogonalize_left, unit_peak

if TYPE_CHECKING:  # pragma: no cover
    from .mps import MatrixProductState

__all__ = [
    "local_expectation",
    "correlation",
    "correlation_matrix",
    "reduced_density_matrix",
    "schmidt_values",
    "entanglement_entropy",
    "entropy_of_probabilities",
    "mutual_information",
    "mutual_information_matrix",
]

_TRANSFER = "xy,xsa,ysb->ab"  # E(bra, ket), conj(A), A -> E'


def _one_site_operator(name: str, op: object, d: int) -> np.ndarray:
    op = as_array(name, op)
    if op.shape != (d, d):
        raise ValueError(f"`{name}` must be a ({d}, {d}) matrix for this site, got shape {op.shape}.")
    return op


def _open_site(a: np.ndarray, op: np.ndarray) -> np.ndarray:
    """``E[b, c] = sum conj(A[a,t,b]) op[t,s] A[a,s,c]``: a site closed with an operator."""
    return contract("atb,ts,asc->bc", a.conj(), op, a)


def local_expectation(mps: MatrixProductState, op: object, sites: int | tuple[int, int]) -> complex | float:
    """``<O>`` of a one-site operator at ``sites`` or a two-site operator at a pair of sites.

    Two-site operators on non-adjacent sites are split by an operator Schmidt
    decomposition into a sum of products and measured as correlations.
    """
    n = mps.n_sites
    if np.ndim(sites) == 0:
        i = check_site("sites", sites, n)
        d = mps.phys_dims[i]
        op = _one_site_operator("op", op, d)
        a = unit_peak(centred_state(mps, i).tensors[i])
        return _real_if_close(backend.as_host_scalar(contract("atb,ts,asb->", a.conj(), op, a)) / _norm2(a))
    i, j = (check_site("sites", s, n) for s in sites)
    if i == j:
        raise ValueError(f"`sites` must be two different sites, got {sites}.")
    if i > j:
        i, j = j, i
        op = _swap_two_site_operator(op, mps.phys_dims[j], mps.phys_dims[i])
    di, dj = mps.phys_dims[i], mps.phys_dims[j]
    op = as_array("op", op)
    if op.shape not in {(di * dj, di * dj), (di, dj, di, dj)}:
        raise ValueError(
            f"`op` must be a ({di * dj}, {di * dj}) matrix or a ({di}, {dj}, {di}, {dj}) tensor "
            f"for sites {sites}, got shape {op.shape}."
        )
    left_ops, right_ops = _operator_schmidt(op.reshape(di, dj, di, dj))
    return _real_if_close(sum(correlation(mps, a, b, i, j) for a, b in zip(left_ops, right_ops)))


def _swap_two_site_operator(op: object, d_first: int, d_second: int) -> np.ndarray:
    op = as_array("op", op)
    return op.reshape(d_first, d_second, d_first, d_second).transpose(1, 0, 3, 2)


def _operator_schmidt(op4: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Write ``op[t,u,s,v]`` as ``sum_k A_k[t,s] B_k[u,v]``."""
    di, dj = op4.shape[0], op4.shape[1]
    m = op4.transpose(0, 2, 1, 3).reshape(di * di, dj * dj)
    u, s, vh = np.linalg.svd(m, full_matrices=False)
    keep = s > s[0] * 1e-15 if s[0] > 0 else s > 0
    return (
        [(u[:, k] * s[k]).reshape(di, di) for k in np.flatnonzero(keep)],
        [vh[k].reshape(dj, dj) for k in np.flatnonzero(keep)],
    )


def correlation(
    mps: MatrixProductState, op_a: object, op_b: object, i: int, j: int, *, connected: bool = False
) -> complex | float:
    """``<A_i B_j>`` (minus ``<A_i><B_j>`` when ``connected``)."""
    n = mps.n_sites
    i, j = check_site("i", i, n), check_site("j", j, n)
    op_a = _one_site_operator("op_a", op_a, mps.phys_dims[i])
    op_b = _one_site_operator("op_b", op_b, mps.phys_dims[j])
    if i == j:
        value = local_expectation(mps, op_a @ op_b, i)
    else:
        if i > j:
            i, j, op_a, op_b = j, i, op_b, op_a
        t = list(centred_state(mps, i).tensors)
        t[i] = unit_peak(t[i])
        env = _open_site(t[i], op_a)
        for k in range(i + 1, j):
            env = contract(_TRANSFER, env, t[k].conj(), t[k])
        value = _closed_sum(env, _closing(t[j], op_b)) / _norm2(t[i])
    if connected:
        value = value - local_expectation(mps, op_a, i) * local_expectation(mps, op_b, j)
    return _real_if_close(value)


def _closed_sum(env: np.ndarray, closing: np.ndarray) -> complex | float:
    """``sum env * closing`` as a Python number (read back from a device)."""
    if isinstance(env, np.ndarray):
        return np.sum(env * closing)
    return backend.as_host_scalar((env * closing).sum())


def _closing(a: np.ndarray, op: np.ndarray) -> np.ndarray:
    """``C[x, y] = sum conj(A[x,t,a]) op[t,s] A[y,s,a]``: the last site of a correlator."""
    return contract("xta,ts,ysa->xy", a.conj(), op, a)


def correlation_matrix(
    mps: MatrixProductState, op_a: object, op_b: object, *, connected: bool = False
) -> np.ndarray:
    """Matrix ``C[i, j] = <A_i B_j>`` over all sites, in ``O(N^2)`` transfer steps.

    Requires the same physical dimension on every site.
    """
    n = mps.n_sites
    d = _uniform_phys_dim(mps)
    op_a = _one_site_operator("op_a", op_a, d)
    op_b = _one_site_operator("op_b", op_b, d)
    dtype = np.result_type(backend.numpy_dtype(mps.dtype), op_a.dtype, op_b.dtype)
    out = np.empty((n, n), dtype=dtype)
    mps = centred_state(mps, 0)
    for i in range(n):
        t = list(mps.canonicalize_(i).tensors)
        t[i] = unit_peak(t[i])
        norm2 = _norm2(t[i])
        out[i, i] = backend.as_host_scalar(contract("atb,ts,asb->", t[i].conj(), op_a @ op_b, t[i])) / norm2
        env_a, env_b = _open_site(t[i], op_a), _open_site(t[i], op_b)
        for j in range(i + 1, n):
            out[i, j] = _closed_sum(env_a, _closing(t[j], op_b)) / norm2
            out[j, i] = _closed_sum(env_b, _closing(t[j], op_a)) / norm2
            if j < n - 1:
                env_a = contract(_TRANSFER, env_a, t[j].conj(), t[j])
                env_b = contract(_TRANSFER, env_b, t[j].conj(), t[j])
    if connected:
        mean_a = np.array([local_expectation(mps, op_a, i) for i in range(n)])
        mean_b = np.array([local_expectation(mps, op_b, i) for i in range(n)])
        out = out - np.outer(mean_a, mean_b)
    return np.real_if_close(out, tol=1000)


def reduced_density_matrix(mps: MatrixProductState, sites: int | tuple[int, int]) -> np.ndarray:
    """Reduced density matrix of one site ``(d, d)`` or of two sites ``(d_i d_j, d_i d_j)``.

    For two sites the first listed site is the slower index of the result. A
    numpy array, whatever the array library of the state.
    """
    n = mps.n_sites
    if np.ndim(sites) == 0:
        i = check_site("sites", sites, n)
        a = unit_peak(centred_state(mps, i).tensors[i])
        rho = backend.to_numpy(contract("atb,asb->ts", a, a.conj()))
        return rho / np.trace(rho).real
    i, j = (check_site("sites", s, n) for s in sites)
    if i == j:
        raise ValueError(f"`sites` must be two different sites, got {sites}.")
    swap = i > j
    if swap:
        i, j = j, i
    t = list(centred_state(mps, i).tensors)
    t[i] = unit_peak(t[i])
    env = contract("atb,asc->tsbc", t[i], t[i].conj())  # (t, s, ket bond, bra bond)
    for k in range(i + 1, j):
        env = contract("tsxy,xua,yub->tsab", env, t[k], t[k].conj())
    rho4 = contract("tsxy,xua,yva->tusv", env, t[j], t[j].conj())
    if swap:
        rho4 = backend.permute(rho4, (1, 0, 3, 2))
    d1, d2 = rho4.shape[0], rho4.shape[1]
    rho = backend.to_numpy(rho4.reshape(d1 * d2, d1 * d2))
    return rho / np.trace(rho).real


def schmidt_values(mps: MatrixProductState, bond: int | None = None) -> np.ndarray | list[np.ndarray]:
    """Normalised Schmidt coefficients across ``bond`` (between sites ``bond`` and ``bond+1``).

    With ``bond=None``, a list over every bond from one SVD sweep. numpy arrays,
    whatever the array library of the state.
    """
    n = mps.n_sites
    if bond is not None:
        b = check_site("bond", bond, n - 1, what="bond") if n > 1 else _no_bonds()
        a = unit_peak(centred_state(mps, b).tensors[b])
        s = _singular_values(a.reshape(-1, a.shape[2]))
        return s / np.linalg.norm(s)
    if n == 1:
        return []
    # From the right-canonical form, a QR sweep to the right: at bond i the R factor
    # carries the whole left-right coupling, so its singular values (no vectors
    # needed) are the Schmidt values; cheaper than SVDs with vectors at every site.
    mps = centred_state(mps, 0)
    tensors = list(mps.tensors)
    tensors[0] = unit_peak(tensors[0])  # the norm travels with R: keep it near 1
    svals = [_singular_values(orthogonalize_left(tensors, i)) for i in range(n - 1)]
    return [s / np.linalg.norm(s) for s in svals]


def _singular_values(m: np.ndarray) -> np.ndarray:
    """Singular values of a matrix of any array library, as a numpy array."""
    if isinstance(m, np.ndarray):
        return np.linalg.svd(m, compute_uv=False)
    return backend.to_numpy(backend.namespace(m).linalg.svdvals(m))


def _no_bonds() -> int:
    raise IndexError("`bond` is out of range: a one-site MPS has no bonds.")


def entropy_of_probabilities(p: np.ndarray, alpha: float = 1.0) -> float:
    """Von Neumann (``alpha=1``) or Rényi-``alpha`` entropy, in nats, of probabilities ``p``."""
    p = p[p > 0]
    if alpha == 1:
        return float(-np.sum(p * np.log(p)))
    if alpha == np.inf:
        return float(-np.log(p.max()))
    return float(np.log(np.sum(p**alpha)) / (1.0 - alpha))


def entanglement_entropy(
    mps: MatrixProductState, bond: int | None = None, *, alpha: float = 1.0
) -> float | np.ndarray:
    """Entanglement entropy (nats) across ``bond``, or an array over every bond.

    ``alpha=1`` is the von Neumann entropy, other values the Rényi entropies.
    """
    if not np.isscalar(alpha) or not alpha >= 0:
        raise ValueError(f"`alpha` must be a non-negative number, got {alpha!r}.")
    if bond is not None:
        return entropy_of_probabilities(schmidt_values(mps, bond) ** 2, alpha)
    return np.array([entropy_of_probabilities(s**2, alpha) for s in schmidt_values(mps)])


def log_base(base: object) -> float:
    """``log(base)``, the divisor that turns nats into units of ``base`` (``2``: bits).

    ``base`` must be ``None`` (nats: returns 1) or a finite number > 0 other than 1.
    """
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, (int, float, np.integer, np.floating)):
        raise TypeError(f"`base` must be a real number (math.e for nats, 2 for bits), got {base!r}.")
    if not (np.isfinite(base) and base > 0 and base != 1):
        raise ValueError(
            f"`base` must be a finite number > 0 other than 1 (math.e for nats, 2 for bits), got {base!r}."
        )
    return math.log(base)


def _rdm_entropy(rho: np.ndarray) -> float:
    return entropy_of_probabilities(np.clip(np.linalg.eigvalsh(rho), 0, None))


def mutual_information(mps: MatrixProductState, i: int, j: int) -> float:
    """``I(i:j) = S(rho_i) + S(rho_j) - S(rho_ij)`` in nats (von Neumann entropies)."""
    return (
        _rdm_entropy(reduced_density_matrix(mps, i))
        + _rdm_entropy(reduced_density_matrix(mps, j))
        - _rdm_entropy(reduced_density_matrix(mps, (i, j)))
    )


def mutual_information_matrix(mps: MatrixProductState) -> np.ndarray:
    """Symmetric matrix of ``I(i:j)`` over all pairs, zero on the diagonal."""
    n = mps.n_sites
    mps = centred_state(mps, 0)
    single = np.array([_rdm_entropy(reduced_density_matrix(mps, i)) for i in range(n)])
    out = np.zeros((n, n))
    for i in range(n):
        t = list(mps.canonicalize_(i).tensors)
        t[i] = unit_peak(t[i])
        env = contract("atb,asc->tsbc", t[i], t[i].conj())
        for j in range(i + 1, n):
            rho4 = contract("tsxy,xua,yva->tusv", env, t[j], t[j].conj())
            d1, d2 = rho4.shape[0], rho4.shape[1]
            rho = backend.to_numpy(rho4.reshape(d1 * d2, d1 * d2))
            out[i, j] = out[j, i] = single[i] + single[j] - _rdm_entropy(rho / np.trace(rho).real)
            if j < n - 1:
                env = contract("tsxy,xua,yub->tsab", env, t[j], t[j].conj())
    return out


def _uniform_phys_dim(mps: MatrixProductState) -> int:
    dims = set(mps.phys_dims)
    if len(dims) != 1:
        raise ValueError(f"this needs the same physical dimension on every site, got {sorted(dims)}.")
    return dims.pop()


_norm2 = backend.norm2


def _real_if_close(value: complex | float) -> complex | float:
    value = backend.as_host_scalar(value)
    if isinstance(value, complex) and abs(value.imag) <= 1e-13 * max(abs(value.real), 1.0):
        return value.real
    return value
