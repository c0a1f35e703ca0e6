"""Losses and optimisers shared by the tensor-network classifiers.

Losses take the model outputs ``f`` of shape ``(batch, n_classes)`` and one-hot targets
``Y`` of the same shape, and return the **mean** loss over the batch with its gradient
``dloss/df``. Optimisers update lists of numpy arrays.

- :func:`squared_loss`: ``mean_b 1/2 ||f_b - y_b||^2`` (Stoudenmire & Schwab 2016).
- :func:`cross_entropy_loss`: ``mean_b -log softmax(f_b)[y_b]``.
- :func:`normalized_loss`: either loss on the unit output direction ``f_b / ||f_b||``
  (times a temperature for the cross-entropy), the loss of the tensor-network
  classifiers: invariant under a positive rescaling of each sample's output.
- :class:`Adam`: Kingma & Ba (2015), arXiv:1412.6980.
- :func:`scheduled_learning_rate`: constant, or linear warm-up then cosine decay
  (Loshchilov & Hutter 2017, arXiv:1608.03983), step by step.
- :func:`conjugate_gradient_least_squares`: a few CG steps on a regularised linear
  least-squares problem given as a pair of functions (forward, transpose).
- :func:`backtracking_descent`: gradient descent with an Armijo line search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..core.validate import check_option

__all__ = [
    "LOSSES",
    "squared_loss",
    "cross_entropy_loss",
    "softmax",
    "loss_function",
    "normalize_outputs",
    "normalized_loss",
    "Adam",
    "LEARNING_RATE_SCHEDULES",
    "scheduled_learning_rate",
    "conjugate_gradient_least_squares",
    "backtracking_descent",
]


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
LOSSES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]] = {
    "squared": squared_loss,
    "cross-entropy": cross_entropy_loss,
}


def loss_function(name: str) -> Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]:
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


def normalized_loss(name: str, temperature: float = 1.0) -> Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]:
    """A loss on the output *direction*: ``loss(temperature * f / ||f||, Y)`` per sample.

    The tensor-network classifiers predict ``argmax_k f_k(x)``, which does not change
    when a sample's outputs are multiplied by a positive number. Their raw outputs
    are contractions of hundreds of tensors with unit feature vectors, whose scale
    varies over decades from sample to sample; a loss on the raw outputs then sees
    only the few samples of largest scale. On the unit direction ``u = f / ||f||``
    every sample counts equally, the loss is exactly invariant under per-sample
    rescaling (so per-sample normalised environments can be used as they are), and
    the squared loss becomes ``1/2 ||u - y||^2 = 1 - u_y``.

    Parameters
    ----------
    name : {"squared", "cross-entropy"}
    temperature : float
        Multiplies ``u`` before the loss: the logits of the cross-entropy are
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


