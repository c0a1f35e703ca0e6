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

Every contraction is a sequence of pairwise ``tensordot`` calls (BLAS GEMM),
in the order that keeps the cost cubic in ``D``. The arrays may be numpy arrays or
torch/cupy tensors (all of one library, device and dtype): the calls go through
:mod:`tnkit.core.backend`, and the work stays where the tensors are. The numpy-only
speed-ups (work arrays reused between applications, real operators acting on the
float view of complex tensors) are taken on numpy arrays only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.backend import (
    ascontiguous,
    eye,
    namespace,
    numel,
    ones,
    permute,
    result_type,
    tensordot,
    to_numpy,
    vdot,
)

__all__ = [
    "Environments",
    "OverlapEnvironments",
    "SweepState",
    "extend_left",
    "extend_right",
    "TwoSiteOperator",
    "OneSiteOperator",
    "ZeroSiteOperator",
    "boundary",
    "identity_channel",
]


def boundary(dtype: np.dtype, mpo_leg: bool = True, *, like: object = None) -> np.ndarray:
    """The trivial environment beyond an end of the chain: ``ones((1, 1, 1))`` (or ``(1, 1)``),
    a numpy array, or an array of ``like``'s library and device when given."""
    shape = (1, 1, 1) if mpo_leg else (1, 1)
    if like is None:
        return np.ones(shape, dtype=dtype)
    return ones(shape, like=like, dtype=dtype)


