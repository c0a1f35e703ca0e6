"""Time evolution of MPS under an MPO Hamiltonian by the time-dependent variational principle.

Algorithm
---------
TDVP projects the Schrödinger equation ``d psi/dt = -i H psi`` onto the tangent
space of MPS at fixed bond dimension and integrates the projector splitting with a
symmetric (second-order) sweep: a left-to-right half step ``dt/2`` and a
right-to-left half step ``dt/2``. In a left-to-right half step, site by site:

* one-site TDVP: evolve the centre tensor ``A[i]`` forward by ``exp(-i H1_eff dt/2)``,
  split it by QR into ``Q R``, and evolve the bond matrix ``R`` *backward* by
  ``exp(+i H0_eff dt/2)`` before absorbing it into ``A[i+1]``;
* two-site TDVP: evolve ``theta = A[i] A[i+1]`` forward by ``exp(-i H2_eff dt/2)``,
  split it by truncated SVD (``max_bond``, ``cutoff``: this is where bonds grow), and
  evolve the new centre ``A[i+1]`` backward by ``exp(+i H1_eff dt/2)``.

The effective Hamiltonians ``H0_eff``, ``H1_eff``, ``H2_eff`` act on a bond matrix,
one site and two sites between the cached environments of
:mod:`tnkit.algorithms.environments`; the exponentials are Krylov
(:func:`~tnkit.algorithms.krylov.expm_krylov`). One-site TDVP conserves the norm and
the energy exactly (up to the Krylov tolerance) but cannot grow the bonds; two-site
TDVP grows them and conserves both up to the truncation error.

Hybrid TDVP (``method="hybrid"``) decides bond by bond: a bond below its cap
(``max_bond``, or the dimension of the Hilbert space on one side) is crossed by a
two-site block, so that it can grow; a capped bond by a one-site step, which a two-site
block could not improve on (its split would truncate back to the cap) and which costs
about a third as much (a one-site Krylov exponential and a bond-matrix one instead of a
two-site one, a one-site one and a split). Where two two-site blocks meet, the shared
site is evolved backward between them; where a block meets a one-site step, the site is
evolved forward once, inside the block: the pieces telescope to the tangent-space
projector as in the pure schemes, and at full bond dimension every method is exact.

Imaginary time (``imaginary=True``) replaces ``-i dt`` by ``-dt`` and renormalises
the state after each step, converging to the ground state.

Observables are recorded by ``callback(t, state)``, called at ``t = 0`` and after
every ``record_every`` steps; whatever it returns is kept in the result.

References
----------
J. Haegeman, C. Lubich, I. Oseledets, B. Vandereycken, F. Verstraete,
Phys. Rev. B 94, 165116 (2016), arXiv:1408.5056;
S. Paeckel et al., Ann. Phys. 411, 167998 (2019), arXiv:1901.05824.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.backend import astype, norm, tensordot
from ..core.linalg import qr
from ..core.threads import GEMM_THREAD_BOND, blas_threads
from ..core.validate import check_cutoff, check_int, check_max_bond, check_number, check_option
from ..mps.chain import placed_like
from ..mps.mpo import MatrixProductOperator
from ..mps.mps import MatrixProductState
from ._common import (
    check_hamiltonian,
    check_state,
    is_single_precision,
    progress_bar,
    split_two_site,
    state_from_tensors,
    working_dtype,
)
from .environments import Environments, OneSiteOperator, SweepState, TwoSiteOperator, ZeroSiteOperator
from .krylov import expm_krylov, krylov_workspace

__all__ = ["tdvp", "EvolutionResult", "TDVP_METHODS"]


@dataclass(frozen=True, repr=False)
class EvolutionResult:
    """Outcome of :func:`tdvp` or :func:`~tnkit.algorithms.tebd.tebd`.

    Attributes
    ----------
    state : MatrixProductState
        The state at the final time.
    times : tuple of float
        Recording times: ``0`` and every ``record_every`` steps.
    records : tuple
        What ``callback(t, state)`` returned at those times (empty without a callback).
    truncation_errors : tuple of float
        Sum of the relative discarded weights of each step: an estimate of the squared
        norm error it added.
    max_bonds : tuple of int
        Largest bond dimension after each step.
    wall_time : float
        Seconds spent evolving (callbacks excluded).
    """

    state: MatrixProductState
    times: tuple[float, ...]
    records: tuple[Any, ...]
    truncation_errors: tuple[float, ...]
    max_bonds: tuple[int, ...]
    wall_time: float

    @property
    def total_truncation_error(self) -> float:
        """Sum of the discarded weights of all steps."""
        return float(sum(self.truncation_errors))

    def __repr__(self) -> str:
        return (
            f"EvolutionResult(t={self.times[-1] if self.times else 0.0:.6g}, n_steps={len(self.max_bonds)}, "
            f"max_bond={self.state.max_bond_dim}, total_truncation_error={self.total_truncation_error:.3e}, "
            f"wall_time={self.wall_time:.3g}s)"
        )


@dataclass
class _Stepper(SweepState):
    """Site tensors, environments and Krylov options of one TDVP run."""

    max_bond: int | None
    cutoff: float
    krylov_tol: float
    caps: list[int]  # largest useful dimension of each bond: max_bond and the Hilbert space on each side

    def expm(self, matvec: Callable[[np.ndarray], np.ndarray], x: np.ndarray, factor: complex) -> np.ndarray:
        return expm_krylov(matvec, x, factor, tol=self.krylov_tol)[0]

    def sweep(self, factor: complex, two_site: Callable[[_Stepper, int], bool]) -> float:
        """A left-to-right then a right-to-left pass, each evolving by ``factor`` (= -i dt/2).

        Bond ``b`` is crossed by a two-site block where ``two_site(self, b)``, else by a
        one-site step (centre site forward, bond matrix backward). A site shared by two
        two-site blocks is evolved backward between them; a site between a two-site block
        and a one-site step is evolved forward once, inside the block. Returns the summed
        discarded weight of the two-site splits.
        """
        t, env, n = self.tensors, self.envs, len(self.tensors)
        discarded = 0.0
        for to_right in (True, False):
            covered = False  # the centre site was evolved forward inside a two-site block of this pass
            for b in range(n - 1) if to_right else range(n - 2, -1, -1):
                centre = b if to_right else b + 1
                if two_site(self, b):
                    if covered:
                        self.evolve_site(centre, -factor)
                    theta = tensordot(t[b], t[b + 1], (2, 0))
                    h2 = TwoSiteOperator(env.left(b), self.mpo[b], self.mpo[b + 1], env.right(b + 1))
                    theta = self.expm(h2, theta, factor)
                    t[b], t[b + 1], err = split_two_site(
                        theta, max_bond=self.max_bond, cutoff=self.cutoff, center_right=to_right
                    )
                    discarded += err
                    env.invalidate(b)
                    env.invalidate(b + 1)
                    covered = True
                else:
                    if not covered:
                        self.evolve_site(centre, factor)
                    self.move_centre(b, to_right, -factor)
                    covered = False
            if not covered:
                self.evolve_site(n - 1 if to_right else 0, factor)
        return discarded

    def evolve_site(self, i: int, factor: complex) -> None:
        h1 = OneSiteOperator(self.envs.left(i), self.mpo[i], self.envs.right(i))
        self.tensors[i] = self.expm(h1, self.tensors[i], factor)
        self.envs.invalidate(i)

    def move_centre(self, b: int, to_right: bool, factor: complex) -> None:
        """Split the bond matrix of bond ``b`` off the centre (site ``b`` moving right, ``b + 1``
        moving left), evolve it by ``factor`` and absorb it into the next site."""
        t, env = self.tensors, self.envs
        src, dst = (b, b + 1) if to_right else (b + 1, b)
        dl, d, dr = t[src].shape
        if to_right:
            q, r = qr(t[src].reshape(dl * d, dr))
            t[src] = q.reshape(dl, d, -1)
        else:
            q, r = qr(t[src].reshape(dl, d * dr).T)  # x = r.T @ q.T (LQ)
            t[src] = q.T.reshape(-1, d, dr)
            r = r.T
        env.invalidate(src)
        c = self.expm(ZeroSiteOperator(env.left(b + 1), env.right(b)), r, factor)
        t[dst] = tensordot(c, t[dst], (1, 0)) if to_right else tensordot(t[dst], c, (2, 0))
        env.invalidate(dst)


def _always(stepper: _Stepper, b: int) -> bool:
    return True


def _never(stepper: _Stepper, b: int) -> bool:
    return False


def _below_cap(stepper: _Stepper, b: int) -> bool:
    return stepper.tensors[b].shape[2] < stepper.caps[b]


#: Which bonds a sweep crosses with a two-site block: all (``"two-site"``), none
#: (``"one-site"``), or those whose dimension is below its cap (``"hybrid"``: two-site
#: where a bond can still grow, one-site where it has reached ``max_bond`` or the
#: dimension of the Hilbert space on one side).
TDVP_METHODS: dict[str, Callable[[_Stepper, int], bool]] = {
    "two-site": _always,
    "one-site": _never,
    "hybrid": _below_cap,
}


def tdvp(
    psi: MatrixProductState,
    mpo: MatrixProductOperator,
    *,
    dt: float,
    n_steps: int,
    method: str = "two-site",
    max_bond: int | None = 64,
    cutoff: float = 1e-12,
    imaginary: bool = False,
    callback: Callable[[float, MatrixProductState], Any] | None = None,
    record_every: int = 1,
    krylov_tol: float = 1e-12,
    progress: bool | None = None,
) -> EvolutionResult:
    """Evolve ``psi`` by ``exp(-i H t)`` (or ``exp(-H t)``) with TDVP for ``n_steps`` steps of ``dt``.

    Parameters
    ----------
    psi : MatrixProductState
        Initial state (not modified); real states are made complex for real time.
    mpo : MatrixProductOperator
        Hermitian Hamiltonian ``H``.
    dt : float
        Time step (> 0). The splitting error per unit time is ``O(dt**2)``.
    n_steps : int
        Number of steps; the final time is ``n_steps * dt``.
    method : {"two-site", "one-site", "hybrid"}
        Two-site TDVP grows bonds up to ``max_bond``; one-site keeps the bonds of
        ``psi`` (conserving norm and energy to the Krylov tolerance); hybrid crosses
        each bond by a two-site block while the bond is below ``max_bond`` (and below
        the dimension of the Hilbert space on either side) and by a one-site step once
        it has reached it, which costs about a third of a two-site block.
    max_bond : int or None
        Bond cap of two-site (and hybrid) TDVP.
    cutoff : float
        Largest relative discarded weight per split (two-site).
    imaginary : bool
        Imaginary-time evolution ``exp(-H t) psi / ||...||``.
    callback : callable, optional
        ``callback(t, state) -> value``, called at ``t = 0`` and every
        ``record_every`` steps; values are collected in ``records``.
    record_every : int
        Steps between callback calls.
    krylov_tol : float
        Error tolerance of each Krylov exponential.
    progress : bool, optional
        Show a tqdm bar (default: when stderr is a terminal).

    Returns
    -------
    EvolutionResult

    Examples
    --------
    >>> import tnkit
    >>> from tnkit.algorithms import tdvp
    >>> h = tnkit.xxz_mpo(8, delta=0.5)
    >>> psi = tnkit.MPS.product_state("01010101")
    >>> res = tdvp(psi, h, dt=0.05, n_steps=10, max_bond=16, progress=False)
    >>> round(abs(res.state.norm() - 1), 10)
    0.0
    """
    check_hamiltonian("mpo", mpo)
    psi = check_state("psi", psi, mpo.in_dims)
    dt, n_steps, max_bond, cutoff, record_every = check_evolution_options(
        dt, n_steps, max_bond, cutoff, record_every, callback
    )
    check_option("method", method, TDVP_METHODS)
    krylov_tol = check_number("krylov_tol", krylov_tol)
    if psi.n_sites < 2:
        raise ValueError(f"`psi` must have at least 2 sites for TDVP, got {psi.n_sites}.")
    mpo = placed_like(mpo, psi)  # the run goes where the state is
    dtype = working_dtype(psi.backend, psi.dtype, mpo.dtype, complex_=not imaginary)
    if is_single_precision(dtype):  # what float32 arithmetic can resolve
        krylov_tol = max(krylov_tol, SINGLE_KRYLOV_TOL)
    bond = max(max_bond or psi.max_bond_dim, psi.max_bond_dim)
    with blas_threads(bond, GEMM_THREAD_BOND), krylov_workspace():
        return _evolve(
            psi,
            mpo,
            _TDVPRun(
                dt=dt,
                n_steps=n_steps,
                method=method,
                max_bond=max_bond,
                cutoff=cutoff,
                imaginary=imaginary,
                callback=callback,
                record_every=record_every,
                krylov_tol=krylov_tol,
                progress=progress,
                dtype=dtype,
            ),
        )


@dataclass(frozen=True)
class _TDVPRun:
    """One TDVP run's options, checked by :func:`tdvp` (internal)."""

    dt: Any
    n_steps: int
    method: str
    max_bond: Any
    cutoff: float
    imaginary: bool
    callback: Any
    record_every: int
    krylov_tol: float
    progress: bool
    dtype: Any


