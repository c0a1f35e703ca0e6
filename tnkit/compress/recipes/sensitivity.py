"""Which layers tolerate compression: sensitivity and entanglement profiles.

*Sensitivity* (CompactifAI, arXiv:2401.14109): compress one unit (a block, or one
layer) at a time, measure the perplexity, restore it. The relative perplexity
increase ranks the units; :func:`sensitivity_weights` turns it into allocation
weights for :func:`tnkit.compress.compress_model`.

*Entanglement* ("artificial entanglement"): the von Neumann entropy of each
normalised weight across its MPO bond(s) (:func:`tnkit.compress.numerics.factorize.weight_entanglement`);
no data needed. Entropy ``S`` means about ``exp(S)`` bond dimensions carry the weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..numerics.factorize import weight_entanglement
from ..layers.surgery import find_layers, layer_depth, layer_role, linear_weight, replace_layers

__all__ = ["ProfileRow", "entanglement_profile", "sensitivity_profile", "sensitivity_weights", "sensitive_layers",
           "entanglement_weights",
           "format_profile", "plot_profile"]


@dataclass(frozen=True)
class ProfileRow:
    """One unit of a profile: ``value`` is an entropy (nats) or a perplexity ratio."""

    unit: str
    depth: int | None
    role: str | None
    value: float


def entanglement_profile(model: nn.Module, layers: Mapping[str, nn.Module] | None = None, *,
                         n_cores: int = 2) -> list[ProfileRow]:
    """Mean bond entropy of each layer's weight as an ``n_cores`` MPO."""
    layers = find_layers(model) if layers is None else layers
    rows = []
    for name, m in layers.items():
        w = linear_weight(m).detach().double().numpy()
        s = weight_entanglement(w, n_cores=n_cores)
        rows.append(ProfileRow(name, layer_depth(name), layer_role(name), float(np.mean(s))))
    return rows


def sensitivity_profile(model: nn.Module, ids: Any, *, unit: str = "block", ratio: float = 0.5,
                        method: str = "mpo", layers: Mapping[str, nn.Module] | None = None,
                        window: int = 256, stride: int = 256, max_tokens: int | None = 4096,
                        progress: bool = True) -> tuple[float, list[ProfileRow]]:
    """Perplexity ratio when each unit alone is compressed to ``ratio`` of its size.

    Parameters
    ----------
    unit : {"block", "layer", "role"}
        Compress one block (all its chosen layers), one layer, or all layers of
        one role at a time.
    method : str
        A :data:`tnkit.compress.METHODS` entry that needs no data (``"mpo"``, ``"svd"``).

    Returns
    -------
    base_perplexity : float
    rows : list of ProfileRow
        ``value`` = perplexity with the unit compressed / base perplexity.
    """
    from tqdm.auto import tqdm

    from ...core.validate import check_option
    from .evaluate import perplexity
    from .pipeline import compress_model

    check_option("unit", unit, ("block", "layer", "role"))
    check_option("method", method, ("mpo", "svd"))
    layers = find_layers(model) if layers is None else dict(layers)
    groups: dict[str, list[str]] = {}
    for name in layers:
        key = {"block": f"block {layer_depth(name)}", "layer": name, "role": str(layer_role(name))}[unit]
        groups.setdefault(key, []).append(name)
    kw = dict(window=window, stride=stride, max_tokens=max_tokens)
    base = perplexity(model, ids, **kw)
    rows = []
    for key, names in tqdm(groups.items(), desc="sensitivity", disable=not progress):
        originals = {n: layers[n] for n in names}
        compress_model(model, method=method, ratio=ratio, layers=originals, progress=False)
        try:
            ppl = perplexity(model, ids, **kw)
        finally:
            replace_layers(model, originals)
        first = names[0]
        rows.append(ProfileRow(key, layer_depth(first), layer_role(first) if unit != "block" else None, ppl / base))
    return base, rows


