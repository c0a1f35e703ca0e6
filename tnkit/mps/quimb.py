"""Exact conversion between tnkit and quimb matrix product states and operators.

quimb is imported only when a conversion is asked for. quimb stores the first and
last site tensors without their size-1 outer bond; tnkit keeps it. For MPOs,
quimb's upper index (``k{i}``) is tnkit's output index and the lower (``b{i}``)
the input, so ``to_dense`` agrees between the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import backend

__all__ = ["mps_to_quimb", "mps_from_quimb", "mpo_to_quimb", "mpo_from_quimb"]


def _quimb_tensor() -> Any:
    try:
        import quimb.tensor as qtn
    except ImportError as exc:  # pragma: no cover - quimb is a core dependency
        raise ImportError("quimb interop needs quimb: pip install quimb") from exc
    return qtn


def _strip_outer_bonds(arrays: list[np.ndarray]) -> list[np.ndarray]:
    if len(arrays) == 1:
        return arrays
    return [arrays[0][0], *arrays[1:-1], arrays[-1][..., 0]]


def mps_to_quimb(mps: Any) -> Any:
    """A ``quimb.tensor.MatrixProductState`` equal to ``mps``."""
    qtn = _quimb_tensor()
    arrays = [backend.copy(t) for t in mps.tensors]  # quimb may write its arrays; torch tensors stay torch
    if len(arrays) == 1:
        return qtn.MatrixProductState([arrays[0][0, :, 0]], shape="lrp")
    return qtn.MatrixProductState(_strip_outer_bonds(arrays), shape="lpr")


def _site_arrays(qtn_1d: Any, physical_inds: Any) -> list[np.ndarray]:
    """Site arrays of a quimb 1D network as ``(left, *physical, right)``, outer bonds of size 1."""
    if getattr(qtn_1d, "cyclic", False):
        raise ValueError("periodic (cyclic) quimb networks have no tnkit equivalent; tnkit chains are open.")
    n = qtn_1d.L
    tensors = []
    for i in range(n):
        inds = list(physical_inds(i))
        if i > 0:
            inds.insert(0, qtn_1d.bond(i - 1, i))
        if i < n - 1:
            inds.append(qtn_1d.bond(i, i + 1))
        data = qtn_1d[qtn_1d.site_tag(i)].transpose(*inds).data
        if backend.library_of(data) not in ("torch", "cupy"):
            data = np.asarray(data)
        if i == 0:
            data = data[None]
        if i == n - 1:
            data = data[..., None]
        tensors.append(data)
    return tensors


def mps_from_quimb(qmps: Any) -> Any:
    """A tnkit MPS equal to a ``quimb.tensor.MatrixProductState`` (any index order)."""
    from ..mps.mps import MatrixProductState

    qtn = _quimb_tensor()
    if not isinstance(qmps, qtn.MatrixProductState):
        raise TypeError(f"`qmps` must be a quimb MatrixProductState, got {type(qmps).__name__}.")
    return MatrixProductState(_site_arrays(qmps, lambda i: [qmps.site_ind(i)]))


def mpo_to_quimb(mpo: Any) -> Any:
    """A ``quimb.tensor.MatrixProductOperator`` equal to ``mpo``."""
    qtn = _quimb_tensor()
    arrays = [backend.copy(t) for t in mpo.tensors]
    if len(arrays) == 1:
        return qtn.MatrixProductOperator([arrays[0][0, :, :, 0]], shape="lrud")
    return qtn.MatrixProductOperator(_strip_outer_bonds(arrays), shape="ludr")


def mpo_from_quimb(qmpo: Any) -> Any:
    """A tnkit MPO equal to a ``quimb.tensor.MatrixProductOperator`` (any index order)."""
    from ..mps.mpo import MatrixProductOperator

    qtn = _quimb_tensor()
    if not isinstance(qmpo, qtn.MatrixProductOperator):
        raise TypeError(f"`qmpo` must be a quimb MatrixProductOperator, got {type(qmpo).__name__}.")
    return MatrixProductOperator(_site_arrays(qmpo, lambda i: [qmpo.upper_ind(i), qmpo.lower_ind(i)]))
