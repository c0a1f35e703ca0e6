"""The labelled chain of :class:`tnkit.ml.MPSClassifier`: layout, outputs, exact gradients.

Model
-----
Each of the ``N`` input features becomes a site through a local feature map
(:mod:`tnkit.ml.feature_maps`), so a sample ``x`` becomes the product state
``Phi(x) = phi(x_0) (x) ... (x) phi(x_{N-1})``. The weights are a matrix product state
``W`` with one extra **label index** of dimension ``n_classes`` on one site, the
*label site* ``c``, and the decision function is the contraction

    f_k(x) = sum_{s_0..s_{N-1}} W^k_{s_0 .. s_{N-1}} phi(x_0)_{s_0} ... phi(x_{N-1})_{s_{N-1}}.

Tensor layout: site ``i != c`` holds ``(D_left, d, D_right)``; the label site holds
``(D_left, d, D_right, n_classes)``. The chain is kept in mixed canonical form with its
orthogonality centre at the label site: sites left of ``c`` are left-isometric, sites
right of it right-isometric (checked with :meth:`MPSClassifier.to_mps`).

Functions
---------
- :func:`init_tensors`: the near-identity start; :func:`canonicalize_chain`,
  :func:`chain_as_mps`, :func:`fuse_label` / :func:`unfuse_label`: the layout;
- :func:`merge_pair` / :func:`split_pair`: two sites holding the label, merged and
  split again by a truncated SVD (the steps of a sweep);
- :func:`chain_outputs` (unit output directions), :func:`raw_chain_outputs` (at the
  true scale), :func:`chain_gradients` (loss and exact gradient of every tensor on a
  batch), :func:`input_gradients` (derivatives with respect to the inputs).

References
----------
E. M. Stoudenmire and D. J. Schwab, "Supervised learning with tensor networks",
NeurIPS 2016, arXiv:1605.05775.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.contract import contract
from ..core.linalg import truncated_svd
from .environments import (
    BatchEnvironments,
    extend_left,
    extend_right,
    local_output,
    normalize_rows,
    unit_rows,
)
from .losses import normalize_outputs, normalized_loss

__all__ = [
    "init_tensors",
    "canonicalize_chain",
    "chain_as_mps",
    "fuse_label",
    "unfuse_label",
    "merge_pair",
    "split_pair",
    "environment_tensors",
    "chain_outputs",
    "raw_chain_outputs",
    "chain_gradients",
    "input_gradients",
]

_PREDICT_CHUNK = 4096


def fuse_label(t: np.ndarray) -> np.ndarray:
    """(Dl, d, Dr, K) -> (Dl, d*K, Dr): the label becomes part of the physical index."""
    dl, d, dr, k = t.shape
    return t.transpose(0, 1, 3, 2).reshape(dl, d * k, dr)


def unfuse_label(t: np.ndarray, d: int) -> np.ndarray:
    """(Dl, d*K, Dr) -> (Dl, d, Dr, K): the inverse of :func:`fuse_label` for physical dimension ``d``."""
    dl, dk, dr = t.shape
    return t.reshape(dl, d, dk // d, dr).transpose(0, 1, 3, 2)


def chain_as_mps(tensors: Sequence[np.ndarray], label_site: int) -> Any:
    """The chain as a :class:`tnkit.MPS`, the label fused into the label site's physical index."""
    from ..mps.mps import MatrixProductState

    fused = [fuse_label(t) if i == label_site else t for i, t in enumerate(tensors)]
    return MatrixProductState(fused)


def canonicalize_chain(tensors: list[np.ndarray], label_site: int) -> list[np.ndarray]:
    """Mixed canonical form about the label site (the model function is unchanged)."""
    psi = chain_as_mps(tensors, label_site)
    psi.canonicalize_(label_site)
    out = [np.array(t) for t in psi.tensors]
    out[label_site] = unfuse_label(out[label_site], tensors[label_site].shape[1])
    return out


