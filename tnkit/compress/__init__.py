"""LLM compression: transformer weights as matrix product operators (CompactifAI-style).

Importing this package imports nothing heavy: each name below is loaded from its module
(torch and transformers with it) on first use. The pieces:

* :class:`MPOLinear` and :class:`LowRankLinear`: compressed drop-in linear layers;
* :func:`compress_model`: choose layers, calibrate, factorise, replace, in place (default:
  the per-layer search of :mod:`tnkit.compress.search`);
* :func:`layer_options`, :func:`search_allocation`: every layer's candidate factorisations
  and one knapsack for the global budget;
* :func:`prune_width`: structured width pruning to a plain, smaller Llama;
* :func:`collect_activation_stats`: input statistics for data-aware truncation;
* :func:`whitened_mpo_factorize`: MPO truncation for the output error on calibration inputs;
* :func:`allocate_budget`: per-layer sizes for a global parameter budget;
* :func:`entanglement_profile`, :func:`sensitivity_profile`: which layers tolerate compression;
* :func:`heal`: an AdamW fine-tune (or distillation) with resumable checkpoints;
* :func:`distillation_stream`: unbounded healing data written by the original model;
* :func:`export_dense`: a plain Hugging Face copy of a compressed model;
* :func:`perplexity`, :func:`evaluate_model`: sliding-window perplexity, size, speed;
* :func:`save_compressed`, :func:`load_compressed`: safetensors + JSON, no pickle;
* :func:`load_model`, :func:`tiny_llama`, :func:`tiny_gpt2`: models from disk or for tests.

See ``docs/compress.md`` for the guide.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> submodule that defines it. Importing ``tnkit.compress`` imports none of
#: them (so neither torch nor transformers); the first access to a name imports its module.
#: No public name may equal a submodule's name: importing that submodule would bind the
#: module over the name (hence ``heal`` lives in ``healing``).
_SUBMODULE_OF: dict[str, str] = {
    **dict.fromkeys(('SizeCurve', 'allocate_budget', 'lowrank_curve', 'mpo_curve'), 'allocate'),
    **dict.fromkeys((
        'MixedStream', 'SelfGenerated', 'TextWindows', 'TokenStream', 'distillation_stream', 'self_generate',
    ), 'distill'),
    **dict.fromkeys(('export_dense',), 'export'),
    **dict.fromkeys(('ActivationStats', 'channel_scale', 'collect_activation_stats'), 'calibration'),
    **dict.fromkeys((
        'heal_eval_split', 'read_text', 'split_articles', 'token_batches', 'tokenize',
    ), 'corpus'),
    **dict.fromkeys((
        'EvalReport', 'evaluate_model', 'format_reports', 'generation_speed', 'model_bytes',
        'perplexity',
    ), 'evaluate'),
    **dict.fromkeys((
        'MPOFactors', 'bond_for_params', 'max_bonds', 'mpo_factorize', 'weight_entanglement',
    ), 'factorize'),
    **dict.fromkeys(('HEAL_LOSSES', 'HealResult', 'heal'), 'healing'),
    **dict.fromkeys(('LowRankLinear', 'lowrank_factors', 'ridge_covariance'), 'lowrank'),
    **dict.fromkeys(('load_model', 'smollm2_gguf_path', 'tiny_gpt2', 'tiny_llama'), 'models'),
    **dict.fromkeys(('MPOLinear', 'cache_dense_weights'), 'mpo_linear'),
    **dict.fromkeys((
        'ALLOCATIONS', 'AutoCandidate', 'auto_candidates', 'DEFAULT_FAMILIES', 'DEFAULT_METHOD', 'DEFAULT_RIDGE', 'DEFAULT_SEQUENTIAL', 'METHODS',
        'CompressionResult', 'compress_model', 'count_params',
    ), 'pipeline'),
    **dict.fromkeys(('PruneResult', 'block_linear_params', 'prune_plan', 'prune_width'), 'prune'),
    **dict.fromkeys((
        'FAMILIES', 'LayerOptions', 'gradient_weights', 'knapsack', 'layer_options', 'search_allocation',
    ), 'search'),
    **dict.fromkeys((
        'entanglement_profile', 'entanglement_weights', 'plot_profile', 'sensitive_layers',
        'sensitivity_profile', 'sensitivity_weights',
    ), 'profile'),
    **dict.fromkeys(('load_compressed', 'save_compressed'), 'serialize'),
    **dict.fromkeys(('AUTO_SPLITS', 'calibration_batches'), 'recipe'),
    **dict.fromkeys(('find_layers', 'linear_weight', 'replace_layers'), 'surgery'),
    **dict.fromkeys((
        'WhitenedMPO', 'als_refit', 'kronecker_covariance', 'whitened_error',
        'whitened_mpo_curve', 'whitened_mpo_factorize',
    ), 'whitened_mpo'),
}

__all__ = [
    "MPOLinear", "LowRankLinear", "lowrank_factors", "MPOFactors", "mpo_factorize", "max_bonds",
    "bond_for_params", "weight_entanglement", "ActivationStats", "collect_activation_stats",
    "channel_scale", "SizeCurve", "mpo_curve", "lowrank_curve", "allocate_budget", "METHODS",
    "ALLOCATIONS", "CompressionResult", "WhitenedMPO", "whitened_mpo_factorize", "als_refit",
    "kronecker_covariance", "whitened_error", "whitened_mpo_curve", "entanglement_weights",
    "sensitive_layers", "ridge_covariance", "DEFAULT_RIDGE", "HEAL_LOSSES", "compress_model",
    "count_params", "find_layers", "replace_layers", "linear_weight", "entanglement_profile",
    "sensitivity_profile", "sensitivity_weights", "plot_profile", "HealResult", "heal", "perplexity",
    "evaluate_model", "EvalReport", "format_reports", "generation_speed", "model_bytes",
    "save_compressed", "load_compressed", "load_model", "smollm2_gguf_path", "tiny_llama", "tiny_gpt2",
    "read_text", "split_articles", "heal_eval_split", "tokenize", "token_batches", "DEFAULT_METHOD",
    "DEFAULT_FAMILIES", "DEFAULT_SEQUENTIAL", "FAMILIES", "LayerOptions", "layer_options", "knapsack",
    "search_allocation", "gradient_weights", "PruneResult", "prune_width", "prune_plan", "block_linear_params",
    "cache_dense_weights", "export_dense", "TokenStream", "TextWindows", "SelfGenerated", "MixedStream",
    "distillation_stream", "self_generate", "AutoCandidate", "auto_candidates", "AUTO_SPLITS", "calibration_batches",
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
