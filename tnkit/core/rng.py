"""Random number generators from the seeds users pass."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_generator"]


def as_generator(seed: object = None) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``seed``.

    Parameters
    ----------
    seed : None, int, numpy.random.Generator or numpy.random.RandomState
        ``None`` gives fresh entropy; an int a reproducible stream; a generator is
        returned unchanged; a ``RandomState`` is wrapped so it keeps advancing.
    """
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.Generator(seed._bit_generator)  # shares the state, keeps advancing
    raise TypeError(
        f"`seed` must be None, an int, a numpy Generator or RandomState, got {type(seed).__name__}."
    )
