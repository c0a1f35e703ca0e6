"""Minibatch gradient training of MPS Born machines (:func:`gradient_train`).

All site tensors are updated together with Adam on minibatches, the bond dimensions
fixed. :func:`nll_and_gradient` gives the exact NLL and its gradient with respect to
every site tensor, with ``Z`` and its gradient from log-scaled transfer environments.
The site tensors are held in one zero-padded array (largest bond, largest number of
values), so each step costs a few calls for all sites together instead of a dozen per
site: the per-step Python overhead, not arithmetic, is what small models spend their
time on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..mps.mps import MatrixProductState
from .environments import TINY, unit_rows
from .history import TrainingHistory, gradient_epochs
from .optim import Adam
from .trainers import AdamSettings

__all__ = ["gradient_train", "nll_and_gradient"]


def nll_and_gradient(tensors: list[np.ndarray], X: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """Exact NLL of ``X`` under the Born machine of ``tensors`` and its gradient.

    Parameters
    ----------
    tensors : list of numpy.ndarray
        Real or complex site tensors ``(D_left, d_i, D_right)``, any gauge and norm.
    X : numpy.ndarray of int, shape (n, n_sites)

    Returns
    -------
    nll : float
        ``log Z - mean log |psi(x)|**2`` in nats.
    grads : list of numpy.ndarray
        ``dNLL/dA_i``, same shapes as ``tensors``; for complex tensors
        ``dNLL/dRe(A_i) + 1j dNLL/dIm(A_i)`` (the direction of steepest ascent).
    """
    chain = _PaddedChain(tensors)
    log_z, norm_grad = chain.norm_terms()
    log_psi, data = chain.data_terms(X)
    grad = 2.0 * norm_grad - 2.0 * data
    return float(log_z - 2.0 * np.mean(log_psi)), chain.unpad(grad)


#: Per-row environments of the gradient trainer are renormalised every this many sites.
_RENORM_EVERY = 4


class _PaddedChain:
    """The site tensors of an MPS in one zero-padded array ``A`` of shape ``(N, D, d, D)``.

    ``D`` is the largest bond and ``d`` the largest number of values; site ``i`` sits in
    ``A[i, :D_i, :d_i, :D_{i+1}]`` and the rest is zero. With uniform shapes every
    per-site operation of the gradient (gathers, the data term, the norm environments'
    contraction with the tensors) is one call for all sites, which removes the Python
    overhead of small tensors. The padding stays exactly zero under gradient steps:
    the environments vanish on padded bond indices and padded values never occur in
    the data, so the gradient is zero there.
    """

    def __init__(self, tensors: list[np.ndarray], dtype: Any = None) -> None:
        self.shapes = [t.shape for t in tensors]
        self.dtype = np.result_type(*tensors) if dtype is None else np.dtype(dtype)
        n_sites = len(tensors)
        bond = max(max(s[0], s[2]) for s in self.shapes)
        self.A = np.zeros((n_sites, bond, max(s[1] for s in self.shapes), bond), dtype=self.dtype)
        for i, t in enumerate(tensors):
            dl, d, dr = t.shape
            self.A[i, :dl, :d, :dr] = t

    def unpad(self, padded: np.ndarray | None = None) -> list[np.ndarray]:
        """Views of ``padded`` (default: the tensors) with the sites' own shapes."""
        padded = self.A if padded is None else padded
        return [padded[i, :dl, :d, :dr] for i, (dl, d, dr) in enumerate(self.shapes)]

    def norm_terms(self) -> tuple[float, np.ndarray]:
        """``log Z`` and ``d log Z / d conj(A)`` for every site, ``(N, D, d, D)``.

        Transfer environments from both ends (ket index first), rescaled by their
        traces every :data:`_RENORM_EVERY` sites; the per-site environment
        ``L_i^T A_i R_i`` of all sites is then one batched product, and dividing it by
        ``<A_i, L_i^T A_i R_i>`` removes the scales.
        """
        A = self.A
        n_sites, bond, d, _ = A.shape
        flat, flat_conj = A.reshape(n_sites, bond * d, bond), A.conj().reshape(n_sites, bond * d, bond)
        rows, rows_conj = A.reshape(n_sites, bond, d * bond), A.conj().reshape(n_sites, bond, d * bond)
        start = np.zeros((bond, bond), dtype=A.dtype)
        start[0, 0] = 1.0
        lefts, log_z = [start], 0.0
        for i in range(n_sites - 1):
            e = (lefts[-1].T @ rows[i]).reshape(bond * d, bond).T @ flat_conj[i]
            if (i + 1) % _RENORM_EVERY == 0:
                tr = float(e.trace().real)
                if not tr > 0:
                    raise FloatingPointError("the state has zero norm.")
                log_z += math.log(tr)
                e = e / tr
            lefts.append(e)
        rights = [start]
        for i in range(n_sites - 1, 0, -1):
            e = (flat[i] @ rights[-1]).reshape(bond, d * bond) @ rows_conj[i].T
            rights.append(e / e.trace().real if i % _RENORM_EVERY == 0 else e)
        env = (np.stack(lefts).transpose(0, 2, 1) @ rows).reshape(n_sites, bond * d, bond)
        env = (env @ np.stack(rights[::-1])).reshape(A.shape)
        weight = np.einsum("iasb,iasb->i", flat_conj.reshape(A.shape), env).real
        if not np.all(weight > 0):
            raise FloatingPointError("the state has zero norm (or overflows).")
        return log_z + math.log(weight[-1]), env / weight[:, None, None, None]

    def _left_pass(self, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Left vectors ``L_i`` (sites before ``i``), products ``L_i A_i[:, x_i, :]`` and ``log|psi|``.

        ``L_i`` are rescaled to unit rows every :data:`_RENORM_EVERY` sites (logs kept
        apart). Each step is one matrix product with all values of the site followed
        by a selection of each row's value: far faster than gathering per-row
        matrices and multiplying them one by one.
        """
        n = len(X)
        n_sites, bond, d, _ = self.A.shape
        rows = self.A.reshape(n_sites, bond, d * bond)
        index = np.arange(n)
        left = np.zeros((n, bond), dtype=self.dtype)
        left[:, 0] = 1.0
        lefts, products, log_scale = [], [], np.zeros(n)
        for i in range(n_sites):
            lefts.append(left)
            product = (left @ rows[i]).reshape(n, d, bond)[index, X[:, i]]
            products.append(product)
            if (i + 1) % _RENORM_EVERY == 0 or i == n_sites - 1:
                left, log_norm = unit_rows(product)
                log_scale += log_norm
            else:
                left = product
        with np.errstate(divide="ignore"):
            log_psi = log_scale + np.log(np.abs(left[:, 0]))
        return lefts, products, log_psi

    def log_psi(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """``log |psi(x)|`` of each row (left passes only, in chunks of rows)."""
        return np.concatenate([self._left_pass(X[b : b + chunk])[2] for b in range(0, len(X), chunk)])

    def data_terms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log|psi(x)|`` per row and ``conj(1/n sum_x Phi_i(x) / psi(x))`` for every site, ``(N, D, d, D)``.

        A left and a right pass (:meth:`_left_pass`), then the amplitudes and the
        one-hot weighted outer products of all sites in a few batched calls.
        """
        n = len(X)
        n_sites, bond, d, _ = self.A.shape
        lefts, products, log_psi = self._left_pass(X)
        cols = np.ascontiguousarray(self.A.transpose(0, 3, 2, 1)).reshape(n_sites, bond, d * bond)
        index = np.arange(n)
        right = np.zeros((n, bond), dtype=self.dtype)
        right[:, 0] = 1.0
        rights = [right]
        for i in range(n_sites - 1, 0, -1):
            right = (right @ cols[i]).reshape(n, d, bond)[index, X[:, i]]
            if i % _RENORM_EVERY == 0:
                right = unit_rows(right)[0]
            rights.append(right)
        rights = np.stack(rights[::-1])
        psi = np.einsum("inb,inb->in", np.stack(products), rights)
        psi[np.abs(psi) < TINY] = TINY
        one_hot = X.T[:, :, None] == np.arange(d)
        stacked = (one_hot[:, :, :, None] * np.stack(lefts)[:, :, None, :]).reshape(n_sites, n, d * bond)
        g = (stacked.transpose(0, 2, 1) @ (rights / psi[:, :, None])).reshape(n_sites, d, bond, bond)
        g = g.transpose(0, 2, 1, 3)
        return log_psi, (g.conj() if np.iscomplexobj(g) else g) / n

    def nll(self, X: np.ndarray) -> float:
        """Exact NLL of the rows ``X``."""
        log_z, _ = self.norm_terms()
        return float(log_z - 2.0 * np.mean(self.log_psi(X)))


def gradient_train(
    mps: MatrixProductState,
    X: np.ndarray,
    settings: AdamSettings,
    *,
    rng: np.random.Generator,
    progress: bool = False,
    history: TrainingHistory | None = None,
) -> tuple[MatrixProductState, TrainingHistory]:
    """Train all site tensors together with Adam on minibatches (bond dimensions fixed).

    The tensors live in one zero-padded array ``(N, D, d, D)`` (:class:`_PaddedChain`),
    so each part of the gradient is one call for all sites and Adam is a few vector
    operations on its flat view; before each step the state is rescaled to ``Z = 1``
    with the ``Z`` its gradient needs anyway.

    Parameters
    ----------
    mps : MatrixProductState
        Starting state (real or complex).
    X : numpy.ndarray of int, shape (n_samples, n_sites)
    settings : tnkit.ml.trainers.AdamSettings
        Epochs (passes over the shuffled data), samples per step and Adam's step size
        (constant: the schedule is not used).
    rng : numpy.random.Generator
        For the shuffles.
    progress : bool
        Show a tqdm bar over epochs with the NLL.
    history : TrainingHistory, optional
        Appended to (warm start).

    Returns
    -------
    mps : MatrixProductState
        Normalised, right-canonical (centre 0).
    history : TrainingHistory
        The NLL recorded per epoch is that of the whole training set at the epoch's end.
    """
    history = TrainingHistory() if history is None else history
    chain = _PaddedChain(list(mps.normalized().tensors))
    theta = chain.A.reshape(-1)
    real = theta.view(np.float64)
    adam = Adam(settings.learning_rate)
    n_sites = len(chain.shapes)
    bond = max(s[2] for s in chain.shapes)

    def step(rows: np.ndarray) -> None:
        log_z, norm_grad = chain.norm_terms()
        np.multiply(theta, math.exp(-log_z / (2 * n_sites)), out=theta)  # Z = 1 before the step
        _, data = chain.data_terms(rows)
        grad = 2.0 * norm_grad - 2.0 * data
        adam.step_flat_(real, grad.reshape(-1).view(np.float64))

    history = gradient_epochs(X, settings, rng=rng, step=step, nll=lambda: chain.nll(X), bond=bond,
                              progress=progress, history=history)
    state = MatrixProductState([t.copy() for t in chain.unpad()])
    state.canonicalize_(0).normalize_()
    return state, history
