"""Local feature maps: one vector per input feature, so a sample becomes a product state.

A feature map sends each scalar feature ``x`` to a vector ``phi(x)`` of length
``local_dim`` (the physical dimension of the tensor-network site that reads it). A
sample of ``n_features`` values becomes the product state
``phi(x_0) (x) phi(x_1) (x) ... (x) phi(x_{n-1})``; :func:`embed` returns its factors
as an array of shape ``(n_samples, n_features, local_dim)``, the input format of
:mod:`tnkit.ml.environments`.

Maps (the ``feature_map`` option of the estimators):

``"cos-sin"``
    Stoudenmire & Schwab (2016), for ``x`` in ``[0, 1]``. For ``local_dim = 2``,
    ``phi(x) = (cos(pi x / 2), sin(pi x / 2))``; for ``local_dim = d`` the spin-coherent
    generalisation ``phi_s(x) = sqrt(C(d-1, s)) cos(pi x/2)^(d-1-s) sin(pi x/2)^s``,
    ``s = 0 .. d-1``. Every ``phi(x)`` has unit norm.
``"polynomial"``
    ``phi(x) = (1, x, x**2, ..., x**(d-1))`` (Novikov et al. 2016, exponential machines):
    the chain then represents a polynomial of degree up to ``d-1`` in each feature.
``"linear"``
    ``phi(x) = (1 - x, x)`` for ``local_dim = 2`` (the default map of TorchMPS, Miller
    2019); for ``local_dim = d`` the Bernstein basis
    ``phi_s(x) = C(d-1, s) (1-x)^(d-1-s) x^s``. The components sum to one for every
    ``x``, so a chain whose tensors are the identity for every ``s`` passes any input
    through unchanged: the best-conditioned start for gradient training.
``"one-hot"``
    For discrete data: ``x`` must be an integer in ``[0, d)`` and ``phi(x)`` is the
    basis vector ``e_x``. This makes Born machines on discrete data the same case as
    classifiers on real data.

References
----------
E. M. Stoudenmire and D. J. Schwab, "Supervised learning with tensor networks",
NeurIPS 2016, arXiv:1605.05775.
A. Novikov, M. Trofimov and I. Oseledets, "Exponential machines", arXiv:1605.03795.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..core.contract import contract
from ..core.validate import as_array, check_int, check_option

__all__ = [
    "FEATURE_MAPS",
    "FEATURE_RANGES",
    "FeatureRangeWarning",
    "check_feature_range",
    "embed",
    "cos_sin_map",
    "polynomial_map",
    "linear_map",
    "one_hot",
    "passthrough_vector",
]


def cos_sin_map(x: np.ndarray, local_dim: int = 2) -> np.ndarray:
    """Stoudenmire & Schwab's map; ``x`` (any shape) in ``[0, 1]`` -> ``(*x.shape, local_dim)``."""
    theta = 0.5 * np.pi * np.asarray(x, dtype=float)
    c, s = np.cos(theta)[..., None], np.sin(theta)[..., None]
    k = np.arange(local_dim)
    binom = np.array([math.comb(local_dim - 1, int(j)) for j in k], dtype=float)
    return np.sqrt(binom) * c ** (local_dim - 1 - k) * s**k


def polynomial_map(x: np.ndarray, local_dim: int = 2) -> np.ndarray:
    """``(1, x, ..., x**(local_dim-1))``; ``x`` (any shape) -> ``(*x.shape, local_dim)``."""
    return np.asarray(x, dtype=float)[..., None] ** np.arange(local_dim)


def linear_map(x: np.ndarray, local_dim: int = 2) -> np.ndarray:
    """Bernstein basis ``C(d-1, s) (1-x)^(d-1-s) x^s``; ``(1 - x, x)`` for ``d = 2``. Components sum to 1."""
    x = np.asarray(x, dtype=float)[..., None]
    k = np.arange(local_dim)
    binom = np.array([math.comb(local_dim - 1, int(j)) for j in k], dtype=float)
    return binom * (1.0 - x) ** (local_dim - 1 - k) * x**k


def one_hot(x: np.ndarray, local_dim: int = 2) -> np.ndarray:
    """Basis vector ``e_x`` for integer ``x`` in ``[0, local_dim)``; -> ``(*x.shape, local_dim)``.

    Raises
    ------
    ValueError
        If a value is not an integer in ``[0, local_dim)``.
    """
    x = np.asarray(x)
    as_int = np.rint(x).astype(np.int64) if x.dtype.kind in "fc" else x.astype(np.int64)
    if x.size and (np.any(as_int != x) or as_int.min() < 0 or as_int.max() >= local_dim):
        bad = x.flat[np.flatnonzero((as_int != x) | (as_int < 0) | (as_int >= local_dim))[0]]
        raise ValueError(
            f"the one-hot feature map needs integers in [0, local_dim={local_dim}), got {bad!r}."
        )
    return np.eye(local_dim)[as_int]


