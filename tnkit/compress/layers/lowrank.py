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

from ...core.linalg import cholesky_whitener, gram_truncated_factors, lean_truncated_factors, ridge_covariance
from ...core.threads import with_blas_threads
from ...core.validate import check_int, check_option

__all__ = ["LowRankLinear", "lowrank_factors", "LOWRANK_METHODS", "ridge_covariance"]



def _plain_basis(w, weight, input_scale, covariance, ridge, overwrite):
    """``"svd"``: truncate ``W`` itself."""
    return w, lambda vh: vh


def _scaled_basis(w, weight, input_scale, covariance, ridge, overwrite):
    """``"asvd"``: truncate ``W diag(s)`` (activation-aware scaling), then undo the scale on ``V``."""
    if input_scale is None:
        raise ValueError("method 'asvd' needs `input_scale` (per-channel activation scale).")
    scale = np.asarray(input_scale, dtype=np.float64)
    return w * scale[None, :], lambda vh: vh / scale[None, :]


def _whitened_basis(w, weight, input_scale, covariance, ridge, overwrite):
    """``"whiten"``: truncate ``W S`` with ``S S^T`` the input second moment (SVD-LLM), then ``V S^{-1}``."""
    if covariance is None:
        raise ValueError("method 'whiten' needs `covariance` (input second moment).")
    c = ridge_covariance(covariance, ridge, overwrite=overwrite)
    return _whitened_by(w, weight, cholesky_whitener(c, overwrite=overwrite or c is not covariance))


def _whitened_by(w, weight, right):
    """``W S`` for the lower-triangular whitener ``S`` (``right``), and the map ``V <- V S^{-1}`` back."""

    def undo(vh: np.ndarray) -> np.ndarray:  # vh @ right^{-1}, by one triangular solve (right is lower-triangular)
        from scipy.linalg import solve_triangular

        return solve_triangular(right, vh.T, trans="T", lower=True, overwrite_b=True, check_finite=False).T

    return _times_lower(w, right, in_place=w is not weight), undo


#: The basis each low-rank method truncates in, by name: a function of ``(w, weight,
#: input_scale, covariance, ridge, overwrite)`` returning the matrix to truncate and the map
#: from its right factor back to the weight's. A new method is one function and one line.
LOWRANK_BASES = {"svd": _plain_basis, "asvd": _scaled_basis, "whiten": _whitened_basis}
LOWRANK_METHODS = tuple(LOWRANK_BASES)


