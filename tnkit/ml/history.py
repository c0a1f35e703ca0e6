"""What the Born machines' trainers record, and when their sweeps stop.

- :class:`TrainingHistory`: NLL, largest bond, seconds and learning rate per sweep or epoch;
- :func:`record`: append one sweep and show it on the progress bar;
- :func:`progress_bar`: a tqdm bar (or nothing), closed however the loop ends;
- :func:`converged`: the stopping rule of full-batch sweeps (:data:`PATIENCE` slow sweeps in a row);
- :func:`gradient_epochs`: the epoch loop of both gradient trainers (MPS and tree).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.threads import blas_threads
from .trainers import AdamSettings

__all__ = ["TrainingHistory", "record", "progress_bar", "converged", "PATIENCE", "gradient_epochs"]


@dataclass
class TrainingHistory:
    """What a trainer did, one entry per sweep (or epoch).

    Attributes
    ----------
    nll : list of float
        Training NLL in nats after each sweep / epoch (exact, of the state as stored).
    max_bond : list of int
        Largest bond dimension after each sweep / epoch.
    seconds : list of float
        Wall time of each sweep / epoch.
    learning_rate : list of float
        Learning rate used in each sweep / epoch.
    """

    nll: list[float] = field(default_factory=list)
    max_bond: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)

    def append(self, nll: float, max_bond: int, seconds: float, learning_rate: float = math.nan) -> None:
        """Record one sweep or epoch."""
        self.nll.append(float(nll))
        self.max_bond.append(int(max_bond))
        self.seconds.append(float(seconds))
        self.learning_rate.append(float(learning_rate))


#: Sweeps in a row that must each gain less than ``tol`` before the sweeps stop.
PATIENCE = 3


def converged(nll: list[float], tol: float | None) -> bool:
    """Whether each of the last :data:`PATIENCE` sweeps of ``nll`` gained less than ``tol`` nats.

    One slow sweep is not enough: the NLL of a Born machine creeps along plateaus and
    then falls again.
    """
    if tol is None or len(nll) <= PATIENCE:
        return False
    return all(nll[k - 1] - nll[k] < tol for k in range(len(nll) - PATIENCE, len(nll)))



def record(history: TrainingHistory, bar: Any, nll: float, max_bond: int, seconds: float, learning_rate: float) -> None:
    """Append one sweep or epoch to ``history`` and show its NLL on the progress bar (if any)."""
    history.append(nll, max_bond, seconds, learning_rate)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(nll=f"{nll:.4f}", bond=max_bond)


def _progress(total: int, enabled: bool):  # noqa: ANN202 - tqdm or None
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Born machine", unit="sweep")


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar over sweeps or epochs (or None when not ``enabled``), closed on exit.

    Closed however the loop ends: all ``total`` steps, an early stop on convergence, or
    an exception.
    """
    bar = _progress(total, enabled)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def gradient_epochs(
    X: np.ndarray,
    settings: AdamSettings,
    *,
    rng: np.random.Generator,
    step: Callable[[np.ndarray], None],
    nll: Callable[[], float],
    bond: int,
    progress: bool,
    history: TrainingHistory,
) -> TrainingHistory:
    """The epoch loop of the Born machines' gradient trainers.

    Each of ``settings.n_epochs`` epochs draws one permutation of the rows of ``X`` from
    ``rng``, calls ``step(rows)`` on each batch of ``settings.batch_size`` of them (the
    trainer's Adam step), then records ``nll()`` (the whole training set), the
    largest bond and the epoch's wall time in ``history`` and on the progress bar.
    BLAS runs with the threads that suit ``bond`` (:func:`tnkit.core.threads.blas_threads`).
    """
    with progress_bar(settings.n_epochs, progress) as bar:
        for _ in range(settings.n_epochs):
            tick = time.perf_counter()
            shuffled = X[rng.permutation(len(X))]
            with blas_threads(bond):
                for begin in range(0, len(X), settings.batch_size):
                    step(shuffled[begin : begin + settings.batch_size])
                value = nll()
            record(history, bar, value, bond, time.perf_counter() - tick, settings.learning_rate)
    return history
