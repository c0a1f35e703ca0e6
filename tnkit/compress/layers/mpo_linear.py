"""``MPOLinear``: a linear layer whose weight is a matrix product operator.

Index conventions follow :mod:`tnkit.compress.numerics.factorize`: the weight ``W`` is
``(out, in)`` with ``y = x W^T + b``; core ``k`` has shape ``(r_k, o_k, i_k, r_{k+1})``.
An optional input scale ``s`` (shape ``(in,)``, a buffer, not trained) means the
cores hold ``W diag(s)`` and the layer computes ``y = (x / s) (W diag(s))^T + b``.

Forward forms
-------------
``"factored"``
    The input, reshaped to ``(batch, i_0, ..., i_{n-1})``, is contracted with the
    cores by :func:`tnkit.contract` (opt_einsum path, compiled to permutes,
    reshapes and matmuls, cached per shape), which takes torch tensors and keeps
    the autograd graph, so gradients flow into the cores.
``"dense"``
    The cores are contracted into ``W`` for this call and applied as one matmul;
    ``W`` is freed afterwards.
``"auto"`` (default)
    Whichever costs fewer multiply-adds for the batch at hand, counting the
    reconstruction of ``W`` when it is not cached.

Memory and speed
----------------
By default no dense copy of ``W`` is kept: the layer holds only its cores, so a
compressed model is smaller in memory, not only on disk. The price is speed at small
batches: a two-core MPO of bond ``r`` with cores ``(1, o0, i0, r)`` and
``(r, o1, i1, 1)`` costs about ``r * (in * o1 + out * i0)`` multiply-adds per input
row against ``in * out`` for the dense matmul, ``r * (1/o0 + 1/i1)`` times as much
(bond 322 on a 1536 x 576 weight at 70% of its parameters: about 20x), while a
low-rank layer of the same size costs less than the dense one. With
``cache_dense=True`` (or :func:`cache_dense_weights` on a whole model) the layer
keeps ``W`` after its first gradient-free forward and runs at dense speed, holding
the dense weight in memory besides the cores.

Without gradients, on the CPU, both forms keep their intermediates in per-thread
scratch buffers of about :data:`INFERENCE_BLOCK_BYTES` each (rows of the input, or of
``W``, a block at a time), shared by every MPO layer: generating text then needs
little memory beyond the cores (SmolLM2 with every block linear layer a two-core MPO
at 70%: peak 0.79 of the original's while generating, parameters 0.76).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.contract import contract, contraction_info
from ...core.validate import check_option
from ...core.workspace import scratch
from ..numerics.factorize import mpo_factorize, refit_last_core

__all__ = ["MPOLinear", "FORWARD_MODES", "cache_dense_weights"]

FORWARD_MODES = ("auto", "factored", "dense")
#: Target size of each scratch intermediate of the gradient-free CPU forward (bytes); a block
#: of one input row (``"factored"``) or one value of ``o_0`` (``"dense"``) is never split.
INFERENCE_BLOCK_BYTES = 2**20
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _equation(n: int) -> str:
    """``"Z<in legs>,<cores>->Z<out legs>"`` for ``n`` cores; batch leg ``Z``."""
    ins = _LETTERS[:n]
    outs = _LETTERS[n : 2 * n]
    bonds = _LETTERS[2 * n : 3 * n + 1]
    cores = [bonds[k] + outs[k] + ins[k] + bonds[k + 1] for k in range(n)]
    return f"Z{ins}," + ",".join(cores) + f"->Z{outs}"


@functools.lru_cache(maxsize=1024)
def _factored_flops(shapes: tuple[tuple[int, ...], ...]) -> int:
    """Multiply-adds of the planned factored contraction for operand ``shapes`` (input first).

    opt_einsum counts a multiply and an add as two operations; the dense matmul it is compared
    with (:meth:`MPOLinear.choose_mode`) is counted in multiply-adds, so the count is halved.
    """
    return int(contraction_info(_equation(len(shapes) - 1), *shapes).flops) // 2


class MPOLinear(nn.Module):
    """Linear layer ``y = x W^T + b`` with ``W`` stored as MPO cores.

    Parameters
    ----------
    cores : sequence of array_like or torch.Tensor
        ``cores[k]`` of shape ``(r_k, o_k, i_k, r_{k+1})``, ``r_0 = r_n = 1``.
    bias : array_like or torch.Tensor, optional
        Shape ``(out,)``.
    input_scale : array_like, optional
        Shape ``(in,)``: the cores represent ``W diag(input_scale)``.
    forward_mode : {"auto", "factored", "dense"}
    truncation_error : float
        Relative squared weight error of the factorisation, for reports.
    original_params : int, optional
        Parameters of the dense layer it replaces, for :attr:`compression_ratio`.
    cache_dense : bool
        Keep the reconstructed dense weight between gradient-free calls (dense speed,
        dense memory). Off by default: only the cores are held.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(12, 8)
    >>> mpo = MPOLinear.from_linear(lin, n_cores=2)  # exact at full bond
    >>> x = torch.randn(3, 12)
    >>> bool(torch.allclose(mpo(x), lin(x), atol=1e-5))
    True
    """

    def __init__(
        self,
        cores: Sequence[Any],
        bias: Any = None,
        *,
        input_scale: Any = None,
        forward_mode: str = "auto",
        truncation_error: float = 0.0,
        original_params: int | None = None,
        dtype: torch.dtype = torch.float32,
        cache_dense: bool = False,
    ) -> None:
        super().__init__()
        check_option("forward_mode", forward_mode, FORWARD_MODES)
        tensors = [torch.as_tensor(np.asarray(c) if not torch.is_tensor(c) else c, dtype=dtype) for c in cores]
        _check_cores(tensors)
        self.cores = nn.ParameterList([nn.Parameter(t.clone()) for t in tensors])
        self.out_dims = tuple(t.shape[1] for t in tensors)
        self.in_dims = tuple(t.shape[2] for t in tensors)
        self.out_features = math.prod(self.out_dims)
        self.in_features = math.prod(self.in_dims)
        if bias is not None:
            b = torch.as_tensor(np.asarray(bias) if not torch.is_tensor(bias) else bias, dtype=dtype)
            if b.shape != (self.out_features,):
                raise ValueError(f"`bias` must have shape ({self.out_features},), got {tuple(b.shape)}.")
            self.bias = nn.Parameter(b.clone())
        else:
            self.register_parameter("bias", None)
        if input_scale is not None:
            s = torch.as_tensor(np.asarray(input_scale) if not torch.is_tensor(input_scale) else input_scale, dtype=dtype)
            if s.shape != (self.in_features,):
                raise ValueError(f"`input_scale` must have shape ({self.in_features},), got {tuple(s.shape)}.")
            self.register_buffer("input_scale", s.clone())
        else:
            self.input_scale = None
        self.forward_mode = forward_mode
        self.truncation_error = float(truncation_error)
        self.original_params = original_params
        self._dense_cache: tuple[tuple[int, ...], torch.Tensor] | None = None
        self.cache_dense = bool(cache_dense)

    @property
    def cache_dense(self) -> bool:
        """Whether the dense weight is kept between gradient-free calls (setting ``False`` frees it)."""
        return self._cache_dense

    @cache_dense.setter
    def cache_dense(self, value: bool) -> None:
        self._cache_dense = bool(value)
        if not value:
            self._dense_cache = None

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_weight(
        cls,
        weight: Any,
        bias: Any = None,
        *,
        n_cores: int = 2,
        out_dims: Sequence[int] | None = None,
        in_dims: Sequence[int] | None = None,
        max_bond: int | None = None,
        cutoff: float = 0.0,
        input_scale: Any = None,
        covariance: Any = None,
        forward_mode: str = "auto",
    ) -> MPOLinear:
        """Factorise a dense ``(out, in)`` weight by TT-SVD (see :func:`mpo_factorize`).

        ``input_scale`` makes the truncation data-aware (ASVD-style scaling);
        ``covariance`` (``E[x x^T]``, shape ``(in, in)``) additionally refits the
        last core by least squares on the activations (:func:`refit_last_core`).
        """
        w = to_numpy(weight)
        s = None if input_scale is None else to_numpy(input_scale)
        f = mpo_factorize(w, n_cores=n_cores, out_dims=out_dims, in_dims=in_dims, max_bond=max_bond,
                          cutoff=cutoff, input_scale=s)
        cores = list(f.cores)
        if covariance is not None and len(cores) > 1:
            cov = to_numpy(covariance)
            ws = w if s is None else w * s[None, :]
            if s is not None:
                cov = cov / np.outer(s, s)
            cores[-1] = refit_last_core(ws, cores, cov)
        error = _relative_error(w, cores, s) if covariance is not None else f.error
        dtype = weight.dtype if torch.is_tensor(weight) and weight.is_floating_point() else torch.float32
        return cls(cores, bias, input_scale=s, forward_mode=forward_mode, truncation_error=error,
                   original_params=w.size + (0 if bias is None else w.shape[0]), dtype=dtype)

    @classmethod
    def from_linear(cls, linear: nn.Module, **kwargs: Any) -> MPOLinear:
        """Factorise an ``nn.Linear`` (or a transformers ``Conv1D``); see :meth:`from_weight`."""
        from .surgery import linear_weight

        weight = linear_weight(linear).detach()
        bias = None if getattr(linear, "bias", None) is None else linear.bias.detach()
        return cls.from_weight(weight, bias, **kwargs)

    @classmethod
    def from_linear_whitened(cls, linear: nn.Module, covariance: Any, **kwargs: Any) -> MPOLinear:
        """Whitened MPO of an ``nn.Linear``/``Conv1D`` for inputs of second moment ``covariance``.

        Keyword arguments go to :func:`tnkit.compress.numerics.whitened_mpo.whitened_mpo_factorize`
        (``max_bond``, ``n_cores``, ``sweeps``, ...) and ``forward_mode``;
        :attr:`truncation_error` is the whitened relative (output) error.
        """
        from .surgery import linear_weight
        from ..numerics.whitened_mpo import whitened_mpo_factorize

        forward_mode = kwargs.pop("forward_mode", "auto")
        weight = linear_weight(linear).detach()
        bias = None if getattr(linear, "bias", None) is None else linear.bias.detach()
        w = to_numpy(weight)
        f = whitened_mpo_factorize(w, to_numpy(covariance), **kwargs)
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        return cls(f.cores, bias, input_scale=f.input_scale, forward_mode=forward_mode, truncation_error=f.error,
                   original_params=w.size + (0 if bias is None else w.shape[0]), dtype=dtype)

    # ----------------------------------------------------------------- reports

    @property
    def bond_dims(self) -> tuple[int, ...]:
        """Inner bond dimensions."""
        return tuple(c.shape[3] for c in self.cores[:-1])

    @property
    def num_params(self) -> int:
        """Trainable numbers (cores and bias) plus the input scale."""
        n = sum(c.numel() for c in self.cores) + (0 if self.bias is None else self.bias.numel())
        return n + (0 if self.input_scale is None else self.input_scale.numel())

    @property
    def compression_ratio(self) -> float:
        """``num_params / original_params`` (dense ``out * in`` (+ bias) if unknown)."""
        orig = self.original_params or self.out_features * self.in_features + (
            0 if self.bias is None else self.out_features)
        return self.num_params / orig

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, dims={self.out_dims}x{self.in_dims}, "
                f"bonds={self.bond_dims}, params={self.num_params:,} ({self.compression_ratio:.1%}), "
                f"error={self.truncation_error:.3g}, mode={self.forward_mode!r}")

    # ----------------------------------------------------------------- forward

    def dense_weight(self) -> torch.Tensor:
        """The ``(out, in)`` weight ``W`` (including the input scale's inverse).

        Cores stored in a 16-bit precision are multiplied in float32 and the result rounded
        once to their precision (not once per core).
        """
        dtype = self.cores[0].dtype
        wide = torch.float32 if dtype in (torch.bfloat16, torch.float16) else None
        cores = [c if wide is None else c.to(wide) for c in self.cores]
        w = cores[0][0]  # (o, i, r)
        for core in cores[1:]:
            o, i = w.shape[0], w.shape[1]
            w = contract("abr,rcds->acbds", w, core).reshape(o * core.shape[1], i * core.shape[2], core.shape[3])
        w = w[..., 0]
        if self.input_scale is not None:
            w = w / (self.input_scale if wide is None else self.input_scale.to(wide))
        return w if wide is None else w.to(dtype)

    def _cached_dense(self) -> torch.Tensor:
        key = tuple(c._version for c in self.cores) + tuple(id(c) for c in self.cores)
        if self._dense_cache is None or self._dense_cache[0] != key:
            with torch.no_grad():
                self._dense_cache = (key, self.dense_weight())
        return self._dense_cache[1]

    def _flops(self, batch: int) -> tuple[int, int]:
        shapes = ((batch, *self.in_dims), *(tuple(c.shape) for c in self.cores))
        factored = _factored_flops(shapes)
        dense = batch * self.in_features * self.out_features
        return factored, dense

    def choose_mode(self, batch: int, *, cached: bool) -> str:
        """The forward form ``"auto"`` picks for ``batch`` input rows."""
        if self.forward_mode != "auto":
            return self.forward_mode
        factored, dense = self._flops(batch)
        if not cached:
            dense += self.out_features * self.in_features * max(self.bond_dims, default=1)
        return "factored" if factored < dense else "dense"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input must have {self.in_features} features in its last axis, got {x.shape[-1]}.")
        x2 = x.reshape(-1, self.in_features)
        batch = x2.shape[0]
        grad = torch.is_grad_enabled() and any(c.requires_grad for c in self.cores)
        cached = self.cache_dense and not grad
        mode = self.choose_mode(batch, cached=cached)
        if not grad and not cached and x2.device.type == "cpu":
            y = self._inference(x2.contiguous(), mode)
        elif mode == "dense":
            w = self._cached_dense() if cached else self.dense_weight()
            y = x2 @ w.T
        else:
            if self.input_scale is not None:
                x2 = x2 / self.input_scale
            y = self._factored(x2)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def _inference(self, x2: torch.Tensor, mode: str) -> torch.Tensor:
        """Gradient-free CPU forward of ``x2`` (``(batch, in)``, contiguous) in bounded scratch memory.

        Only the ``(batch, out)`` result is new memory. The intermediates live in this
        thread's :func:`tnkit.core.workspace.scratch` buffers, shared by every MPO layer of
        the model and kept near :data:`INFERENCE_BLOCK_BYTES` by working in blocks: rows
        of ``x2`` (``"factored"``) or of ``W`` (``"dense"``). Fresh multi-megabyte
        intermediates in every layer at every generated token leave glibc's heap
        fragmented (it raises its mmap threshold after the first such free), and the
        process then grows well past its live data.

        ``"factored"`` contracts the cores from the last to the first by matmuls that need
        no transposes: after core ``k`` the intermediate has layout
        ``(rows, i_0 .. i_{k-1}, r_k, o_k .. o_{n-1})``. ``"dense"`` builds blocks of
        ``W diag(s)`` (a range of ``o_0`` at a time) and applies them to ``x / s``.
        """
        cores = [c.detach() for c in self.cores]
        x2 = x2.to(cores[0].dtype)  # as the autograd path's result: the cores' type
        if self.input_scale is not None:
            x2 = x2 / self.input_scale
        batch, item = x2.shape[0], x2.element_size()
        y = torch.empty((batch, self.out_features), dtype=x2.dtype)
        if mode == "dense":
            first = cores[0][0]  # (o_0, i_0, r_1)
            o0 = first.shape[0]
            block_out = self.out_features // o0
            # entries per value of o_0: each product of the rebuild, and the block of the output
            per_o0 = [math.prod(self.out_dims[1 : k + 1]) * math.prod(self.in_dims[: k + 1])
                      * cores[k].shape[3] for k in range(1, len(cores))]
            step = max(1, min(o0, INFERENCE_BLOCK_BYTES // (max(per_o0 + [batch * block_out]) * item)))
            for lo in range(0, o0, step):
                hi = min(o0, lo + step)
                w = first[lo:hi]
                for core in cores[1:]:
                    o, i, r = w.shape
                    _, c, d, s = core.shape
                    prod = _scratch_tensor("mpo.a", (o * i, c * d * s), w.dtype)
                    torch.matmul(w.reshape(o * i, r), core.reshape(r, c * d * s), out=prod)
                    nxt = _scratch_tensor("mpo.b", (o, c, i, d, s), w.dtype)
                    nxt.copy_(prod.view(o, i, c, d, s).permute(0, 2, 1, 3, 4))
                    w = nxt.view(o * c, i * d, s)
                if step == o0:
                    torch.matmul(x2, w[..., 0].t(), out=y)
                else:
                    part = _scratch_tensor("mpo.c", (batch, (hi - lo) * block_out), x2.dtype)
                    torch.matmul(x2, w[..., 0].t(), out=part)
                    y[:, lo * block_out : hi * block_out] = part
            return y
        if len(cores) == 1:
            return torch.matmul(x2, cores[0][0, :, :, 0].t(), out=y)
        shapes = [tuple(c.shape) for c in cores]
        # entries per input row of the intermediate after core k (k >= 1; core 0 writes the output)
        per_row = max(math.prod(self.in_dims[:k]) * shapes[k][0] * math.prod(self.out_dims[k:])
                      for k in range(1, len(shapes)))
        step = max(1, INFERENCE_BLOCK_BYTES // (per_row * item))
        for lo in range(0, batch, step):
            hi = min(batch, lo + step)
            r, o, i, _ = shapes[-1]
            t = _scratch_tensor("mpo.a", ((hi - lo) * self.in_features // i, r * o), x2.dtype)
            torch.matmul(x2[lo:hi].view(-1, i), cores[-1].reshape(r * o, i).t(), out=t)
            right, slot, other = o, "mpo.b", "mpo.a"  # o_{k+1} ... o_{n-1}; the next output's slot and t's
            for k in range(len(cores) - 2, -1, -1):
                r, o, i, s = shapes[k]
                rows = t.numel() // (i * s * right)
                out = y[lo:hi] if k == 0 else _scratch_tensor(slot, (rows, r * o, right), x2.dtype)
                torch.matmul(cores[k].reshape(r * o, i * s), t.view(rows, i * s, right),
                             out=out.view(rows, r * o, right))
                t, right, slot, other = out, right * o, other, slot
        return y

    def _factored(self, x2: torch.Tensor) -> torch.Tensor:
        shapes = ((x2.shape[0], *self.in_dims), *(tuple(c.shape) for c in self.cores))
        y = contract(_equation(len(self.cores)), x2.reshape(shapes[0]), *self.cores)
        return y.reshape(x2.shape[0], self.out_features)

    @classmethod
    def empty_like_spec(cls, spec: dict[str, Any], *, dtype: torch.dtype = torch.float32,
                        device: Any = None) -> MPOLinear:
        """A zero layer with the shapes recorded by :meth:`spec` (for loading; ``device="meta"`` allocates nothing)."""
        out_dims, in_dims, bonds = spec["out_dims"], spec["in_dims"], [1, *spec["bond_dims"], 1]
        if not (len(out_dims) == len(in_dims) == len(bonds) - 1 >= 1):
            raise ValueError(f"`out_dims`, `in_dims` and `bond_dims` disagree on the number of cores: {spec}.")
        kw = dict(dtype=dtype, device=device)
        cores = [torch.zeros(bonds[k], o, i, bonds[k + 1], **kw) for k, (o, i) in enumerate(zip(out_dims, in_dims))]
        bias = torch.zeros(math.prod(out_dims), **kw) if spec["bias"] else None
        scale = torch.ones(math.prod(in_dims), **kw) if spec["input_scale"] else None
        return cls(cores, bias, input_scale=scale, forward_mode=spec.get("forward_mode", "auto"),
                   truncation_error=spec.get("truncation_error", 0.0), original_params=spec.get("original_params"),
                   dtype=dtype)

    def spec(self) -> dict[str, Any]:
        """JSON-ready description of the shapes (what :meth:`empty_like_spec` needs)."""
        return {"type": "mpo", "out_dims": list(self.out_dims), "in_dims": list(self.in_dims),
                "bond_dims": list(self.bond_dims), "bias": self.bias is not None,
                "input_scale": self.input_scale is not None, "forward_mode": self.forward_mode,
                "truncation_error": self.truncation_error, "original_params": self.original_params}


def cache_dense_weights(model: nn.Module, enabled: bool = True) -> int:
    """Turn the dense-weight cache of every :class:`MPOLinear` in ``model`` on (or off); returns how many.

    With the cache on, each MPO layer keeps its reconstructed ``(out, in)`` weight after
    its first gradient-free call: dense speed for dense memory. Off (the default of
    every layer) frees the cached weights.
    """
    layers = [m for m in model.modules() if isinstance(m, MPOLinear)]
    for m in layers:
        m.cache_dense = enabled
    return len(layers)


def _scratch_tensor(slot: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor of ``shape`` and ``dtype`` backed by this thread's scratch buffer ``slot``."""
    nbytes = math.prod(shape) * dtype.itemsize
    return torch.from_numpy(scratch(slot, (nbytes,), np.uint8)).view(dtype).view(shape)


def _check_cores(cores: list[torch.Tensor]) -> None:
    if not cores:
        raise ValueError("`cores` must hold at least one core, got none.")
    for k, c in enumerate(cores):
        if c.ndim != 4:
            raise ValueError(f"`cores[{k}]` must have 4 axes (left bond, out, in, right bond), got shape {tuple(c.shape)}.")
    if cores[0].shape[0] != 1 or cores[-1].shape[3] != 1:
        raise ValueError("the outer bonds of `cores` must have dimension 1.")
    for k in range(len(cores) - 1):
        if cores[k].shape[3] != cores[k + 1].shape[0]:
            raise ValueError(f"bond {k} of `cores` does not match: {cores[k].shape[3]} vs {cores[k + 1].shape[0]}.")


def to_numpy(t: Any) -> np.ndarray:
    """A float64 numpy copy of a tensor or array (detached, on the CPU)."""
    if torch.is_tensor(t):
        return t.detach().to(torch.float64).cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def _relative_error(weight: np.ndarray, cores: Sequence[np.ndarray], scale: np.ndarray | None) -> float:
    from ..numerics.factorize import mpo_to_dense

    approx = mpo_to_dense(cores)
    ref = weight if scale is None else weight * scale[None, :]
    return float(np.linalg.norm(ref - approx) ** 2 / max(np.linalg.norm(ref) ** 2, 1e-300))