@with_blas_threads(lambda weight, *args, **kwargs: min(np.shape(weight)))  # one thread below bond 1024
def lowrank_factors(
    weight: np.ndarray,
    rank: int,
    *,
    method: str = "svd",
    input_scale: np.ndarray | None = None,
    covariance: np.ndarray | None = None,
    ridge: float = 0.0,
    overwrite_covariance: bool = False,
    overwrite_weight: bool = False,
    low_memory: bool = False,
    whitener: np.ndarray | None = None,
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
    overwrite_covariance : bool
        ``"whiten"``: let the whitening factor take the storage of ``covariance`` (a
        C-contiguous float64 array the caller no longer needs): no second ``in x in``
        array is allocated, and ``covariance`` holds the factor afterwards.
    overwrite_weight : bool
        Let ``"whiten"`` form ``W S`` in the storage of ``weight`` when it is a C-contiguous
        float64 array the caller no longer needs (otherwise a float64 copy of ``weight``
        is made, and used in its place).
    low_memory : bool
        Truncate with :func:`tnkit.core.linalg.lean_truncated_factors` (only the kept
        eigenvectors of the smaller Gram matrix, LAPACK ``syevr``) instead of
        :func:`tnkit.core.linalg.gram_truncated_factors` (every eigenvector,
        divide and conquer): about three fewer ``min(out, in)``-square float64 arrays.
        ``U V`` is the same to rounding; a pair of columns of ``U`` and rows of ``V``
        may change sign.
    whitener : numpy.ndarray, shape (in, in), optional
        ``"whiten"`` only, instead of ``covariance``: the lower-triangular ``S`` with
        ``S S^T`` the (ridged) second moment, as :func:`tnkit.core.linalg.cholesky_whitener`
        returns it, so that layers fed the same input (q/k/v, gate/up) share one Cholesky
        factorisation. The factors are those ``covariance`` gives, bit for bit.

    Returns
    -------
    U, V : numpy.ndarray
    error : float
        Relative squared Frobenius error of the truncated matrix in the basis that
        was truncated (``W``, ``W diag(s)`` or ``W S``).
    """
    check_option("method", method, LOWRANK_METHODS)
    if whitener is not None and (method != "whiten" or covariance is not None):
        raise ValueError(f"`whitener` replaces `covariance` of method 'whiten'; got method {method!r}"
                         f"{' and a covariance' if covariance is not None else ''}.")
    w = np.asarray(weight, dtype=np.float64)
    limit = min(w.shape)
    rank = check_int("rank", rank, minimum=1)
    if rank > limit:
        raise ValueError(f"`rank` must be at most {limit} for a {w.shape[0]}x{w.shape[1]} weight, got {rank}.")
    # the bases may overwrite ``w`` when it is not ``protected`` (a copy, or a weight given up by the caller)
    protected = None if overwrite_weight else weight
    if whitener is not None:
        target, undo = _whitened_by(w, protected, whitener)
    else:
        target, undo = LOWRANK_BASES[method](w, protected, input_scale, covariance, ridge, overwrite_covariance)
    norm2 = max(float(np.linalg.norm(target)) ** 2, 1e-300)
    if low_memory:
        us, vh, discarded = lean_truncated_factors(target, max_bond=rank)
    else:
        us, vh, discarded = gram_truncated_factors(target, max_bond=rank)
    del target, w
    return us, undo(vh), float(discarded / norm2)


def _times_lower(w: np.ndarray, lower: np.ndarray, *, in_place: bool) -> np.ndarray:
    """``w @ lower`` for a lower-triangular ``lower``; with ``in_place``, in ``w``'s storage (BLAS ``trmm``)."""
    if not (in_place and w.flags.c_contiguous and w.dtype == np.float64 and lower.dtype == np.float64):
        return w @ lower
    from scipy.linalg.blas import dtrmm

    # w is C-ordered, so w.T is a Fortran-ordered view: w.T <- lower^T w.T is w <- w lower
    out = dtrmm(1.0, np.asfortranarray(lower), w.T, side=0, lower=1, trans_a=1, overwrite_b=1)
    return w if np.shares_memory(out, w) else out.T


def _fresh(x: Any, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor of ``dtype`` holding ``x`` (a tensor or array-like), made with one copy."""
    if not torch.is_tensor(x):
        a = np.ascontiguousarray(x)
        x = torch.from_numpy(a if a.flags.writeable else a.copy())
    return x.detach().to(dtype=dtype, copy=True)


def _host_view(weight: Any) -> np.ndarray:
    """A numpy array of ``weight`` without a copy where possible (float32/float64 CPU tensors and arrays)."""
    if torch.is_tensor(weight):
        t = weight.detach().cpu()
        return (t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float64)).numpy()
    return np.asarray(weight)


class LowRankLinear(nn.Module):
    """``y = (x V^T) U^T + b`` with ``U`` ``(out, rank)`` and ``V`` ``(rank, in)``.

    ``original_params`` (the dense layer's ``out * in`` plus its bias) is derived from the
    shapes when not given.

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
        u, v = _fresh(u, dtype), _fresh(v, dtype)
        if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[0]:
            raise ValueError(f"`u` (out, rank) and `v` (rank, in) must share the rank, got {tuple(u.shape)} and {tuple(v.shape)}.")
        self.u = nn.Parameter(u)
        self.v = nn.Parameter(v)
        self.out_features, self.in_features = u.shape[0], v.shape[1]
        if bias is not None:
            self.bias = nn.Parameter(_fresh(bias, dtype))
        else:
            self.register_parameter("bias", None)
        self.truncation_error = float(truncation_error)
        self.original_params = (int(original_params) if original_params is not None
                                else self.out_features * self.in_features + (0 if bias is None else self.out_features))

    @classmethod
    def from_weight(cls, weight: Any, bias: Any = None, *, rank: int, method: str = "svd",
                    input_scale: Any = None, covariance: Any = None, ridge: float = 0.0,
                    overwrite_covariance: bool = False, whitener: Any = None) -> LowRankLinear:
        """Factorise a dense ``(out, in)`` weight (see :func:`lowrank_factors`)."""
        from .mpo_linear import to_numpy

        w = _host_view(weight)  # lowrank_factors makes (and may reuse) its own float64 copy
        u, v, err = lowrank_factors(w, rank, method=method,
                                    input_scale=None if input_scale is None else to_numpy(input_scale),
                                    covariance=None if covariance is None else to_numpy(covariance), ridge=ridge,
                                    overwrite_covariance=overwrite_covariance,
                                    whitener=None if whitener is None else to_numpy(whitener))
        dtype = weight.dtype if torch.is_tensor(weight) and weight.is_floating_point() else torch.float32
        return cls(u, v, bias, truncation_error=err, dtype=dtype)

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
        return self.num_params / self.original_params

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
