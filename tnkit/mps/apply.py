"""Applying an MPO to an MPS, and multiplying MPOs, with truncation.

Methods of :func:`apply_mpo`
----------------------------
``"direct"``
    Exact product (bond ``D * w``), then SVD compression. Optimal sequential
    truncation, but the canonicalisation runs at bond ``D * w``.
``"dm"``
    Density-matrix method: right environments of ``W|psi><psi|W^dagger`` are built
    from the factors (never forming the product), then each site's basis is chosen
    from its reduced density matrix, left to right, in any gauge of ``|psi>``
    (:func:`tnkit.mps.truncation.density_matrix_truncation`). The same truncation as
    ``"direct"`` at a fraction of its cost. Being eigenvalues of ``rho``, weights
    are resolved only down to ``tnkit.mps.truncation.DM_WEIGHT_FLOOR`` (1e-14) of the total, so
    this method never keeps directions below that floor.
``"zipup"`` (default)
    Stoudenmire & White (2010, arXiv:1002.1305): with ``|psi>`` right-canonical,
    contract and split site by site from the left, truncating to ``max_bond`` with
    a tenth of ``cutoff``, then one SVD sweep back that applies ``cutoff`` and
    leaves the result right-canonical. Cheapest; the truncations see a
    non-orthogonal right part, so it is slightly less accurate.
``"src"``
    Successive randomized compression (Camaño, Epperly & Tropp 2025,
    :func:`tnkit.mps.truncation.randomized_truncation`): random sketches of the left
    half pick each site's basis from the right, with GEMMs and one small QR per
    site and no SVD. The fastest method at large bond, to exactly ``max_bond``
    (required; ``cutoff`` is not used), with an error a little above the optimal
    truncation's; ``seed`` makes it reproducible.
``"fit"``
    Zip-up as the starting point, then two-site variational sweeps
    (:func:`tnkit.mps.truncation.fit_compress`) to the optimum at that bond.

With ``return_report=True`` the returned :class:`~tnkit.mps.TruncationReport`
carries, for every method, the exact fidelity of the result against the exact
``W|psi>`` (one extra transfer sweep with ``W^dagger W``) and ``error = 1 -
fidelity``; its ``discarded`` field lists each bond's discarded weight relative to
``<psi|W^dagger W|psi>`` (exact for ``"direct"`` and ``"dm"``, the zip-up's own
estimate otherwise).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import backend
from ..core.contract import contract
from ..core.linalg import DEFAULT_CUTOFF, truncated_svd
from ..core.rng import as_generator
from ..core.threads import with_blas_threads
from ..core.validate import check_cutoff, check_int, check_max_bond, check_option
from . import overlap
from .chain import format_dims, placed_like
from .truncation import (
    TruncationReport,
    density_matrix_truncation,
    fit_compress,
    randomized_truncation,
    svd_compress,
)
from .mpo import MatrixProductOperator
from .mps import MatrixProductState

__all__ = ["apply_mpo", "mpo_product", "APPLY_METHODS"]


def _apply_bond(mpo: Any, mps: Any, *args: Any, method: str = "zipup", **kwargs: Any) -> int:
    d = getattr(mps, "max_bond_dim", 1)
    return d * getattr(mpo, "max_bond_dim", 1) if method == "direct" else d


@with_blas_threads(_apply_bond)
def apply_mpo(
    mpo: MatrixProductOperator,
    mps: MatrixProductState,
    *,
    method: str = "zipup",
    max_bond: int | None = None,
    cutoff: float = DEFAULT_CUTOFF,
    max_sweeps: int = 4,
    tol: float = 1e-10,
    seed: Any = None,
    return_report: bool = False,
) -> MatrixProductState | tuple[MatrixProductState, TruncationReport]:
    """``W |psi>`` truncated to ``max_bond`` / ``cutoff``.

    Parameters
    ----------
    mpo : MatrixProductOperator
    mps : MatrixProductState
    method : {"zipup", "dm", "direct", "src", "fit"}
        See the module docstring.
    max_bond, cutoff
        Truncation of the result (see :mod:`tnkit.core.linalg`).
    max_sweeps, tol
        Sweeps of the ``"fit"`` method.
    seed : None, int or numpy.random.Generator
        Randomness of the ``"src"`` method.
    return_report : bool
        Also return a :class:`~tnkit.mps.TruncationReport` with the exact fidelity.

    Returns
    -------
    MatrixProductState, or (MatrixProductState, TruncationReport)
        The result is not renormalised.
    """
    if not isinstance(mpo, MatrixProductOperator):
        raise TypeError(f"`mpo` must be a MatrixProductOperator, got {type(mpo).__name__}.")
    if not isinstance(mps, MatrixProductState):
        raise TypeError(f"`mps` must be a MatrixProductState, got {type(mps).__name__}.")
    if mpo.in_dims != mps.phys_dims:
        raise ValueError(
            f"the MPO's input dims {format_dims(mpo.in_dims)} ({mpo.n_sites} sites) do not match the "
            f"state's physical dims {format_dims(mps.phys_dims)} ({mps.n_sites} sites)."
        )
    check_option("method", method, APPLY_METHODS)
    max_bond = check_max_bond(max_bond)
    cutoff = check_cutoff(cutoff)
    method_fn = APPLY_METHODS[method]
    mpo = placed_like(mpo, mps)
    options = dict(max_bond=max_bond, cutoff=cutoff, max_sweeps=max_sweeps, tol=tol, seed=seed)
    result, estimate = method_fn(mpo, mps, **options)
    if not return_report:
        return result
    return result, _exact_report(estimate, mpo, mps, result)


def mpo_product(
    a: MatrixProductOperator,
    b: MatrixProductOperator,
    *,
    max_bond: int | None = None,
    cutoff: float = 0.0,
) -> MatrixProductOperator:
    """``A @ B`` (apply ``B`` first), exact unless ``max_bond``/``cutoff`` ask to compress."""
    if not isinstance(a, MatrixProductOperator) or not isinstance(b, MatrixProductOperator):
        raise TypeError("`a` and `b` must be MatrixProductOperators.")
    if a.in_dims != b.out_dims:
        raise ValueError(
            f"cannot multiply: the left operator's input dims {format_dims(a.in_dims)} differ from the right "
            f"operator's output dims {format_dims(b.out_dims)}."
        )
    tensors = []
    b = placed_like(b, a)
    for x, y in zip(a.tensors, b.tensors):
        t = contract("atub,wusv->awtsbv", x, y)
        s = t.shape
        tensors.append(t.reshape(s[0] * s[1], s[2], s[3], s[4] * s[5]))
    product = MatrixProductOperator.from_tensors(tensors, validate=False)
    max_bond = check_max_bond(max_bond)
    cutoff = check_cutoff(cutoff)
    if max_bond is None and cutoff == 0.0:
        return product
    return product.compress(max_bond=max_bond, cutoff=cutoff)[0]


# ---------------------------------------------------------------------- methods
#
# Each method of :func:`apply_mpo` is one function
# ``(mpo, mps, *, max_bond, cutoff, max_sweeps, tol, seed) -> (result, estimate)``
# registered in :data:`APPLY_METHODS`; the estimate is replaced by the exact
# report when one is asked for.


def _apply_direct(mpo, mps, *, max_bond, cutoff, **_: Any):
    tensors = _direct_product(list(mpo.tensors), list(mps.tensors))
    if max_bond is None and cutoff == 0.0:
        result = MatrixProductState.from_tensors(tensors, validate=False)
        return result, TruncationReport("direct", 0.0, (0.0,) * len(mps.bond_dims), result.bond_dims, 1.0)
    tensors, bounds, estimate = svd_compress(tensors, 0, len(tensors), max_bond=max_bond, cutoff=cutoff)
    result = MatrixProductState.from_tensors(tensors, canonical_range=bounds, validate=False)
    return result, dataclasses.replace(estimate, method="direct")


def _apply_src(mpo, mps, *, max_bond, seed, **_: Any):
    if max_bond is None:
        raise ValueError("method 'src' compresses to a fixed bond: give `max_bond`.")
    rng = as_generator(seed)
    tensors = randomized_truncation(list(mps.tensors), list(mpo.tensors), max_bond=max_bond, rng=rng)
    result = MatrixProductState.from_tensors(tensors, canonical_range=(0, 1), validate=False)
    return result, TruncationReport("src", math.nan, (math.nan,) * len(result.bond_dims), result.bond_dims)


def _apply_dm(mpo, mps, *, max_bond, cutoff, **_: Any):
    tensors, discarded = density_matrix_truncation(
        list(mps.tensors), list(mpo.tensors), max_bond=max_bond, cutoff=cutoff
    )
    n = len(tensors)
    result = MatrixProductState.from_tensors(tensors, canonical_range=(n - 1, n), validate=False)
    return result, _report("dm", discarded, result)


def _apply_zipup(mpo, mps, *, max_bond, cutoff, **_: Any):
    tensors, discarded = _zipup(list(mpo.tensors), list(mps.canonicalize(0).tensors), max_bond, cutoff)
    n = len(tensors)
    tensors, bounds, final = svd_compress(tensors, n - 1, n, max_bond=max_bond, cutoff=cutoff)
    result = MatrixProductState.from_tensors(tensors, canonical_range=bounds, validate=False)
    zip_est = _report("zipup", discarded, result)
    estimate = TruncationReport(
        "zipup",
        zip_est.error + final.error,
        tuple(x + y for x, y in zip(zip_est.discarded, final.discarded)),
        result.bond_dims,
    )
    return result, estimate


def _apply_fit(mpo, mps, *, max_bond, cutoff, max_sweeps, tol, **_: Any):
    max_sweeps = check_int("max_sweeps", max_sweeps, minimum=1)
    start, _estimate = _apply_zipup(mpo, mps, max_bond=max_bond, cutoff=cutoff)
    fitted, report = fit_compress(
        list(mps.tensors),
        list(start.canonicalize(0).tensors),
        mpo=list(mpo.tensors),
        max_bond=max_bond,
        cutoff=cutoff,
        max_sweeps=max_sweeps,
        tol=tol,
        target_norm2=math.exp(_log_norm2_of_product(mpo, mps)),
    )
    return MatrixProductState.from_tensors(fitted, canonical_range=(0, 1), validate=False), report


#: The methods of :func:`apply_mpo` by name (see the module docstring); adding a
#: method is one function of the signature above and one entry here.
APPLY_METHODS: dict[str, Callable[..., tuple[MatrixProductState, TruncationReport]]] = {
    "zipup": _apply_zipup,
    "dm": _apply_dm,
    "direct": _apply_direct,
    "src": _apply_src,
    "fit": _apply_fit,
}


# ---------------------------------------------------------------------- algorithms


def _direct_product(w: list[np.ndarray], a: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for wi, ai in zip(w, a):
        t = contract("wtsv,asb->awtbv", wi, ai)
        s = t.shape
        out.append(t.reshape(s[0] * s[1], s[2], s[3] * s[4]))
    return out


def _zipup(w, a, max_bond, cutoff):
    """Left-to-right zip-up; returns left-isometric sites (last holds the norm)."""
    n = len(a)
    relaxed_cutoff = cutoff / 10
    carry = backend.ones((1, 1, 1), like=a[0], dtype=backend.result_type(w[0], a[0]))  # (new bond, w, psi bond)
    out, discarded = [], []
    for i in range(n):
        t = contract("xwb,wtsv,bsc->xtvc", carry, w[i], a[i])
        x, tt, v, c = t.shape
        if i == n - 1:
            out.append(t.reshape(x, tt, 1))
            break
        u, s, vh, disc = truncated_svd(t.reshape(x * tt, v * c), max_bond=max_bond, cutoff=relaxed_cutoff)
        total = disc + backend.norm2(s)
        discarded.append(disc / total if total > 0 else 0.0)
        out.append(u.reshape(x, tt, len(s)))
        carry = (s[:, None] * vh).reshape(len(s), v, c)
    return out, discarded




def _report(method: str, discarded: list[float], result: MatrixProductState) -> TruncationReport:
    return TruncationReport(method, float(sum(discarded)), tuple(discarded), result.bond_dims)


def _log_norm2_of_product(mpo: MatrixProductOperator, mps: MatrixProductState) -> float:
    """``log <psi|W^dagger W|psi>``."""
    wdw = mpo_product(mpo.dagger(), mpo)
    return overlap.log_overlap(mps.tensors, mps.tensors, wdw.tensors)[1]


def _exact_report(
    estimate: TruncationReport, mpo: MatrixProductOperator, mps: MatrixProductState, result: MatrixProductState
) -> TruncationReport:
    """Replace the estimate by the exact fidelity of ``result`` against ``W|psi>``."""
    _, log_cross = overlap.log_overlap(result.tensors, mps.tensors, mpo.tensors)
    log_target = _log_norm2_of_product(mpo, mps)
    if log_cross == -math.inf:
        fidelity = 0.0
    else:
        fidelity = min(math.exp(2 * log_cross - log_target - 2 * result.log_norm()), 1.0)
    return TruncationReport(
        estimate.method,
        1.0 - fidelity,
        estimate.discarded,
        result.bond_dims,
        fidelity=fidelity,
        sweeps=estimate.sweeps,
    )
