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

Higher order (``order=4``) composes the symmetric second-order sweep ``S`` into
``S(p dt) S((1 - 2p) dt) S(p dt)`` with ``p = 1 / (2 - 2**(1/3))`` (Suzuki, Yoshida: the
triple jump, whose middle sub-step runs backward): the splitting error per unit time
falls from ``O(dt**2)`` to ``O(dt**4)`` for three sweeps per step.

A step schedule (``dt`` a sequence of step sizes) takes small steps where the dynamics
are fast and the bonds small, and large ones once the bonds are capped and a step costs
the most: the cost of a one-site sweep grows only slowly with its step (the Krylov
spaces get a few vectors larger), so the cost per unit time falls nearly as ``1/dt``.

Imaginary time (``imaginary=True``) replaces ``-i dt`` by ``-dt`` and renormalises
the state after each step, converging to the ground state.

Observables are recorded by ``callback(t, state)``, called at ``t = 0`` and after
every ``record_every`` steps; whatever it returns is kept in the result.

References
----------
J. Haegeman, C. Lubich, I. Oseledets, B. Vandereycken, F. Verstraete,
Phys. Rev. B 94, 165116 (2016), arXiv:1408.5056;
S. Paeckel et al., Ann. Phys. 411, 167998 (2019), arXiv:1901.05824;
the compositions: M. Suzuki, Phys. Lett. A 146, 319 (1990);
H. Yoshida, Phys. Lett. A 150, 262 (1990).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
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

__all__ = ["tdvp", "EvolutionResult", "TDVP_METHODS", "TDVP_ORDERS", "check_time_steps"]


