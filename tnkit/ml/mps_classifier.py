"""Matrix product state classifier (Stoudenmire & Schwab 2016) as a scikit-learn estimator.

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

Training by sweeping (``solver="sweep"``): at each pair ``(i, i+1)`` holding the label,
the two tensors are merged into ``B`` of shape ``(D_left, d, d, D_right, n_classes)``,
``B`` is improved against the cached environments (:mod:`tnkit.ml.environments`), then
split by a truncated SVD (``max_bond``, ``cutoff``), the label index going to the next
site. For the squared loss the local problem is linear least squares and ``B`` takes
``local_steps`` conjugate-gradient steps; for the cross-entropy it takes
``local_steps`` gradient steps with a backtracking line search. Either way the local
loss never increases, so a sweep can only raise the training loss through truncation.
``solver="adam"`` instead trains every tensor at a fixed bond dimension with Adam on
minibatches.

References
----------
E. M. Stoudenmire and D. J. Schwab, "Supervised learning with tensor networks",
NeurIPS 2016, arXiv:1605.05775.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..core.contract import contract
from ..core.linalg import truncated_svd
from ..core.threads import blas_threads
from .base import TensorNetworkClassifierBase
from .environments import BatchEnvironments, extend_left, extend_right, local_gradient, local_output, normalize_rows
from .feature_maps import embed, passthrough_vector
from .losses import normalize_outputs, normalized_loss
from .optim import LEARNING_RATE_SCHEDULES, backtracking_descent, conjugate_gradient_least_squares
from .trainers import AdamSettings, balance_norms, epochs_for_steps, minibatch_adam, training_accuracy
from .validation import Rule, fraction, integer, number, option

__all__ = ["MPSClassifier", "sweep_fit", "adam_fit", "chain_gradients", "chain_outputs", "init_tensors",
           "default_n_epochs", "ADAM_LEARNING_RATE", "ADAM_STEPS", "ADAM_MAX_EPOCHS", "ADAM_ALPHA", "SWEEP_ALPHA"]

SOLVERS = ("sweep", "adam")

#: Peak Adam step of the default cosine schedule (``learning_rate=None``).
ADAM_LEARNING_RATE = 0.002

#: Optimiser steps of the default schedule: ``n_epochs=None`` runs
#: ``ceil(ADAM_STEPS / steps_per_epoch)`` epochs, at most :data:`ADAM_MAX_EPOCHS`.
ADAM_STEPS = 11000
ADAM_MAX_EPOCHS = 100

#: ``alpha=None`` (the default) resolves to these: no L2 term for Adam, whose loss sees only
#: the output direction (an L2 term then only shrinks the tensors, which made long runs
#: collapse), and 0.003 for sweeps, where it keeps the rank of each updated pair low.
ADAM_ALPHA = 0.0
SWEEP_ALPHA = 0.003


def default_n_epochs(n_samples: int, batch_size: int) -> int:
    """Adam epochs ``fit`` runs when ``n_epochs=None``: the fewest giving :data:`ADAM_STEPS` steps.

    The cosine schedule needs thousands of steps to warm up, explore at its peak and
    settle: 60,000 images get 12 epochs (11,256 steps of 64, the MNIST figures),
    10,000 images 71; small sets are capped at :data:`ADAM_MAX_EPOCHS`.
    """
    return epochs_for_steps(n_samples, batch_size, ADAM_STEPS, ADAM_MAX_EPOCHS)


LOCAL_SOLVERS = ("least-squares", "gradient")
_PREDICT_CHUNK = 4096


# --------------------------------------------------------------------------- chain helpers


def _fuse_label(t: np.ndarray) -> np.ndarray:
    """(Dl, d, Dr, K) -> (Dl, d*K, Dr): the label becomes part of the physical index."""
    dl, d, dr, k = t.shape
    return t.transpose(0, 1, 3, 2).reshape(dl, d * k, dr)


def _unfuse_label(t: np.ndarray, d: int) -> np.ndarray:
    dl, dk, dr = t.shape
    return t.reshape(dl, d, dk // d, dr).transpose(0, 1, 3, 2)


def _as_mps(tensors: Sequence[np.ndarray], label_site: int) -> Any:
    from ..mps.mps import MatrixProductState

    fused = [_fuse_label(t) if i == label_site else t for i, t in enumerate(tensors)]
    return MatrixProductState(fused)


def _canonicalize(tensors: list[np.ndarray], label_site: int) -> list[np.ndarray]:
    """Mixed canonical form about the label site (the model function is unchanged)."""
    psi = _as_mps(tensors, label_site)
    psi.canonicalize_(label_site)
    out = [np.array(t) for t in psi.tensors]
    out[label_site] = _unfuse_label(out[label_site], tensors[label_site].shape[1])
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
    return _canonicalize(tensors, label_site)


def _merge(tensors: list[np.ndarray], i: int, label_site: int) -> np.ndarray:
    """Merge sites ``i, i+1`` (one of which holds the label) into (Dl, d, d, Dr, K)."""
    if label_site == i:
        return contract("lsrk,rtq->lstqk", tensors[i], tensors[i + 1])
    return contract("lsr,rtqk->lstqk", tensors[i], tensors[i + 1])


def _split(merged: np.ndarray, direction: str, max_bond: int | None, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD of a merged tensor; the label goes right (``"right"``) or left."""
    dl, d1, d2, dr, k = merged.shape
    if direction == "right":
        u, s, vh, _ = truncated_svd(merged.reshape(dl * d1, d2 * dr * k), max_bond=max_bond, cutoff=cutoff)
        return u.reshape(dl, d1, -1), (s[:, None] * vh).reshape(-1, d2, dr, k)
    m = merged.transpose(0, 1, 4, 2, 3).reshape(dl * d1 * k, d2 * dr)
    u, s, vh, _ = truncated_svd(m, max_bond=max_bond, cutoff=cutoff)
    return (u * s).reshape(dl, d1, k, -1).transpose(0, 1, 3, 2), vh.reshape(-1, d2, dr)