class Adam:
    """Adam optimiser over a list of arrays (updates are returned, not applied in place).

    Parameters
    ----------
    learning_rate : float
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    eps : float
        Added to the square root of the second moment.

    Examples
    --------
    >>> import numpy as np
    >>> opt = Adam(0.1)
    >>> x = [np.array([1.0])]
    >>> for _ in range(100):
    ...     x = opt.step(x, [2 * x[0]])
    >>> abs(float(x[0][0])) < 0.1
    True
    """

    def __init__(self, learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self._shapes: list[tuple[int, ...]] = []

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Return ``params`` moved one Adam step against ``grads`` (same shapes, same order).

        The moments are kept as one flat array over all parameters, so a step costs a
        few vector operations however many tensors there are (a 196-site chain has
        196); the returned arrays are views into one new buffer.
        """
        shapes = [p.shape for p in params]
        if self.m is None or shapes != self._shapes:
            size = sum(p.size for p in params)
            self.m, self.v, self.t, self._shapes = np.zeros(size), np.zeros(size), 0, shapes
        assert self.v is not None
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        g = np.concatenate([np.ravel(x) for x in grads])
        p = np.concatenate([np.ravel(x) for x in params])
        self.m *= self.beta1
        self.m += (1 - self.beta1) * g
        self.v *= self.beta2
        self.v += (1 - self.beta2) * (g * g)
        p -= self.learning_rate * (self.m / c1) / (np.sqrt(self.v / c2) + self.eps)
        out, start = [], 0
        for shape in shapes:
            size = math.prod(shape)
            out.append(p[start : start + size].reshape(shape))
            start += size
        return out


#: Names accepted by :func:`scheduled_learning_rate`.
LEARNING_RATE_SCHEDULES = ("constant", "cosine")


def scheduled_learning_rate(schedule: str, base: float, step: int, n_steps: int, *, warmup: float = 0.03) -> float:
    """Learning rate of optimiser step ``step`` (0-based) out of ``n_steps``.

    Parameters
    ----------
    schedule : {"constant", "cosine"}
        ``"constant"``: ``base`` throughout. ``"cosine"``: linear warm-up from
        ``base / n_warm`` to ``base`` over the first ``n_warm = ceil(warmup * n_steps)``
        steps, then ``base * (1 + cos(pi * p)) / 2`` with ``p`` going from 0 to 1
        over the remaining steps (``p = k / n_rest`` at the ``k``-th of them, so the
        last step still moves).
    base : float
        Peak learning rate.
    step, n_steps : int
        Position in the run and its length.
    warmup : float
        Fraction of the run spent warming up (``"cosine"`` only).

    Returns
    -------
    float

    Examples
    --------
    >>> [round(scheduled_learning_rate("cosine", 1.0, s, 5, warmup=0.2), 3) for s in range(5)]
    [1.0, 1.0, 0.854, 0.5, 0.146]
    """
    check_option("learning_rate_schedule", schedule, LEARNING_RATE_SCHEDULES)
    if not 0 <= step < n_steps:
        raise ValueError(f"`step` must lie in [0, n_steps={n_steps}), got {step!r}.")
    if schedule == "constant":
        return base
    n_warm = min(int(np.ceil(warmup * n_steps)), n_steps)
    if step < n_warm:
        return base * (step + 1) / n_warm
    progress = (step - n_warm) / (n_steps - n_warm)
    return float(base * 0.5 * (1.0 + np.cos(np.pi * progress)))


def conjugate_gradient_least_squares(
    forward: Callable[[np.ndarray], np.ndarray],
    transpose: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    Y: np.ndarray,
    *,
    alpha: float = 0.0,
    n_steps: int = 3,
) -> np.ndarray:
    """A few conjugate-gradient steps on ``min_x 1/(2n) ||A x - Y||^2 + alpha/2 ||x||^2``.

    Parameters
    ----------
    forward : callable
        ``x -> A x`` with ``A x`` of the shape of ``Y`` (``n = len(Y)`` rows).
    transpose : callable
        ``r -> A^T r`` (shape of ``x``).
    x : numpy.ndarray
        Starting point.
    Y : numpy.ndarray
        Targets.
    alpha : float
        L2 regularisation strength.
    n_steps : int
        CG iterations; each costs one ``forward`` and one ``transpose``. The objective
        never increases (CG on the normal equations from ``x``).

    Returns
    -------
    numpy.ndarray
        The improved ``x``.
    """
    n = len(Y)
    r = -(transpose(forward(x) - Y) / n + alpha * x)
    p = r.copy()
    rr = float(np.vdot(r, r).real)
    for _ in range(n_steps):
        if rr == 0.0:
            break
        ap = forward(p)
        hp = transpose(ap) / n + alpha * p
        curvature = float(np.vdot(p, hp).real)
        if curvature <= 0.0:
            break
        step = rr / curvature
        x = x + step * p
        r = r - step * hp
        rr_new = float(np.vdot(r, r).real)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def backtracking_descent(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: np.ndarray,
    *,
    step: float,
    n_steps: int = 3,
    max_halvings: int = 20,
) -> tuple[np.ndarray, float]:
    """Gradient descent with an Armijo backtracking line search; never increases the objective.

    Parameters
    ----------
    objective : callable
        ``x -> (value, gradient)``.
    x : numpy.ndarray
        Starting point.
    step : float
        Initial step length; it grows by 1.5 after an accepted step and halves on a rejected one.
    n_steps : int
        Accepted steps to take at most.

    Returns
    -------
    x : numpy.ndarray
        The improved point.
    step : float
        The step length to start from next time.
    """
    value, grad = objective(x)
    for _ in range(n_steps):
        g2 = float(np.vdot(grad, grad).real)
        if g2 == 0.0:
            break
        for _ in range(max_halvings):
            trial = x - step * grad
            t_value, t_grad = objective(trial)
            if t_value <= value - 1e-4 * step * g2:
                x, value, grad = trial, t_value, t_grad
                step *= 1.5
                break
            step *= 0.5
        else:
            break
    return x, step
