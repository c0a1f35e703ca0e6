"""Input-activation statistics of linear layers, for data-aware truncation.

For each chosen layer, a forward hook accumulates over the calibration tokens

* the second moment ``C = E[x x^T]`` (shape ``(in, in)``, float64), which defines the
  output error ``E||(W - W') x||^2 = tr((W - W') C (W - W')^T)`` that data-aware
  truncation minimises, and
* the mean absolute activation ``E|x|`` per input channel (shape ``(in,)``), ASVD's
  channel scale.

Layers fed the same tensor (Llama's q/k/v, gate/up) share one statistics object.

Cost: nothing is stored but the running sums. Each batch adds ``X^T X`` with torch's own
matrix product in float32, on the thread pool the forward pass runs on (a BLAS call from
another library between torch's operations made both cores contend: SciPy's OpenBLAS
``ssyrk`` there cost several times its one-thread CPU time). The products are added in
place (``addmm_``) into a float32 running sum, which is added to the float64 sum when the
statistics are read (:meth:`ActivationStats.flush`; :func:`collect_activation_stats` does so
at the end of its pass): no float64 addition per batch, which cost a quarter as much as the
products themselves. Only the upper triangle is needed: it is formed in bands of
:data:`GRAM_BAND` rows, each band from its diagonal block rightwards (a 576-wide input costs
0.7 of a full product, a 1,536-wide one 0.55). The language-model head is skipped
(the calibration needs the blocks' inputs, not the logits) whenever no observed layer
lives outside the model's base: for SmolLM2 that saves the 49,152 x 576 output
projection, a fifth of the forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ...core.linalg import symmetrize_
from ..numerics.precision import STATS_PRECISIONS, precision_autocast

__all__ = ["ActivationStats", "collect_activation_stats", "channel_scale", "gram_upper", "add_gram_upper", "GRAM_BAND",
           "STATS_PRECISIONS", "fast_bfloat16", "stats_precision"]

def fast_bfloat16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: a CUDA device, or a CPU whose oneDNN has bfloat16."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:  # pragma: no cover - a build without oneDNN
        return False


def stats_precision(model: nn.Module) -> str:
    """The statistics precision method ``"auto"`` uses for ``model``: ``"bfloat16"`` on hardware that multiplies
    it natively (:func:`fast_bfloat16`) for a float32 model, else ``"float32"``."""
    p = next(iter(model.parameters()), None)
    if p is None or p.dtype != torch.float32:
        return "float32"
    return "bfloat16" if fast_bfloat16(p.device) else "float32"


#: Rows of the bands in which the upper triangle of an input's ``X^T X`` is formed (inputs up to this width: one
#: product). Measured on one thread for 1,024 tokens: a 576-wide input 5.2 ms in bands of 192 against 7.1 ms in one
#: product, a 1,536-wide one 32 ms against 37 ms in bands of 576 and 54 ms in one product; narrower bands gain little.
GRAM_BAND = 192


def gram_upper(x: torch.Tensor, *, band: int = GRAM_BAND) -> Iterator[tuple[int, torch.Tensor]]:
    """The upper triangle of ``x^T x`` in bands of rows: ``(lo, block)`` with ``block = x[:, lo:hi]^T x[:, lo:]``.

    Parameters
    ----------
    x : torch.Tensor, shape (T, n)
        Rows are samples (tokens); any float dtype, the products are in ``x``'s dtype.
    band : int
        Rows per band; ``n <= band`` gives one block, the whole ``x^T x``.

    Yields
    ------
    lo : int
        First row of the band.
    block : torch.Tensor, shape (hi - lo, n - lo)
        Rows ``lo:hi``, columns ``lo:`` of ``x^T x`` (its upper triangle; within the
        diagonal block the lower part is computed too).
    """
    n = x.shape[1]
    for lo in range(0, n, band):
        hi = min(lo + band, n)
        yield lo, x[:, lo:hi].T @ x[:, lo:]


def add_gram_upper(total: torch.Tensor, x: torch.Tensor, *, band: int = GRAM_BAND) -> None:
    """``total += x^T x`` on the upper triangle, in place, band by band as :func:`gram_upper` forms it.

    Parameters
    ----------
    total : torch.Tensor, shape (n, n)
        The running sum; rows ``lo:hi``, columns ``lo:`` of each band are added to (inside
        each diagonal block its lower part too; below the bands nothing is touched).
    x : torch.Tensor, shape (T, n)
        Same dtype as ``total``.
    band : int
    """
    n = x.shape[1]
    for lo in range(0, n, band):
        hi = min(lo + band, n)
        total[lo:hi, lo:].addmm_(x[:, lo:hi].T, x[:, lo:])


@dataclass
class ActivationStats:
    """Running input statistics of one layer.

    Attributes
    ----------
    second_moment_sum : numpy.ndarray, shape (in, in)
        ``sum_t x_t x_t^T`` over calibration tokens; only the upper triangle is
        accumulated (see :attr:`covariance`, which is symmetric). ``None`` once
        :meth:`take_covariance` took it. Up to date after :meth:`update` and
        :meth:`flush`; :meth:`accumulate` adds to a float32 running sum first.
    abs_sum : numpy.ndarray, shape (in,)
        ``sum_t |x_t|``.
    n_tokens : int
    """

    second_moment_sum: np.ndarray | None
    abs_sum: np.ndarray
    n_tokens: int = 0
    _seen: set = field(default_factory=set, repr=False)
    _pending: torch.Tensor | None = field(default=None, repr=False)
    _energies: dict = field(default_factory=dict, repr=False)

    @classmethod
    def zeros(cls, n_in: int) -> ActivationStats:
        """Empty statistics for ``n_in`` input channels."""
        return cls(np.zeros((n_in, n_in)), np.zeros(n_in))

    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (shape ``(..., in)``)."""
        self.accumulate(x)
        self.flush()

    def accumulate(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (shape ``(..., in)``) to a float32 running sum (read after :meth:`flush`).

        Each batch's ``X^T X`` is one float32 product whose terms are summed in float32
        anyway; adding a few tens of them in float32 before the float64 sum changes the
        second moment by about the same relative amount (1e-7), and saves a float64
        addition of an ``in x in`` array per batch.
        """
        self._check()
        x2 = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
        if self._pending is None:
            self._pending = torch.zeros(x2.shape[1], x2.shape[1], dtype=torch.float32, device=x2.device)
        with torch.autocast(x2.device.type, enabled=False):  # float32 products also inside a bfloat16 forward
            add_gram_upper(self._pending, x2, band=GRAM_BAND)  # torch's threads: no second BLAS pool contending
        self.abs_sum += x2.abs().sum(0).double().cpu().numpy()  # 1e-7 relative per batch, as the products
        self.n_tokens += x2.shape[0]

    def flush(self) -> None:
        """Add the float32 running sum of :meth:`accumulate` to :attr:`second_moment_sum` (float64)."""
        if self._pending is not None:
            self._check()[...] += self._pending.cpu().numpy()
            self._pending = None

    @property
    def covariance(self) -> np.ndarray:
        """Second moment ``E[x x^T]``, shape ``(in, in)``, symmetric (uncentred, as the output error needs).

        A new array each time (the one ``in x in`` allocation: the lower triangle is
        filled in place).
        """
        return symmetrize_(self._sum() / max(self.n_tokens, 1), source="upper")

    @property
    def variance(self) -> np.ndarray:
        """The diagonal of :attr:`covariance`, ``E[x_i^2]`` per input channel (no ``in x in`` array is formed)."""
        return np.diag(self._sum()) / max(self.n_tokens, 1)

    def take_covariance(self) -> np.ndarray:
        """:attr:`covariance`, computed in the storage of the running sum, which these statistics give up.

        For the last user of the statistics: no second ``in x in`` array is allocated.
        Afterwards the statistics can be neither updated nor read again.
        """
        c = self._sum()
        self.second_moment_sum = None
        c /= max(self.n_tokens, 1)
        return symmetrize_(c, source="upper")

    def _sum(self) -> np.ndarray:
        self.flush()
        return self._check()

    def _check(self) -> np.ndarray:
        if self.second_moment_sum is None:
            raise ValueError("these statistics gave their second moment away (take_covariance) and cannot be "
                             "read or updated again.")
        return self.second_moment_sum

    def output_energy(self, weight: np.ndarray, covariance: np.ndarray | None = None) -> float:
        """``tr(W C W^T)``: the energy a layer of weight ``W`` (``(out, in)``) sends out on these inputs.

        Remembered per weight (by its values), so several width prunings of copies of one model on
        these statistics form the ``(out, in) x (in, in)`` product once; that product runs in
        float32 (half the time of float64; the sum, of mostly positive terms, is accumulated
        in float64 and good to about 1e-6 relative). ``covariance`` is :attr:`covariance` when
        the caller has it.
        """
        w = np.ascontiguousarray(weight, dtype=np.float64)
        key = (w.shape, hash(w.tobytes()))
        if key not in self._energies:
            c = self.covariance if covariance is None else covariance
            w32 = w.astype(np.float32)
            self._energies[key] = float(np.sum((w32 @ c.astype(np.float32)) * w32, dtype=np.float64))
        return self._energies[key]

    @property
    def mean_abs(self) -> np.ndarray:
        """``E|x|`` per input channel."""
        return self.abs_sum / max(self.n_tokens, 1)


def channel_scale(stats: ActivationStats, *, alpha: float = 0.5, floor: float = 1e-6) -> np.ndarray:
    """ASVD's per-channel scale ``s = (E|x|)**alpha``, normalised to mean 1 and floored."""
    s = np.maximum(stats.mean_abs, floor) ** alpha
    return s / s.mean()


def collect_activation_stats(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    batches: Iterable[torch.Tensor],
    *,
    precision: str = "float32",
) -> dict[str, ActivationStats]:
    """Run ``model`` on ``batches`` of token ids and collect each layer's input statistics.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM taking ``input_ids``.
    layers : mapping of str to torch.nn.Module
        The layers to observe (e.g. from :func:`tnkit.compress.layers.surgery.find_layers`).
    batches : iterable of torch.Tensor
        Token id tensors of shape ``(batch, seq)``.
    precision : {"float32", "bfloat16"}
        The forward pass's matrix products (:data:`STATS_PRECISIONS`): ``"bfloat16"`` runs
        them under ``torch.autocast`` on the model's device type; the layers then see the
        inputs a bfloat16 forward produces.

    Returns
    -------
    dict of str to ActivationStats
    """
    autocast = precision_autocast(model, precision)
    stats: dict[str, ActivationStats] = {}
    by_input: dict[int, tuple[torch.Tensor, ActivationStats]] = {}  # holds x, so ids stay unique

    def hook(name: str):
        def fn(module: nn.Module, args: tuple, _out: object) -> None:
            x = args[0]
            key = id(x)
            if name not in stats:
                shared = by_input.get(key)
                stats[name] = shared[1] if shared is not None else ActivationStats.zeros(x.shape[-1])
            st = stats[name]
            if key not in st._seen:
                st.accumulate(x)
                st._seen.add(key)
            by_input[key] = (x, st)
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    runner = _trunk(model, layers)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast:
            for ids in batches:
                by_input.clear()
                for st in stats.values():
                    st._seen.clear()
                runner(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for st in stats.values():
        st._seen.clear()
        st.flush()  # one layer at a time: its float64 sum's pages are first written here
    return stats


def _trunk(model: nn.Module, layers: Mapping[str, nn.Module]) -> nn.Module:
    """The model without its LM head when every observed layer lies in the trunk, else the model."""
    base = getattr(model, "base_model", None)
    if not isinstance(base, nn.Module) or base is model:
        return model
    inside = {id(m) for m in base.modules()}
    return base if all(id(m) in inside for m in layers.values()) else model
