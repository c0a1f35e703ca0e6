"""LLM compression: transformer weights as matrix product operators (CompactifAI-style).

Importing this package imports nothing heavy: each name below is loaded from its module
(torch and transformers with it) on first use. The pieces:

* :class:`MPOLinear` and :class:`LowRankLinear`: compressed drop-in linear layers;
* :func:`compress_model`: choose layers, calibrate, factorise, replace, in place (default:
  the per-layer search of :mod:`tnkit.compress.numerics.search`);
* :func:`layer_options`, :func:`search_allocation`: every layer's candidate factorisations
  and one knapsack for the global budget;
* :func:`prune_width`: structured width pruning to a plain, smaller Llama (:func:`width_prunable`
  says whether a model has the layout it needs);
* :func:`collect_activation_stats`: input statistics for data-aware truncation;
* :func:`whitened_mpo_factorize`: MPO truncation for the output error on calibration inputs;
* :func:`allocate_budget`: per-layer sizes for a global parameter budget;
* :func:`entanglement_profile`, :func:`sensitivity_profile`: which layers tolerate compression;
* :func:`run_compress` (:class:`CompressSettings`, :class:`HealSettings`): the whole
  ``tnkit compress`` recipe (load, compress, heal, evaluate, save) as one call;
* :func:`heal`: an AdamW fine-tune (or distillation) with resumable checkpoints;
* :func:`distillation_stream`: unbounded healing data written by the original model;
* :func:`export_dense`: a plain Hugging Face copy of a compressed model;
* :func:`perplexity`, :func:`evaluate_model`: sliding-window perplexity, size, speed;
* :func:`save_compressed`, :func:`load_compressed`: safetensors + JSON, no pickle, in the
  precision asked for (:func:`stored_dtype` of the input, :func:`round_weights`);
* :func:`load_model`, :func:`tiny_llama`, :func:`tiny_gpt2`: models from disk or for tests.

The modules live in subpackages, one per concern, each importing only from those listed
before it (``docs/architecture.md`` has the map):

* ``numerics``: numpy factorisations, size curves, the per-layer search (no torch);
* ``layers``: the compressed linear layers and finding or swapping layers in a model;
* ``calibrate``: activation statistics and block-by-block (sequential) compression;
* ``storage``: saving, loading and exporting models;
* ``tuning``: healing, distillation data, text corpora;
* ``recipes``: :func:`compress_model`, the methods' recipes, pruning, evaluation,
  sensitivity profiles;
* ``scale``: planning, streaming and distributed compression of large models;
* ``front``: the ``tnkit compress``, ``heal``, ``profile``, ``eval`` and ``export`` commands.

The former flat module paths (``tnkit.compress.lowrank``, ``tnkit.compress.pipeline``,
``tnkit.compress.profile``, ...) still import, with a :class:`FutureWarning`, as the very
module at its new path (:data:`MOVED_MODULES`).

See ``docs/compress.md`` for the guide.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core.moved import alias_moved_modules

#: Former module path (before the split into subpackages) -> its path now. Importing a former
#: path warns (FutureWarning) and gives the module at its new path (:mod:`tnkit.core.moved`).
MOVED_MODULES: dict[str, str] = {
    f"{__name__}.{old}": f"{__name__}.{new}"
    for old, new in {
        "allocate": "numerics.allocate",
        "factorize": "numerics.factorize",
        "search": "numerics.search",
        "whitened_mpo": "numerics.whitened_mpo",
        "lowrank": "layers.lowrank",
        "mpo_linear": "layers.mpo_linear",
        "surgery": "layers.surgery",
        "calibration": "calibrate.calibration",
        "sequential": "calibrate.sequential",
        "export": "storage.export",
        "models": "storage.models",
        "serialize": "storage.serialize",
        "corpus": "tuning.corpus",
        "distill": "tuning.distill",
        "healing": "tuning.healing",
        "evaluate": "recipes.evaluate",
        "pipeline": "recipes.pipeline",
        "profile": "recipes.sensitivity",
        "prune": "recipes.prune",
        "recipe": "recipes.recipe",
        "distributed": "scale.distributed",
        "plan": "scale.plan",
        "streaming": "scale.streaming",
        "cli": "front.cli",
        "cli_distributed": "front.cli_distributed",
        "cli_heal": "front.cli_heal",
    }.items()
}


alias_moved_modules(MOVED_MODULES)

#: Public name -> submodule that defines it. Importing ``tnkit.compress`` imports none of
#: them (so neither torch nor transformers); the first access to a name imports its module.
#: No public name may equal a submodule's name: importing that submodule would bind the
#: module over the name (hence ``heal`` lives in ``healing``).
_SUBMODULE_OF: dict[str, str] = {
    **dict.fromkeys(('SizeCurve', 'allocate_budget', 'lowrank_curve', 'mpo_curve'), 'numerics.allocate'),
    **dict.fromkeys((
        'MixedStream', 'SelfGenerated', 'TextWindows', 'TokenStream', 'distillation_stream', 'self_generate',
    ), 'tuning.distill'),
    **dict.fromkeys(('export_dense',), 'storage.export'),
    **dict.fromkeys(('ActivationStats', 'channel_scale', 'collect_activation_stats'), 'calibrate.calibration'),
    **dict.fromkeys((
        'heal_eval_split', 'read_text', 'split_articles', 'token_batches', 'tokenize',
    ), 'tuning.corpus'),
    **dict.fromkeys((
        'EvalReport', 'evaluate_model', 'format_reports', 'generation_speed', 'model_bytes',
        'perplexity',
    ), 'recipes.evaluate'),
    **dict.fromkeys((
        'MPOFactors', 'bond_for_params', 'max_bonds', 'mpo_factorize', 'weight_entanglement',
    ), 'numerics.factorize'),
    **dict.fromkeys(('HEAL_LOSSES', 'HealResult', 'heal'), 'tuning.healing'),
    **dict.fromkeys(('LowRankLinear', 'lowrank_factors', 'ridge_covariance'), 'layers.lowrank'),
    **dict.fromkeys(('load_model', 'stored_dtype', 'smollm2_gguf_path', 'tiny_gpt2', 'tiny_llama'), 'storage.models'),
    **dict.fromkeys(('MPOLinear', 'cache_dense_weights'), 'layers.mpo_linear'),
    **dict.fromkeys((
        'ALLOCATIONS', 'AutoCandidate', 'auto_candidates', 'DEFAULT_FAMILIES', 'DEFAULT_METHOD', 'DEFAULT_RIDGE', 'DEFAULT_SEQUENTIAL', 'METHODS', 'METHOD_SPECS', 'MethodSpec',
        'CompressionResult', 'compress_model', 'count_params',
    ), 'recipes.pipeline'),
    **dict.fromkeys(('PruneResult', 'block_linear_params', 'prune_plan', 'prune_width', 'pruned_stats',
                    'width_prunable', 'min_prune_fraction'), 'recipes.prune'),
    **dict.fromkeys((
        'FAMILIES', 'LayerOptions', 'gradient_weights', 'knapsack', 'layer_options', 'search_allocation',
    ), 'numerics.search'),
    **dict.fromkeys((
        'entanglement_profile', 'entanglement_weights', 'plot_profile', 'sensitive_layers',
        'sensitivity_profile', 'sensitivity_weights',
    ), 'recipes.sensitivity'),
    **dict.fromkeys(('load_compressed', 'save_compressed', 'round_weights'), 'storage.serialize'),
    **dict.fromkeys(('AUTO_SPLITS', 'calibration_batches'), 'recipes.recipe'),
    **dict.fromkeys(('CompressRun', 'CompressSettings', 'HealSettings', 'run_compress', 'run_heal'), 'recipes.run'),
    **dict.fromkeys(('find_layers', 'linear_weight', 'replace_layers'), 'layers.surgery'),
    **dict.fromkeys((
        'WhitenedMPO', 'als_refit', 'kronecker_covariance', 'whitened_error',
        'whitened_mpo_curve', 'whitened_mpo_factorize',
    ), 'numerics.whitened_mpo'),
}

__all__ = [
    "MPOLinear", "LowRankLinear", "lowrank_factors", "MPOFactors", "mpo_factorize", "max_bonds",
    "bond_for_params", "weight_entanglement", "ActivationStats", "collect_activation_stats",
    "channel_scale", "SizeCurve", "mpo_curve", "lowrank_curve", "allocate_budget", "METHODS",
    "ALLOCATIONS", "CompressionResult", "WhitenedMPO", "whitened_mpo_factorize", "als_refit",
    "kronecker_covariance", "whitened_error", "whitened_mpo_curve", "entanglement_weights",
    "sensitive_layers", "ridge_covariance", "DEFAULT_RIDGE", "HEAL_LOSSES", "compress_model", "METHOD_SPECS", "MethodSpec",
    "count_params", "find_layers", "replace_layers", "linear_weight", "entanglement_profile",
    "sensitivity_profile", "sensitivity_weights", "plot_profile", "HealResult", "heal", "perplexity",
    "evaluate_model", "EvalReport", "format_reports", "generation_speed", "model_bytes",
    "save_compressed", "load_compressed", "round_weights", "load_model", "stored_dtype", "smollm2_gguf_path",
    "tiny_llama", "tiny_gpt2",
    "read_text", "split_articles", "heal_eval_split", "tokenize", "token_batches", "DEFAULT_METHOD",
    "DEFAULT_FAMILIES", "DEFAULT_SEQUENTIAL", "FAMILIES", "LayerOptions", "layer_options", "knapsack",
    "search_allocation", "gradient_weights", "PruneResult", "prune_width", "prune_plan", "pruned_stats",
    "block_linear_params", "width_prunable", "min_prune_fraction",
    "cache_dense_weights", "export_dense", "TokenStream", "TextWindows", "SelfGenerated", "MixedStream",
    "distillation_stream", "self_generate", "AutoCandidate", "auto_candidates", "AUTO_SPLITS", "calibration_batches",
    "CompressSettings", "HealSettings", "CompressRun", "run_compress", "run_heal",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its submodule on first access (PEP 562)."""
    module = _SUBMODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