def _env_tensors(tensors: list[np.ndarray], label_site: int) -> list[np.ndarray | None]:
    return [None if i == label_site else t for i, t in enumerate(tensors)]


def chain_outputs(tensors: list[np.ndarray], label_site: int, phi: np.ndarray) -> np.ndarray:
    """Unit output directions ``f / ||f||`` (batch, n_classes) of the chain on inputs ``phi`` (batch, N, d).

    ``f`` is the contraction of the chain with each product state; it is computed
    from per-sample normalised environments, whose scale cancels in the direction.
    """
    out = []
    for start in range(0, len(phi), _PREDICT_CHUNK):
        envs = BatchEnvironments(_env_tensors(tensors, label_site), phi[start : start + _PREDICT_CHUNK])
        left, right, _ = envs.one_site_inputs(label_site)
        out.append(normalize_outputs(local_output(left, right, tensors[label_site]))[0])
    return np.concatenate(out)


# --------------------------------------------------------------------------- sweeping


def _local_update(left, right, merged, Y, *, loss_fn, alpha: float, local_steps: int, step: float,
                  proposal: str = "least-squares"):
    """Improve a merged tensor against fixed projected inputs; returns (tensor, next step length).

    ``proposal="least-squares"`` returns the target of :func:`_least_squares_target`;
    ``"gradient"`` takes plain gradient steps on the model's loss, each with Armijo
    backtracking (never uphill). The caller scales ``merged`` to outputs of
    root-mean-square norm 1 first: the gradient of a direction loss scales as
    ``1/||f||``, and this fixes the scale of the steps.
    """

    def objective(b: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad_f = loss_fn(local_output(left, right, b), Y)
        return value + 0.5 * alpha * float(np.sum(b * b)), local_gradient(left, right, grad_f) + alpha * b

    if proposal == "least-squares":
        return _least_squares_target(left, right, merged, Y, alpha, local_steps), step
    return backtracking_descent(objective, merged, step=step, n_steps=local_steps)


def _update_and_split(left, right, merged, Y, direction, max_bond, cutoff, *, loss_fn, alpha, local_steps, step,
                      local_solver="least-squares", fractions=(1.0, 0.5, 0.25, 0.0)):
    """Local update, then the truncated split, choosing how far to go by the loss *after* truncation.

    ``merged`` is first rescaled (the model does not change) so its outputs on the
    projected inputs have root-mean-square norm 1. The update proposes ``B_new``; the
    split of ``B + t (B_new - B)`` is taken for the ``t`` in ``fractions`` whose
    truncated product has the lowest loss. A long step
    raises the rank of ``B`` and the SVD may then discard more than the step gained;
    ``t = 0`` (only moving the label) is always a candidate.
    """
    norm = float(np.sqrt(np.mean(np.sum(local_output(left, right, merged) ** 2, axis=1))))
    if norm > 0 and math.isfinite(norm):
        merged = merged / norm
    new, step = _local_update(left, right, merged, Y, loss_fn=loss_fn, alpha=alpha, local_steps=local_steps,
                              step=step, proposal=local_solver)
    best = None
    for t in fractions:
        pair = _split(merged + t * (new - merged), direction, max_bond, cutoff)
        value = loss_fn(local_output(left, right, _merge(list(pair), 0, 0 if direction == "left" else 1)), Y)[0]
        if best is None or value < best[0]:
            best = (value, pair)
    return best[1], step


def _least_squares_target(left, right, merged, Y, alpha, n_steps):
    """A few CG steps on ``min_B mean ||B . v_n - y_n||^2 + alpha ||B||^2`` from ``merged`` (unit ``v_n``).

    The least-squares problem on the per-sample normalised projected inputs is the
    local problem of Stoudenmire & Schwab's reference code; its CG steps give a
    strong search direction. How far to move along it is decided after truncation
    by :func:`_update_and_split`.
    """

    def forward(b: np.ndarray) -> np.ndarray:
        return local_output(left, right, b)

    def transpose(g: np.ndarray) -> np.ndarray:
        return local_gradient(left, right, g)

    return conjugate_gradient_least_squares(forward, transpose, merged, Y, alpha=alpha, n_steps=n_steps)


def sweep_fit(
    tensors: list[np.ndarray],
    label_site: int,
    phi: np.ndarray,
    Y: np.ndarray,
    *,
    n_sweeps: int,
    max_bond: int | None,
    cutoff: float,
    loss: str = "squared",
    local_steps: int = 2,
    alpha: float = 0.0,
    learning_rate: float = 1.0,
    temperature: float = 1.0,
    local_solver: str = "least-squares",
    verbose: bool = False,
) -> tuple[list[np.ndarray], int, list[dict[str, float]]]:
    """Two-site sweeps of Stoudenmire & Schwab over a labelled chain.

    Parameters
    ----------
    tensors : list of numpy.ndarray
        Chain in canonical form about ``label_site`` (see the module docstring).
    label_site : int
        Site holding the label index. A sweep runs right to the last site, unless the
        label is already there, in which case it runs left to site 0.
    phi : numpy.ndarray, shape (batch, N, d)
        Embedded training inputs.
    Y : numpy.ndarray, shape (batch, n_classes)
        One-hot targets.
    n_sweeps : int
        Number of sweeps (one pass across the chain each).
    max_bond, cutoff
        Truncation of the SVD splits.
    loss : {"squared", "cross-entropy"}
        Applied to the unit output directions (:func:`tnkit.ml.losses.normalized_loss`).
    local_steps : int
        CG steps (``local_solver="least-squares"``) or gradient steps with Armijo
        backtracking (``"gradient"``) on each merged tensor.
    alpha : float
        L2 penalty on the (unit-norm) merged tensor.
    learning_rate : float
        First trial step length of the ``"gradient"`` local solver; it then adapts
        (x1.5 after an accepted step, /2 on a rejected trial) and carries over from
        bond to bond.
    temperature : float
        Logit scale of the cross-entropy.
    local_solver : {"least-squares", "gradient"}
        Conjugate-gradient steps on the ridge least-squares problem of the
        normalised projected inputs (Stoudenmire's reference code), or plain gradient
        steps on the model's loss (the paper's text). Either way the step fraction
        is chosen after truncation (:func:`_update_and_split`).

    Returns
    -------
    tensors, label_site, history
        ``history`` has one dict per sweep: ``loss`` (training loss after the sweep),
        ``accuracy`` (training accuracy), ``max_bond`` and ``seconds``.
    """
    from tqdm.auto import tqdm

    tensors = list(tensors)
    n = len(tensors)
    envs = BatchEnvironments(_env_tensors(tensors, label_site), phi)
    loss_fn = normalized_loss(loss, temperature)
    history: list[dict[str, float]] = []
    step = learning_rate
    for sweep in range(n_sweeps):
        t0 = time.perf_counter()
        if n == 1:
            tensors[0], step = _one_site_update(envs, tensors[0], Y, loss_fn, alpha, local_steps, step)
            f = chain_outputs(tensors, 0, phi)
        else:
            direction = "left" if label_site == n - 1 else "right"
            bonds = range(label_site, n - 1) if direction == "right" else range(label_site - 1, -1, -1)
            bar = tqdm(bonds, desc=f"sweep {sweep + 1}/{n_sweeps} ({direction})", disable=not verbose, leave=verbose)
            for i in bar:
                left, right, _ = envs.local_inputs(i)  # per-sample scales cancel in the loss
                (tensors[i], tensors[i + 1]), step = _update_and_split(
                    left, right, _merge(tensors, i, label_site), Y, direction, max_bond, cutoff,
                    loss_fn=loss_fn, alpha=alpha, local_steps=local_steps, step=step, local_solver=local_solver,
                )
                label_site = i + 1 if direction == "right" else i
                envs.set_tensor(i, None if label_site == i else tensors[i])
                envs.set_tensor(i + 1, None if label_site == i + 1 else tensors[i + 1])
            f = local_output(left, right, _merge(tensors, i, label_site))
        value, _ = loss_fn(f, Y)
        record = {
            "loss": value,
            "accuracy": training_accuracy(f, Y),
            "max_bond": max(t.shape[2] for t in tensors),
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        if verbose and n > 1:
            bar.set_postfix(loss=f"{value:.4g}", train_acc=f"{record['accuracy']:.4f}", bond=record["max_bond"])
            bar.close()
    return tensors, label_site, history


def _one_site_update(envs, tensor, Y, loss_fn, alpha, local_steps, step):
    """Single-site update, used when the chain has one site."""
    left, right, _ = envs.one_site_inputs(0)
    return _local_update(left, right, tensor, Y, loss_fn=loss_fn, alpha=alpha, local_steps=local_steps, step=step)


# --------------------------------------------------------------------------- gradients


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


def _normalized(env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``env`` (batch, D) scaled to unit norm, and the logs of the removed norms (zero rows kept)."""
    norms = np.sqrt(np.einsum("bi,bi->b", env, env))
    norms[norms == 0] = 1.0
    return env / norms[:, None], np.log(norms)


def _absorb_left(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``sum_{l,s} env[b,l] tensor[l,s,r] x[b,s]`` (batch, D_right): one GEMM and one batched product."""
    dl, d, dr = tensor.shape
    t = (env @ tensor.reshape(dl, d * dr)).reshape(len(env), d, dr)
    return np.matmul(x[:, None, :], t)[:, 0]


def _absorb_right(env: np.ndarray, tensor: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``sum_{s,r} tensor[l,s,r] x[b,s] env[b,r]`` (batch, D_left)."""
    dl, d, dr = tensor.shape
    t = (env @ tensor.reshape(dl * d, dr).T).reshape(len(env), dl, d)
    return np.matmul(t, x[:, :, None])[:, :, 0]


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
        env, log = _normalized(_absorb_left(lenv[j], tensors[j], phi[:, j]))
        lenv[j + 1], llog[j + 1] = env, llog[j] + log
    renv, rlog = {n: ones}, {n: zeros}
    for j in range(n - 1, c, -1):
        env, log = _normalized(_absorb_right(renv[j + 1], tensors[j], phi[:, j]))
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
        up[c], ulog[c] = _normalized(np.matmul(m, phi[:, c, :, None])[:, :, 0])
        ulog[c] = ulog[c] - llog[c]
        for j in range(c - 1, 0, -1):
            env, log = _normalized(_absorb_right(up[j + 1], tensors[j], phi[:, j]))
            up[j], ulog[j] = env, ulog[j + 1] + log
    down, dlog = {}, {}
    if c < n - 1:
        lt = (lx @ t.reshape(dl * d, dr * k)).reshape(batch, dr, k)
        down[c + 1], dlog[c + 1] = _normalized(np.matmul(lt, G[:, :, None])[:, :, 0])
        dlog[c + 1] = dlog[c + 1] - rlog[c + 1]
        for j in range(c + 1, n - 1):
            env, log = _normalized(_absorb_left(down[j], tensors[j], phi[:, j]))
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
    envs = BatchEnvironments(_env_tensors(tensors, label_site), phi)
    left, right, log_scale = envs.one_site_inputs(label_site)
    return local_output(left, right, tensors[label_site]) * np.exp(log_scale)[:, None]


def input_gradients(tensors: list[np.ndarray], label_site: int, phi: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``d(sum_k G[b,k] f_k(x_b)) / d phi[b, i, s]`` for every sample and site: shape (batch, N, d).

    The decision function is linear in each site's input vector, so this gives the
    exact change of the output when one feature's vector is replaced.
    """
    c = label_site
    envs = BatchEnvironments(_env_tensors(tensors, c), phi)
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


def adam_fit(
    tensors: list[np.ndarray],
    label_site: int,
    phi: np.ndarray,
    Y: np.ndarray,
    *,
    n_epochs: int,
    batch_size: int,
    learning_rate: float,
    loss: str,
    alpha: float,
    rng: np.random.Generator,
    temperature: float = 1.0,
    learning_rate_schedule: str = "constant",
    verbose: bool = False,
) -> tuple[list[np.ndarray], list[dict[str, float]]]:
    """Minibatch Adam over all tensors at fixed bond dimensions; returns the canonicalised chain.

    The loop is :func:`tnkit.ml.trainers.minibatch_adam` (one Adam run over the whole
    call, tensors balanced once at the start) with :func:`chain_gradients` as the batch
    loss. ``learning_rate`` is the peak rate of ``learning_rate_schedule``
    (:func:`tnkit.ml.optim.scheduled_learning_rate`), which runs over the
    ``n_epochs * ceil(len(phi) / batch_size)`` steps of this call. The other
    arguments are those of :class:`MPSClassifier`.
    """

    def batch_loss(ts: list[np.ndarray], idx: np.ndarray) -> tuple[float, list[np.ndarray]]:
        return chain_gradients(ts, label_site, phi[idx], Y[idx], loss=loss, alpha=alpha, temperature=temperature)

    def evaluate(ts: list[np.ndarray]) -> dict[str, float]:
        return {"accuracy": training_accuracy(chain_outputs(ts, label_site, phi), Y),
                "max_bond": max(t.shape[2] for t in ts)}

    settings = AdamSettings(n_epochs=n_epochs, batch_size=batch_size, learning_rate=learning_rate,
                            schedule=learning_rate_schedule)
    tensors, history = minibatch_adam(tensors, batch_loss, len(phi), settings, rng=rng, evaluate=evaluate,
                                      verbose=verbose)
    return _canonicalize(tensors, label_site), history


# --------------------------------------------------------------------------- the estimator


class MPSClassifier(TensorNetworkClassifierBase):
    """Matrix product state classifier of Stoudenmire & Schwab (2016).

    The defaults are the recipe behind the published MNIST figures
    (``docs/classifiers.md``): bond 10, minibatch Adam (batch 64) on the squared loss
    of the output direction, peak step 0.002 with a 3% warm-up and a cosine decay,
    and as many epochs as give at least 5,000 steps (6 on 60,000 images, 32 on
    10,000; see :func:`default_n_epochs`). Features must lie in :attr:`feature_range`
    (``[0, 1]`` for the default cos-sin map).

    Parameters
    ----------
    max_bond : int or None
        Fixed bond dimension (``solver="adam"``), or the largest bond kept by the SVD
        splits (``solver="sweep"``). Default 10: on MNIST 14x14 bond 20 gave the same
        error (1.96% against 1.93%) at 1.3 times the cost.
    cutoff : float
        Relative discarded weight allowed per split (sweeps; see ``tnkit.core.linalg``).
    feature_map : {"cos-sin", "linear", "polynomial", "one-hot"}
        Local feature map (:mod:`tnkit.ml.feature_maps`). cos-sin and linear expect
        features in ``[0, 1]``: ``fit`` refuses negative values and every method warns
        (``FeatureRangeWarning``) about values above 1. Divide images by their largest
        possible pixel value (not per pixel); use
        ``sklearn.preprocessing.MinMaxScaler(clip=True)`` for other features.
    local_dim : int
        Length (at least 2) of each local feature vector (physical dimension of the sites).
    loss : {"squared", "cross-entropy"}
        The paper's squared loss on the one-hot label, or softmax cross-entropy;
        either is taken on the unit output direction ``u = f / ||f||``
        (:func:`tnkit.ml.losses.normalized_loss`), so every sample counts equally
        whatever the scale of its contraction. Squared: the cross-entropy never
        trained faster on MNIST and diverged first at larger steps.
    solver : {"adam", "sweep"}
        Minibatch Adam over all tensors at the fixed bond ``max_bond`` (default), or
        the paper's two-site DMRG-style sweeps with SVD bond growth. Adam costs about
        a sixth of a sweep per sample and reached 1.9-2.0% on MNIST where two sweeps
        of 10,000 images at bond 20 reached 5.5%.
    local_solver : {"least-squares", "gradient"}
        Sweeps only: CG on the ridge least-squares problem of the per-sample
        normalised projected inputs, or gradient steps on the loss.
    n_sweeps : int
        Sweeps per ``fit`` (``solver="sweep"``; each one pass across the chain).
    local_steps : int
        CG or gradient steps on each merged tensor (sweeps).
    alpha : float or None
        L2 (ridge) regularisation. None (default) resolves by solver (stored in
        ``alpha_``): 0 for Adam (:data:`ADAM_ALPHA`; its loss sees only the output
        direction, so an L2 term only shrinks the tensors, and long runs with 0.003
        collapsed), 0.003 for sweeps (:data:`SWEEP_ALPHA`), where it regularises the
        local least-squares problems and keeps the rank of the updated pair low so the
        SVD split loses little (digits, bond 20: ``alpha=0`` let the second sweep fall
        from 0.97 to 0.72 training accuracy, 0.003 reached 0.999).
    learning_rate : float or None
        Adam's peak step (None: :data:`ADAM_LEARNING_RATE` = 0.002; 0.003 diverged on
        60,000 MNIST images, 0.006 was too large on 10,000), or the first trial step
        of the ``"gradient"`` local solver of sweeps (None: 1.0; the step then adapts).
    learning_rate_schedule : {"cosine", "constant"}
        Adam only: a linear warm-up over the first 3% of the steps of each ``fit``
        followed by a cosine decay towards 0 (default;
        :func:`tnkit.ml.optim.scheduled_learning_rate`), ``learning_rate`` being the
        peak; or a constant step. On MNIST the schedule took the error from 4.0% to 3.2%
        in the same 4 epochs.
    temperature : float
        Logit scale: ``predict_proba`` is ``softmax(temperature * u)`` and the
        cross-entropy is taken on those logits.
    n_epochs : int or None
        Adam epochs per ``fit``; None (default) chooses them from the data's size
        (:func:`default_n_epochs`; the choice is stored in ``n_epochs_``).
    batch_size : int
        Adam minibatch size (64).
    init_bond : int
        Sweeps: bond dimension of the initial near-identity chain (bonds then grow up
        to ``max_bond``).
    init_noise : float
        Scale of the Gaussian noise added to the initial near-identity tensors.
    random_state : None, int or numpy Generator
        Seed of the initial weights and the minibatch order.
    verbose : bool
        Show a tqdm progress bar per sweep (or epoch) with the loss and train accuracy.
    warm_start : bool
        ``fit`` continues from the current model instead of starting afresh.

    Attributes
    ----------
    tensors_ : list of numpy.ndarray
        Site tensors ``(D_left, d, D_right)``; the label site's is ``(D_left, d, D_right, n_classes)``.
    label_site_ : int
        Site holding the label index (the orthogonality centre).
    classes_ : numpy.ndarray
    n_features_in_ : int
    history_ : list of dict
        Per sweep/epoch: ``loss``, ``accuracy`` (training), ``max_bond``, ``seconds``
        (and ``learning_rate`` for Adam).
    n_epochs_ : int
        Adam epochs of the last ``fit`` (``solver="adam"``).
    alpha_ : float
        The L2 regularisation the last ``fit`` used (``alpha``, or its solver's default).

    Examples
    --------
    >>> from tnkit.datasets import load_digits
    >>> from tnkit.ml import MPSClassifier
    >>> X, y = load_digits()
    >>> clf = MPSClassifier(max_bond=8, solver="sweep", n_sweeps=2, random_state=0).fit(X[:300], y[:300])
    >>> clf.score(X[300:600], y[300:600]) > 0.5
    True
    """

    _kind = "MPSClassifier"

    def __init__(
        self,
        max_bond: int | None = 10,
        *,
        cutoff: float = 1e-10,
        feature_map: str = "cos-sin",
        local_dim: int = 2,
        loss: str = "squared",
        solver: str = "adam",
        n_sweeps: int = 4,
        local_steps: int = 4,
        alpha: float | None = None,
        learning_rate: float | None = None,
        learning_rate_schedule: str = "cosine",
        temperature: float = 10.0,
        local_solver: str = "least-squares",
        n_epochs: int | None = None,
        batch_size: int = 64,
        init_bond: int = 4,
        init_noise: float = 1e-2,
        random_state: Any = None,
        verbose: bool = False,
        warm_start: bool = False,
    ) -> None:
        self.max_bond = max_bond
        self.cutoff = cutoff
        self.feature_map = feature_map
        self.local_dim = local_dim
        self.loss = loss
        self.solver = solver
        self.n_sweeps = n_sweeps
        self.local_steps = local_steps
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.temperature = temperature
        self.local_solver = local_solver
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.init_bond = init_bond
        self.init_noise = init_noise
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    def _parameter_rules(self) -> dict[str, Rule]:
        return {
            **super()._parameter_rules(),
            "cutoff": fraction(),
            "solver": option(SOLVERS),
            "local_solver": option(LOCAL_SOLVERS),
            "learning_rate_schedule": option(LEARNING_RATE_SCHEDULES),
            "n_sweeps": integer(minimum=1),
            "local_steps": integer(minimum=1),
            "batch_size": integer(minimum=1),
            "init_bond": integer(minimum=1),
            "n_epochs": integer(minimum=1, optional=True),
            "alpha": number(positive=False, optional=True),
            "temperature": number(),
            "init_noise": number(positive=False),
            "learning_rate": number(optional=True),
        }

    def _init_model(self, phi: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> None:
        bond = self.init_bond if self.solver == "sweep" else (self.max_bond or self.init_bond)
        if self.max_bond is not None:
            bond = min(bond, self.max_bond)
        # sweeps start at site 0; Adam from the middle (shortest gradient paths, D*d*D label inputs)
        sweep = self.solver == "sweep"
        label_site = 0 if sweep else phi.shape[1] // 2
        tensors = init_tensors(phi.shape[1], self.local_dim, Y.shape[1], bond, rng, noise=self.init_noise,
                               passthrough=None if sweep else passthrough_vector(phi), label_site=label_site)
        self.tensors_, self.label_site_ = tensors, label_site

    def _train(self, phi, Y, n_iter, rng):
        default_alpha = SWEEP_ALPHA if self.solver == "sweep" else ADAM_ALPHA
        self.alpha_ = default_alpha if self.alpha is None else self.alpha
        if self.solver == "sweep":
            self.tensors_, self.label_site_, history = sweep_fit(
                self.tensors_, self.label_site_, phi, Y,
                n_sweeps=n_iter or self.n_sweeps, max_bond=self.max_bond, cutoff=self.cutoff,
                loss=self.loss, local_steps=self.local_steps, alpha=self.alpha_,
                learning_rate=1.0 if self.learning_rate is None else self.learning_rate,
                temperature=self.temperature, local_solver=self.local_solver, verbose=self.verbose,
            )
            return history
        self.n_epochs_ = n_iter or self.n_epochs or default_n_epochs(len(phi), self.batch_size)
        self.tensors_, history = adam_fit(
            self.tensors_, self.label_site_, phi, Y, n_epochs=self.n_epochs_, batch_size=self.batch_size,
            learning_rate=ADAM_LEARNING_RATE if self.learning_rate is None else self.learning_rate,
            loss=self.loss, alpha=self.alpha_, rng=rng, temperature=self.temperature,
            learning_rate_schedule=self.learning_rate_schedule, verbose=self.verbose,
        )
        return history

    def _decision(self, phi: np.ndarray) -> np.ndarray:
        return chain_outputs(self.tensors_, self.label_site_, phi)

    def _logit_scale(self) -> float:
        return float(self.temperature)

    def _model_arrays(self):
        return list(self.tensors_), {"label_site": self.label_site_}

    def _restore_model(self, tensors, meta):
        self.tensors_ = [np.array(t) for t in tensors]
        self.label_site_ = int(meta["label_site"])

    # ------------------------------------------------------------------ inspection

    @property
    def bond_dims_(self) -> tuple[int, ...]:
        """Bond dimensions of the trained chain (``N - 1`` bonds)."""
        check_is_fitted(self)
        return tuple(t.shape[2] for t in self.tensors_[:-1])

    def to_mps(self) -> Any:
        """The weights as a :class:`tnkit.MPS`, the label fused into the label site's physical index.

        The label site's physical dimension is ``local_dim * n_classes`` (index
        ``s * n_classes + k``); the canonical bookkeeping is verified, not assumed.
        """
        check_is_fitted(self)
        psi = _as_mps(self.tensors_, self.label_site_)
        psi.adopt_canonical_range(self.label_site_, self.label_site_ + 1)
        return psi

    def entanglement_entropy(self) -> np.ndarray:
        """Von Neumann entropy (nats) across each bond of the normalised weight MPS, shape (N-1,)."""
        return np.atleast_1d(np.asarray(self.to_mps().normalized().entanglement_entropy(), dtype=float))

    def feature_importance(self, X: Any, y: Any = None) -> np.ndarray:
        """How much each feature matters: exact occlusion sensitivity, shape (n_features,).

        For each feature ``i``, the mean over samples of ``|f_y(x) - f_y(x with x_i = 0)| / ||f(x)||``
        (``y`` the true class, or the predicted one when ``y`` is None; ``f`` the raw
        contraction). The contraction is linear in each site's input vector, so the
        change is computed exactly from ``d f_y / d phi(x_i)`` in one backward pass.
        For images, ``x_i = 0`` is a blank pixel; reshape the result to the image shape.
        """
        check_is_fitted(self)
        X = self._validated_X(X, reset=False)
        phi = self._embed(X)
        cls = np.argmax(self._decision(phi), axis=1) if y is None else np.searchsorted(self.classes_, np.asarray(y))
        G = np.eye(len(self.classes_))[cls]
        with blas_threads(self.max_bond or 1):
            grads = input_gradients(self.tensors_, self.label_site_, phi, G)
            f = raw_chain_outputs(self.tensors_, self.label_site_, phi)
        blank = embed(np.zeros((1, 1)), self.feature_map, local_dim=self.local_dim)[0, 0]
        change = np.abs(contract("bis,bis->bi", grads, blank[None, None, :] - phi))
        norms = np.linalg.norm(f, axis=1)
        return np.mean(change / np.where(norms > 0, norms, 1.0)[:, None], axis=0)
