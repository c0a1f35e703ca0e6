"""Low-rank linear layers: plain, activation-aware and whitened truncated SVD.

``LowRankLinear`` stores ``W ~ U V`` with ``U`` of shape ``(out, rank)`` and ``V`` of
shape ``(rank, in)`` and computes ``y = (x V^T) U^T + b``: ``rank * (out + in)``
multiply-adds per input row instead of ``out * in``. It is the comparison baseline of
the MPO layers and the fast form at batch 1.

Methods (:func:`lowrank_factors`)
---------------------------------
``"svd"``
    Truncated SVD of ``W``: the best rank-``k`` approximation in the Frobenius norm.
``"asvd"``
    Activation-aware SVD (Yuan et al., arXiv:2312.05821): SVD of ``W diag(s)`` with
    ``s = mean|x|**alpha`` per input channel, then ``V <- V diag(1/s)``.
``"whiten"``
    SVD-LLM (Wang et al., arXiv:2403.07378): SVD of ``W S`` with ``S`` the Cholesky
    factor of the input second moment ``E[x x^T] = S S^T``, then ``V <- V S^{-1}``;
    the best rank-``k`` approximation of the layer's *outputs* on the calibration data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.threads import with_blas_threads
from ...core.validate import check_int, check_option

__all__ = ["LowRankLinear", "lowrank_factors", "LOWRANK_METHODS", "cholesky_whitener", "ridge_covariance"]

LOWRANK_METHODS = ("svd", "asvd", "whiten")


def ridge_covariance(covariance: np.ndarray, ridge: float) -> np.ndarray:
    """``C + ridge * tr(C) / n * I``: the second moment shrunk toward its trace-scaled identity.

    A calibration set of a few thousand tokens leaves ``C`` ill-conditioned (or singular,
    when ``n`` exceeds the tokens): directions it barely excites cost nothing in the
    whitened error, so a truncation may put arbitrarily large weight errors there, and
    other text does excite them. The ridge prices every direction at least
    ``ridge * tr(C) / n``: the whitened error then bounds the plain weight error,
    ``||E||_F^2 <= tr(E C' E^T) / (ridge * tr(C) / n)``. ``ridge = 0`` returns ``C``.

    Parameters
    ----------
    covariance : numpy.ndarray, shape (n, n)
    ridge : float
        Relative ridge, at least 0 (0.01 adds 1% of the mean channel variance).
    """
    c = np.asarray(covariance, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"`covariance` must be a square matrix, got shape {c.shape}.")
    ridge = float(ridge)
    if not ridge >= 0.0:
        raise ValueError(f"`ridge` must be a number >= 0, got {ridge}.")
    if ridge == 0.0:
        return c
    return c + (ridge * max(float(np.trace(c)) / len(c), 1e-300)) * np.eye(len(c))


def cholesky_whitener(covariance: np.ndarray, *, damping: float = 1e-6) -> np.ndarray:
    """Lower-triangular ``S`` with ``S S^T = C + damping * mean(diag C) * I``."""
    c = np.asarray(covariance, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"`covariance` must be a square matrix, got shape {c.shape}.")
    jitter = damping * max(float(np.mean(np.diag(c))), 1e-30)
    for _ in range(6):
        try:
            return np.linalg.cholesky(c + jitter * np.eye(len(c)))
        except np.linalg.LinAlgError:
            jitter *= 10.0
    raise ValueError("`covariance` is not positive semi-definite (Cholesky failed even with damping).")


@with_blas_threads(lambda weight, *args, **kwargs: min(np.shape(weight)))  # one thread below bond 1024
def lowrank_factors(
    weight: np.ndarray,
    rank: int,
    *,
    method: str = "svd",
    input_scale: np.ndarray | None = None,
    covariance: np.ndarray | None = None,
    ridge: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Rank-``rank`` factors ``U (out, k)``, ``V (k, in)`` of ``weight`` and the error.

    Parameters
    ----------
    weight : numpy.ndarray, shape (out, in)
    rank : int
        At most ``min(out, in)``.
    method : {"svd", "asvd", "whiten"}
    input_scale : numpy.ndarray, shape (in,)
        Needed by ``"asvd"``.
    covariance : numpy.ndarray, shape (in, in)
        Needed by ``"whiten"``.
    ridge : float
        ``"whiten"`` truncates in the basis of :func:`ridge_covariance` ``(covariance, ridge)``.

    Returns
    -------
    U, V : numpy.ndarray
    error : float
        Relative squared Frobenius error of the truncated matrix in the basis that
        was truncated (``W``, ``W diag(s)`` or ``W S``).
    """
    check_option("method", method, LOWRANK_METHODS)
    w = np.asarray(weight, dtype=np.float64)
    limit = min(w.shape)
    rank = check_int("rank", rank, minimum=1)
    if rank > limit:
        raise ValueError(f"`rank` must be at most {limit} for a {w.shape[0]}x{w.shape[1]} weight, got {rank}.")
    if method == "svd":
        target = w
    elif method == "asvd":
        if input_scale is None:
            raise ValueError("method 'asvd' needs `input_scale` (per-channel activation scale).")
        scale = np.asarray(input_scale, dtype=np.float64)
        target = w * scale[None, :]
    else:
        if covariance is None:
            raise ValueError("method 'whiten' needs `covariance` (input second moment).")
        right = cholesky_whitener(ridge_covariance(covariance, ridge))
        target = w @ right
    us, vh, discarded = gram_truncated_factors(target, rank)
    error = discarded / max(float(np.sum(target * target)), 1e-300)
    if method == "asvd":
        vh = vh / scale[None, :]
    elif method == "whiten":  # vh @ right^{-1}, by one triangular solve (right is lower-triangular)
        from scipy.linalg import solve_triangular

        vh = solve_triangular(right, vh.T, trans="T", lower=True).T
    return us, vh, float(error)


def gram_singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values of ``matrix`` (descending, ``min(m, n)`` of them) from its smaller Gram matrix.

    ``s**2`` are the eigenvalues of ``A^T A`` (or ``A A^T``), clipped at 0: exact up to
    ``eps * ||A||^2`` in ``s**2``, which is all a truncation-error curve needs, and
    several times cheaper than an SVD for a tall or wide weight.
    """
    a = np.asarray(matrix, dtype=np.float64)
    gram = a.T @ a if a.shape[1] <= a.shape[0] else a @ a.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))


def gram_truncated_factors(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Best rank-``rank`` factors ``left @ right`` of ``matrix`` through its smaller Gram matrix.

    With ``V`` the top ``rank`` eigenvectors of ``A^T A`` (``n <= m``) the factors are
    ``left = A V`` (``U diag(s)`` of the truncated SVD) and ``right = V^T``; for a
    wide matrix the roles swap. The product is the truncated SVD's (Eckart-Young
    optimal) and stays exact at full rank even where small singular values are
    inaccurate, because ``A V V^T = A`` for orthogonal ``V``. On a 1536 x 576 float64
    weight this is about 5x faster than LAPACK's ``gesdd`` (measured here).

    Returns
    -------
    left : numpy.ndarray, shape (m, rank)
    right : numpy.ndarray, shape (rank, n)
    discarded : float
        ``sum`` of the dropped ``s**2`` (absolute).
    """
    a = np.asarray(matrix, dtype=np.float64)
    tall = a.shape[1] <= a.shape[0]
    evals, vecs = np.linalg.eigh(a.T @ a if tall else a @ a.T)
    basis = np.ascontiguousarray(vecs[:, ::-1][:, :rank])
    discarded = float(np.clip(evals[::-1][rank:], 0.0, None).sum())
    return (a @ basis, basis.T, discarded) if tall else (basis, basis.T @ a, discarded)


class LowRankLinear(nn.Module):
    """``y = (x V^T) U^T + b`` with ``U`` ``(out, rank)`` and ``V`` ``(rank, in)``.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(10, 6)
    >>> low = LowRankLinear.from_linear(lin, rank=6)  # full rank: exact
    >>> bool(torch.allclose(low(torch.ones(2, 10)), lin(torch.ones(2, 10)), atol=1e-5))
    True
    """

    def __init__(self, u: Any, v: Any, bias: Any = None, *, truncation_error: float = 0.0,
                 original_params: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        u = torch.as_tensor(np.asarray(u) if not torch.is_tensor(u) else u, dtype=dtype)
        v = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v, dtype=dtype)
        if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[0]:
            raise ValueError(f"`u` (out, rank) and `v` (rank, in) must share the rank, got {tuple(u.shape)} and {tuple(v.shape)}.")
        self.u = nn.Parameter(u.clone())
        self.v = nn.Parameter(v.clone())
        self.out_features, self.in_features = u.shape[0], v.shape[1]
        if bias is not None:
            b = torch.as_tensor(np.asarray(bias) if not torch.is_tensor(bias) else bias, dtype=dtype)
            self.bias = nn.Parameter(b.clone())
        else:
            self.register_parameter("bias", None)
        self.truncation_error = float(truncation_error)
        self.original_params = original_params

    @classmethod
    def from_weight(cls, weight: Any, bias: Any = None, *, rank: int, method: str = "svd",
                    input_scale: Any = None, covariance: Any = None, ridge: float = 0.0) -> LowRankLinear:
        """Factorise a dense ``(out, in)`` weight (see :func:`lowrank_factors`)."""
        from .mpo_linear import to_numpy

        w = to_numpy(weight)
        u, v, err = lowrank_factors(w, rank, method=method,
                                    input_scale=None if input_scale is None else to_numpy(input_scale),
                                    covariance=None if covariance is None else to_numpy(covariance), ridge=ridge)
        dtype = weight.dtype if torch.is_tensor(weight) and weight.is_floating_point() else torch.float32
        return cls(u, v, bias, truncation_error=err, original_params=w.size + (0 if bias is None else w.shape[0]),
                   dtype=dtype)

    @classmethod
    def from_linear(cls, linear: nn.Module, **kwargs: Any) -> LowRankLinear:
        """Factorise an ``nn.Linear`` or ``Conv1D``; see :meth:`from_weight`."""
        from .surgery import linear_weight

        bias = None if getattr(linear, "bias", None) is None else linear.bias.detach()
        return cls.from_weight(linear_weight(linear).detach(), bias, **kwargs)

    @property
    def rank(self) -> int:
        """Inner dimension of the factorisation."""
        return self.u.shape[1]

    @property
    def num_params(self) -> int:
        """Numbers in ``U``, ``V`` and the bias."""
        return self.u.numel() + self.v.numel() + (0 if self.bias is None else self.bias.numel())

    @property
    def compression_ratio(self) -> float:
        """``num_params / original_params``."""
        orig = self.original_params or self.out_features * self.in_features + (
            0 if self.bias is None else self.out_features)
        return self.num_params / orig

    def dense_weight(self) -> torch.Tensor:
        """The ``(out, in)`` weight ``U V``."""
        return self.u @ self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.v.T) @ self.u.T
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, rank={self.rank}, "
                f"params={self.num_params:,} ({self.compression_ratio:.1%}), error={self.truncation_error:.3g}")

    def spec(self) -> dict[str, Any]:
        """JSON-ready shapes for loading."""
        return {"type": "lowrank", "out": self.out_features, "in": self.in_features, "rank": self.rank,
                "bias": self.bias is not None, "truncation_error": self.truncation_error,
                "original_params": self.original_params}

    @classmethod
    def empty_like_spec(cls, spec: dict[str, Any], *, dtype: torch.dtype = torch.float32,
                        device: Any = None) -> LowRankLinear:
        """A zero layer of the recorded shapes (``device="meta"`` allocates nothing)."""
        kw = dict(dtype=dtype, device=device)
        bias = torch.zeros(spec["out"], **kw) if spec["bias"] else None
        return cls(torch.zeros(spec["out"], spec["rank"], **kw), torch.zeros(spec["rank"], spec["in"], **kw),
                   bias, truncation_error=spec.get("truncation_error", 0.0),
                   original_params=spec.get("original_params"), dtype=dtype)
