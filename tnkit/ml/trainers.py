"""The minibatch Adam loop shared by the tensor-network classifiers.

A network is trained as a list of tensors at fixed shapes; the model supplies only
what differs between topologies, as functions:

- ``batch_loss(tensors, idx) -> (loss, grads)``: the mean loss on the samples ``idx``
  and its exact gradient with respect to every tensor (same shapes, same order);
- ``evaluate(tensors) -> dict``: what to record after an epoch (the training accuracy,
  the largest bond, ...);
- ``end_epoch(tensors) -> tensors`` (optional): a change of gauge after each epoch
  that leaves the model function unchanged (the tree's canonical form).

:func:`minibatch_adam` runs the epochs (a seeded permutation per epoch, batches of
:attr:`AdamSettings.batch_size`, the learning rate of
:func:`tnkit.ml.optim.scheduled_learning_rate` at every step) and returns the tensors
and one history record per epoch. :func:`balance_norms` is the rescaling both
classifiers apply before Adam: their losses see output directions only, so the model
is unchanged, while Adam's steps, of fixed size per entry, then move every tensor by
the same relative amount.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.validate import check_int, check_number, check_option
from .optim import LEARNING_RATE_SCHEDULES, Adam, scheduled_learning_rate

__all__ = ["AdamSettings", "LossSettings", "minibatch_adam", "balance_norms", "training_accuracy", "epochs_for_steps"]


@dataclass(frozen=True)
class AdamSettings:
    """How :func:`minibatch_adam` runs.

    Attributes
    ----------
    n_epochs : int
        Passes over the data.
    batch_size : int
        Samples per step (the last batch of an epoch may be smaller).
    learning_rate : float
        Peak learning rate of ``schedule``.
    schedule : str
        A name in :data:`tnkit.ml.optim.LEARNING_RATE_SCHEDULES`; the schedule runs over
        the ``n_epochs * ceil(n_samples / batch_size)`` steps of the call.
    restart_each_epoch : bool
        Fresh Adam moments and :func:`balance_norms` at the start of every epoch
        (needed when ``end_epoch`` changes the gauge, hence the tensors' basis);
        otherwise once, before the first epoch.
    """

    n_epochs: int
    batch_size: int
    learning_rate: float
    schedule: str = "constant"
    restart_each_epoch: bool = False

    def __post_init__(self) -> None:
        check_int("n_epochs", self.n_epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_number("learning_rate", self.learning_rate)
        check_option("learning_rate_schedule", self.schedule, LEARNING_RATE_SCHEDULES)


@dataclass(frozen=True)
class LossSettings:
    """The objective of a classifier's batch loss (:func:`tnkit.ml.losses.normalized_loss`).

    Attributes
    ----------
    loss : str
        A name in :data:`tnkit.ml.losses.LOSSES`.
    alpha : float
        L2 penalty ``alpha / 2 * sum ||T||**2``.
    temperature : float
        Scale of the output direction before the cross-entropy.
    """

    loss: str
    alpha: float = 0.0
    temperature: float = 1.0


def balance_norms(tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Rescale the tensors to equal Frobenius norms (their product, hence the model, is unchanged).

    A list holding a zero tensor is returned as it is.
    """
    norms = np.array([np.linalg.norm(t) for t in tensors])
    if np.any(norms == 0):
        return list(tensors)
    target = np.exp(np.mean(np.log(norms)))
    return [t * (target / n) for t, n in zip(tensors, norms)]


def epochs_for_steps(n_samples: int, batch_size: int, n_steps: int, max_epochs: int) -> int:
    """The fewest epochs giving at least ``n_steps`` optimiser steps, at most ``max_epochs``.

    Examples
    --------
    >>> epochs_for_steps(60000, 64, 11000, 100)  # 938 steps per epoch
    12
    >>> epochs_for_steps(500, 64, 11000, 100)
    100
    """
    steps_per_epoch = -(-n_samples // batch_size)
    return int(min(max_epochs, -(-n_steps // steps_per_epoch)))


def training_accuracy(f: np.ndarray, Y: np.ndarray) -> float:
    """Fraction of rows where the arg-max of the outputs ``f`` is that of the one-hot targets ``Y``."""
    return float(np.mean(np.argmax(f, axis=1) == np.argmax(Y, axis=1)))


def minibatch_adam(
    tensors: Sequence[np.ndarray],
    batch_loss: Callable[[list[np.ndarray], np.ndarray], tuple[float, list[np.ndarray]]],
    n_samples: int,
    settings: AdamSettings,
    *,
    rng: np.random.Generator,
    evaluate: Callable[[list[np.ndarray]], dict[str, float]],
    end_epoch: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
    verbose: bool = False,
) -> tuple[list[np.ndarray], list[dict[str, float]]]:
    """Minibatch Adam over every tensor; see the module docstring for the callables.

    Parameters
    ----------
    tensors : sequence of numpy.ndarray
        Starting tensors (not modified).
    batch_loss : callable
        ``(tensors, idx) -> (mean loss, grads)`` on the samples ``idx`` (an index array).
    n_samples : int
        Number of training samples (``idx`` values lie in ``[0, n_samples)``).
    settings : AdamSettings
    rng : numpy.random.Generator
        Draws one permutation of the samples per epoch.
    evaluate : callable
        ``tensors -> dict``, merged into each epoch's record after ``end_epoch``.
    end_epoch : callable or None
        ``tensors -> tensors`` after each epoch's last step.
    verbose : bool
        A tqdm bar per epoch with the loss and ``evaluate``'s ``accuracy``.

    Returns
    -------
    tensors : list of numpy.ndarray
    history : list of dict
        Per epoch: ``loss`` (mean training loss over the epoch's minibatches), the
        entries of ``evaluate``, ``seconds`` and ``learning_rate`` (at the last step).
    """
    from tqdm.auto import tqdm

    tensors = list(tensors)
    n_steps = settings.n_epochs * (-(-n_samples // settings.batch_size))
    step, opt, history = 0, None, []
    for epoch in range(settings.n_epochs):
        t0 = time.perf_counter()
        if opt is None or settings.restart_each_epoch:
            opt = Adam(settings.learning_rate)
            tensors = balance_norms(tensors)
        order = rng.permutation(n_samples)
        batches = [order[s : s + settings.batch_size] for s in range(0, n_samples, settings.batch_size)]
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{settings.n_epochs}", disable=not verbose, leave=verbose)
        total = 0.0
        for idx in bar:
            opt.learning_rate = scheduled_learning_rate(settings.schedule, settings.learning_rate, step, n_steps)
            step += 1
            value, grads = batch_loss(tensors, idx)
            tensors = opt.step(tensors, grads)
            total += value * len(idx)
        if end_epoch is not None:
            tensors = end_epoch(tensors)
        record = {"loss": total / n_samples, **evaluate(tensors)}
        record.update(seconds=time.perf_counter() - t0, learning_rate=opt.learning_rate)
        history.append(record)
        if verbose:
            bar.set_postfix(loss=f"{record['loss']:.4g}", train_acc=f"{record.get('accuracy', float('nan')):.4f}")
            bar.close()
    return tensors, history
