"""The default recipe: how much of a budget width pruning takes and how much factorisation, chosen on data.

Width pruning (:mod:`tnkit.compress.recipes.prune`) and the per-layer factorisation search
(:mod:`tnkit.compress.numerics.search`) remove parameters in different ways: pruning deletes whole
MLP channels and heads, the search truncates spectra where they are cheapest. Neither is
better at every budget (on SmolLM2-135M the search wins when little is removed, pruning
when much is), and mixing them (prune to ``p``, then search the rest of the budget) can
beat both. ``AUTO_SPLITS`` lists the shares of the removal ``1 - ratio`` given to
pruning that method ``"auto"`` tries. Each candidate is built on a copy of the model and
scored by its language-model loss on a calibration batch that no candidate was fitted on,
and the lowest wins. Pruning alone is built first; the splits that use the search are built
in one shot (every layer truncated on the original model's statistics, no pass over the
calibration text), from the largest share of pruning down while the held-out loss falls
(:func:`descend`: the loss is taken to be unimodal in the share). So on the held-out loss
the result is never worse than pruning alone, and never worse than the splits built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["AUTO_SPLITS", "HELDOUT_FRACTION", "prune_fraction", "descend", "calibration_batches",
           "heldout_split", "heldout_loss", "adopt"]

#: share of the removal ``1 - ratio`` done by width pruning in each candidate of method ``"auto"``:
#: 0 is the factorisation search alone, 1 pruning alone
AUTO_SPLITS = (0.0, 0.25, 0.5, 0.75, 1.0)

#: share of the calibration text (its end) from which ``calibration_batches`` draws the held-out batch
HELDOUT_FRACTION = 0.1


def calibration_batches(ids, *, seq_len: int, batch_size: int, n_batches: int, seed: int | None = 0
                        ) -> list[torch.Tensor]:
    """``n_batches`` token-id batches for method ``"auto"``: the last one from text the others never touch.

    Random windows of the first ``1 - HELDOUT_FRACTION`` of ``ids`` make the first
    ``n_batches - 1`` batches (they fit the candidates); the last batch is cut from the
    remaining end of the text (other articles, for an article-ordered corpus), so the
    candidates are scored on text none of them was fitted on. Windows drawn from the same
    articles are not held out: a data-aware truncation fitted on an article's activations
    scores better on other windows of it than on new text (measured: on SmolLM2 at 70% kept,
    random windows of the fitting articles ranked the search above width pruning, which is
    1.1x better on the evaluation articles).

    Parameters
    ----------
    ids : array_like of int, shape (n,)
    seq_len, batch_size : int
        Window length and windows per batch.
    n_batches : int
        At least 2.
    seed : int, optional
        Seed of the random windows.
    """
    import numpy as np

    from ...core.validate import check_int
    from ..tuning.corpus import token_batches

    n_batches = check_int("n_batches", n_batches, minimum=2)
    ids = np.asarray(ids, dtype=np.int64)
    cut = int(len(ids) * (1.0 - HELDOUT_FRACTION))
    if cut < seq_len or len(ids) - cut < seq_len * batch_size:
        raise ValueError(f"`ids` must hold at least {seq_len * batch_size / HELDOUT_FRACTION:,.0f} tokens for "
                         f"`seq_len`={seq_len} and `batch_size`={batch_size} (its last {HELDOUT_FRACTION:.0%} makes "
                         f"the held-out batch), got {len(ids):,}.")
    fit = token_batches(ids[:cut], seq_len=seq_len, batch_size=batch_size, n_batches=n_batches - 1, seed=seed)
    held = token_batches(ids[cut:], seq_len=seq_len, batch_size=batch_size, n_batches=1, seed=seed)
    return fit + held


def prune_fraction(ratio: float, share: float) -> float:
    """Fraction of the block weights width pruning keeps when it does ``share`` of the removal ``1 - ratio``."""
    return 1.0 - float(share) * (1.0 - float(ratio))


def descend(f: Callable[[int], float], n: int, *, above: float = math.inf) -> dict[int, float]:
    """``f`` from the last index down while it falls: ``f(n - 1)``, ``f(n - 2)``, ... (each called once).

    For ``f`` unimodal on ``range(n)`` followed by one more point whose value is ``above``
    (already known), the walk stops at the first value that is not lower than the one
    before it (``f(n - 1)`` is compared with ``above``), and the least value seen is the
    minimum over all ``n + 1`` points. It calls ``f`` once when the extra point is the
    minimum, and at most ``n`` times.

    Parameters
    ----------
    f : callable
        ``f(i)`` for ``0 <= i < n``; lower is better.
    n : int
        At least 1.
    above : float
        The value of the point after ``n - 1``.

    Returns
    -------
    dict of int to float
        The values of ``f`` at the indices visited.
    """
    from ...core.validate import check_int

    n = check_int("n", n, minimum=1)
    seen: dict[int, float] = {}
    last = float(above)
    for i in range(n - 1, -1, -1):
        seen[i] = float(f(i))
        if not seen[i] < last:
            break
        last = seen[i]
    return seen


def heldout_split(batches: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(fit, held_out)``: the last batch scores the candidates, the others build them (one batch: both).

    Make the last batch from text the others do not overlap (``calibration_batches``).
    """
    batches = list(batches)
    if len(batches) < 2:
        return batches, batches
    return batches[:-1], batches[-1:]


def heldout_loss(model: nn.Module, batches: Sequence[torch.Tensor], *, precision: str = "float32") -> float:
    """Mean next-token cross-entropy of ``model`` on token-id ``batches`` (each ``(batch, seq)``).

    ``precision="bfloat16"`` runs the matrix products in bfloat16 under ``torch.autocast``
    (as method ``"auto"``'s statistics pass), about half the time of a float32 pass on a CPU
    that multiplies bfloat16 natively; candidates compared with each other must be scored
    in the same precision.
    """
    from ..numerics.precision import precision_autocast

    autocast = precision_autocast(model, precision)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad(), autocast:
            for ids in batches:
                n = ids.shape[0] * (ids.shape[1] - 1)
                total += float(model(input_ids=ids, labels=ids, use_cache=False).loss) * n
                count += n
    finally:
        model.train(was_training)
    return total / max(count, 1)


def adopt(model: nn.Module, other: nn.Module) -> None:
    """Make ``model`` (in place) the model ``other``: its submodules and config move over.

    ``other`` must be a (modified) deep copy of ``model``, so the two share their class
    and the tied weights inside ``other`` stay tied.
    """
    if type(other) is not type(model):
        raise TypeError(f"`other` must be a {type(model).__name__}, got {type(other).__name__}.")
    for name, child in other.named_children():
        setattr(model, name, child)
    if hasattr(other, "config"):
        model.config = other.config