#: Registered feature maps: name -> function ``(x, local_dim) -> array (*x.shape, local_dim)``.
FEATURE_MAPS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "cos-sin": cos_sin_map,
    "polynomial": polynomial_map,
    "linear": linear_map,
    "one-hot": one_hot,
}


#: Interval each map is meant for: name -> ``(low, high)``, or None for any real number.
#: ``"one-hot"`` takes the integers ``0 .. local_dim - 1`` (checked by :func:`one_hot` itself).
FEATURE_RANGES: dict[str, tuple[float, float] | None] = {
    "cos-sin": (0.0, 1.0),
    "linear": (0.0, 1.0),
    "polynomial": None,
    "one-hot": None,
}


class FeatureRangeWarning(UserWarning):
    """Input features lie outside the interval their feature map is meant for."""


def check_feature_range(X: np.ndarray, feature_map: str, *, owner: str = "", tol: float = 1e-9) -> None:
    """Warn (:class:`FeatureRangeWarning`) when ``X`` leaves the interval of ``feature_map``.

    The cos-sin map is periodic outside ``[0, 1]`` (``x = 2`` embeds as ``x = 0``) and
    the linear map turns negative there; neither fails, so without this check wrongly
    scaled data would train silently on a distorted embedding.

    Parameters
    ----------
    X : numpy.ndarray
        Feature values (any shape).
    feature_map : str
        A key of :data:`FEATURE_MAPS`.
    owner : str
        Prefix of the message (e.g. the estimator's name).
    tol : float
        Slack allowed on both ends (rounding).
    """
    check_option("feature_map", feature_map, FEATURE_MAPS)
    interval = FEATURE_RANGES[feature_map]
    X = np.asarray(X)
    if interval is None or X.size == 0:
        return
    low, high = interval
    outside = (X < low - tol) | (X > high + tol)
    if outside.any():
        import warnings

        prefix = f"{owner}: " if owner else ""
        warnings.warn(
            f"{prefix}{outside.mean():.2%} of the feature values lie outside [{low:g}, {high:g}] (min "
            f"{X.min():.4g}, max {X.max():.4g}), the interval the {feature_map!r} feature map is meant for. "
            f"Scale features to [{low:g}, {high:g}] first: divide images by their largest possible pixel "
            f"value (255 for 8-bit images; tnkit.datasets.load_mnist does this), or use "
            f"sklearn.preprocessing.MinMaxScaler(clip=True) for other features.",
            FeatureRangeWarning,
            stacklevel=3,
        )


def embed(X: object, feature_map: str = "cos-sin", *, local_dim: int = 2) -> np.ndarray:
    """Map every feature of every sample to a local vector.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        Feature values (in ``[0, 1]`` for ``"cos-sin"``; integers for ``"one-hot"``).
    feature_map : {"cos-sin", "linear", "polynomial", "one-hot"}
        See the module docstring.
    local_dim : int
        Length ``d >= 1`` of each local vector (the sites' physical dimension).

    Returns
    -------
    numpy.ndarray, shape (n_samples, n_features, local_dim)

    Examples
    --------
    >>> import numpy as np
    >>> from tnkit.ml.feature_maps import embed
    >>> embed(np.array([[0.0, 1.0]])).round(12)
    array([[[1., 0.],
            [0., 1.]]])
    """
    check_option("feature_map", feature_map, FEATURE_MAPS)
    local_dim = check_int("local_dim", local_dim, minimum=1)
    X = as_array("X", X, ndim=2)
    return FEATURE_MAPS[feature_map](X, local_dim)


def passthrough_vector(phi: np.ndarray) -> np.ndarray:
    """The vector ``w`` with ``w . phi(x)`` closest to 1 over the data (least squares), unit norm.

    Gradient training starts from networks whose tensors are ``identity (x) w`` on
    each physical index, so every input vector multiplies the signal by ``w . phi(x)``
    (up to a global factor). With ``w . phi(x)`` constant the initial outputs of all
    samples have the same scale: exactly so for the ``"linear"`` and ``"one-hot"``
    maps (``w`` proportional to ``(1, .., 1)``), as nearly as possible for the others.

    Parameters
    ----------
    phi : numpy.ndarray, shape (n_samples, n_features, d)
        Embedded data (:func:`embed`).

    Returns
    -------
    numpy.ndarray, shape (d,)
        Unit vector (``(1, .., 1)/sqrt(d)`` if the data give no information).
    """
    d = phi.shape[-1]
    rows = phi.reshape(-1, d)
    gram = contract("nd,ne->de", rows, rows)
    w = np.linalg.pinv(gram) @ rows.sum(axis=0)  # normal equations of min_w ||rows @ w - 1||
    norm = float(np.linalg.norm(w))
    if not np.isfinite(norm) or norm == 0.0:
        return np.full(d, 1.0 / math.sqrt(d))
    return w / norm