def _evolve(psi, mpo, opts: _TDVPRun) -> EvolutionResult:
    psi = psi.canonicalize(0)
    norm0 = psi.norm()
    tensors = [astype(a, opts.dtype) for a in psi.tensors]
    ws = [astype(w, opts.dtype) for w in mpo.tensors]
    stepper = _Stepper(
        tensors,
        ws,
        Environments(tensors, ws),
        opts.max_bond,
        opts.cutoff,
        opts.krylov_tol,
        _bond_caps(psi, opts.max_bond),
    )
    two_site = TDVP_METHODS[opts.method]
    factor = -opts.dt / 2 if opts.imaginary else -0.5j * opts.dt

    def step() -> tuple[float, int]:
        discarded = stepper.sweep(factor, two_site)
        if opts.imaginary:
            tensors[0] = tensors[0] * (norm0 / norm(tensors[0]))
            stepper.envs.invalidate(0)
        return discarded, 0

    return run_steps(
        step,
        tensors,
        dt=opts.dt,
        n_steps=opts.n_steps,
        callback=opts.callback,
        record_every=opts.record_every,
        progress=opts.progress,
        desc="TDVP steps",
    )


#: Floor of ``krylov_tol`` for runs in single precision (``float32``/``complex64`` tensors).
SINGLE_KRYLOV_TOL = 1e-6


