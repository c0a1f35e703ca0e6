"""Truncation of matrix product states: SVD sweeps, density matrices, randomized sketches, fitting.

:meth:`tnkit.MatrixProductState.compress` offers four methods, each built on a
function here: ``"svd"`` (:func:`svd_compress`), ``"dm"``
(:func:`density_matrix_truncation`), ``"src"`` (:func:`randomized_truncation`) and
``"fit"`` (:func:`fit_compress`, started from the ``"svd"`` result).

SVD compression
---------------
Bring the chain to canonical form at one end, then sweep to the other end with a
truncated SVD at every bond (see :mod:`tnkit.core.linalg` for the rule). Each
truncation is an orthogonal projection and the projections are nested, so the
errors of the bonds are mutually orthogonal and

``||psi - psi_trunc||**2 / ||psi||**2 == sum(discarded weights) / ||psi||**2``

exactly; this is the ``error`` of the :class:`TruncationReport`, and the fidelity
``|<psi|psi_trunc>|**2 / (<psi|psi> <psi_trunc|psi_trunc>)`` equals ``1 - error``.
The result is not renormalised: it is the projection of the input.

Variational fitting
-------------------
Two-site sweeps maximise the overlap of a bond-limited state ``x`` with a target
``W |t>`` (``W`` an optional MPO), keeping left and right environments cached so
that one sweep costs ``O(N)`` local contractions. The local optimum at sites
``(i, i+1)`` is the projection ``theta`` of the target onto the local subspace;
it is split by truncated SVD and the centre moves on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import peak_magnitude, qr, truncated_svd, truncation_rank
from .canonical import checked_receiver, move_center, unit_peak

__all__ = [
    "TruncationReport",
    "svd_sweep",
    "sweep_from_nearer_end",
    "svd_compress",
    "fit_compress",
    "density_matrix_truncation",
    "DM_WEIGHT_FLOOR",
    "identity_mpo_tensors",
    "randomized_truncation",
]


@dataclass(frozen=True)
class TruncationReport:
    """What a truncating operation discarded.

    Attributes
    ----------
    method : str
        The algorithm (``"svd"``, ``"fit"``, ``"zipup"``, ...).
    error : float
        Relative squared 2-norm error ``||psi - psi_trunc||**2 / ||psi||**2``. Exact
        for ``"svd"`` (the sum of ``discarded``); for the other methods the value
        of ``1 - fidelity`` where the fidelity was computed, else the sum of the
        discarded weights of the last sweep (an estimate).
    discarded : tuple of float
        Relative discarded weight at each bond ``i`` (between sites ``i`` and ``i+1``).
    bond_dims : tuple of int
        Bond dimensions of the result.
    fidelity : float or None
        ``|<psi|psi_trunc>|**2 / (<psi|psi><psi_trunc|psi_trunc>)`` when known.
    sweeps : int
        Number of sweeps performed (0 for one-pass methods).
    converged : bool
        For iterative methods, whether the tolerance was met before the sweep limit
        (``True`` for one-pass methods).
    """

    method: str
    error: float
    discarded: tuple[float, ...]
    bond_dims: tuple[int, ...]
    fidelity: float | None = None
    sweeps: int = 0
    converged: bool = True

    def __float__(self) -> float:
        """The ``error``, so a report can be used where a number is expected."""
        return self.error

    def __str__(self) -> str:
        fid = "" if self.fidelity is None else f", fidelity={self.fidelity:.12f}"
        return (
            f"TruncationReport(method={self.method!r}, error={self.error:.3e}{fid}, "
            f"max bond={max(self.bond_dims, default=1)}, sweeps={self.sweeps})"
        )


def svd_sweep(
    tensors: list[np.ndarray],
    direction: str,
    *,
    max_bond: int | None = None,
    cutoff: float = 0.0,
) -> tuple[list[float], list[np.ndarray]]:
    """Sweep a truncated SVD over every bond, moving the orthogonality centre across.

    Parameters
    ----------
    tensors : list of numpy.ndarray
        Site tensors ``(D_left, d, D_right)`` in canonical form with centre at the
        start of the sweep (site 0 for ``"right"``, site N-1 for ``"left"``);
        entries are replaced.
    direction : {"right", "left"}
        ``"right"`` sweeps from site 0 to N-1, leaving the chain left-canonical with
        centre N-1; ``"left"`` the reverse.

    Returns
    -------
    discarded : list of float
        Absolute discarded weight at each bond, indexed by bond.
    singular_values : list of numpy.ndarray
        Kept singular values at each bond (the Schmidt values when nothing is discarded
        and the state is normalised).
    """
    n = len(tensors)
    discarded = [0.0] * (n - 1)
    svals: list[np.ndarray] = [backend.ones((1,), like=tensors[0], dtype=np.float64)] * (n - 1)
    if direction == "right":
        for i in range(n - 1):
            dl, d, dr = tensors[i].shape
            u, s, vh, disc = truncated_svd(
                tensors[i].reshape(dl * d, dr), max_bond=max_bond, cutoff=cutoff
            )
            tensors[i] = u.reshape(dl, d, len(s))
            tensors[i + 1] = contract("ab,bsc->asc", s[:, None] * vh, tensors[i + 1])
            discarded[i], svals[i] = disc, s
    else:
        for i in range(n - 1, 0, -1):
            dl, d, dr = tensors[i].shape
            u, s, vh, disc = truncated_svd(
                tensors[i].reshape(dl, d * dr), max_bond=max_bond, cutoff=cutoff
            )
            tensors[i] = vh.reshape(len(s), d, dr)
            tensors[i - 1] = contract("asb,bc->asc", tensors[i - 1], u * s)
            discarded[i - 1], svals[i - 1] = disc, s
    return discarded, svals


def sweep_from_nearer_end(
    tensors: list[np.ndarray],
    left: int,
    right: int,
    *,
    max_bond: int | None = None,
    cutoff: float = 0.0,
) -> tuple[tuple[int, int], float, list[float], list[np.ndarray]]:
    """Canonicalise at the end nearer to the canonical range, then :func:`svd_sweep` across.

    ``tensors`` (with bookkeeping ``(left, right)``) are replaced in place. Returns
    the new bookkeeping, the squared norm before truncation, and the sweep's
    discarded weights and singular values per bond. The sweep runs with the centre
    scaled to unit peak (so squared singular values cannot overflow), and the norm
    and weights returned are in that scale: only their ratios mean anything. The
    scale is put back on the final centre; :class:`~tnkit.errors.NormRangeError` if
    it does not fit there (or did not fit on the first centre).
    """
    n = len(tensors)
    if max(right - 1, 0) <= max(n - 1 - left, 0):  # fewer LQ steps to reach site 0
        start, end, direction, bookkeeping = 0, n - 1, "right", (n - 1, n)
    else:
        start, end, direction, bookkeeping = n - 1, 0, "left", (0, 1)
    move_center(tensors, left, right, start)
    peak = peak_magnitude(tensors[start])
    if peak > 0.0:
        tensors[start] = tensors[start] / peak
    norm2 = _norm2(tensors[start])
    discarded, svals = svd_sweep(tensors, direction, max_bond=max_bond, cutoff=cutoff)
    if peak > 0.0:
        with np.errstate(over="ignore", under="ignore"):
            tensors[end] = checked_receiver(tensors[end] * peak, end, tensors[end], np.array(peak))
    return bookkeeping, norm2, discarded, svals


def svd_compress(
    tensors: list[np.ndarray],
    left: int,
    right: int,
    *,
    max_bond: int | None,
    cutoff: float,
) -> tuple[list[np.ndarray], tuple[int, int], TruncationReport]:
    """SVD-compress a chain given with its canonical bookkeeping ``(left, right)``.

    The sweep starts from whichever end is cheaper to reach. Returns the new site
    tensors, their bookkeeping and the report.
    """
    tensors = list(tensors)
    bookkeeping, norm2, disc, _ = sweep_from_nearer_end(tensors, left, right, max_bond=max_bond, cutoff=cutoff)
    rel = tuple(d / norm2 if norm2 > 0 else 0.0 for d in disc)
    error = float(sum(rel))
    report = TruncationReport(
        method="svd",
        error=error,
        discarded=rel,
        bond_dims=tuple(t.shape[2] for t in tensors[:-1]),
        fidelity=1.0 - error,
    )
    return tensors, bookkeeping, report


_norm2 = backend.norm2


def identity_mpo_tensors(phys_dims: Sequence[int], dtype: Any = None, *, like: Any = None) -> list[np.ndarray]:
    """Bond-1 MPO tensors ``(1, d, d, 1)`` of the identity.

    In ``like``'s array library, device and dtype when given (``dtype`` overrides
    it), else numpy arrays of ``dtype`` (default float64).
    """
    if like is None:
        like = np.ones(0, dtype=np.float64 if dtype is None else dtype)
    return [backend.eye(d, like=like, dtype=dtype).reshape(1, d, d, 1) for d in phys_dims]


# ------------------------------------------------------------------ variational fitting

_ENV_LEFT = "xwb,xty,wtsv,bsc->yvc"  # L, conj(X), W, T -> L'
_ENV_RIGHT = "yvc,xty,wtsv,bsc->xwb"  # R, conj(X), W, T -> R'
_THETA = "xwb,bsc,cue,wtsv,vruz,yze->xtry"  # L, T_i, T_i+1, W_i, W_i+1, R -> theta


def fit_compress(
    target: Sequence[np.ndarray],
    guess: list[np.ndarray],
    *,
    mpo: Sequence[np.ndarray] | None = None,
    max_bond: int | None,
    cutoff: float,
    max_sweeps: int = 8,
    tol: float = 1e-10,
    target_norm2: float | None = None,
) -> tuple[list[np.ndarray], TruncationReport]:
    """Variationally fit ``guess`` to ``mpo @ target`` by two-site sweeps.

    Parameters
    ----------
    target : sequence of numpy.ndarray
        Site tensors ``(D, d_in, D)`` of ``|t>``.
    guess : list of numpy.ndarray
        Initial site tensors ``(D, d_out, D)`` of ``x``, right-canonical with centre 0.
    mpo : sequence of numpy.ndarray, optional
        Site tensors ``(w, d_out, d_in, w)`` of ``W``; the identity when omitted.
    max_bond, cutoff
        Truncation of every two-site split.
    max_sweeps : int
        Largest number of full (right then left) sweeps.
    tol : float
        Stop when the relative change of ``||x||**2`` (which the sweeps maximise,
        being the squared overlap with the target) between sweeps falls below it;
        the report's ``converged`` says whether that happened within ``max_sweeps``.
    target_norm2 : float, optional
        ``<t|W^dagger W|t>``; when given, the report carries the fidelity of the fit.

    Returns
    -------
    tensors : list of numpy.ndarray
        The fitted state, right-canonical with centre 0.
    report : TruncationReport
    """
    n = len(target)
    if mpo is None:
        mpo = identity_mpo_tensors([t.shape[1] for t in target], like=target[0])
    x = list(guess)
    if n == 1:
        x[0] = contract("wtsv,bsc->btc", mpo[0], target[0])  # all bonds have size 1
        return x, _fit_report(_norm2(x[0]), target_norm2, (), x, sweeps=0)
    one = backend.ones((1, 1, 1), like=target[0])
    right_env: list[np.ndarray | None] = [None] * (n + 1)
    left_env: list[np.ndarray | None] = [None] * (n + 1)
    right_env[n], left_env[0] = one, one
    for i in range(n - 1, 1, -1):
        right_env[i] = contract(_ENV_RIGHT, right_env[i + 1], x[i].conj(), mpo[i], target[i])
    previous = -1.0
    converged = False
    discarded = [0.0] * (n - 1)
    norm2 = 0.0
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        for i in range(n - 1):  # rightward: centre ends on i+1
            u, sv, disc = _fit_two_site(x, target, mpo, left_env[i], right_env[i + 2], i, max_bond, cutoff)
            x[i], x[i + 1] = u, sv
            discarded[i] = disc
            left_env[i + 1] = contract(_ENV_LEFT, left_env[i], x[i].conj(), mpo[i], target[i])
        for i in range(n - 2, -1, -1):  # leftward: centre ends on i
            us, v, disc = _fit_two_site(
                x, target, mpo, left_env[i], right_env[i + 2], i, max_bond, cutoff, absorb="left"
            )
            x[i], x[i + 1] = us, v
            discarded[i] = disc
            right_env[i + 1] = contract(_ENV_RIGHT, right_env[i + 2], x[i + 1].conj(), mpo[i + 1], target[i + 1])
        norm2 = _norm2(x[0])
        converged = previous > 0 and abs(norm2 - previous) <= tol * max(norm2, 1e-300)
        if converged:
            break
        previous = norm2
    report = _fit_report(norm2, target_norm2, tuple(discarded), x, sweeps=sweeps)
    return x, dataclasses.replace(report, converged=bool(converged))


def _fit_two_site(x, target, mpo, lenv, renv, i, max_bond, cutoff, absorb="right"):
    theta = contract(_THETA, lenv, target[i], target[i + 1], mpo[i], mpo[i + 1], renv)
    dx, t, r, dy = theta.shape
    u, s, vh, disc = truncated_svd(theta.reshape(dx * t, r * dy), max_bond=max_bond, cutoff=cutoff)
    k = len(s)
    if absorb == "right":
        return u.reshape(dx, t, k), (s[:, None] * vh).reshape(k, r, dy), disc
    return (u * s).reshape(dx, t, k), vh.reshape(k, r, dy), disc


def _fit_report(norm2, target_norm2, discarded_abs, x, *, sweeps):
    fidelity = None
    if target_norm2 is not None and target_norm2 > 0:
        # x is the projection of the target onto its own manifold: <x|Wt> = ||x||^2.
        fidelity = min(norm2 / target_norm2, 1.0)
        error = 1.0 - fidelity
        rel = tuple(d / target_norm2 for d in discarded_abs)
    else:
        total = norm2 + sum(discarded_abs)
        rel = tuple(d / total if total > 0 else 0.0 for d in discarded_abs)
        error = float(sum(rel))
    return TruncationReport(
        method="fit",
        error=float(error),
        discarded=rel,
        bond_dims=tuple(t.shape[2] for t in x[:-1]),
        fidelity=fidelity,
        sweeps=sweeps,
    )




# ------------------------------------------------------------------ density-matrix method

#: Smallest relative weight the density-matrix method resolves (eigenvalue noise).
DM_WEIGHT_FLOOR = 1e-14

_DM_RIGHT = "asb,wtsv,bvcz,xrc,ytrz->awxy"  # T, W, R, conj(T), conj(W) -> R'
_DM_KET = "kaw,asb,wtsv->ktbv"  # L, T, W -> projected ket
_DM_RHO = "ktbv,bvcz,lrcz->ktlr"  # ket, R, conj(ket) -> rho


def density_matrix_truncation(
    target: Sequence[np.ndarray],
    mpo: Sequence[np.ndarray] | None = None,
    *,
    max_bond: int | None,
    cutoff: float,
) -> tuple[list[np.ndarray], list[float]]:
    """Truncate ``W|t>`` (``W`` optional) by reduced density matrices, left to right.

    Right environments of ``W|t><t|W^dagger`` are contracted from the factors, in any
    gauge of ``|t>`` and without forming ``W|t>``. At each site the reduced density
    matrix of the part already projected is diagonalised and its leading
    eigenvectors become the new left-isometric site tensor: the same truncation as
    an SVD sweep of the exact product from the left. Eigenvalues below
    :data:`DM_WEIGHT_FLOOR` of the local trace are treated as numerical noise.

    Returns
    -------
    tensors : list of numpy.ndarray
        Left-isometric sites, the last one holding the norm (centre ``N - 1``).
    discarded : list of float
        Discarded weight at each bond relative to ``<t|W^dagger W|t>`` (exact).
    """
    n = len(target)
    if mpo is None:
        mpo = identity_mpo_tensors([t.shape[1] for t in target], like=target[0])
    right: list[np.ndarray] = [backend.ones((1, 1, 1, 1), like=target[0])] * (n + 1)
    for i in range(n - 1, 0, -1):  # rescaled each step: only their shape of rho matters
        env = contract(_DM_RIGHT, target[i], mpo[i], right[i + 1], target[i].conj(), mpo[i].conj())
        right[i] = unit_peak(env)
    out, discarded = [], []
    kept_fraction = 1.0
    left = backend.ones((1, 1, 1), like=target[0], dtype=backend.result_type(mpo[0], target[0]))  # (new, t, W)
    for i in range(n):
        ket = contract(_DM_KET, left, target[i], mpo[i])
        k, t, _, _ = ket.shape
        if i == n - 1:
            out.append(ket.reshape(k, t, 1))
            break
        rho = contract(_DM_RHO, ket, right[i + 1], ket.conj()).reshape(k * t, k * t)
        xp = backend.namespace(rho)
        evals, evecs = xp.linalg.eigh((rho + rho.conj().T) / 2)
        evals, evecs = xp.clip(backend.flip(evals), 0, None), backend.flip(evecs, 1)
        keep, disc = truncation_rank(xp.sqrt(evals), max_bond=max_bond, cutoff=max(cutoff, DM_WEIGHT_FLOOR))
        trace = float(evals.sum())
        local = disc / trace if trace > 0 else 0.0
        discarded.append(local * kept_fraction)  # relative to the untruncated norm
        kept_fraction *= 1.0 - local
        u = evecs[:, :keep].reshape(k, t, keep)
        out.append(u)
        left = contract("ktm,ktbv->mbv", u.conj(), ket)
    return out, discarded


# ------------------------------------------------------------------ successive randomized compression

_SRC_SKETCH = "raw,asb,wtsv,rt->rbv"  # S, T, W, Omega -> next left sketch S'
_SRC_RANGE = "raw,asb,wtsv,bvc->rtc"  # S, T, W, R -> sketched row space of the site
_SRC_RIGHT = "asb,wtsv,bvc,tck->awk"  # T, W, R, Q -> next right environment R'
_SRC_LAST = "asb,wtsv,bvc->atc"  # T, W, R at the first site (a = w = 1)


def randomized_truncation(
    target: Sequence[np.ndarray],
    mpo: Sequence[np.ndarray] | None = None,
    *,
    max_bond: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Truncate ``W|t>`` to bond ``max_bond`` by successive randomized compression.

    Camaño, Epperly & Tropp (2025, arXiv:2504.06475): random Gaussian vectors
    ``Omega_i`` (``max_bond`` of them per site, on the output index) are contracted
    with the network from the left into sketches ``S_i`` of the left half. Then,
    from the right, the sketched site ``S_i W_i T_i R_{i+1}`` spans (with high
    probability, nearly) the row space of the exact site; an orthonormal basis of it
    from one QR becomes the new right-isometric tensor, and the exact site projected
    onto it the next right environment. No factorisation ever runs at the bond of
    ``W|t>``: every step is a few GEMMs and a QR of ``(d * max_bond, max_bond)``.
    Its error is within a small factor of the optimal truncation's, with no
    guarantee per instance, and it never adapts the bond to a cutoff.

    Parameters
    ----------
    target : sequence of numpy.ndarray
        Site tensors ``(left, phys, right)`` of ``|t>``, in any gauge.
    mpo : sequence of numpy.ndarray, optional
        Site tensors ``(left, out, in, right)`` of ``W``; identity if omitted.
    max_bond : int
        Bond dimension of the result (smaller where the local dimensions force it).
    rng : numpy.random.Generator
        Source of the sketches.

    Returns
    -------
    list of numpy.ndarray
        Right-isometric sites ``1..N-1``; site 0 holds the norm (centre ``0``).
    """
    n = len(target)
    if mpo is None:
        mpo = identity_mpo_tensors([t.shape[1] for t in target], like=target[0])
    dtype = backend.result_type(target[0], mpo[0])
    complex_out = backend.is_complex(dtype)
    sketches = [backend.ones((max_bond, 1, 1), like=target[0], dtype=dtype)]
    for i in range(n - 1):
        omega = rng.standard_normal((max_bond, mpo[i].shape[1]))
        if complex_out:
            omega = omega + 1j * rng.standard_normal(omega.shape)
        omega = backend.like(omega, target[0], dtype=dtype)  # drawn on the host: same sketch everywhere
        sketch = contract(_SRC_SKETCH, sketches[i], target[i], mpo[i], omega)
        sketches.append(unit_peak(sketch))  # only the span matters: rescale against overflow
    right = backend.ones((1, 1, 1), like=target[0], dtype=dtype)
    out: list[np.ndarray] = [None] * n  # type: ignore[list-item]
    for i in range(n - 1, 0, -1):
        rows = contract(_SRC_RANGE, sketches[i], target[i], mpo[i], right)
        r, t, c = rows.shape
        q, _ = qr(rows.reshape(r, t * c).T)  # (t c, k): basis of the sketched row space
        k = q.shape[1]
        # A row e of the exact site projects to e conj(q) q^T: q^T is the new site,
        # the exact site times conj(q) the next right environment.
        out[i] = q.T.reshape(k, t, c)
        right = contract(_SRC_RIGHT, target[i], mpo[i], right, q.conj().reshape(t, c, k))
    out[0] = contract(_SRC_LAST, target[0], mpo[0], right)
    return out