@dataclass(frozen=True, repr=False)
class EvolutionResult:
    """Outcome of :func:`tdvp` or :func:`~tnkit.algorithms.tebd.tebd`.

    Attributes
    ----------
    state : MatrixProductState
        The state at the final time.
    times : tuple of float
        Recording times: ``0`` and every ``record_every`` steps (the sum of the steps so far).
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

_P4 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))

#: Sub-steps of one step, as fractions of ``dt``, for each order: ``2`` is one symmetric
#: sweep; ``4`` the triple jump ``p, 1 - 2p, p`` of it with ``p = 1 / (2 - 2**(1/3))``
#: (three sweeps, the middle one backward in time).
TDVP_ORDERS: dict[int, tuple[float, ...]] = {2: (1.0,), 4: (_P4, 1.0 - 2.0 * _P4, _P4)}


def tdvp(
    psi: MatrixProductState,
    mpo: MatrixProductOperator,
    *,
    dt: float | Sequence[float],
    n_steps: int | None = None,
    method: str = "two-site",
    order: int = 2,
    max_bond: int | None = 64,
    cutoff: float = 1e-12,
    imaginary: bool = False,
    callback: Callable[[float, MatrixProductState], Any] | None = None,
    record_every: int = 1,
    krylov_tol: float = 1e-12,
    progress: bool | None = None,
) -> EvolutionResult:
    """Evolve ``psi`` by ``exp(-i H t)`` (or ``exp(-H t)``) with TDVP, in ``n_steps`` steps of ``dt``
    or in the steps of a schedule ``dt = [dt_1, dt_2, ...]``.

    Parameters
    ----------
    psi : MatrixProductState
        Initial state (not modified); real states are made complex for real time.
        The run goes where its tensors are (numpy, or torch on the CPU or a GPU).
    mpo : MatrixProductOperator
        Hermitian Hamiltonian ``H``; moved to ``psi``'s library and device.
    dt : float or sequence of float
        Time step (> 0), or the schedule of steps (each > 0; the final time is their
        sum). The splitting error per unit time is ``O(dt**order)``. A schedule such as
        ``[0.05] * 40 + [0.5] * 6`` takes small steps through the fast early dynamics,
        while the bonds are small and a step is cheap, and large ones once the bonds are
        capped (see the module notes).
    n_steps : int, optional
        Number of steps of a single ``dt`` (required then); the final time is
        ``n_steps * dt``. With a schedule, omit it (or give ``len(dt)``).
    method : {"two-site", "one-site", "hybrid"}
        Two-site TDVP grows bonds up to ``max_bond``; one-site keeps the bonds of
        ``psi`` (conserving norm and energy to the Krylov tolerance); hybrid crosses
        each bond by a two-site block while the bond is below ``max_bond`` (and below
        the dimension of the Hilbert space on either side) and by a one-site step once
        it has reached it, which costs about a third of a two-site block.
    order : {2, 4}
        Order of the integrator in ``dt``: one symmetric sweep per step (2), or the
        triple-jump composition of three sweeps (4, see :data:`TDVP_ORDERS`).
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
        Steps between callback calls (with a schedule, the times are the sums of the
        steps taken).
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
    >>> res = tdvp(psi, h, dt=[0.05] * 4 + [0.2] * 4, method="hybrid", max_bond=16, progress=False)
    >>> round(res.times[-1], 12)
    1.0
    """
    check_hamiltonian("mpo", mpo)
    psi = check_state("psi", psi, mpo.in_dims)
    steps = check_time_steps(dt, n_steps)
    max_bond, cutoff, record_every = check_evolution_options(max_bond, cutoff, record_every, callback)
    check_option("method", method, TDVP_METHODS)
    check_option("order", order, TDVP_ORDERS)
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
                steps=steps,
                method=method,
                order=order,
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

    steps: list[float]
    method: str
    order: int
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
    fractions = TDVP_ORDERS[opts.order]

    def step(dt: float) -> tuple[float, int]:
        discarded = 0.0
        for fraction in fractions:
            half = fraction * dt / 2
            discarded += stepper.sweep(-half if opts.imaginary else -1j * half, two_site)
        if opts.imaginary:
            tensors[0] = tensors[0] * (norm0 / norm(tensors[0]))
            stepper.envs.invalidate(0)
        return discarded, 0

    return run_steps(
        step,
        tensors,
        steps=opts.steps,
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


def check_time_steps(dt: Any, n_steps: Any) -> list[float]:
    """The steps of an evolution: ``n_steps`` times a single ``dt``, or the schedule ``dt``.

    ``dt`` is a real number > 0 with ``n_steps`` an integer >= 0, or a one-dimensional
    sequence of real numbers > 0 with ``n_steps`` ``None`` or its length. Raises
    ``TypeError`` or ``ValueError`` naming the argument otherwise.
    """
    if isinstance(dt, np.ndarray) and dt.ndim == 0:
        dt = dt.item()
    if isinstance(dt, numbers.Number) and not isinstance(dt, bool):
        step = check_number("dt", dt)
        if n_steps is None:
            raise TypeError("`n_steps` is required with a single time step `dt` (or give `dt` as a schedule).")
        return [step] * check_int("n_steps", n_steps, minimum=0)
    if isinstance(dt, (str, bytes, bool)) or not isinstance(dt, (Sequence, np.ndarray)):
        raise TypeError(f"`dt` must be a real number or a sequence of them, got {type(dt).__name__}.")
    if np.ndim(dt) != 1:
        raise ValueError(f"`dt` as a schedule must be one-dimensional, got shape {np.shape(dt)}.")
    steps = [check_number(f"dt[{k}]", x) for k, x in enumerate(dt)]
    if not steps:
        raise ValueError("`dt` as a schedule must hold at least one step, got an empty sequence.")
    if n_steps is not None and check_int("n_steps", n_steps, minimum=0) != len(steps):
        raise ValueError(
            f"`n_steps` must be omitted or equal to the length of the schedule `dt` ({len(steps)}), got {n_steps}."
        )
    return steps


def check_evolution_options(
    max_bond: Any, cutoff: Any, record_every: Any, callback: Any
) -> tuple[int | None, float, int]:
    """Check the options :func:`tdvp` and :func:`~tnkit.algorithms.tebd.tebd` share besides the
    steps (:func:`check_time_steps`); return them normalised (``max_bond, cutoff, record_every``)."""
    out = (
        check_max_bond(max_bond),
        check_cutoff(cutoff),
        check_int("record_every", record_every, minimum=1),
    )
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {type(callback).__name__}.")
    return out


def run_steps(
    step: Callable[[float], tuple[float, int]],
    tensors: list[np.ndarray],
    *,
    steps: Sequence[float],
    callback: Callable[[float, MatrixProductState], Any] | None,
    record_every: int,
    progress: bool | None,
    desc: str,
) -> EvolutionResult:
    """Call ``step(dt)`` for each ``dt`` of ``steps``, timing it, recording observables and a
    progress bar.

    ``step`` advances ``tensors`` (in place) by ``dt`` and returns the discarded weight of
    the step and the orthogonality centre it left the tensors in.
    """
    recorder = Recorder(callback, record_every)
    center = 0
    recorder.record(0, 0.0, tensors, center)
    errors, bonds = [], []
    elapsed = 0.0
    bar = progress_bar(len(steps), progress, desc)
    try:
        for k, (dt, t) in enumerate(zip(steps, _elapsed(steps), strict=True), start=1):
            start = time.perf_counter()
            discarded, center = step(dt)
            errors.append(discarded)
            bonds.append(max(a.shape[2] for a in tensors))
            elapsed += time.perf_counter() - start
            recorder.record(k, t, tensors, center)
            if bar is not None:
                bar.update()
                bar.set_postfix(t=f"{t:.4g}", bond=bonds[-1])
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


def _elapsed(steps: Sequence[float]) -> list[float]:
    """The time after each step: ``k * dt`` for equal steps, else the running sum with
    Neumaier's compensation (so that ``[0.05] * 20`` ends at ``1.0``, not ``1.0000000000000002``)."""
    if all(x == steps[0] for x in steps):
        return [k * steps[0] for k in range(1, len(steps) + 1)]
    out, total, comp = [], 0.0, 0.0
    for x in steps:
        t = total + x
        comp += (total - t) + x if abs(total) >= abs(x) else (x - t) + total
        total = t
        out.append(total + comp)
    return out


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