def _bond_caps(psi: MatrixProductState, max_bond: int | None) -> list[int]:
    dims = psi.phys_dims
    caps = []
    for b in range(len(dims) - 1):
        cap = min(math.prod(dims[: b + 1]), math.prod(dims[b + 1 :]))
        caps.append(cap if max_bond is None else min(cap, max_bond))
    return caps


def check_evolution_options(
    dt: Any, n_steps: Any, max_bond: Any, cutoff: Any, record_every: Any, callback: Any
) -> tuple[float, int, int | None, float, int]:
    """Check the options :func:`tdvp` and :func:`~tnkit.algorithms.tebd.tebd` share; return them
    normalised (``dt, n_steps, max_bond, cutoff, record_every``)."""
    out = (
        check_number("dt", dt),
        check_int("n_steps", n_steps, minimum=0),
        check_max_bond(max_bond),
        check_cutoff(cutoff),
        check_int("record_every", record_every, minimum=1),
    )
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {type(callback).__name__}.")
    return out


def run_steps(
    step: Callable[[], tuple[float, int]],
    tensors: list[np.ndarray],
    *,
    dt: float,
    n_steps: int,
    callback: Callable[[float, MatrixProductState], Any] | None,
    record_every: int,
    progress: bool | None,
    desc: str,
) -> EvolutionResult:
    """Call ``step()`` ``n_steps`` times, timing it, recording observables and a progress bar.

    ``step`` advances ``tensors`` (in place) by ``dt`` and returns the discarded weight of
    the step and the orthogonality centre it left the tensors in.
    """
    recorder = Recorder(callback, record_every)
    center = 0
    recorder.record(0, 0.0, tensors, center)
    errors, bonds = [], []
    elapsed = 0.0
    bar = progress_bar(n_steps, progress, desc)
    try:
        for k in range(1, n_steps + 1):
            start = time.perf_counter()
            discarded, center = step()
            errors.append(discarded)
            bonds.append(max(a.shape[2] for a in tensors))
            elapsed += time.perf_counter() - start
            recorder.record(k, k * dt, tensors, center)
            if bar is not None:
                bar.update()
                bar.set_postfix(t=f"{k * dt:.4g}", bond=bonds[-1])
    finally:
        if bar is not None:
            bar.close()
    return EvolutionResult(
        state_from_tensors(tensors, center),
        tuple(recorder.times),
        tuple(recorder.records),
        tuple(errors),
        tuple(bonds),
        elapsed,
    )


class Recorder:
    """Calls ``callback(t, state)`` every ``every`` steps and keeps the results."""

    def __init__(self, callback: Callable[[float, MatrixProductState], Any] | None, every: int) -> None:
        self.callback, self.every = callback, every
        self.times: list[float] = []
        self.records: list[Any] = []

    def record(self, step: int, t: float, tensors: list[np.ndarray], center: int = 0) -> None:
        if step % self.every:
            return
        self.times.append(t)
        if self.callback is not None:
            self.records.append(self.callback(t, state_from_tensors(list(tensors), center)))
