"""The compression methods by name, what each needs and does, and the default: no torch needed.

:mod:`tnkit.compress.recipes.pipeline` runs them (:func:`tnkit.compress.compress_model`);
this module holds only their table, so the command line lists them and checks its options
without importing torch (``tnkit compress`` prints its first line within a second or two).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MethodSpec", "METHOD_SPECS", "METHODS", "DEFAULT_METHOD", "ALLOCATIONS", "NEEDS_DATA"]


@dataclass(frozen=True)
class MethodSpec:
    """What one compression method needs and does: its line in :data:`METHOD_SPECS`.

    Attributes
    ----------
    needs_data : bool
        Data-aware: needs calibration batches (or precomputed statistics).
    plans_sizes : bool
        Plans every layer's size itself from ``ratio``; a fixed ``max_bond`` is refused.
    prunes : bool
        Width-prunes every block (MLP channels and attention heads), so ``layers`` is refused.
    search : bool
        Plans the layers' forms and sizes by the per-layer search over factorisation families
        (:mod:`tnkit.compress.numerics.search`), sequentially calibrated by default.
    curve_allocation : bool
        A single-family method whose default allocation is ``"curve"`` (else ``"uniform"``).
    input_scale : bool
        Each compressed layer also stores an input scale (``in`` numbers), counted in its size.
    """

    needs_data: bool = False
    plans_sizes: bool = False
    prunes: bool = False
    search: bool = False
    curve_allocation: bool = False
    input_scale: bool = False


#: Every compression method by name. A new single-family method is one line here plus its
#: layer builder and size curve (``_LAYER_BUILDERS``, ``_SIZE_CURVES``); a method that is a
#: recipe of its own (``auto``, ``prune``) also has its runner in ``_RECIPE_RUNNERS``.
METHOD_SPECS: dict[str, MethodSpec] = {
    "auto": MethodSpec(needs_data=True, plans_sizes=True, prunes=True),
    "search": MethodSpec(needs_data=True, plans_sizes=True, search=True),
    "svd": MethodSpec(),
    "asvd": MethodSpec(needs_data=True),
    "whiten": MethodSpec(needs_data=True),
    "mpo": MethodSpec(),
    "mpo-aware": MethodSpec(needs_data=True, curve_allocation=True, input_scale=True),
    "mpo-whiten": MethodSpec(needs_data=True, curve_allocation=True, input_scale=True),
    "prune": MethodSpec(needs_data=True, plans_sizes=True, prunes=True),
}
METHODS = tuple(METHOD_SPECS)
#: the default of :func:`compress_model` and of ``tnkit compress``: width pruning followed by the
#: factorisation search, the split between them chosen on held-out calibration loss
#: (:mod:`tnkit.compress.recipes.recipe`); on SmolLM2-135M neither pruning alone nor the search alone is best
#: at every budget (docs/compress.md)
DEFAULT_METHOD = "auto"
ALLOCATIONS = ("uniform", "curve")
NEEDS_DATA = tuple(name for name, spec in METHOD_SPECS.items() if spec.needs_data)