def extend_left(env: np.ndarray, a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``L[i+1]`` from ``L[i]``, site tensor ``a = A[i]`` (ket; the bra is ``conj(a)``) and ``w = W[i]``."""
    t = tensordot(env, a, (2, 0))  # (a, w, s, b')
    t = tensordot(t, w, ([1, 2], [0, 2]))  # (a, b', t, v)
    t = tensordot(a.conj(), t, ([0, 1], [0, 2]))  # (b, b', v)
    return ascontiguous(permute(t, (0, 2, 1)))


def extend_right(env: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``R[i-1]`` from ``R[i]``, site tensor ``b = A[i]`` and ``w = W[i]``."""
    t = tensordot(b, env, (2, 2))  # (a', s, b, v)
    t = tensordot(t, w, ([1, 3], [2, 3]))  # (a', b, w, t)
    t = tensordot(b.conj(), t, ([1, 2], [3, 1]))  # (a, a', w)
    return ascontiguous(permute(t, (0, 2, 1)))


def identity_channel(env: np.ndarray, *, atol: float = 1e-12) -> int | None:
    """The MPO channel ``w`` whose environment block ``env[:, w, :]`` is the identity matrix, or None.

    Left of an orthonormal centre the channel that has not yet met a Hamiltonian term
    (right of it, the channel that has met one) contracts to the identity: an effective
    Hamiltonian then skips the products with that block. ``atol`` bounds the largest
    deviation of the block from the identity that is accepted.
    """
    dim, channels, dim2 = env.shape
    if dim != dim2:
        return None
    if not isinstance(env, np.ndarray):  # one read-back of the per-channel deviations, not w of them
        deviation = to_numpy(namespace(env).amax(abs(env - eye(dim, like=env)[:, None, :]), axis=(0, 2)))
        return next((w for w in range(channels) if deviation[w] <= atol), None)
    for w in range(channels):
        block = env[:, w, :]
        if abs(block[0, 0] - 1.0) > atol or abs(block[-1, -1] - 1.0) > atol:
            continue
        off = block - np.eye(dim, dtype=block.dtype)
        if float(np.max(np.abs(off))) <= atol:
            return w
    return None


def _real_if_real(m: np.ndarray) -> np.ndarray:
    """``m`` as a real array when its imaginary part is zero (a product with a complex tensor
    then runs on the tensor's float view, at a quarter of the cost of a complex product)."""
    if isinstance(m, np.ndarray) and np.iscomplexobj(m) and not np.any(m.imag):
        return np.ascontiguousarray(m.real)
    return m


def _mpo_product(m: np.ndarray, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``einsum("ij,ajb->aib", m, x)`` as a batched product (into ``out`` when given, C-ordered);
    a real ``m`` acts on the float view of a complex ``x`` (the real and imaginary parts of ``x``
    interleaved along its last axis)."""
    if np.isrealobj(m) and x.dtype == np.complex128 and (out is None or out.dtype == np.complex128):
        x = np.ascontiguousarray(x)
        res = np.matmul(m, x.view(np.float64), out=None if out is None else out.view(np.float64))
        return res.view(np.complex128)
    return np.matmul(m, x, out=out)


class _EffectiveOperator:
    """Matrix-free effective Hamiltonian ``L -- M -- R`` acting on ``x[a', s, b']``.

    ``m[t, v, w, s]`` is the local MPO (one site, or two fused: ``s = (s1, s2)``), ``L``
    ``(D, w, D')`` and ``R`` ``(D, v, D')`` the environments. An application is two GEMMs
    of cost ``D^3 d w`` (the environments) around a batched product with ``m`` (cost
    ``D^2 d^2 w^2``), with no transposed copies::

        L[(a, w), a'] @ x[a', (s, b')]        ->  y[a, (w, s), b']
        m[(t, v), (w, s)] @ y[a]               ->  z[a, (t, v), b']
        z[(a, t), (v, b')] @ R[b, (v, b')]^T   ->  out[a, t, b]

    The channel of ``L`` that is the identity (the sites on the left orthonormal, see
    :func:`identity_channel`) is taken out of the first GEMM: its rows of ``y`` are ``x``
    itself; the identity channel of ``R`` is taken out of the last: its part of ``z`` is
    added to ``out`` directly. Each saves a ``1/w`` share of its GEMM.
    """

    def __init__(self, left: np.ndarray, m: np.ndarray, right: np.ndarray) -> None:
        t, v, w, s = m.shape
        m = _real_if_real(m)
        lid, rid = identity_channel(left), identity_channel(right)
        lrest = [k for k in range(w) if k != lid]
        rrest = [k for k in range(v) if k != rid]
        self.left = ascontiguous(left[:, lrest, :]).reshape(-1, left.shape[2])  # ((a, w), a')
        self.right = ascontiguous(right[:, rrest, :]).reshape(right.shape[0], -1)  # (b, (v, b'))
        mr = m[:, rrest] if rid is not None else m

        def block(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            n_rows = numel(rows) // (w * s)
            rows = rows.reshape(n_rows, w, s)
            rest = ascontiguous(rows[:, lrest].reshape(n_rows, len(lrest) * s))
            ident = ascontiguous(rows[:, lid]) if lid is not None else None
            return rest, ident

        self.m_rest = block(mr)  # rows (t, v != rid)
        self.m_ident = block(m[:, rid]) if rid is not None else None  # rows t
        self.dims = (left.shape[0], right.shape[0], t, len(rrest), len(lrest) * s)
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A work array kept between applications (a Krylov solve applies the operator many
        times; fresh arrays of this size would each be a new memory mapping)."""
        buf = self._buffers.get((name, dtype))
        if buf is None or buf.shape != shape:
            buf = self._buffers[(name, dtype)] = np.empty(shape, dtype)
        return buf

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            return self._apply(x)
        al, br, t, nv, nws = self.dims
        shape = x.shape
        dl, dr = shape[0], shape[-1]
        x3 = x.reshape(dl, -1, dr)  # (a', s, b')
        x2 = x.reshape(dl, -1)
        y = self._buffer("y", (self.left.shape[0], x2.shape[1]), np.result_type(self.left, x))
        np.matmul(self.left, x2, out=y)
        y = y.reshape(al, nws, dr)  # (a, (w, s), b'), w != lid

        def mpo(rest: np.ndarray, ident: np.ndarray | None, name: str) -> np.ndarray:
            z = self._buffer(name, (al, rest.shape[0], dr), np.result_type(rest, y))
            _mpo_product(rest, y, out=z)
            if ident is not None:
                z += _mpo_product(ident, x3)
            return z

        z = mpo(*self.m_rest, "z")  # (a, (t, v), b'), v != rid
        out = z.reshape(al * t, nv * dr) @ self.right.T
        if self.m_ident is not None:
            out += mpo(*self.m_ident, "z_ident").reshape(al * t, dr)
        return out.reshape((al,) + shape[1:-1] + (br,))

    def _apply(self, x):
        """The same three products on torch or cupy tensors (no work arrays, no float views)."""
        al, br, t, nv, nws = self.dims
        shape = tuple(x.shape)
        dl, dr = shape[0], shape[-1]
        x3 = x.reshape(dl, -1, dr)
        y = (self.left @ x.reshape(dl, -1)).reshape(al, nws, dr)

        def mpo(rest, ident):
            z = rest @ y
            return z if ident is None else z + ident @ x3

        out = mpo(*self.m_rest).reshape(al * t, nv * dr) @ self.right.T
        if self.m_ident is not None:
            out = out + mpo(*self.m_ident).reshape(al * t, dr)
        return out.reshape((al,) + shape[1:-1] + (br,))


class TwoSiteOperator(_EffectiveOperator):
    """Matrix-free effective Hamiltonian of sites ``(i, i+1)``: ``theta[a', s1, s2, b'] -> H_eff theta``.

    The two MPO tensors are fused once into ``M[(t1, t2, u), (w, s1, s2)]``, so an
    application is two GEMMs of cost ``D^3 d^2 w`` (the environments) around one batched
    product of cost ``D^2 d^4 w^2`` (see :class:`_EffectiveOperator`).
    """

    def __init__(self, left: np.ndarray, w1: np.ndarray, w2: np.ndarray, right: np.ndarray) -> None:
        wl, t1, s1, _ = w1.shape
        _, t2, s2, wr = w2.shape
        fused = tensordot(w1, w2, (3, 0))  # (w, t1, s1, t2, s2, u)
        m = permute(fused, (1, 3, 5, 0, 2, 4)).reshape(t1 * t2, wr, wl, s1 * s2)
        super().__init__(left, m, right)


class OneSiteOperator(_EffectiveOperator):
    """Matrix-free effective Hamiltonian of site ``i``: ``theta[a', s, b'] -> H_eff theta``."""

    def __init__(self, left: np.ndarray, w: np.ndarray, right: np.ndarray) -> None:
        super().__init__(left, permute(w, (1, 3, 0, 2)), right)


class ZeroSiteOperator:
    """Matrix-free effective Hamiltonian of a bond: ``c[a', b'] -> H_eff c = sum_w L_w c R_w^T``.

    The channel whose left block is the identity contributes ``c R_w^T``, the one whose right
    block is the identity ``L_w c``: one GEMM each instead of two.
    """

    def __init__(self, left: np.ndarray, right: np.ndarray) -> None:
        w = left.shape[1]
        lid, rid = identity_channel(left), identity_channel(right)
        if lid == rid:  # both blocks the identity (a trivial bond): no shortcut
            lid = rid = None
        rest = [k for k in range(w) if k not in (lid, rid)]
        self.left = ascontiguous(left[:, rest, :]).reshape(-1, left.shape[2])  # ((a, w), a')
        self.right = ascontiguous(right[:, rest, :]).reshape(right.shape[0], -1)  # (b, (w, b'))
        self.right_only = ascontiguous(right[:, lid, :]) if lid is not None else None
        self.left_only = ascontiguous(left[:, rid, :]) if rid is not None else None
        self.dims = (left.shape[0], len(rest), right.shape[0])

    def __call__(self, c: np.ndarray) -> np.ndarray:
        al, w, br = self.dims
        x = (self.left @ c).reshape(al, w * c.shape[1])  # (a, (w, b'))
        out = x @ self.right.T
        if self.right_only is not None:
            out += c @ self.right_only.T
        if self.left_only is not None:
            out += self.left_only @ c
        return out


class _LazyChain:
    """Left and right environments of a chain, cached and extended on demand.

    Subclasses set ``self.tensors`` (the sweep's site tensors, shared), the two boundary
    environments, and implement :meth:`_extend_left` / :meth:`_extend_right` (one site).
    """

    tensors: list[np.ndarray]

    def _init_cache(self, left_end: np.ndarray, right_end: np.ndarray) -> None:
        n = len(self.tensors)
        self._left: list[np.ndarray | None] = [left_end] + [None] * (n - 1)
        self._right: list[np.ndarray | None] = [None] * (n - 1) + [right_end]

    def _extend_left(self, env: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _extend_right(self, env: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def left(self, i: int) -> np.ndarray:
        """``L[i]``: sites ``0 .. i-1`` contracted (computed from the nearest valid one)."""
        j = i
        while self._left[j] is None:
            j -= 1
        for k in range(j, i):
            self._left[k + 1] = self._extend_left(self._left[k], k)  # type: ignore[arg-type]
        return self._left[i]  # type: ignore[return-value]

    def right(self, i: int) -> np.ndarray:
        """``R[i]``: sites ``i+1 .. N-1`` contracted."""
        j = i
        while self._right[j] is None:
            j += 1
        for k in range(j, i, -1):
            self._right[k - 1] = self._extend_right(self._right[k], k)  # type: ignore[arg-type]
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


class Environments(_LazyChain):
    """Left and right MPO environments of a chain of site tensors, updated lazily.

    Parameters
    ----------
    tensors : list of numpy.ndarray
        The MPS site tensors, shared with the sweep that owns them: after changing
        site ``i`` the sweep calls :meth:`invalidate` so that stale environments are
        recomputed.
    mpo : sequence of numpy.ndarray
        MPO site tensors ``(w, d_out, d_in, w')``.
    """

    def __init__(self, tensors: list[np.ndarray], mpo: Sequence[np.ndarray]) -> None:
        self.tensors = tensors
        self.mpo = list(mpo)
        dtype = result_type(tensors[0], self.mpo[0])
        self._init_cache(boundary(dtype, like=tensors[0]), boundary(dtype, like=tensors[0]))

    def _extend_left(self, env: np.ndarray, k: int) -> np.ndarray:
        return extend_left(env, self.tensors[k], self.mpo[k])

    def _extend_right(self, env: np.ndarray, k: int) -> np.ndarray:
        return extend_right(env, self.tensors[k], self.mpo[k])

    def energy(self, i: int) -> complex:
        """``<psi|H|psi>`` from the environments around site ``i`` (no normalisation)."""
        h = OneSiteOperator(self.left(i), self.mpo[i], self.right(i))(self.tensors[i])
        return complex(vdot(self.tensors[i], h))


@dataclass
class SweepState:
    """What every sweep algorithm holds: the site tensors, the MPO tensors and their
    :class:`Environments` (sharing ``tensors``)."""

    tensors: list[np.ndarray]
    mpo: list[np.ndarray]
    envs: Environments


class OverlapEnvironments(_LazyChain):
    """Environments of ``<phi|psi>`` for a fixed state ``phi`` and the sweep's ``psi``.

    ``L[i]`` has shape ``(D_phi, D_psi)`` (bra ``phi`` first). :meth:`local_two_site`
    returns the tensor ``u`` with ``<phi|psi> = vdot(u, theta)`` for the two-site
    tensor ``theta`` of ``psi`` at ``(i, i+1)``.
    """

    def __init__(self, phi: Sequence[np.ndarray], tensors: list[np.ndarray]) -> None:
        self.phi = [t if hasattr(t, "shape") else np.asarray(t) for t in phi]
        self.tensors = tensors
        dtype = result_type(tensors[0], self.phi[0])
        ends = [boundary(dtype, mpo_leg=False, like=tensors[0]) for _ in range(2)]
        self._init_cache(*ends)

    def _extend_left(self, env: np.ndarray, k: int) -> np.ndarray:
        t = tensordot(env, self.tensors[k], (1, 0))  # (p, s, b')
        return tensordot(self.phi[k].conj(), t, ([0, 1], [0, 1]))

    def _extend_right(self, env: np.ndarray, k: int) -> np.ndarray:
        t = tensordot(self.tensors[k], env, (2, 1))  # (a', s, q)
        return tensordot(self.phi[k].conj(), t, ([1, 2], [1, 2]))

    def local_two_site(self, i: int) -> np.ndarray:
        """``u[a', s1, s2, b']``: the image of ``phi`` in the local space of sites ``(i, i+1)``."""
        two = tensordot(self.phi[i], self.phi[i + 1], (2, 0))  # (p, s1, s2, q)
        t = tensordot(self.left(i).conj(), two, (0, 0))  # (a', s1, s2, q)
        return tensordot(t, self.right(i + 1).conj(), (3, 0))

    def local_one_site(self, i: int) -> np.ndarray:
        """``u[a', s, b']``: the image of ``phi`` in the local space of site ``i``."""
        t = tensordot(self.left(i).conj(), self.phi[i], (0, 0))
        return tensordot(t, self.right(i).conj(), (2, 0))
