"""Two-site sweeps of Stoudenmire & Schwab over the labelled chain (``MPSClassifier(solver="sweep")``).

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

The chain's layout is that of :mod:`tnkit.ml.chain`.

References
----------
E. M. Stoudenmire and D. J. Schwab, "Supervised learning with tensor networks",
NeurIPS 2016, arXiv:1605.05775.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .chain import chain_outputs, environment_tensors, merge_pair, split_pair
from .environments import BatchEnvironments, local_gradient, local_output
from .losses import normalized_loss
from .optim import backtracking_descent, conjugate_gradient_least_squares
from .trainers import training_accuracy

__all__ = ["sweep_fit", "LOCAL_SOLVERS"]

#: Local solvers of a sweep step (the ``local_solver`` option).
LOCAL_SOLVERS = ("least-squares", "gradient")


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
        pair = split_pair(merged + t * (new - merged), direction, max_bond, cutoff)
        value = loss_fn(local_output(left, right, merge_pair(list(pair), 0, 0 if direction == "left" else 1)), Y)[0]
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
    envs = BatchEnvironments(environment_tensors(tensors, label_site), phi)
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
                    left, right, merge_pair(tensors, i, label_site), Y, direction, max_bond, cutoff,
                    loss_fn=loss_fn, alpha=alpha, local_steps=local_steps, step=step, local_solver=local_solver,
                )
                label_site = i + 1 if direction == "right" else i
                envs.set_tensor(i, None if label_site == i else tensors[i])
                envs.set_tensor(i + 1, None if label_site == i + 1 else tensors[i + 1])
            f = local_output(left, right, merge_pair(tensors, i, label_site))
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
