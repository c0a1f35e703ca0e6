"""Cached MPO environments and the matrix-free effective Hamiltonians of sweeps.

Leg conventions
---------------
MPS site tensors ``A`` are ``(D_left, d, D_right)`` and MPO tensors ``W`` are
``(w_left, d_out, d_in, w_right)`` (see :mod:`tnkit.mps.mps` and :mod:`tnkit.mps.mpo`).
The left environment of site ``i`` contracts sites ``0 .. i-1`` of
``<psi| H |psi>``, the right environment sites ``i+1 .. N-1``; both carry the bra
leg first (conjugated), the MPO leg in the middle and the ket leg last::

    +--- a  (bra, conj)          b ---+
    |                                 |
    L--- w  (MPO)                v ---R        L[i]: (D_i, w_i, D_i)
    |                                 |        R[i]: (D_{i+1}, w_{i+1}, D_{i+1})
    +--- a' (ket)                b'---+

The effective Hamiltonian of sites ``(i, i+1)`` acts on the two-site tensor
``theta[a', s1, s2, b']``::

    H_eff theta = L[i] -- W[i] -- W[i+1] -- R[i+1]   (contracted with theta below)
                  |        |        |         |
                  +------- theta[a', s1, s2, b'] -+

and is Hermitian when the MPO is. :class:`Environments` keeps ``L`` and ``R`` for
one MPS/MPO pair and recomputes an entry only when a sweep moves past it (each
update costs ``O(D^3 w d + D^2 w^2 d^2)``). :class:`OverlapEnvironments` does the
same for the overlap ``<phi|psi>`` with a fixed state ``phi``; it gives the local
image of ``phi`` that DMRG projects out to find excited states.

Every contraction is a sequence of pairwise ``numpy.tensordot`` calls (BLAS GEMM),
in the order that keeps the cost cubic in ``D``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "Environments",
    "OverlapEnvironments",
    "extend_left",
    "extend_right",
    "apply_two_site",
    "apply_one_site",
    "apply_zero_site",
    "boundary",
]


def boundary(dtype: np.dtype, mpo_leg: bool = True) -> np.ndarray:
    """The trivial environment beyond an end of the chain: ``ones((1, 1, 1))`` (or ``(1, 1)``)."""
    return np.ones((1, 1, 1) if mpo_leg else (1, 1), dtype=dtype)


def extend_left(env: np.ndarray, a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``L[i+1]`` from ``L[i]``, site tensor ``a = A[i]`` (ket; the bra is ``conj(a)``) and ``w = W[i]``."""
    t = np.tensordot(env, a, axes=(2, 0))  # (a, w, s, b')
    t = np.tensordot(t, w, axes=([1, 2], [0, 2]))  # (a, b', t, v)
    t = np.tensordot(a.conj(), t, axes=([0, 1], [0, 2]))  # (b, b', v)
    return np.ascontiguousarray(t.transpose(0, 2, 1))


