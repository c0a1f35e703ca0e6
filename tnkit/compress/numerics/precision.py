"""The precisions in which method ``"auto"`` runs a model's forward (and backward) passes.

``"float32"`` runs the model as it is; ``"bfloat16"`` runs its matrix products in bfloat16
under ``torch.autocast`` (float32 accumulation inside each product), about 2.4x faster on a
CPU with native bfloat16 arithmetic (AVX-512 BF16, AMX). The statistics pass
(:func:`tnkit.compress.collect_activation_stats`), the gradient sensitivities
(:func:`tnkit.compress.numerics.search.gradient_weights`) and the held-out losses
(:func:`tnkit.compress.recipes.recipe.heldout_loss`) take one of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["STATS_PRECISIONS", "precision_autocast"]

#: precisions of the forward passes (see the module docstring)
STATS_PRECISIONS = ("float32", "bfloat16")


def precision_autocast(model: Any, precision: str) -> Any:
    """The ``torch.autocast`` context that runs ``model``'s matrix products in ``precision``
    (:data:`STATS_PRECISIONS`; ``"float32"``: a disabled one), after checking ``precision``.

    Parameters
    ----------
    model : torch.nn.Module
        Its first parameter's device type is the autocast's.
    precision : {"float32", "bfloat16"}
    """
    import torch

    from ...core.validate import check_option

    check_option("precision", precision, STATS_PRECISIONS)
    device = next(iter(model.parameters())).device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bfloat16")
