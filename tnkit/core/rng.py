"""Random number generators from the seeds users pass."""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["as_generator", "standard_normal"]


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


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...], *, is_complex: bool = False) -> np.ndarray:
    """Gaussian entries of unit variance: float64, or complex128 with independent real and imaginary parts.

    The complex entries draw the real parts first, then the imaginary parts, each
    scaled by ``1/sqrt(2)``.
    """
    t = rng.standard_normal(shape)
    if is_complex:
        t = (t + 1j * rng.standard_normal(shape)) / math.sqrt(2.0)
    return t