def extend_right(env: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``R[i-1]`` from ``R[i]``, site tensor ``b = A[i]`` and ``w = W[i]``."""
    t = np.tensordot(b, env, axes=(2, 2))  # (a', s, b, v)
    t = np.tensordot(t, w, axes=([1, 3], [2, 3]))  # (a', b, w, t)
    t = np.tensordot(b.conj(), t, axes=([1, 2], [3, 1]))  # (a, a', w)
    return np.ascontiguousarray(t.transpose(0, 2, 1))


def apply_two_site(
    left: np.ndarray, w1: np.ndarray, w2: np.ndarray, right: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """``H_eff @ theta`` for a two-site tensor ``theta[a', s1, s2, b']``."""
    t = np.tensordot(left, theta, axes=(2, 0))  # (a, w, s1, s2, b')
    t = np.tensordot(t, w1, axes=([1, 2], [0, 2]))  # (a, s2, b', t1, v)
    t = np.tensordot(t, w2, axes=([4, 1], [0, 2]))  # (a, b', t1, t2, u)
    return np.tensordot(t, right, axes=([1, 4], [2, 1]))  # (a, t1, t2, b)


def apply_one_site(left: np.ndarray, w: np.ndarray, right: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``H_eff @ theta`` for a one-site tensor ``theta[a', s, b']``."""
    t = np.tensordot(left, theta, axes=(2, 0))  # (a, w, s, b')
    t = np.tensordot(t, w, axes=([1, 2], [0, 2]))  # (a, b', t, v)
    return np.tensordot(t, right, axes=([1, 3], [2, 1]))  # (a, t, b)


def apply_zero_site(left: np.ndarray, right: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``H_eff @ c`` for a bond matrix ``c[a', b']`` between ``left`` and ``right``."""
    t = np.tensordot(left, c, axes=(2, 0))  # (a, w, b')
    return np.tensordot(t, right, axes=([1, 2], [1, 2]))  # (a, b)


class Environments:
    """Left and right MPO environments of a chain of site tensors, updated lazily.

    Parameters
    ----------
    tensors : list of numpy.ndarray
        The MPS site tensors, shared with the sweep that owns them: after changing
        site ``i`` the sweep calls :meth:`invalidate` (or uses the ``move_*``
        helpers) so that stale environments are recomputed.
    mpo : sequence of numpy.ndarray
        MPO site tensors ``(w, d_out, d_in, w')``.
    """

    def __init__(self, tensors: list[np.ndarray], mpo: Sequence[np.ndarray]) -> None:
        self.tensors = tensors
        self.mpo = list(mpo)
        n = len(tensors)
        dtype = np.result_type(tensors[0], self.mpo[0])
        self._left: list[np.ndarray | None] = [boundary(dtype)] + [None] * (n - 1)
        self._right: list[np.ndarray | None] = [None] * (n - 1) + [boundary(dtype)]

    def left(self, i: int) -> np.ndarray:
        """``L[i]``: sites ``0 .. i-1`` contracted (computed from the nearest valid one)."""
        j = i
        while self._left[j] is None:
            j -= 1
        for k in range(j, i):
            self._left[k + 1] = extend_left(self._left[k], self.tensors[k], self.mpo[k])
        return self._left[i]  # type: ignore[return-value]

    def right(self, i: int) -> np.ndarray:
        """``R[i]``: sites ``i+1 .. N-1`` contracted."""
        j = i
        while self._right[j] is None:
            j += 1
        for k in range(j, i, -1):
            self._right[k - 1] = extend_right(self._right[k], self.tensors[k], self.mpo[k])
        return self._right[i]  # type: ignore[return-value]

    def invalidate(self, i: int) -> None:
        """Site ``i`` changed: drop the environments that contain it."""
        n = len(self.tensors)
        for k in range(i + 1, n):
            if self._left[k] is None:
                break
            self._left[k] = None
        for k in range(i - 1, -1, -1):
            if self._right[k] is None:
                break
            self._right[k] = None

    def energy(self, i: int) -> complex:
        """``<psi|H|psi>`` from the environments around site ``i`` (no normalisation)."""
        h = apply_one_site(self.left(i), self.mpo[i], self.right(i), self.tensors[i])
        return complex(np.vdot(self.tensors[i], h))


class OverlapEnvironments:
    """Environments of ``<phi|psi>`` for a fixed state ``phi`` and the sweep's ``psi``.

    ``L[i]`` has shape ``(D_phi, D_psi)`` (bra ``phi`` first). :meth:`local_two_site`
    returns the tensor ``u`` with ``<phi|psi> = vdot(u, theta)`` for the two-site
    tensor ``theta`` of ``psi`` at ``(i, i+1)``.
    """

    def __init__(self, phi: Sequence[np.ndarray], tensors: list[np.ndarray]) -> None:
        self.phi = [np.asarray(t) for t in phi]
        self.tensors = tensors
        n = len(tensors)
        dtype = np.result_type(tensors[0], self.phi[0])
        self._left: list[np.ndarray | None] = [np.ones((1, 1), dtype)] + [None] * (n - 1)
        self._right: list[np.ndarray | None] = [None] * (n - 1) + [np.ones((1, 1), dtype)]

    def left(self, i: int) -> np.ndarray:
        j = i
        while self._left[j] is None:
            j -= 1
        for k in range(j, i):
            t = np.tensordot(self._left[k], self.tensors[k], axes=(1, 0))  # (p, s, b')
            self._left[k + 1] = np.tensordot(self.phi[k].conj(), t, axes=([0, 1], [0, 1]))
        return self._left[i]  # type: ignore[return-value]

    def right(self, i: int) -> np.ndarray:
        j = i
        while self._right[j] is None:
            j += 1
        for k in range(j, i, -1):
            t = np.tensordot(self.tensors[k], self._right[k], axes=(2, 1))  # (a', s, q)
            self._right[k - 1] = np.tensordot(self.phi[k].conj(), t, axes=([1, 2], [1, 2]))
        return self._right[i]  # type: ignore[return-value]

    invalidate = Environments.invalidate

    def local_two_site(self, i: int) -> np.ndarray:
        """``u[a', s1, s2, b']``: the image of ``phi`` in the local space of sites ``(i, i+1)``."""
        two = np.tensordot(self.phi[i], self.phi[i + 1], axes=(2, 0))  # (p, s1, s2, q)
        t = np.tensordot(self.left(i).conj(), two, axes=(0, 0))  # (a', s1, s2, q)
        return np.tensordot(t, self.right(i + 1).conj(), axes=(3, 0))

    def local_one_site(self, i: int) -> np.ndarray:
        """``u[a', s, b']``: the image of ``phi`` in the local space of site ``i``."""
        t = np.tensordot(self.left(i).conj(), self.phi[i], axes=(0, 0))
        return np.tensordot(t, self.right(i).conj(), axes=(2, 0))