def init_tensors(n_sites: int, local_dim: int, n_classes: int, bond: int, rng: np.random.Generator,
                 *, noise: float = 1e-2, passthrough: np.ndarray | None = None,
                 label_site: int = 0) -> list[np.ndarray]:
    """Near-identity chain with the label on ``label_site``, in canonical form about it.

    Each site is ``A[:, s, :] = w_s I`` plus Gaussian noise of scale ``noise``, with
    ``w`` the unit ``passthrough`` vector (default ``(1, .., 1)/sqrt(d)``): an input
    vector ``phi`` multiplies the bond state by ``w . phi``. Choose ``w`` with
    ``w . phi(x)`` nearly constant (:func:`tnkit.ml.feature_maps.passthrough_vector`)
    and all samples start with outputs of the same scale, which gradient training
    needs (Miller's TorchMPS starts the same way, with the ``"linear"`` map for which
    ``w . phi = 1`` exactly). Bond ``b`` has dimension
    ``min(bond, d**(b+1), d**(N-b-1) * n_classes)``.
    """
    w = np.full(local_dim, 1.0 / np.sqrt(local_dim)) if passthrough is None else np.asarray(passthrough, float)
    dims = [1] + [
        int(min(bond, local_dim ** min(b + 1, 30), local_dim ** min(n_sites - b - 1, 30) * n_classes))
        for b in range(n_sites - 1)
    ] + [1]
    tensors = []
    for i in range(n_sites):
        shape = (dims[i], local_dim, dims[i + 1]) + ((n_classes,) if i == label_site else ())
        t = noise * rng.standard_normal(shape)
        eye = np.eye(dims[i], dims[i + 1])[:, None, :] * w[None, :, None]
        t += (eye[..., None] if i == label_site else eye)
        tensors.append(t)
    return canonicalize_chain(tensors, label_site)


def merge_pair(tensors: list[np.ndarray], i: int, label_site: int) -> np.ndarray:
    """Merge sites ``i, i+1`` (one of which holds the label) into (Dl, d, d, Dr, K)."""
    if label_site == i:
        return contract("lsrk,rtq->lstqk", tensors[i], tensors[i + 1])
    return contract("lsr,rtqk->lstqk", tensors[i], tensors[i + 1])


