"""Weight matrices as matrix product operators: TT-SVD, sizes and entanglement.

A weight ``W`` of shape ``(out, in)`` (PyTorch's ``nn.Linear`` convention, ``y = W x``)
is reshaped into a tensor with ``n`` row factors ``out = o_0 * ... * o_{n-1}`` and
``n`` column factors ``in = i_0 * ... * i_{n-1}`` (site 0 slowest), whose legs are
paired site by site and split by sequential truncated SVD::

    W[(o_0..o_{n-1}), (i_0..i_{n-1})] = G_0[1, o_0, i_0, r_1] G_1[r_1, o_1, i_1, r_2] ... G_{n-1}[r_{n-1}, o_{n-1}, i_{n-1}, 1]

The numpy side is the engine's :meth:`tnkit.MPO.from_dense` (balanced factorisation
by :func:`tnkit.mps.mpo.balanced_factors`, truncation by
:func:`tnkit.core.linalg.truncated_svd`). Cores use the engine's MPO leg order
``(left bond, out, in, right bond)``.

The data-aware variant truncates ``W @ diag(s)`` instead of ``W``, where ``s`` is a
per-input-channel scale from calibration activations (ASVD's idea, arXiv:2312.05821):
the truncation then minimises the error on typical inputs rather than on the raw
weight; the forward pass divides the input by ``s`` (``in`` extra numbers). The last
core can then be refitted by least squares on the full input covariance
(:func:`refit_last_core`), the exact data-aware optimum for the other cores fixed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...core.contract import contract
from ...core.validate import as_array, check_int, check_max_bond
from ...mps.mpo import MPO, balanced_factors
from ...mps.mps import MPS

__all__ = [
    "MPOFactors",
    "mpo_factorize",
    "max_bonds",
    "mpo_num_params",
    "bond_for_params",
    "weight_entanglement",
    "refit_last_core",
    "mpo_to_dense",
]


@dataclass(frozen=True)
class MPOFactors:
    """Cores of a factorised weight and what the truncation cost.

    Attributes
    ----------
    cores : tuple of numpy.ndarray
        ``cores[k]`` has shape ``(r_k, o_k, i_k, r_{k+1})`` with ``r_0 = r_n = 1``.
    out_dims, in_dims : tuple of int
        Row and column factorisations (site 0 slowest).
    error : float
        Relative squared Frobenius error of the truncated matrix, measured in the
        basis that was truncated (``W diag(s)`` when an input scale was given).
    """

    cores: tuple[np.ndarray, ...]
    out_dims: tuple[int, ...]
    in_dims: tuple[int, ...]
    error: float

    @property
    def bond_dims(self) -> tuple[int, ...]:
        """Inner bond dimensions ``(r_1, ..., r_{n-1})``."""
        return tuple(c.shape[3] for c in self.cores[:-1])

    @property
    def num_params(self) -> int:
        """Number of numbers in the cores."""
        return sum(c.size for c in self.cores)


def core_dims(weight_shape: tuple[int, int], n_cores: int, out_dims, in_dims) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The output and input leg dimensions of each core, given or balanced over ``n_cores``."""
    known = out_dims if out_dims is not None else in_dims
    n_cores = len(known) if known is not None else check_int("n_cores", n_cores, minimum=1)
    rows, cols = weight_shape
    out_dims = tuple(out_dims) if out_dims is not None else balanced_factors(rows, n_cores)
    in_dims = tuple(in_dims) if in_dims is not None else balanced_factors(cols, n_cores)
    for name, dims, total in (("out_dims", out_dims, rows), ("in_dims", in_dims, cols)):
        if len(dims) != n_cores or math.prod(dims) != total:
            raise ValueError(f"`{name}` must be {n_cores} integers whose product is {total}, got {dims}.")
    return out_dims, in_dims


def max_bonds(out_dims: Sequence[int], in_dims: Sequence[int]) -> tuple[int, ...]:
    """Largest useful bond at each cut: ``min(prod left (o*i), prod right (o*i))``.

    Examples
    --------
    >>> max_bonds((24, 24), (24, 24))
    (576,)
    """
    site = [o * i for o, i in zip(out_dims, in_dims)]
    return tuple(min(math.prod(site[: b + 1]), math.prod(site[b + 1 :])) for b in range(len(site) - 1))