def sensitivity_weights(rows: list[ProfileRow], layers: Mapping[str, nn.Module], *,
                        floor: float = 0.05) -> dict[str, float]:
    """Allocation weight per layer from the sensitivity profile: ``log(ratio) / mean(log(ratio))`` of its unit.

    To first order the change in log-perplexity is a weighted sum of the layers' relative
    errors, ``d log ppl ~ sum_l g_l err_l``; compressing one unit at a time (at about the
    same relative error for every unit) measures ``log(ratio)`` of that unit, i.e. its
    ``g`` up to a common factor. The weights are normalised to mean 1 over the units and
    floored at ``floor`` (a unit that measured no change still costs something).

    Parameters
    ----------
    rows : list of ProfileRow
        From :func:`sensitivity_profile` (unit = layer name, ``"block N"`` or a role).
    layers : mapping of layer name to module
        The layers to weight.
    floor : float
        Smallest weight, relative to the mean.
    """
    logs = {r.unit: max(float(np.log(max(r.value, 1e-300))), 0.0) for r in rows}
    mean = float(np.mean(list(logs.values()))) if logs else 0.0
    mean = mean if mean > 0 else 1.0
    out = {}
    for name in layers:
        key = _unit_of(name, logs)
        if key is not None:
            out[name] = max(logs[key] / mean, float(floor))
    return out


def sensitive_layers(rows: list[ProfileRow], layers: Mapping[str, nn.Module], *, threshold: float = 2.0) -> list[str]:
    """Names of the layers whose unit multiplied the perplexity by more than ``threshold``.

    CompactifAI keeps such layers dense; pass them as ``protect`` to
    :func:`tnkit.compress.compress_model`.
    """
    ratio = {r.unit: r.value for r in rows}
    return [name for name in layers if (key := _unit_of(name, ratio)) is not None and ratio[key] > threshold]


def _unit_of(name: str, units: Mapping[str, object]) -> str | None:
    """The profile unit a layer belongs to: itself, its block or its role."""
    for key in (name, f"block {layer_depth(name)}", str(layer_role(name))):
        if key in units:
            return key
    return None


def entanglement_weights(rows: list[ProfileRow]) -> dict[str, float]:
    """Allocation weight per layer from its bond entropy: ``exp(S) / mean(exp(S))``.

    ``exp(S)`` is the effective number of bond dimensions carrying the normalised
    weight, so a layer that needs more of them to reach the same relative error
    counts more. ``rows`` are those of :func:`entanglement_profile` (unit = layer name).
    """
    eff = {r.unit: float(np.exp(r.value)) for r in rows}
    mean = float(np.mean(list(eff.values()))) if eff else 1.0
    return {name: v / mean for name, v in eff.items()}


def format_profile(rows: list[ProfileRow], header: str) -> str:
    """A printed table of a profile."""
    lines = [f"{'unit':48s} {'depth':>5s} {'role':>6s} {header:>12s}"]
    for r in rows:
        lines.append(f"{r.unit:48s} {'' if r.depth is None else r.depth:>5} {r.role or '':>6s} {r.value:12.4f}")
    return "\n".join(lines)


def plot_profile(entanglement: list[ProfileRow] | None, sensitivity: list[ProfileRow] | None, path: Any,
                 *, title: str = "") -> Path:
    """PNG of the entanglement profile (per role vs depth) and/or the sensitivity profile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...io import atomic_write

    panels = [p for p in (entanglement, sensitivity) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    ax_list = list(axes[0])
    if entanglement:
        ax = ax_list.pop(0)
        for role in sorted({r.role for r in entanglement if r.role}):
            pts = sorted((r.depth, r.value) for r in entanglement if r.role == role and r.depth is not None)
            ax.plot(*zip(*pts), marker="o", ms=3, label=role)
        ax.set(xlabel="block", ylabel="bond entropy (nats)", title="artificial entanglement of weights")
        ax.legend(fontsize=8, ncol=2)
    if sensitivity:
        ax = ax_list.pop(0)
        labels = [r.unit.replace("block ", "") for r in sensitivity]
        ax.bar(range(len(sensitivity)), [r.value for r in sensitivity])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(sensitivity)), labels, rotation=90, fontsize=7)
        ax.set(ylabel="perplexity / base", title="sensitivity: one unit compressed at a time")
        if max(r.value for r in sensitivity) > 10 * min(max(r.value, 1e-12) for r in sensitivity):
            ax.set_yscale("log")  # one very sensitive unit would flatten the others
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
    return path
