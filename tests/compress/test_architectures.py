"""The default recipe on causal LMs other than Llama: random tiny models of each layout.

Width pruning needs Llama-style blocks; the default (method "auto") must fall back to the
factorisation search alone elsewhere, and pruning must be exact on every Llama-style layout
(biases on q/k/v, per-head norms, other activations).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from token_data import random_token_batches
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)

import tnkit.compress as tc
from tnkit.compress.numerics.search import gradient_weights
from tnkit.compress.recipes.prune import prune_width

_SMALL = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4)


def _build(kind: str):
    torch.manual_seed(0)
    gqa = dict(_SMALL, intermediate_size=128, num_key_value_heads=2, max_position_embeddings=256)
    if kind == "gpt2":
        return tc.tiny_gpt2()
    if kind == "mistral":
        return T.MistralForCausalLM(T.MistralConfig(**gqa, sliding_window=None)).eval()
    if kind == "qwen2":  # biases on q, k, v
        return T.Qwen2ForCausalLM(T.Qwen2Config(**gqa)).eval()
    if kind == "qwen3":  # per-head norms of q and k
        return T.Qwen3ForCausalLM(T.Qwen3Config(**gqa, head_dim=16)).eval()
    if kind == "gemma":  # GELU MLP, explicit head_dim
        return T.GemmaForCausalLM(T.GemmaConfig(**gqa, head_dim=16)).eval()
    if kind == "phi3":  # fused qkv_proj and gate_up_proj
        return T.Phi3ForCausalLM(T.Phi3Config(**gqa, pad_token_id=0)).eval()
    if kind == "falcon":  # edits a layer's output in place
        return T.FalconForCausalLM(T.FalconConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4)).eval()
    if kind == "opt":
        return T.OPTForCausalLM(T.OPTConfig(vocab_size=256, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                                            num_attention_heads=4, word_embed_proj_dim=64,
                                            max_position_embeddings=256)).eval()
    raise ValueError(kind)


@pytest.fixture(scope="module")
def calib():
    return random_token_batches(0, 4096, seq_len=32, n_batches=6)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.as_tensor(ids)[None]).logits[0].numpy()


@pytest.mark.parametrize("kind,prunable", [("mistral", True), ("qwen2", True), ("qwen3", True),
                                           ("gemma", True), ("gpt2", False), ("phi3", False),
                                           ("falcon", False), ("opt", False)])
def test_width_prunable_names_the_llama_layouts(kind, prunable):
    assert tc.width_prunable(_build(kind)) is prunable


@pytest.mark.parametrize("kind", ["gpt2", "phi3", "falcon", "opt"])
def test_default_recipe_searches_alone_where_widths_cannot_be_pruned(kind, calib, tmp_path):
    model = _build(kind)
    original = _build(kind)
    res = tc.compress_model(model, ratio=0.7, calibration=calib, progress=False)
    assert res.method == "auto" and res.extra["auto_prunable"] is False
    assert res.extra["auto_prune"] == 1.0 and list(res.extra["auto_losses"]) == [1.0]  # nothing pruned
    kept = sum(r.original_params if r.form == "dense" else r.params for r in res.layers)
    selected = sum(r.original_params for r in res.layers)
    assert kept <= 0.7 * selected * 1.02
    assert any(r.form != "dense" for r in res.layers)
    ids = np.arange(24) % 256
    out = _logits(model, ids)
    assert np.isfinite(out).all()
    assert not np.allclose(out, _logits(original, ids))  # something was compressed
    tc.save_compressed(model, tmp_path / "c")
    np.testing.assert_allclose(_logits(tc.load_compressed(tmp_path / "c"), ids), out, atol=1e-5)


@pytest.mark.parametrize("kind", ["gpt2", "falcon"])
def test_pruning_a_model_without_llama_blocks_is_refused_before_any_work(kind):
    class Untouchable:
        def __iter__(self):
            raise AssertionError("calibration was read")

        def __len__(self):
            return 1

    model = _build(kind)
    for options in (dict(method="prune"), dict(method="search", prune=0.9)):
        with pytest.raises(TypeError, match="Llama-style.*method 'search'"):
            tc.compress_model(model, ratio=0.7, calibration=Untouchable(), progress=False, **options)


@pytest.mark.parametrize("kind", ["mistral", "qwen2", "qwen3", "gemma"])
def test_pruning_equals_masking_the_removed_channels_and_heads(kind, calib):
    """Without the fold, the pruned model is the original with the removed units' output columns zeroed."""
    model = _build(kind)
    masked = _build(kind)
    res = prune_width(model, intermediate_size=80, kv_groups=1, calibration=calib, fold=False)
    assert model.config.num_key_value_heads == 1
    with torch.no_grad():
        for i, (channels, cols) in res.kept.items():
            block = masked.model.layers[i]
            for layer, keep in ((block.mlp.down_proj, channels), (block.self_attn.o_proj, cols)):
                drop = np.setdiff1d(np.arange(layer.weight.shape[1]), keep)
                assert len(drop) > 0
                layer.weight[:, torch.as_tensor(drop)] = 0.0
    ids = np.arange(30) % 256
    np.testing.assert_allclose(_logits(model, ids), _logits(masked, ids), atol=2e-5)


def test_gradient_weights_are_the_output_gradients_energy_also_for_in_place_models(calib):
    model = _build("falcon")
    layers = tc.find_layers(model)
    got = gradient_weights(model, layers, calib[:2])
    # reference: dL/dy of every layer output by autograd on the captured outputs
    sums = dict.fromkeys(layers, 0.0)
    for ids in calib[:2]:
        outs: dict = {}
        hooks = [m.register_forward_hook(lambda mod, i, o, n=n, outs=outs: outs.__setitem__(n, o))
                 for n, m in layers.items()]
        emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                loss = model(inputs_embeds=emb, labels=ids, use_cache=False).loss
        finally:
            for h in hooks:
                h.remove()
        grads = torch.autograd.grad(loss, [outs[n] for n in layers], allow_unused=True)
        for n, g in zip(layers, grads, strict=True):
            g = g.double()
            sums[n] += float((g * g).sum()) / g.shape[-1] / g[..., 0].numel() / len(calib[:2])
    mean = np.mean(list(sums.values()))
    for n in layers:
        assert got[n] == pytest.approx(sums[n] / mean, rel=1e-6)


def test_default_recipe_leaves_out_splits_that_pruning_cannot_reach(calib):
    """One head per block: attention alone is about half the block weights, so pruning cannot reach 30%."""
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=256, hidden_size=58, intermediate_size=97, num_hidden_layers=2,
                        num_attention_heads=1, num_key_value_heads=1)
    model = T.LlamaForCausalLM(cfg).eval()
    floor = tc.min_prune_fraction(model)
    assert floor == pytest.approx((3 * 58 + 4 * 58 * 58) / (3 * 58 * 97 + 4 * 58 * 58))
    with pytest.raises(ValueError, match="too small for width pruning"):
        tc.compress_model(T.LlamaForCausalLM(cfg).eval(), method="prune", ratio=0.3, calibration=calib,
                          progress=False)
    res = tc.compress_model(model, ratio=0.3, calibration=calib, progress=False)
    built = set(res.extra["auto_losses"]) | set(res.extra["auto_predicted"])
    assert built and all(keep >= floor for keep in built)  # every split built is reachable
    assert 0.3 not in built  # pruning alone is not
    assert res.params_after < res.params_before
    with pytest.raises(TypeError, match="Llama-style"):
        tc.min_prune_fraction(_build("gpt2"))