def mpo_num_params(out_dims: Sequence[int], in_dims: Sequence[int], max_bond: int) -> int:
    """Parameters of an MPO with every bond ``min(max_bond, max_bonds)``."""
    bonds = [1] + [min(max_bond, m) for m in max_bonds(out_dims, in_dims)] + [1]
    return sum(bonds[k] * o * i * bonds[k + 1] for k, (o, i) in enumerate(zip(out_dims, in_dims)))


def bond_for_params(out_dims: Sequence[int], in_dims: Sequence[int], params: float) -> int:
    """Largest uniform ``max_bond`` whose MPO has at most ``params`` numbers (at least 1)."""
    lo, hi = 1, max(max_bonds(out_dims, in_dims), default=1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mpo_num_params(out_dims, in_dims, mid) <= params:
            lo = mid
        else:
            hi = mid - 1
    return lo


def mpo_factorize(
    weight: np.ndarray,
    *,
    n_cores: int = 2,
    out_dims: Sequence[int] | None = None,
    in_dims: Sequence[int] | None = None,
    max_bond: int | None = None,
    cutoff: float = 0.0,
    input_scale: np.ndarray | None = None,
) -> MPOFactors:
    """TT-SVD of ``weight`` (or of ``weight * input_scale``) into MPO cores.

    Parameters
    ----------
    weight : numpy.ndarray, shape (out, in)
    n_cores : int
        Number of cores when the factorisations are not given.
    out_dims, in_dims : sequence of int, optional
        Factorisations of ``out`` and ``in``; default the most balanced ones.
    max_bond : int, optional
        Bond cap; must not exceed the largest bond the shapes admit.
    cutoff : float
        Relative discarded weight per cut (see :mod:`tnkit.core.linalg`).
    input_scale : numpy.ndarray, shape (in,), optional
        Positive per-input-channel scale ``s``: ``weight * s`` is factorised, so the
        cores represent ``W diag(s)`` and the caller divides inputs by ``s``.

    Raises
    ------
    ValueError
        If ``max_bond`` exceeds what the factorisation admits, or dims do not match.
    """
    w = as_array("weight", weight, ndim=2).astype(np.float64, copy=False)
    out_dims, in_dims = core_dims(w.shape, n_cores, out_dims, in_dims)
    max_bond = check_max_bond(max_bond)
    limit = max(max_bonds(out_dims, in_dims), default=1)
    if max_bond is not None and max_bond > limit:
        raise ValueError(
            f"`max_bond` must be at most {limit} for a {w.shape[0]}x{w.shape[1]} weight factorised as "
            f"{out_dims}x{in_dims}, got {max_bond}."
        )
    if input_scale is not None:
        s = as_array("input_scale", input_scale, ndim=1)
        if s.shape != (w.shape[1],) or not (s > 0).all():
            raise ValueError(f"`input_scale` must be {w.shape[1]} positive numbers, got shape {s.shape}.")
        w = w * s[None, :]
    if len(out_dims) == 2 and cutoff == 0.0 and max_bond is not None:
        return _two_core_factors(w, out_dims, in_dims, max_bond)
    mpo, report = MPO.from_dense(
        w, out_dims=out_dims, in_dims=in_dims, max_bond=max_bond, cutoff=cutoff, return_report=True
    )
    return MPOFactors(tuple(np.array(c) for c in mpo.tensors), out_dims, in_dims, float(report.error))


def _two_core_factors(w: np.ndarray, out_dims, in_dims, max_bond: int) -> MPOFactors:
    """Two cores at a fixed bond: one truncated SVD of the reshaped weight, through its smaller Gram matrix.

    Same cores' product and error as :meth:`MPO.from_dense` (Eckart-Young), several
    times faster on SmolLM2's matrices (see :func:`tnkit.compress.layers.lowrank.gram_truncated_factors`).
    """
    from ..layers.lowrank import gram_truncated_factors

    (o0, o1), (i0, i1) = out_dims, in_dims
    m = w.reshape(o0, o1, i0, i1).transpose(0, 2, 1, 3).reshape(o0 * i0, o1 * i1)
    bond = min(max_bond, min(m.shape))
    left, right, discarded = gram_truncated_factors(m, bond)
    cores = (left.reshape(1, o0, i0, bond), right.reshape(bond, o1, i1, 1))
    return MPOFactors(cores, tuple(out_dims), tuple(in_dims), discarded / max(float(np.sum(m * m)), 1e-300))


def mpo_to_dense(cores: Sequence[np.ndarray]) -> np.ndarray:
    """The ``(out, in)`` matrix of MPO cores (engine leg order)."""
    return MPO.from_tensors([np.asarray(c) for c in cores], validate=False).to_dense()


def weight_entanglement(
    weight: np.ndarray, *, n_cores: int = 2, out_dims: Sequence[int] | None = None, in_dims: Sequence[int] | None = None
) -> np.ndarray:
    """Von Neumann entropy (nats) of the normalised weight across each MPO bond.

    The "artificial entanglement" of CompactifAI (arXiv:2401.14109): the weight,
    reshaped as in :func:`mpo_factorize` and normalised, is a state on ``n`` sites of
    dimension ``o_k * i_k``; a low entropy means few bond dimensions carry it.
    Returns an array of length ``n - 1``.
    """
    w = as_array("weight", weight, ndim=2).astype(np.float64, copy=False)
    out_dims, in_dims = core_dims(w.shape, n_cores, out_dims, in_dims)
    if len(out_dims) == 2:  # one cut: the singular values of the reshaped weight, from its smaller Gram matrix
        from ..layers.lowrank import gram_singular_values

        (o0, o1), (i0, i1) = out_dims, in_dims
        s = gram_singular_values(w.reshape(o0, o1, i0, i1).transpose(0, 2, 1, 3).reshape(o0 * i0, o1 * i1))
        p = s * s / max(float(np.sum(s * s)), 1e-300)
        p = p[p > 1e-300]
        return np.array([float(-np.sum(p * np.log(p)))])
    mpo = MPO.from_dense(w / np.linalg.norm(w), out_dims=out_dims, in_dims=in_dims, cutoff=0.0)
    psi = MPS([t.reshape(t.shape[0], -1, t.shape[3]) for t in mpo.tensors])
    return np.atleast_1d(np.asarray(psi.entanglement_entropy(), dtype=float))


def _left_block(cores: Sequence[np.ndarray]) -> np.ndarray:
    """Contract all but the last core into ``L[o_<, i_<, r]``."""
    block = cores[0][0]  # (o, i, r)
    for core in cores[1:-1]:
        o, i = block.shape[0], block.shape[1]
        block = contract("abr,rcds->acbds", block, core).reshape(o * core.shape[1], i * core.shape[2], core.shape[3])
    return block


def refit_last_core(
    weight: np.ndarray, cores: Sequence[np.ndarray], covariance: np.ndarray, *, damping: float = 1e-6
) -> np.ndarray:
    """Least-squares last core for the data-aware error ``tr((W - M) C (W - M)^T)``.

    With cores ``0..n-2`` fixed, the MPO ``M`` is linear in the last core, and the
    output error on inputs with second moment ``C = E[x x^T]`` is a quadratic whose
    minimiser solves one linear system of size ``r * i_last``, shared by every
    output row ``o_last``.

    Parameters
    ----------
    weight : numpy.ndarray, shape (out, in)
        The original weight (in the original input basis).
    cores : sequence of numpy.ndarray
        At least two cores representing ``M`` in the original input basis.
    covariance : numpy.ndarray, shape (in, in)
        Input second moment ``E[x x^T]``.
    damping : float
        Relative ridge added to the system's diagonal (times its mean).

    Returns
    -------
    numpy.ndarray, shape (r, o_last, i_last, 1)
        The new last core.
    """
    if len(cores) < 2:
        raise ValueError(f"`cores` must hold at least two cores to refit the last, got {len(cores)}.")
    left = _left_block(cores)  # (O, I, r)
    big_o, big_i, r = left.shape
    o_n, i_n = cores[-1].shape[1], cores[-1].shape[2]
    c = covariance.reshape(big_i, i_n, big_i, i_n)
    w = weight.reshape(big_o, o_n, big_i, i_n)
    gram = contract("aIk,IxJy,aJl->kxly", left, c, left).reshape(r * i_n, r * i_n)
    rhs = contract("aIk,abJy,IxJy->kxb", left, w, c).reshape(r * i_n, o_n)
    gram[np.diag_indices_from(gram)] += damping * max(float(np.trace(gram)) / len(gram), 1e-30)
    sol = np.linalg.solve(gram, rhs).reshape(r, i_n, o_n)
    return sol.transpose(0, 2, 1)[..., None]