def split_pair(merged: np.ndarray, direction: str, max_bond: int | None, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD of a merged tensor; the label goes right (``"right"``) or left."""
    dl, d1, d2, dr, k = merged.shape
    if direction == "right":
        u, s, vh, _ = truncated_svd(merged.reshape(dl * d1, d2 * dr * k), max_bond=max_bond, cutoff=cutoff)
        return u.reshape(dl, d1, -1), (s[:, None] * vh).reshape(-1, d2, dr, k)
    m = merged.transpose(0, 1, 4, 2, 3).reshape(dl * d1 * k, d2 * dr)
    u, s, vh, _ = truncated_svd(m, max_bond=max_bond, cutoff=cutoff)
    return (u * s).reshape(dl, d1, k, -1).transpose(0, 1, 3, 2), vh.reshape(-1, d2, dr)


def environment_tensors(tensors: list[np.ndarray], label_site: int) -> list[np.ndarray | None]:
    """The tensors with the label site left out (None), as :class:`~tnkit.ml.environments.BatchEnvironments` takes them."""
    return [None if i == label_site else t for i, t in enumerate(tensors)]


def chain_outputs(tensors: list[np.ndarray], label_site: int, phi: np.ndarray) -> np.ndarray:
    """Unit output directions ``f / ||f||`` (batch, n_classes) of the chain on inputs ``phi`` (batch, N, d).

    ``f`` is the contraction of the chain with each product state; it is computed
    from per-sample normalised environments, whose scale cancels in the direction.
    """
    out = []
    for start in range(0, len(phi), _PREDICT_CHUNK):
        envs = BatchEnvironments(environment_tensors(tensors, label_site), phi[start : start + _PREDICT_CHUNK])
        left, right, _ = envs.one_site_inputs(label_site)
        out.append(normalize_outputs(local_output(left, right, tensors[label_site]))[0])
    return np.concatenate(out)


def _backward_vectors(tensors, label_site, phi, envs, G, *, per_sample_scale: bool = False):
    """Per-sample derivatives of ``sum_k G[b,k] f_k`` with respect to every environment.

    Returns ``up[j] = (vec, log)`` for the derivative with respect to the left
    environment of site ``j`` (``j <= label_site``) and ``down[j]`` for the right
    environment ``right(j)`` (``j > label_site``), per-sample normalised.

    With ``per_sample_scale``, ``f`` is the contraction divided by the product of the
    norms of the label site's left and right environments (the scale-free output
    the losses see; ``G`` is then the derivative with respect to that output).
    """
    c, n = label_site, len(tensors)
    lenv, lscale = envs.left(c)
    renv, rscale = envs.right(c + 1)
    t = tensors[c]
    up = {c: normalize_rows(contract("lsrk,bs,br,bk->bl", t, phi[:, c], renv, G))}
    up[c] = (up[c][0], up[c][1] + (-lscale if per_sample_scale else rscale))
    for j in range(c - 1, -1, -1):
        vec, log = normalize_rows(extend_right(up[j + 1][0], tensors[j], phi[:, j]))
        up[j] = (vec, log + up[j + 1][1])
    down = {c + 1: normalize_rows(contract("bl,bs,lsrk,bk->br", lenv, phi[:, c], t, G))}
    down[c + 1] = (down[c + 1][0], down[c + 1][1] + (-rscale if per_sample_scale else lscale))
    for j in range(c + 2, n + 1):
        vec, log = normalize_rows(extend_left(down[j - 1][0], tensors[j - 1], phi[:, j - 1]))
        down[j] = (vec, log + down[j - 1][1])
    return up, down


def _outer_sums(sites: list[int], lefts: dict, xs: np.ndarray, rights: dict, shapes: list) -> dict[int, np.ndarray]:
    """``sum_b lefts[j][b,l] xs[b,j,s] rights[j][b,r]`` for every site ``j``, batched over sites of one shape.

    Sites whose tensors share a shape (all but a few near the chain's ends) are
    stacked, so the whole chain costs a handful of batched matrix products.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for j in sites:
        groups.setdefault(tuple(shapes[j]), []).append(j)
    out = {}
    for (dl, d, dr), js in groups.items():
        a = np.stack([lefts[j] for j in js])  # (m, B, Dl)
        x = xs[:, js].transpose(1, 0, 2)  # (m, B, d)
        r = np.stack([rights[j] for j in js])  # (m, B, Dr)
        ax = (a[:, :, :, None] * x[:, :, None, :]).reshape(len(js), a.shape[1], dl * d)
        g = np.matmul(ax.transpose(0, 2, 1), r).reshape(len(js), dl, d, dr)
        out.update(zip(js, g))
    return out


def chain_gradients(
    tensors: list[np.ndarray], label_site: int, phi: np.ndarray, Y: np.ndarray, *, loss: str,
    alpha: float = 0.0, temperature: float = 1.0,
) -> tuple[float, list[np.ndarray]]:
    """Loss of the chain on a batch and its gradient with respect to every tensor.

    The loss is :func:`tnkit.ml.losses.normalized_loss` of the outputs (it sees each
    sample's output direction only). One forward pass builds the per-sample
    normalised left environments up to the label site and right environments down
    to it; one backward pass carries ``dloss/d(environment)`` outwards; the
    gradients, outer products summed over the batch, are then formed for all sites
    of one shape at once. The small per-site products call numpy directly (not
    :func:`tnkit.contract`): at minibatch sizes the call overhead is the cost.

    Returns
    -------
    loss : float
        ``mean loss + alpha/2 * sum ||T||^2``.
    grads : list of numpy.ndarray
        One array per tensor, same shapes.
    """
    c, n, batch = label_site, len(tensors), len(phi)
    ones, zeros = np.ones((batch, 1)), np.zeros(batch)
    lenv, llog = {0: ones}, {0: zeros}
    for j in range(c):
        env, log = unit_rows(extend_left(lenv[j], tensors[j], phi[:, j]))
        lenv[j + 1], llog[j + 1] = env, llog[j] + log
    renv, rlog = {n: ones}, {n: zeros}
    for j in range(n - 1, c, -1):
        env, log = unit_rows(extend_right(renv[j + 1], tensors[j], phi[:, j]))
        renv[j], rlog[j] = env, rlog[j + 1] + log
    t = tensors[c]
    dl, d, dr, k = t.shape
    lx = (lenv[c][:, :, None] * phi[:, c, None, :]).reshape(batch, dl * d)
    rt = (lx @ t.reshape(dl * d, dr * k)).reshape(batch, dr, k)
    f = np.matmul(renv[c + 1][:, None, :], rt)[:, 0]  # scaled per sample: the loss sees directions only
    value, G = normalized_loss(loss, temperature)(f, Y)
    rg = (renv[c + 1][:, :, None] * G[:, None, :]).reshape(batch, dr * k)
    grads: list[np.ndarray] = [np.empty(0)] * n
    grads[c] = (lx.T @ rg).reshape(t.shape)
    # derivatives of G . f with respect to the (true) environments, per-sample normalised;
    # f was divided by exp(llog[c] + rlog[c + 1]), hence the -llog[c] and -rlog[c + 1]
    up, ulog = {}, {}
    if c > 0:
        m = (rg @ t.transpose(2, 3, 0, 1).reshape(dr * k, dl * d)).reshape(batch, dl, d)
        up[c], ulog[c] = unit_rows(np.matmul(m, phi[:, c, :, None])[:, :, 0])
        ulog[c] = ulog[c] - llog[c]
        for j in range(c - 1, 0, -1):
            env, log = unit_rows(extend_right(up[j + 1], tensors[j], phi[:, j]))
            up[j], ulog[j] = env, ulog[j + 1] + log
    down, dlog = {}, {}
    if c < n - 1:
        lt = (lx @ t.reshape(dl * d, dr * k)).reshape(batch, dr, k)
        down[c + 1], dlog[c + 1] = unit_rows(np.matmul(lt, G[:, :, None])[:, :, 0])
        dlog[c + 1] = dlog[c + 1] - rlog[c + 1]
        for j in range(c + 1, n - 1):
            env, log = unit_rows(extend_left(down[j], tensors[j], phi[:, j]))
            down[j + 1], dlog[j + 1] = env, dlog[j] + log
    shapes = [tt.shape for tt in tensors]
    weighted_left = {j: lenv[j] * np.exp(llog[j] + ulog[j + 1])[:, None] for j in range(c)}
    grads_left = _outer_sums(list(range(c)), weighted_left, phi, {j: up[j + 1] for j in range(c)}, shapes)
    weighted_down = {j: down[j] * np.exp(dlog[j] + rlog[j + 1])[:, None] for j in range(c + 1, n)}
    grads_right = _outer_sums(list(range(c + 1, n)), weighted_down, phi, {j: renv[j + 1] for j in range(c + 1, n)},
                              shapes)
    for j, g in {**grads_left, **grads_right}.items():
        grads[j] = g
    reg = 0.5 * alpha * sum(float(np.vdot(tt, tt)) for tt in tensors)
    return value + reg, [g + alpha * tt for g, tt in zip(grads, tensors)]


def raw_chain_outputs(tensors: list[np.ndarray], label_site: int, phi: np.ndarray) -> np.ndarray:
    """The contraction ``f`` (batch, n_classes) itself, at its true scale (may under- or overflow on long chains)."""
    envs = BatchEnvironments(environment_tensors(tensors, label_site), phi)
    left, right, log_scale = envs.one_site_inputs(label_site)
    return local_output(left, right, tensors[label_site]) * np.exp(log_scale)[:, None]


def input_gradients(tensors: list[np.ndarray], label_site: int, phi: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``d(sum_k G[b,k] f_k(x_b)) / d phi[b, i, s]`` for every sample and site: shape (batch, N, d).

    The decision function is linear in each site's input vector, so this gives the
    exact change of the output when one feature's vector is replaced.
    """
    c = label_site
    envs = BatchEnvironments(environment_tensors(tensors, c), phi)
    up, down = _backward_vectors(tensors, c, phi, envs, G)
    out = np.empty(phi.shape)
    for j in range(len(tensors)):
        lenv, lscale = envs.left(j) if j <= c else down[j]
        renv, rscale = envs.right(j + 1) if j >= c else up[j + 1]
        if j == c:
            out[:, j] = contract("bl,lsrk,br,bk->bs", lenv, tensors[j], renv, G)
        else:
            out[:, j] = contract("bl,lsr,br->bs", lenv, tensors[j], renv)
        out[:, j] *= np.exp(lscale + rscale)[:, None]
    return out
