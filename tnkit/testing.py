"""Helpers for testing code built on tnkit (and tnkit itself).

``TOL`` is the one table of tolerances per dtype; :func:`assert_states_close`
compares two states up to a global phase through their overlap, so it works on
states too large for dense vectors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .mps.mps import MatrixProductState

__all__ = ["TOL", "tolerance", "random_mps", "assert_states_close"]

#: Relative tolerances by dtype: float64/complex128 1e-10, float32/complex64 1e-4.
TOL = {
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex128): 1e-10,
    np.dtype(np.float32): 1e-4,
    np.dtype(np.complex64): 1e-4,
}


def tolerance(dtype: Any) -> float:
    """The relative tolerance of ``TOL`` for ``dtype``."""
    return TOL[np.dtype(dtype)]


def random_mps(
    n_sites: int, max_bond: int, *, phys_dim: int = 2, dtype: Any = np.float64, seed: object = 0
) -> MatrixProductState:
    """A seeded, normalised random MPS (see :meth:`MatrixProductState.random`)."""
    return MatrixProductState.random(n_sites, max_bond, phys_dim=phys_dim, dtype=dtype, seed=seed)


def assert_states_close(
    actual: MatrixProductState, desired: MatrixProductState, *, rtol: float | None = None, phase: bool = False
) -> None:
    """Assert ``actual`` and ``desired`` are the same state to ``rtol``.

    Compares norms and the fidelity; with ``phase=True`` also the global phase,
    i.e. ``||actual - desired|| <= rtol * ||desired||``.
    """
    if rtol is None:
        rtol = tolerance(np.result_type(actual.dtype, desired.dtype))
    norm_a, norm_d = actual.norm(), desired.norm()
    if not math.isclose(norm_a, norm_d, rel_tol=rtol, abs_tol=0.0):
        raise AssertionError(f"norms differ: {norm_a!r} vs {norm_d!r} (rtol={rtol})")
    fidelity = actual.fidelity(desired)
    if not 1.0 - fidelity <= 2 * rtol:
        raise AssertionError(f"states differ: fidelity {fidelity!r} (1 - fidelity > {2 * rtol})")
    if phase:
        diff2 = norm_a**2 + norm_d**2 - 2 * complex(desired.inner(actual)).real
        if not max(diff2, 0.0) ** 0.5 <= rtol * max(norm_d, 1e-300) * 10:
            raise AssertionError(f"states differ by a phase or more: ||a - d|| = {max(diff2, 0.0) ** 0.5!r}")
