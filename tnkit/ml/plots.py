"""Figures for trained classifiers (matplotlib, imported lazily, Agg backend).

Each function draws one figure, writes it atomically to ``path`` (format from the
suffix, e.g. ``.png`` or ``.pdf``) and returns the path.

- :func:`plot_entanglement`: entanglement entropy across each bond of a trained model.
- :func:`plot_accuracy_vs_bond`: test error against bond dimension, with a reference line.
- :func:`plot_feature_importance`: per-feature importance as an image.
- :func:`plot_patterns`: rows of discrete patterns (Born-machine samples, inpaintings),
  each drawn by :func:`draw_pattern` inside a frame, so an all-white pattern stays visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write

__all__ = ["plot_entanglement", "plot_accuracy_vs_bond", "plot_feature_importance", "plot_patterns", "draw_pattern"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Any) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_write(path) as fh:
        fig.savefig(fh, format=fmt, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_entanglement(entropy: Sequence[float], path: Any, *, title: str = "Entanglement of the trained MPS") -> Path:
    """Bar plot of the entropy (nats) across each bond; ``entropy`` from ``MPSClassifier.entanglement_entropy()``."""
    plt = _pyplot()
    entropy = np.asarray(entropy, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(np.arange(len(entropy)), entropy, width=1.0, color="tab:blue")
    ax.set_xlabel("bond")
    ax.set_ylabel("entropy (nats)")
    ax.set_title(title)
    return _save(fig, path)


def plot_accuracy_vs_bond(
    bonds: Sequence[int],
    errors: Sequence[float],
    path: Any,
    *,
    reference: float | None = 0.0097,
    reference_label: str = "Stoudenmire & Schwab, bond 120 (0.97%)",
    label: str = "tnkit MPSClassifier",
    extra: dict[str, tuple[Sequence[int], Sequence[float]]] | None = None,
) -> Path:
    """Test error (fraction) against bond dimension, log-scaled, with a horizontal reference line.

    ``extra`` maps a label to further ``(bonds, errors)`` series (other solvers or data sizes).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    series = {label: (bonds, errors), **(extra or {})}
    for name, (b, e) in series.items():
        ax.plot(b, 100 * np.asarray(e, dtype=float), "o-", label=name)
    if reference is not None:
        ax.axhline(100 * reference, color="k", ls="--", lw=1, label=reference_label)
    ticks = sorted({int(x) for b, _ in series.values() for x in b})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(b) for b in ticks])
    ax.set_xlabel("max bond dimension")
    ax.set_ylabel("test error (%)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_feature_importance(importance: Sequence[float], shape: tuple[int, int], path: Any,
                            *, title: str = "Feature importance") -> Path:
    """Show ``importance`` (n_features,) as an image of ``shape`` (rows, cols), row-major."""
    plt = _pyplot()
    importance = np.asarray(importance, dtype=float)
    if importance.size != shape[0] * shape[1]:
        raise ValueError(f"`importance` has {importance.size} values, `shape` {shape} needs {shape[0] * shape[1]}.")
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    im = ax.imshow(importance.reshape(shape), cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def draw_pattern(ax: Any, image: Any, *, vmax: float = 1.0) -> None:
    """Draw one pattern (0 white .. ``vmax`` black) on ``ax`` with a thin grey frame and no ticks.

    The frame is what keeps a white cell, or an all-white pattern, visible on a white
    page; ``set_axis_off`` would remove it.
    """
    ax.imshow(np.asarray(image, dtype=float), cmap="gray_r", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor("0.5")
        spine.set_linewidth(0.8)


def plot_patterns(rows: Sequence[tuple[str, Sequence[Any]]], path: Any, *, vmax: float = 1.0) -> Path:
    """A grid of patterns, one titled row per entry of ``rows`` (``(title, images)``), each framed.

    Parameters
    ----------
    rows : sequence of (str, sequence of 2-d arrays)
        E.g. ``[("samples", model.sample(8).reshape(-1, 4, 4))]``.
    path : path-like
        Output file (format from the suffix).
    vmax : float
        Value drawn black (patterns of ``n`` values: ``n - 1``).
    """
    plt = _pyplot()
    n_cols = max(1, max((len(images) for _, images in rows), default=1))
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.3 * n_cols, 1.4 * len(rows)), squeeze=False)
    for r, (title, images) in enumerate(rows):
        for c in range(n_cols):
            if c < len(images):
                draw_pattern(axes[r, c], images[c], vmax=vmax)
            else:
                axes[r, c].set_axis_off()
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    return _save(fig, path)
