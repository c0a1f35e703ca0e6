"""Losses of the tensor-network classifiers, on raw outputs and on output directions.

Losses take the model outputs ``f`` of shape ``(batch, n_classes)`` and one-hot targets
``Y`` of the same shape, and return the **mean** loss over the batch with its gradient
``dloss/df``. They are looked up by name in :data:`LOSSES` (the ``loss`` option of the
classifiers); adding a loss is one function and one registry line.

- :func:`squared_loss`: ``mean_b 1/2 ||f_b - y_b||^2`` (Stoudenmire & Schwab 2016).
- :func:`cross_entropy_loss`: ``mean_b -log softmax(f_b)[y_b]``.
- :func:`normalized_loss`: either loss on ``temperature * f_b / ||f_b||`` (the unit
  output direction times a temperature), the loss of the tensor-network classifiers:
  invariant under a positive rescaling of each sample's output.
- :func:`softmax`, :func:`normalize_outputs`: the row-wise maps they are built from.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.validate import check_option

__all__ = [
    "LOSSES",
    "LossFunction",
    "squared_loss",
    "cross_entropy_loss",
    "softmax",
    "loss_function",
    "normalize_outputs",
    "normalized_loss",
]

#: ``(f, Y) -> (mean loss, dloss/df)``, both arrays of shape (batch, n_classes).
LossFunction = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def softmax(f: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``f`` (batch, n_classes), stable for large values."""
    z = f - f.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


def squared_loss(f: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean_b 1/2 sum_k (f[b,k] - Y[b,k])**2`` and its gradient ``(f - Y) / batch``."""
    diff = f - Y
    return 0.5 * float(np.sum(diff * diff)) / len(f), diff / len(f)


def cross_entropy_loss(f: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean_b -sum_k Y[b,k] log softmax(f[b])[k]`` and its gradient ``(softmax(f) - Y) / batch``."""
    z = f - f.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -float(np.sum(Y * log_p)) / len(f), (np.exp(log_p) - Y) / len(f)


#: Loss name -> function ``(f, Y) -> (mean loss, dloss/df)``.
LOSSES: dict[str, LossFunction] = {
    "squared": squared_loss,
    "cross-entropy": cross_entropy_loss,
}


def loss_function(name: str) -> LossFunction:
    """Look up a loss by name (``"squared"`` or ``"cross-entropy"``)."""
    check_option("loss", name, LOSSES)
    return LOSSES[name]


def normalize_outputs(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``f`` (batch, n_classes) divided by their 2-norms; returns ``(u, norms)``.

    A zero row stays zero (its norm is reported as 1).
    """
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    norms = np.where(norms > 0, norms, 1.0)
    return f / norms, norms


def normalized_loss(name: str, temperature: float = 1.0) -> LossFunction:
    """A loss on the output *direction*: ``loss(temperature * f / ||f||, Y)`` per sample.

    The tensor-network classifiers predict ``argmax_k f_k(x)``, which does not change
    when a sample's outputs are multiplied by a positive number. Their raw outputs
    are contractions of hundreds of tensors with unit feature vectors, whose scale
    varies over decades from sample to sample; a loss on the raw outputs then sees
    only the few samples of largest scale. On the unit direction ``u = f / ||f||``
    every sample counts equally, the loss is exactly invariant under per-sample
    rescaling (so per-sample normalised environments can be used as they are), and
    the squared loss becomes ``1/2 ||T u - y||^2 = (T^2 + 1)/2 - T u_y`` at temperature
    ``T``: ``1 - u_y`` for ``T = 1``, and for any ``T`` the same minimiser with a
    gradient ``T`` times larger (which Adam's per-entry step sizes absorb).

    Parameters
    ----------
    name : {"squared", "cross-entropy"}
    temperature : float
        Multiplies ``u`` before either loss: the logits of the cross-entropy are
        ``temperature * u`` (``u_k`` lies in ``[-1, 1]``, so a temperature near 10
        lets the probabilities approach 0 and 1).

    Returns
    -------
    callable
        ``(f, Y) -> (mean loss, dloss/df)``, with ``f`` the raw outputs (batch, n_classes).
    """
    base = loss_function(name)

    def loss(f: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
        u, norms = normalize_outputs(f)
        value, g = base(temperature * u, Y)
        g = temperature * g
        return value, (g - u * np.sum(g * u, axis=1, keepdims=True)) / norms

    return loss
