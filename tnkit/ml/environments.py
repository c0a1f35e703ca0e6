"""Batched environments of a tensor chain against product-state inputs.

Learning with a matrix product state (classifiers, Born machines) evaluates the chain
on a batch of *product inputs*: sample ``b`` gives one vector ``x[b, i]`` of length
``d_i`` per site (a feature map of a pixel, or the one-hot vector of a discrete value).
Two-site sweeps then need, at every pair of sites, the contraction of everything
*outside* the pair with the inputs. This module computes and caches those partial
contractions.

Conventions
-----------
* Site ``i`` holds a tensor of shape ``(D_left, d_i, D_right)`` (as in
  :class:`tnkit.MPS`); the outer bonds have dimension 1.
* ``features`` has shape ``(batch, n_sites, d)`` (one local dimension for all sites).
* The **left environment** ``left(j)`` is the contraction of sites ``0 .. j-1`` with
  their inputs: shape ``(batch, D_j)`` where ``D_j`` is the left bond of site ``j``
  (``left(0)`` is all ones, shape ``(batch, 1)``).
* The **right environment** ``right(j)`` is the contraction of sites ``j .. N-1``:
  shape ``(batch, D_j)`` with ``D_j`` the left bond of site ``j`` (the right bond of
  site ``j - 1``; ``right(N)`` is all ones, shape ``(batch, 1)``).
* **Per-sample scale.** Every cached environment is stored divided by its per-sample
  2-norm, with the logarithm of the removed factor kept in a ``(batch,)`` array, so
  chains of hundreds of sites neither underflow nor overflow. The true environment is
  ``env * exp(log_scale)[:, None]``. A sample whose environment is exactly zero keeps
  a zero row and ``log_scale`` 0.
* A **merged two-site tensor** for the pair ``(i, i+1)`` has shape
  ``(D_left, d_i, d_{i+1}, D_right, *extra)``; ``extra`` axes (such as a label index)
  come last and are carried through untouched.

The output of the chain on sample ``b``, with the pair ``(i, i+1)`` merged into ``B``, is::

    f[b, ...] = sum_{l,s,t,r} L[b,l] x_i[b,s] x_{i+1}[b,t] R[b,r] B[l,s,t,r,...]

:meth:`BatchEnvironments.local_inputs` returns the two halves ``L (x) x_i`` and
``x_{i+1} (x) R`` of that *projected input*; :func:`local_output` contracts them with
``B`` and :func:`local_gradient` with per-sample weights (the transpose, for
gradients), each as one matrix product plus one per-sample contraction. The full
``(batch, D_left, d, d, D_right)`` projected input is available through
:meth:`BatchEnvironments.projected_input` for small problems.

Cost
----
Updating an environment by one site is a ``(batch, D) @ (D, d*D)`` matrix product and
a per-sample contraction with the ``d``-vector. :meth:`BatchEnvironments.set_tensor`
invalidates only the environments that depend on the replaced site, and an
environment is rebuilt from the nearest valid one, so a full left-to-right (or
right-to-left) two-site sweep costs ``O(N)`` environment updates.

The per-site updates :func:`extend_left` / :func:`extend_right` call numpy directly
(minibatches are small, call overhead is the cost); the local contractions go through
:func:`tnkit.contract`.

Integer-coded inputs (Born machines)
------------------------------------
Categorical data (a value ``x[b, i]`` in ``0 .. d_i - 1`` per site) would make the
one-hot vectors mostly zeros, and the number of values may differ from site to site.
:func:`group_rows` groups the samples by the values of one or more sites, so
:func:`absorb_left` / :func:`absorb_right` (one site) and the Born machines' pair
updates cost one ``(n_g, D) @ (D, D)`` product per value instead of contracting
one-hot vectors. :class:`CodedEnvironments` caches the normalised per-sample
environments of such data for two-site sweeps, with the same per-sample scale
convention as above.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.contract import contract
from ..core.validate import as_array, check_int

__all__ = [
    "BatchEnvironments",
    "extend_left",
    "extend_right",
    "local_output",
    "local_gradient",
    "normalize_rows",
    "unit_rows",
    "TINY",
    "group_rows",
    "absorb_left",
    "absorb_right",
    "CodedEnvironments",
]


def normalize_rows(env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide each row of ``env`` (batch, D) by its 2-norm.

    Returns
    -------
    env : numpy.ndarray, shape (batch, D)
        Rows of unit norm (zero rows stay zero).
    log_norm : numpy.ndarray, shape (batch,)
        ``log`` of the removed norms (0 for zero rows).
    """
    norms = np.linalg.norm(env, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return env / safe[:, None], np.log(safe)


def unit_rows(env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`normalize_rows` with one reduction (``einsum``) for the norms, real or complex.

    The faster of the two on small bonds; the two may differ in the last bit.
    """
    sq = np.einsum("na,na->n", env, env.conj()).real if np.iscomplexobj(env) else np.einsum("na,na->n", env, env)
    norms = np.sqrt(sq, out=sq)
    norms[norms == 0] = 1.0
    return env / norms[:, None], np.log(norms)


def extend_left(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Absorb one site into a left environment: ``sum_{l,s} env[b,l] tensor[l,s,r] x[b,s]``.

    ``env`` (batch, D_left), ``tensor`` (D_left, d, D_right), ``x`` (batch, d); returns
    (batch, D_right), not normalised. One matrix product and one batched product,
    numpy called directly: at minibatch sizes the call overhead is the cost.
    """
    dl, d, dr = tensor.shape
    t = (env @ tensor.reshape(dl, d * dr)).reshape(len(env), d, dr)
    return np.matmul(x[:, None, :], t)[:, 0]


def extend_right(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Absorb one site into a right environment: ``sum_{s,r} tensor[l,s,r] x[b,s] env[b,r]``.

    ``env`` (batch, D_right); returns (batch, D_left), not normalised (as :func:`extend_left`).
    """
    dl, d, dr = tensor.shape
    t = (env @ tensor.reshape(dl * d, dr).T).reshape(len(env), dl, d)
    return np.matmul(t, x[:, :, None])[:, :, 0]


def local_output(left: np.ndarray, right: np.ndarray, tensor: np.ndarray) -> np.ndarray:
    """Contract a local tensor with per-sample left and right inputs.

    Parameters
    ----------
    left : numpy.ndarray, shape (batch, *left_axes)
        E.g. ``L (x) x_i`` of shape ``(batch, D_left, d_i)`` from
        :meth:`BatchEnvironments.local_inputs`.
    right : numpy.ndarray, shape (batch, *right_axes)
        E.g. ``x_{i+1} (x) R`` of shape ``(batch, d_{i+1}, D_right)``.
    tensor : numpy.ndarray, shape (*left_axes, *right_axes, *extra)
        The local (merged) tensor; ``extra`` axes (a label index) are kept.

    Returns
    -------
    numpy.ndarray, shape (batch, *extra)
        ``sum left[b,p] tensor[p,q,...] right[b,q]``, computed as the matrix product
        ``(batch, P) @ (P, Q*E)`` followed by a per-sample contraction over ``Q``.
    """
    batch = left.shape[0]
    p = int(np.prod(left.shape[1:], dtype=np.int64))
    q = int(np.prod(right.shape[1:], dtype=np.int64))
    extra = tensor.shape[left.ndim - 1 + right.ndim - 1 :]
    e = int(np.prod(extra, dtype=np.int64))
    if p * q * e != tensor.size:
        raise ValueError(
            f"`tensor` of shape {tensor.shape} does not match inputs of shapes {left.shape} and {right.shape}."
        )
    t = contract("bp,pm->bm", left.reshape(batch, p), tensor.reshape(p, q * e)).reshape(batch, q, e)
    return contract("bqe,bq->be", t, right.reshape(batch, q)).reshape((batch, *extra))


def local_gradient(left: np.ndarray, right: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Transpose of :func:`local_output`: ``sum_b left[b] (x) right[b] (x) weights[b]``.

    Parameters
    ----------
    left : numpy.ndarray, shape (batch, *left_axes)
    right : numpy.ndarray, shape (batch, *right_axes)
    weights : numpy.ndarray, shape (batch, *extra), optional
        Per-sample weights, e.g. ``dLoss/df``; ``None`` means all ones and no extra axes.

    Returns
    -------
    numpy.ndarray, shape (*left_axes, *right_axes, *extra)
        The gradient of ``sum_b <weights[b], local_output(left, right, T)[b]>`` with
        respect to ``T`` (for real arrays), computed as one ``(P, batch) @ (batch, Q*E)``
        matrix product.
    """
    batch = left.shape[0]
    q = int(np.prod(right.shape[1:], dtype=np.int64))
    right2 = right.reshape(batch, q)
    if weights is None:
        extra: tuple[int, ...] = ()
        rw = right2
    else:
        extra = weights.shape[1:]
        rw = contract("bq,be->bqe", right2, weights.reshape(batch, -1)).reshape(batch, -1)
    p = int(np.prod(left.shape[1:], dtype=np.int64))
    g = contract("bp,bm->pm", left.reshape(batch, p), rw)
    return g.reshape((*left.shape[1:], *right.shape[1:], *extra))


class BatchEnvironments:
    """Cached, per-sample-normalised environments of a chain against a batch of inputs.

    Parameters
    ----------
    tensors : sequence of numpy.ndarray or None
        Site tensors ``(D_left, d, D_right)``. An entry may be ``None`` (or a tensor
        with extra axes, such as a label index) for sites currently merged into a
        local tensor; such sites are never absorbed into an environment.
    features : array_like, shape (batch, n_sites, d)
        Per-site input vectors (see :mod:`tnkit.ml.feature_maps`).

    Examples
    --------
    >>> import numpy as np, tnkit
    >>> from tnkit.ml.environments import BatchEnvironments, local_output
    >>> psi = tnkit.MPS.random(6, max_bond=3, seed=0)
    >>> x = np.random.default_rng(0).random((5, 6, 2))
    >>> envs = BatchEnvironments(list(psi.tensors), x)
    >>> left, right, log_scale = envs.local_inputs(2)
    >>> merged = tnkit.contract("asb,btc->astc", psi[2], psi[3])
    >>> out = local_output(left, right, merged) * np.exp(log_scale)
    >>> out.shape
    (5,)
    """

    def __init__(self, tensors: Sequence[np.ndarray | None], features: np.ndarray) -> None:
        features = as_array("features", features, ndim=3)
        if features.shape[1] != len(tensors):
            raise ValueError(
                f"`features` must have shape (batch, n_sites={len(tensors)}, d), got {features.shape}."
            )
        self.features = features
        self.tensors: list[np.ndarray | None] = list(tensors)
        self.n_sites = len(self.tensors)
        self.batch = features.shape[0]
        ones = np.ones((self.batch, 1), dtype=np.result_type(features, *[t for t in tensors if t is not None]))
        zeros = np.zeros(self.batch)
        self._left: dict[int, tuple[np.ndarray, np.ndarray]] = {0: (ones, zeros)}
        self._right: dict[int, tuple[np.ndarray, np.ndarray]] = {self.n_sites: (ones, zeros)}

    # ---------------------------------------------------------------- bookkeeping

    def set_tensor(self, site: int, tensor: np.ndarray | None) -> None:
        """Replace site ``site``'s tensor and forget the environments that used it.

        Left environments ``left(j)`` for ``j > site`` and right environments
        ``right(j)`` for ``j <= site`` are dropped; all others stay cached.
        """
        site = check_int("site", site, minimum=0)
        self.tensors[site] = tensor
        self._left = {j: v for j, v in self._left.items() if j <= site}
        self._right = {j: v for j, v in self._right.items() if j > site}

    def _site_tensor(self, i: int) -> np.ndarray:
        t = self.tensors[i]
        if t is None or t.ndim != 3:
            raise ValueError(
                f"site {i} has no three-index tensor (it is merged or carries extra axes); "
                "it cannot be absorbed into an environment."
            )
        return t

    def left(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Left environment of site ``j`` (sites ``0 .. j-1``), built from the nearest cached one.

        Returns
        -------
        env : numpy.ndarray, shape (batch, D_j)
            Per-sample normalised environment.
        log_scale : numpy.ndarray, shape (batch,)
            The true environment is ``env * exp(log_scale)[:, None]``.
        """
        if not 0 <= j <= self.n_sites:
            raise IndexError(f"`j` must be in [0, {self.n_sites}], got {j}.")
        start = max(k for k in self._left if k <= j)
        env, log_scale = self._left[start]
        for i in range(start, j):
            env, log_norm = normalize_rows(extend_left(env, self._site_tensor(i), self.features[:, i]))
            log_scale = log_scale + log_norm
            self._left[i + 1] = (env, log_scale)
        return env, log_scale

    def right(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Right environment of sites ``j .. N-1``, built from the nearest cached one.

        Returns
        -------
        env : numpy.ndarray, shape (batch, D_j)
            ``D_j`` is the left bond of site ``j``; per-sample normalised.
        log_scale : numpy.ndarray, shape (batch,)
        """
        if not 0 <= j <= self.n_sites:
            raise IndexError(f"`j` must be in [0, {self.n_sites}], got {j}.")
        start = min(k for k in self._right if k >= j)
        env, log_scale = self._right[start]
        for i in range(start - 1, j - 1, -1):
            env, log_norm = normalize_rows(extend_right(env, self._site_tensor(i), self.features[:, i]))
            log_scale = log_scale + log_norm
            self._right[i] = (env, log_scale)
        return env, log_scale

    # ---------------------------------------------------------------- local inputs

    def local_inputs(self, site: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The two halves of the projected input of the pair ``(site, site + 1)``.

        Returns
        -------
        left : numpy.ndarray, shape (batch, D_left, d)
            ``L[b, l] * x_site[b, s]`` (normalised ``L``).
        right : numpy.ndarray, shape (batch, d, D_right)
            ``x_{site+1}[b, t] * R[b, r]`` (normalised ``R``).
        log_scale : numpy.ndarray, shape (batch,)
            Sum of the log-scales of ``L`` and ``R``.
        """
        if not 0 <= site < self.n_sites - 1:
            raise IndexError(f"`site` must be in [0, {self.n_sites - 1}) for a pair of sites, got {site}.")
        lenv, lscale = self.left(site)
        renv, rscale = self.right(site + 2)
        left = contract("bl,bs->bls", lenv, self.features[:, site])
        right = contract("bt,br->btr", self.features[:, site + 1], renv)
        return left, right, lscale + rscale

    def one_site_inputs(self, site: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Projected input of one site: ``(L (x) x_site, R, log_scale)``.

        Shapes ``(batch, D_left, d)``, ``(batch, D_right)`` and ``(batch,)``; use with
        :func:`local_output` on a tensor ``(D_left, d, D_right, *extra)``.
        """
        if not 0 <= site < self.n_sites:
            raise IndexError(f"`site` must be in [0, {self.n_sites}), got {site}.")
        lenv, lscale = self.left(site)
        renv, rscale = self.right(site + 1)
        return contract("bl,bs->bls", lenv, self.features[:, site]), renv, lscale + rscale

    def projected_input(self, site: int) -> tuple[np.ndarray, np.ndarray]:
        """Full projected input of the pair ``(site, site + 1)``.

        Returns
        -------
        phi : numpy.ndarray, shape (batch, D_left, d, d, D_right)
            ``L[b,l] x_site[b,s] x_{site+1}[b,t] R[b,r]`` with normalised ``L``, ``R``.
        log_scale : numpy.ndarray, shape (batch,)

        Notes
        -----
        Holds ``batch * D_left * d * d * D_right`` numbers; prefer
        :meth:`local_inputs` with :func:`local_output`/:func:`local_gradient` for large
        batches.
        """
        left, right, log_scale = self.local_inputs(site)
        return contract("bls,btr->blstr", left, right), log_scale


# --------------------------------------------------------------------------- integer-coded inputs

#: Floor of ``|psi(x)|`` (of normalised environments) before dividing by it, and of
#: probabilities and amplitudes squared before taking logarithms.
TINY = 1e-150


def group_rows(*columns: np.ndarray, dims: tuple[int, ...]) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Group sample indices by the values of one or more integer columns.

    Parameters
    ----------
    *columns : numpy.ndarray of int, shape (n,)
        Values of the grouped sites, ``0 <= columns[j] < dims[j]``.
    dims : tuple of int
        Number of values of each column.

    Returns
    -------
    list of (values, rows)
        One entry per value combination that occurs: the tuple of values and the
        sorted row indices holding it.
    """
    code = np.zeros(len(columns[0]), dtype=np.intp)
    for col, d in zip(columns, dims):
        code = code * d + col
    order = np.argsort(code, kind="stable")
    sorted_codes = code[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    groups = []
    for a, b in zip(starts, ends):
        values = np.unravel_index(int(sorted_codes[a]), dims)
        groups.append((tuple(int(v) for v in values), order[a:b]))
    return groups



def _absorb(env: np.ndarray, tensor: np.ndarray, x: np.ndarray, equation: str, out_dim: int) -> np.ndarray:
    """Contract each sample's environment with the matrix ``tensor[:, x[n], :]``, grouped by value."""
    out = np.empty((env.shape[0], out_dim), dtype=np.result_type(env, tensor))
    for (s,), rows in group_rows(x, dims=(tensor.shape[1],)):
        out[rows] = contract(equation, env[rows], tensor[:, s, :])
    return out


def absorb_left(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``env[n] @ tensor[:, x[n], :]`` for every sample ``n`` (not normalised).

    ``env`` (n, D_left), ``tensor`` (D_left, d, D_right), ``x`` integer values (n,);
    returns (n, D_right).
    """
    return _absorb(env, tensor, x, "na,ab->nb", tensor.shape[2])


def absorb_right(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``tensor[:, x[n], :] @ env[n]`` for every sample ``n``: ``env`` (n, D_right) -> (n, D_left)."""
    return _absorb(env, tensor, x, "nb,ab->na", tensor.shape[0])


class CodedEnvironments:
    """Normalised per-sample left/right environments of integer data, cached per site.

    ``env[j]`` is the left environment of sites ``0..j-1`` (shape ``(n, D_j)``) for
    ``j <= k`` and the right environment of sites ``j..N-1`` for ``j >= k + 2`` while
    the pair ``(k, k+1)`` is trained; ``scale[j]`` holds the removed log-norms.
    """

    def __init__(self, X: np.ndarray) -> None:
        n, n_sites = X.shape
        self.X = X
        ones = np.ones((n, 1))
        self.env: list[np.ndarray | None] = [None] * (n_sites + 1)
        self.scale: list[np.ndarray | None] = [None] * (n_sites + 1)
        self.env[0], self.scale[0] = ones, np.zeros(n)
        self.env[n_sites], self.scale[n_sites] = ones, np.zeros(n)

    def build_right(self, tensors: list[np.ndarray], stop: int) -> None:
        """Right environments ``env[j]`` for ``j = N-1 .. stop``."""
        for j in range(len(tensors) - 1, stop - 1, -1):
            self.set_right(tensors, j)

    def build_left(self, tensors: list[np.ndarray], stop: int) -> None:
        """Left environments ``env[j]`` for ``j = 1 .. stop``."""
        for j in range(1, stop + 1):
            self.set_left(tensors, j)

    def set_left(self, tensors: list[np.ndarray], j: int) -> None:
        """``env[j]`` from ``env[j-1]`` and site ``j - 1``."""
        env, log_norm = normalize_rows(absorb_left(self.env[j - 1], tensors[j - 1], self.X[:, j - 1]))
        self.env[j], self.scale[j] = env, self.scale[j - 1] + log_norm

    def set_right(self, tensors: list[np.ndarray], j: int) -> None:
        """``env[j]`` from ``env[j+1]`` and site ``j``."""
        env, log_norm = normalize_rows(absorb_right(self.env[j + 1], tensors[j], self.X[:, j]))
        self.env[j], self.scale[j] = env, self.scale[j + 1] + log_norm

