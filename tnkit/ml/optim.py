"""Optimisers of the tensor-network learners: Adam, learning-rate schedules, CG and a line search.

Optimisers update lists of numpy arrays; the losses they minimise live in
:mod:`tnkit.ml.losses`, the shared minibatch loop in :mod:`tnkit.ml.trainers`.

- :class:`Adam`: Kingma & Ba (2015), arXiv:1412.6980.
- :func:`scheduled_learning_rate`: a schedule from :data:`LEARNING_RATE_SCHEDULES`
  (constant, or linear warm-up then cosine decay, Loshchilov & Hutter 2017,
  arXiv:1608.03983), step by step.
- :func:`conjugate_gradient_least_squares`: a few CG steps on a regularised linear
  least-squares problem given as a pair of functions (forward, transpose).
- :func:`backtracking_descent`: gradient descent with an Armijo line search.

The losses used to live here; ``tnkit.ml.optim.squared_loss`` and the other loss names
still resolve, with a ``DeprecationWarning``, to :mod:`tnkit.ml.losses`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.validate import check_option

__all__ = [
    "Adam",
    "LEARNING_RATE_SCHEDULES",
    "scheduled_learning_rate",
    "constant_schedule",
    "cosine_schedule",
    "conjugate_gradient_least_squares",
    "backtracking_descent",
]

#: Names that moved to :mod:`tnkit.ml.losses` (still importable from here, with a warning).
_MOVED_TO_LOSSES = frozenset(
    {"LOSSES", "squared_loss", "cross_entropy_loss", "softmax", "loss_function", "normalize_outputs", "normalized_loss"}
)


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_LOSSES:
        from . import losses

        warnings.warn(f"tnkit.ml.optim.{name} moved to tnkit.ml.losses.{name}; import it from there.",
                      DeprecationWarning, stacklevel=2)
        return getattr(losses, name)
    raise AttributeError(f"module 'tnkit.ml.optim' has no attribute {name!r}")


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


    def step_flat_(self, theta: np.ndarray, grad: np.ndarray) -> None:
        """Move the flat real array ``theta`` one step against ``grad``, in place.

        For a model held in one array (complex entries viewed as pairs of reals): no
        copies, a handful of vector operations. This is the paper's efficient form
        (the bias corrections folded into the step size, ``eps`` added to ``sqrt(v)``
        before it): the same direction as :meth:`step`, with ``eps`` scaled by
        ``sqrt(1 - beta2**t)``. The moments must not be shared with :meth:`step`.
        """
        if self.m is None or self.m.shape != theta.shape or self._shapes:
            self.m, self.v, self.t, self._shapes = np.zeros(theta.size), np.zeros(theta.size), 0, []
        assert self.v is not None
        self.t += 1
        self.m *= self.beta1
        self.m += (1 - self.beta1) * grad
        self.v *= self.beta2
        self.v += (1 - self.beta2) * grad * grad
        scale = self.learning_rate * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        theta -= scale * self.m / (np.sqrt(self.v) + self.eps)

def constant_schedule(base: float, step: int, n_steps: int, *, warmup: float = 0.03) -> float:
    """``base`` at every step (``warmup`` is ignored)."""
    return base


def cosine_schedule(base: float, step: int, n_steps: int, *, warmup: float = 0.03) -> float:
    """Linear warm-up to ``base`` over ``ceil(warmup * n_steps)`` steps, then a cosine decay towards 0."""
    n_warm = min(int(np.ceil(warmup * n_steps)), n_steps)
    if step < n_warm:
        return base * (step + 1) / n_warm
    progress = (step - n_warm) / (n_steps - n_warm)
    return float(base * 0.5 * (1.0 + np.cos(np.pi * progress)))


#: Schedule name -> ``(base, step, n_steps, *, warmup) -> learning rate`` (see :func:`scheduled_learning_rate`).
LEARNING_RATE_SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant_schedule,
    "cosine": cosine_schedule,
}


def scheduled_learning_rate(schedule: str, base: float, step: int, n_steps: int, *, warmup: float = 0.03) -> float:
    """Learning rate of optimiser step ``step`` (0-based) out of ``n_steps``.

    Parameters
    ----------
    schedule : str
        A name in :data:`LEARNING_RATE_SCHEDULES`.
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
    return LEARNING_RATE_SCHEDULES[schedule](base, step, n_steps, warmup=warmup)


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
