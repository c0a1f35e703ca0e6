"""Whitened MPO truncation: an MPO that minimises the error on a layer's *outputs*.

For a linear layer ``y = W x`` with inputs of second moment ``C = E[x x^T]`` the
expected output error of an approximation ``M`` is

.. math:: \\varepsilon(M) = \\mathbb{E}\\|(W - M) x\\|^2 = \\operatorname{tr}((W - M) C (W - M)^T)
          = \\|(W - M) S\\|_F^2, \\qquad S S^T = C,

and the *whitened relative error* reported everywhere here is
``eps(M) / eps(0) = tr(E C E^T) / tr(W C W^T)`` with ``E = W - M``. For a low-rank
``M`` the optimum is the truncated SVD of ``W S`` (SVD-LLM). An MPO cannot absorb a
dense ``S^{-1}`` without losing its structure, so tnkit does it in two steps:

1. **Kronecker-whitened TT-SVD.** ``C`` is approximated by the nearest Kronecker
   product matching the MPO's input legs, ``C ~ C_0 (x) C_1 (x) ... (x) C_{n-1}``
   (``C_k`` of shape ``(i_k, i_k)``; the rank-1 approximation of ``C`` rearranged as
   in Van Loan & Pitsianis, computed by alternating updates). With ``S_k S_k^T = C_k``
   (Cholesky, regularised) the whitener ``S_0 (x) ... (x) S_{n-1}`` acts leg by leg:
   TT-SVD of ``W (S_0 (x) ...)`` minimises the error in that basis, and multiplying
   each core's input leg by ``S_k^{-1}`` maps it back *exactly* to an MPO of ``W``.
   When ``C`` is a Kronecker product this step alone is optimal at every cut.
2. **ALS refit on the full ``C``.** With all cores but one fixed, ``M`` is linear in
   that core and ``eps`` is a convex quadratic in it. Each core is updated by
   preconditioned conjugate gradients on its normal equations, warm-started from the
   current core (so the error never increases: CG minimises the quadratic over a
   Krylov space that contains the starting point), matrix-free (one product with
   ``C`` per iteration, no ``(r i)^2`` Gram matrix), preconditioned by the same
   problem with ``C`` replaced by its Kronecker approximation (whose inverse is a
   product of small inverses). Sweeps go left to right, then right to left.

Index conventions are those of :mod:`tnkit.compress.numerics.factorize`: ``W`` is
``(out, in)``, core ``k`` is ``(r_k, o_k, i_k, r_{k+1})``, site 0 slowest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import solve_triangular

from ...core.contract import contract
from ...core.validate import as_array, check_int
from .allocate import SizeCurve, curve_from_tail, tail_energy
from .factorize import MPOFactors, core_dims, mpo_factorize, mpo_to_dense
from ..layers.lowrank import cholesky_whitener, gram_singular_values, ridge_covariance

__all__ = [
    "WhitenedMPO",
    "kronecker_covariance",
    "whitened_error",
    "whitened_mpo_factorize",
    "als_refit",
    "whitened_mpo_curve",
]


@dataclass(frozen=True)
class WhitenedMPO(MPOFactors):
    """Cores of a whitened MPO factorisation and its errors.

    Besides :class:`~tnkit.compress.numerics.factorize.MPOFactors`' ``cores``, ``out_dims`` and
    ``in_dims`` (the cores hold ``W``, or ``W diag(input_scale)``):

    Attributes
    ----------
    error : float
        Whitened relative error ``tr(E C E^T) / tr(W C W^T)`` on the full ``C`` after
        the refit.
    truncation_error : float
        Relative squared error of the TT-SVD in the Kronecker-whitened basis (the
        discarded weight the truncation reports).
    history : tuple of float
        Whitened relative error after the TT-SVD and after every core update.
    input_scale : numpy.ndarray or None, shape (in,)
        Channel scale ``d`` (as :class:`MPOLinear`'s ``input_scale``); ``None`` when
        the cores hold ``W`` itself.
    """

    truncation_error: float = 0.0
    history: tuple[float, ...] = ()
    input_scale: np.ndarray | None = None

    def dense(self) -> np.ndarray:
        """The approximated ``(out, in)`` weight in the original basis."""
        m = mpo_to_dense(self.cores)
        return m if self.input_scale is None else m / self.input_scale[None, :]


# --------------------------------------------------------------------------- covariance


def _check_covariance(covariance: np.ndarray, n_in: int) -> np.ndarray:
    c = as_array("covariance", covariance, ndim=2).astype(np.float64, copy=False)
    if c.shape != (n_in, n_in):
        raise ValueError(f"`covariance` must have shape ({n_in}, {n_in}) (the weight's input size), got {c.shape}.")
    if not np.all(np.isfinite(c)):
        raise ValueError("`covariance` must be finite.")
    return 0.5 * (c + c.T)


def kronecker_covariance(covariance: np.ndarray, in_dims: Sequence[int], *, iterations: int = 10) -> list[np.ndarray]:
    """Nearest Kronecker product ``C ~ C_0 (x) ... (x) C_{n-1}`` matching ``in_dims``.

    The rank-1 approximation (in the Frobenius norm) of ``C`` rearranged as a tensor
    with one ``(i_k, i_k)`` leg pair per site, by alternating updates started from the
    partial traces. For a positive semi-definite ``C`` the factors are symmetric
    positive semi-definite (Van Loan & Pitsianis); they are symmetrised and their
    signs fixed so that each has a positive trace.

    Parameters
    ----------
    covariance : numpy.ndarray, shape (in, in)
    in_dims : sequence of int
        Factorisation of ``in`` (site 0 slowest).
    iterations : int
        Alternating sweeps (each factor's update is exact given the others).

    Returns
    -------
    list of numpy.ndarray
        ``C_k`` of shape ``(i_k, i_k)``; the overall scale sits in the last factor.

    Examples
    --------
    >>> a, b = np.diag([1.0, 2.0]), np.diag([3.0, 1.0, 1.0])
    >>> f = kronecker_covariance(np.kron(a, b), (2, 3))
    >>> bool(np.allclose(np.kron(*f), np.kron(a, b)))
    True
    """
    in_dims = tuple(int(d) for d in in_dims)
    n = len(in_dims)
    c = _check_covariance(covariance, math.prod(in_dims))
    if n == 1:
        return [c]
    t = c.reshape(in_dims + in_dims)
    letters = "abcdefghijklm"[:n], "nopqrstuvwxyz"[:n]
    full = letters[0] + letters[1]
    factors = [_partial_trace(t, k, n) for k in range(n)]
    factors = [f / max(np.linalg.norm(f), 1e-300) for f in factors]
    for _ in range(check_int("iterations", iterations, minimum=0)):
        for k in range(n):
            others = [j for j in range(n) if j != k]
            eq = full + "," + ",".join(letters[0][j] + letters[1][j] for j in others)
            new = contract(eq + "->" + letters[0][k] + letters[1][k], t, *[factors[j] for j in others])
            norm = np.linalg.norm(new)
            factors[k] = new / max(norm, 1e-300)
    # overall scale: <C, (x) F_k> with unit-norm F_k
    eq = full + "," + ",".join(letters[0][j] + letters[1][j] for j in range(n)) + "->"
    scale = float(contract(eq, t, *factors))
    out = []
    for f in factors:
        f = 0.5 * (f + f.T)
        sign = 1.0 if np.trace(f) >= 0 else -1.0
        out.append(sign * f)
        scale *= sign
    out[-1] = out[-1] * scale
    return out


def _partial_trace(t: np.ndarray, k: int, n: int) -> np.ndarray:
    """``sum`` over every leg pair but ``k`` of the diagonal: the marginal ``C_k``."""
    rows = "abcdefghijklm"[:n]
    cols = "".join(rows[j] if j != k else "z" for j in range(n))
    return contract(f"{rows}{cols}->{rows[k]}z", t)


def whitened_error(weight: np.ndarray, approx: np.ndarray, covariance: np.ndarray) -> float:
    """Whitened relative error ``tr(E C E^T) / tr(W C W^T)`` with ``E = weight - approx``.

    Parameters
    ----------
    weight, approx : numpy.ndarray, shape (out, in)
    covariance : numpy.ndarray, shape (in, in)
        Input second moment ``C = E[x x^T]``.
    """
    w = as_array("weight", weight, ndim=2).astype(np.float64, copy=False)
    e = w - as_array("approx", approx, ndim=2)
    c = _check_covariance(covariance, w.shape[1])
    den = float(contract("ij,jk,ik->", w, c, w))
    return float(contract("ij,jk,ik->", e, c, e)) / max(den, 1e-300)


# --------------------------------------------------------------------------- TT-SVD


def site_whiteners(factors: Sequence[np.ndarray], damping: float) -> list[np.ndarray]:
    """Lower-triangular ``S_k`` with ``S_k S_k^T = C_k + damping * mean(diag C_k) * I``."""
    return [cholesky_whitener(f, damping=damping) for f in factors]


def apply_to_input_legs(cores: Sequence[np.ndarray], mats: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``core_k[l, o, j, r] <- sum_i core_k[l, o, i, r] mats_k[i, j]``."""
    return [contract("loir,ij->lojr", c, m) for c, m in zip(cores, mats)]


def whiten_weight(weight: np.ndarray, in_dims: Sequence[int], mats: Sequence[np.ndarray]) -> np.ndarray:
    """``W (S_0 (x) ... (x) S_{n-1})`` without forming the Kronecker product."""
    t = weight.reshape(weight.shape[0], *in_dims)
    for k, m in enumerate(mats):
        t = np.moveaxis(np.tensordot(t, m, axes=([k + 1], [0])), -1, k + 1)
    return t.reshape(weight.shape)


def whitened_mpo_factorize(
    weight: np.ndarray,
    covariance: np.ndarray,
    *,
    n_cores: int = 2,
    out_dims: Sequence[int] | None = None,
    in_dims: Sequence[int] | None = None,
    max_bond: int | None = None,
    cutoff: float = 0.0,
    sweeps: int = 1,
    cg_iterations: int = 8,
    channel_scale: bool = True,
    damping: float = 1e-6,
    ridge: float = 0.0,
) -> WhitenedMPO:
    """MPO of ``weight`` truncated and refitted for the output error on inputs of second moment ``covariance``.

    Parameters
    ----------
    weight : numpy.ndarray, shape (out, in)
    covariance : numpy.ndarray, shape (in, in)
        ``C = E[x x^T]`` of the layer's inputs (uncentred).
    n_cores, out_dims, in_dims, max_bond, cutoff
        As in :func:`tnkit.compress.numerics.factorize.mpo_factorize`; the truncation happens
        in the (Kronecker-)whitened basis.
    sweeps : int
        ALS sweeps on the full ``C`` after the TT-SVD (0: none). A sweep is as many
        core updates as there are cores, going back and forth (``0, 1, ..., n-1,
        n-2, ...``), never updating the same core twice in a row.
    cg_iterations : int
        Preconditioned conjugate-gradient iterations per core update.
    channel_scale : bool
        First divide out the per-channel RMS ``d = sqrt(diag C)`` (kept as the
        layer's input scale, ``in`` extra numbers): the cores then hold
        ``W diag(d)`` and only the correlation ``D^-1 C D^-1`` is approximated by a
        Kronecker product. Activation outliers are single channels, which no
        Kronecker product can represent, so this matters for LLMs.
    damping : float
        Relative ridge of the Kronecker factors' Cholesky (times their mean diagonal).
    ridge : float
        Truncate and refit for ``C' = C + ridge * tr(C) / n * I``
        (:func:`~tnkit.compress.layers.lowrank.ridge_covariance`) instead of ``C``. Without
        it, directions the calibration tokens barely excite (near-dead channels,
        whose channel scale is tiny, and small eigenvalues of the Kronecker factors,
        whose whitener inverse is large) can carry weight errors hundreds of times
        ``||W||`` at no cost on the calibration data (measured on SmolLM2); the ridge
        bounds the weight error by the whitened error divided by ``ridge``.

    Returns
    -------
    WhitenedMPO
        With ``input_scale`` set when ``channel_scale``; ``error`` is on the given
        ``C``, ``history`` on the objective ``C'``.

    Raises
    ------
    ValueError
        For a covariance of the wrong shape, a ``max_bond`` the shapes do not admit,
        or dims that do not factorise the weight.
    """
    w = as_array("weight", weight, ndim=2).astype(np.float64, copy=False)
    out_dims, in_dims = core_dims(w.shape, n_cores, out_dims, in_dims)
    c_given = _check_covariance(covariance, w.shape[1])
    c = ridge_covariance(c_given, ridge)
    w_given = w
    scale = channel_rms(c) if channel_scale else None
    if scale is not None:
        w, c = w * scale[None, :], c / np.outer(scale, scale)
    factors = kronecker_covariance(c, in_dims)
    whiteners = site_whiteners(factors, damping)
    f = mpo_factorize(whiten_weight(w, in_dims, whiteners), out_dims=out_dims, in_dims=in_dims, max_bond=max_bond,
                      cutoff=cutoff)
    cores, trunc = list(f.cores), f.error
    inverses = [solve_triangular(s, np.eye(len(s)), lower=True) for s in whiteners]
    cores = apply_to_input_legs(cores, inverses)
    cores, history = als_refit(w, cores, c, sweeps=sweeps, cg_iterations=cg_iterations, kron_factors=factors,
                               damping=damping)
    out = WhitenedMPO(tuple(cores), out_dims, in_dims, history[-1], trunc, tuple(history), scale)
    if ridge == 0.0:
        return out
    return replace(out, error=whitened_error(w_given, out.dense(), c_given))


def channel_rms(c: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """``sqrt(diag C)`` normalised to mean 1, floored at ``floor`` (dead channels)."""
    d = np.sqrt(np.clip(np.diag(c), 0.0, None))
    d = d / max(float(d.mean()), 1e-300)
    return np.maximum(d, floor)


# --------------------------------------------------------------------------- ALS


def _environments(cores: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``left[O_<, I_<, l]`` of cores ``< k`` and ``right[r, O_>, I_>]`` of cores ``> k``."""
    left = np.ones((1, 1, 1))
    for core in cores[:k]:
        o, i = left.shape[0], left.shape[1]
        left = contract("abl,lcdr->acbdr", left, core).reshape(o * core.shape[1], i * core.shape[2], core.shape[3])
    right = np.ones((1, 1, 1))
    for core in reversed(cores[k + 1 :]):
        o, i = right.shape[1], right.shape[2]
        right = contract("lcdr,rab->lcadb", core, right).reshape(core.shape[0], core.shape[1] * o, core.shape[2] * i)
    return left, right


class _CoreProblem:
    """The quadratic ``tr((W - M(G)) C (W - M(G))^T)`` in one core ``G`` (others fixed)."""

    def __init__(self, weight, cov, cores, k, kron_factors, damping):
        self.left, self.right = _environments(cores, k)
        self.shape = cores[k].shape
        lo, li, _ = self.left.shape
        _, ro, ri = self.right.shape
        self.blocks = (lo, self.shape[1], ro, li, self.shape[2], ri)
        self.cov = cov
        self.wc = weight @ cov
        self.precond = self._preconditioner(kron_factors, k, damping)

    def apply_m(self, g: np.ndarray) -> np.ndarray:
        """``M(G)`` as an ``(out, in)`` matrix."""
        m = contract("AIl,lbcr,rDJ->AbDIcJ", self.left, g, self.right)
        return m.reshape(math.prod(self.blocks[:3]), math.prod(self.blocks[3:]))

    def adjoint(self, x: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`apply_m`: ``(out, in)`` matrix -> core-shaped array."""
        return contract("AIl,AbDIcJ,rDJ->lbcr", self.left, x.reshape(self.blocks), self.right)

    def normal(self, g: np.ndarray) -> np.ndarray:
        """``A(G) = L^*(M(G) C)``, the Hessian / 2 applied to ``G``."""
        return self.adjoint(self.apply_m(g) @ self.cov)

    def _preconditioner(self, factors, k, damping):
        """Inverse of ``A`` with ``C`` replaced by its Kronecker approximation (a product of small inverses)."""
        kl = _kron(factors[:k])
        kr = _kron(factors[k + 1 :])
        hl = contract("AIl,IJ,AJm->lm", self.left, kl, self.left)
        hr = contract("rDI,IJ,sDJ->rs", self.right, kr, self.right)
        return [_pinv_psd(h, damping) for h in (hl, factors[k], hr)]

    def apply_precond(self, r: np.ndarray) -> np.ndarray:
        pl, pk, pr = self.precond
        return contract("lm,mbcs,cd,rs->lbdr", pl, r, pk, pr)


def _kron(mats: Sequence[np.ndarray]) -> np.ndarray:
    out = np.ones((1, 1))
    for m in mats:
        out = np.kron(out, m)
    return out


def _pinv_psd(h: np.ndarray, damping: float) -> np.ndarray:
    h = 0.5 * (h + h.T)
    evals, vecs = np.linalg.eigh(h)
    floor = max(damping * float(np.mean(np.abs(evals))), 1e-300)
    return (vecs / np.maximum(evals, floor)) @ vecs.T


def _pcg(problem: _CoreProblem, g0: np.ndarray, iterations: int) -> np.ndarray:
    """Preconditioned CG on ``A(G) = L^*(W C)`` from ``g0``; never increases the objective."""
    x = g0.copy()
    r = problem.adjoint(problem.wc) - problem.normal(x)
    z = problem.apply_precond(r)
    p = z.copy()
    rz = float(np.vdot(r, z))
    for _ in range(iterations):
        ap = problem.normal(p)
        pap = float(np.vdot(p, ap))
        if pap <= 0 or rz <= 0:
            break
        alpha = rz / pap
        x += alpha * p
        r -= alpha * ap
        z = problem.apply_precond(r)
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def als_refit(
    weight: np.ndarray,
    cores: Sequence[np.ndarray],
    covariance: np.ndarray,
    *,
    sweeps: int = 1,
    cg_iterations: int = 8,
    kron_factors: Sequence[np.ndarray] | None = None,
    damping: float = 1e-6,
) -> tuple[list[np.ndarray], list[float]]:
    """Alternating least-squares refit of MPO ``cores`` for the whitened error on ``covariance``.

    Parameters
    ----------
    weight : numpy.ndarray, shape (out, in)
    cores : sequence of numpy.ndarray
        Initial cores (original input basis); not modified.
    covariance : numpy.ndarray, shape (in, in)
    sweeps, cg_iterations, damping
        See :func:`whitened_mpo_factorize`.
    kron_factors : sequence of numpy.ndarray, optional
        Kronecker factors of ``covariance`` for the preconditioner (computed if omitted).

    Returns
    -------
    cores : list of numpy.ndarray
    history : list of float
        Whitened relative error before the refit and after every core update; an
        update that would increase the error (possible only through rounding) is
        not taken.
    """
    w = as_array("weight", weight, ndim=2).astype(np.float64, copy=False)
    c = _check_covariance(covariance, w.shape[1])
    cores = [np.array(x, dtype=np.float64) for x in cores]
    sweeps = check_int("sweeps", sweeps, minimum=0)
    cg_iterations = check_int("cg_iterations", cg_iterations, minimum=1)
    if kron_factors is None:
        kron_factors = kronecker_covariance(c, [x.shape[2] for x in cores])
    history = [whitened_error(w, mpo_to_dense(cores), c)]
    for k in _sweep_order(len(cores), sweeps):
        problem = _CoreProblem(w, c, cores, k, kron_factors, damping)
        new = _pcg(problem, cores[k], cg_iterations)
        trial = cores[:k] + [new] + cores[k + 1 :]
        err = whitened_error(w, mpo_to_dense(trial), c)
        if err <= history[-1]:
            cores = trial
            history.append(err)
        else:
            history.append(history[-1])
    return cores, history


def _sweep_order(n: int, sweeps: int) -> list[int]:
    """``n * sweeps`` core indices going back and forth, never the same core twice in a row."""
    if n == 1:
        return [0] * sweeps
    bounce = list(range(n)) + list(range(n - 2, 0, -1))  # 0..n-1..1, period 2n - 2
    return [bounce[j % len(bounce)] for j in range(n * sweeps)]


# --------------------------------------------------------------------------- curves


def whitened_mpo_curve(weight: np.ndarray, covariance: np.ndarray, out_dims: Sequence[int],
                       in_dims: Sequence[int], *, step: int = 8, channel_scale: bool = True,
                       damping: float = 1e-6, ridge: float = 0.0) -> SizeCurve:
    """Error-versus-bond curve of a two-core MPO in the whitened basis (one eigendecomposition).

    The errors are the TT-SVD's truncation errors in the basis of
    :func:`whitened_mpo_factorize` (channel scale, then Kronecker whitener), before
    any refit, for the covariance with ``ridge`` added as in
    :func:`whitened_mpo_factorize`; the parameter counts include the ``in`` channel scales.
    """
    if len(out_dims) != 2 or len(in_dims) != 2:
        raise ValueError(f"`whitened_mpo_curve` needs a two-core factorisation, got {out_dims}x{in_dims}.")
    w = as_array("weight", weight, ndim=2).astype(np.float64, copy=False)
    c = ridge_covariance(_check_covariance(covariance, w.shape[1]), ridge)
    extra = 0
    if channel_scale:
        d = channel_rms(c)
        w, c, extra = w * d[None, :], c / np.outer(d, d), w.shape[1]
    mats = site_whiteners(kronecker_covariance(c, in_dims), damping)
    ws = whiten_weight(w, in_dims, mats)
    (o0, o1), (i0, i1) = out_dims, in_dims
    m = ws.reshape(o0, o1, i0, i1).transpose(0, 2, 1, 3).reshape(o0 * i0, o1 * i1)
    s = gram_singular_values(m)
    curve = curve_from_tail(tail_energy(s), o0 * i0 + o1 * i1, w.size - extra, check_int("step", step, minimum=1))
    params = curve.params + np.where(curve.sizes >= 0, extra, 0)
    return SizeCurve(curve.sizes, params, curve.errors)
