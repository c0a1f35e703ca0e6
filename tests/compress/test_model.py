"""Model surgery, whole-model compression, save/load, healing and evaluation on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tnkit.compress as tc
from tnkit.compress.layers.surgery import layer_depth, layer_role
from tnkit.errors import OptionError, SchemaError
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)


@pytest.fixture
def llama():
    return tc.tiny_llama(seed=0)


@pytest.fixture
def ids():
    return np.random.default_rng(0).integers(0, 256, 3000)


def test_find_layers_by_role_depth_pattern(llama):
    mlp0 = tc.find_layers(llama, roles=["mlp"], depth=(0, 1))
    assert list(mlp0) == [f"model.layers.0.mlp.{n}" for n in ("gate_proj", "up_proj", "down_proj")]
    qv = tc.find_layers(llama, roles=["q", "v"])
    assert {layer_role(n) for n in qv} == {"q", "v"} and {layer_depth(n) for n in qv} == {0, 1}
    assert list(tc.find_layers(llama, patterns=["*.1.*.o_proj"])) == ["model.layers.1.self_attn.o_proj"]
    assert "model.layers.0.mlp.down_proj" not in tc.find_layers(llama, exclude=["*.down_proj"])
    assert len(tc.find_layers(llama)) == 14  # lm_head and embeddings are never candidates
    with pytest.raises(ValueError, match="matches no linear layer"):
        tc.find_layers(llama, patterns=["*.nonexistent"])
    with pytest.raises(OptionError, match="`roles`"):
        tc.find_layers(llama, roles=["ffn"])


def test_surgery_replaces_exactly_the_chosen_layers(llama, ids):
    before = {n: m for n, m in llama.named_modules()}
    chosen = tc.find_layers(llama, roles=["attention"], depth=(1, 2))
    res = tc.compress_model(llama, method="mpo", max_bond=4, layers=chosen, progress=False)
    after = dict(llama.named_modules())
    for name, m in after.items():
        if name in chosen:
            assert isinstance(m, tc.MPOLinear) and m.bond_dims == (4,)
        elif name in before and not name.startswith(tuple(chosen)):
            assert m is before[name]
    assert [r.name for r in res.layers] == list(chosen)
    assert res.params_after < res.params_before


def test_conv1d_gpt2_exact_at_full_size(ids):
    gpt = tc.tiny_gpt2(seed=1)
    x = torch.as_tensor(ids[:40])[None]
    ref = gpt(x).logits
    chosen = tc.find_layers(gpt)
    assert len(chosen) == 8 and all(type(m).__name__ == "Conv1D" for m in chosen.values())
    tc.replace_layers(gpt, {n: tc.MPOLinear.from_linear(m, n_cores=2) for n, m in chosen.items()})  # full bond
    assert all(isinstance(m, tc.MPOLinear) for n, m in gpt.named_modules() if n in chosen)
    torch.testing.assert_close(gpt(x).logits, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", tc.METHODS)
def test_every_method_meets_the_budget(llama, ids, method):
    calib = tc.token_batches(ids, seq_len=64, batch_size=4, n_batches=2)
    selected = sum(tc.linear_weight(m).numel() for m in tc.find_layers(llama).values())
    res = tc.compress_model(llama, method=method, ratio=0.5, calibration=calib, progress=False)
    removed = res.params_before - res.params_after
    assert removed >= 0.45 * selected
    x = torch.as_tensor(ids[:32])[None]
    assert torch.isfinite(llama(x).logits).all()


def test_data_aware_mpo_beats_plain_mpo_on_outputs(ids):
    base = tc.tiny_llama(seed=3)
    calib = tc.token_batches(ids, seq_len=64, batch_size=4, n_batches=2)
    stats = tc.collect_activation_stats(base, tc.find_layers(base), calib)
    errs = {}
    for method in ("mpo", "mpo-aware"):
        m = tc.tiny_llama(seed=3)
        res = tc.compress_model(m, method=method, ratio=0.4, stats=stats, progress=False)
        mods, orig = dict(m.named_modules()), dict(base.named_modules())
        total = 0.0
        for r in res.layers:
            w = tc.linear_weight(orig[r.name]).detach().double().numpy()
            e = w - tc.linear_weight(mods[r.name]).detach().double().numpy()
            c = stats[r.name].covariance
            total += np.einsum("ij,jk,ik->", e, c, e) / np.einsum("ij,jk,ik->", w, c, w)
        errs[method] = total
    assert errs["mpo-aware"] < errs["mpo"]


def test_compress_argument_errors(llama):
    with pytest.raises(ValueError, match="exactly one of `ratio` and `max_bond`"):
        tc.compress_model(llama, method="mpo")
    with pytest.raises(ValueError, match="data-aware"):
        tc.compress_model(llama, method="asvd", ratio=0.5)
    with pytest.raises(ValueError, match="`max_bond` must be at most"):
        tc.compress_model(llama, method="mpo", max_bond=100_000, progress=False)
    with pytest.raises(OptionError, match="`method`"):
        tc.compress_model(llama, method="tucker", ratio=0.5)


def _mpo_and_lowrank(llama, ids):
    """``llama`` with its first seven block layers as data-aware MPOs and the rest low-rank, in place."""
    calib = tc.token_batches(ids, seq_len=64, batch_size=2, n_batches=1)
    layers = tc.find_layers(llama)
    names = list(layers)
    tc.compress_model(llama, method="mpo-aware", ratio=0.5, layers={n: layers[n] for n in names[:7]},
                      calibration=calib, progress=False)
    tc.compress_model(llama, method="svd", ratio=0.5, layers={n: layers[n] for n in names[7:]}, progress=False)
    return llama


def test_save_load_identical_logits_and_generate(llama, ids, tmp_path):
    _mpo_and_lowrank(llama, ids)
    out = tc.save_compressed(llama, tmp_path / "m")
    loaded = tc.load_compressed(out)
    x = torch.as_tensor(ids[:50])[None]
    assert torch.equal(loaded(x).logits, llama(x).logits)
    gen = loaded.generate(x[:, :5], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(gen, llama.generate(x[:, :5], max_new_tokens=4, do_sample=False, pad_token_id=0))
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.pkl"))
    model2, _ = tc.load_model(out, tokenizer=False)  # load_model recognises the directory
    assert torch.equal(model2(x).logits, llama(x).logits)


def test_corrupt_and_missing_files(llama, tmp_path):
    out = tc.save_compressed(llama, tmp_path / "m")
    (out / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(SchemaError, match="corrupt"):
        tc.load_compressed(out)
    (out / "tnkit_layers.json").write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        tc.load_compressed(out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tc.load_model(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no config.json"):
        tc.load_model(tmp_path)


def test_perplexity_matches_manual_disjoint_windows(llama, ids):
    x = torch.as_tensor(ids[:200])
    nll, n = 0.0, 0
    for s in range(0, 200, 50):
        chunk = x[s : s + 50][None]
        with torch.no_grad():
            lp = torch.log_softmax(llama(chunk).logits[0, :-1].double(), -1)
        nll -= float(lp.gather(1, chunk[0, 1:, None]).sum())
        n += chunk.shape[1] - 1
    assert tc.perplexity(llama, x, window=50, stride=50) == pytest.approx(math.exp(nll / n), rel=1e-5)
    # overlapping windows score each token once: compare with a full-context pass when window covers all
    full = tc.perplexity(llama, x, window=256, stride=256)
    assert tc.perplexity(llama, x, window=256, stride=64) == pytest.approx(full, rel=1e-5)
    with pytest.raises(ValueError, match="`stride` must be at most"):
        tc.perplexity(llama, x, window=8, stride=9)


def test_heal_lowers_loss_and_resumes(llama, ids, tmp_path):
    tc.compress_model(llama, method="mpo", ratio=0.4, progress=False)
    text_ids = np.tile(np.arange(64), 60)  # a learnable periodic sequence
    first = tc.heal(llama, text_ids, max_tokens=6 * 2 * 64, seq_len=64, batch_size=2, lr=3e-3,
                    checkpoint_dir=tmp_path, checkpoint_every=3, progress=False)
    assert first.steps == 6 and first.resumed_from_step == 0
    second = tc.heal(llama, text_ids, max_tokens=10 * 2 * 64, seq_len=64, batch_size=2, lr=3e-3,
                     checkpoint_dir=tmp_path, progress=False)
    assert second.resumed_from_step == 6 and second.steps == 10
    assert np.mean(second.losses[-3:]) < np.mean(second.losses[:3])


def test_heal_compressed_only_trains_the_compressed_layers(llama):
    tc.compress_model(llama, method="svd", ratio=0.5, layers=tc.find_layers(llama, roles=["mlp"]), progress=False)
    frozen = {n: p.detach().clone() for n, p in llama.named_parameters() if ".mlp." not in n}
    text_ids = np.tile(np.arange(32), 40)
    tc.heal(llama, text_ids, max_tokens=3 * 2 * 32, seq_len=32, batch_size=2, lr=1e-2, trainable="compressed",
            progress=False)
    for n, p in llama.named_parameters():
        if n in frozen:
            torch.testing.assert_close(p, frozen[n], rtol=0, atol=0)
        assert p.requires_grad == (".mlp." in n)
    with pytest.raises(ValueError, match="`trainable`"):
        tc.heal(llama, text_ids, max_tokens=64, seq_len=32, batch_size=2, trainable="some")
    with pytest.raises(ValueError, match="no compressed layer"):
        tc.heal(tc.tiny_llama(), text_ids, max_tokens=64, seq_len=32, batch_size=2, trainable="compressed")


def test_kl_loss_matches_a_dense_reference_and_vanishes_for_the_teacher(llama):
    import copy

    from tnkit.compress.tuning.healing import _step_loss

    teacher = copy.deepcopy(llama)
    batch = torch.as_tensor(np.random.default_rng(1).integers(0, 256, (2, 9)))
    assert float(_step_loss(llama, batch, "kl", teacher).detach()) == pytest.approx(0.0, abs=1e-6)
    tc.compress_model(llama, method="svd", ratio=0.3, progress=False)
    with torch.no_grad():
        p = torch.softmax(teacher(input_ids=batch[:, :-1]).logits.double(), -1).numpy()
        q = torch.softmax(llama(input_ids=batch[:, :-1]).logits.double(), -1).numpy()
    reference = float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))  # mean over the 2 x 8 positions
    assert reference > 1e-4
    assert float(_step_loss(llama, batch, "kl", teacher).detach()) == pytest.approx(reference, rel=1e-4)


def test_heal_by_distillation_lowers_the_kl_and_leaves_the_teacher_alone(llama, tmp_path):
    import copy

    teacher = copy.deepcopy(llama)
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    tc.compress_model(llama, method="svd", ratio=0.3, progress=False)
    text_ids = np.random.default_rng(2).integers(0, 256, 3000)
    probe = torch.as_tensor(np.random.default_rng(3).integers(0, 256, (4, 33)))  # not in the healing text

    def kl_on_probe():
        from tnkit.compress.tuning.healing import _step_loss

        with torch.no_grad():
            return float(_step_loss(llama, probe, "kl", teacher))

    start = kl_on_probe()
    h = tc.heal(llama, text_ids, max_tokens=12 * 2 * 32, seq_len=32, batch_size=2, lr=3e-3, loss="kl",
                teacher=teacher, trainable="compressed", checkpoint_dir=tmp_path, progress=False)
    assert h.loss == "kl" and h.steps == 12 and h.cpu_seconds > 0
    assert kl_on_probe() < 0.75 * start  # measured: about 0.64
    for n, p in teacher.named_parameters():
        torch.testing.assert_close(p, before[n], rtol=0, atol=0)
    with pytest.raises(ValueError, match="loss='kl'"):  # resuming with another loss is refused
        tc.heal(llama, text_ids, max_tokens=14 * 2 * 32, seq_len=32, batch_size=2, loss="lm",
                checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="give `teacher`"):
        tc.heal(llama, text_ids, max_tokens=64, seq_len=32, batch_size=2, loss="kl")
    with pytest.raises(ValueError, match="`loss`"):
        tc.heal(llama, text_ids, max_tokens=64, seq_len=32, batch_size=2, loss="mse", teacher=teacher)


def test_evaluate_report_and_corpus_split(llama, ids, tmp_path):
    rep = tc.evaluate_model(llama, "tiny", ids=ids[:300], window=64, stride=32, speed_tokens=4)
    assert rep.params == tc.count_params(llama) and rep.memory_bytes >= 4 * rep.params  # plus buffers (rotary)
    assert rep.perplexity > 1 and rep.tokens_per_s > 0
    text = " = A = \n a text .\n = = Sub = = \n more .\n = Attalea ( palm ) = \n palm text .\n = B = \n b .\n"
    heal_part, eval_part = tc.heal_eval_split(text)
    assert "palm" not in heal_part and eval_part.startswith(" = Attalea")
    assert len(tc.split_articles(text)) == 3
    with pytest.raises(ValueError, match="Attalea"):
        tc.heal_eval_split("no headings")


def test_profiles_and_plot(llama, ids, tmp_path):
    ent = tc.entanglement_profile(llama)
    assert len(ent) == 14 and all(0 <= r.value <= math.log(48 * 96) for r in ent)
    base, sens = tc.sensitivity_profile(llama, ids[:400], unit="block", ratio=0.3, window=64, stride=64,
                                        progress=False)
    assert [r.unit for r in sens] == ["block 0", "block 1"] and base > 1
    assert all(isinstance(m, torch.nn.Linear) for m in tc.find_layers(llama).values())  # restored
    w = tc.sensitivity_weights(sens, tc.find_layers(llama))
    assert set(w) == set(tc.find_layers(llama)) and min(w.values()) >= 0.05
    png = tc.plot_profile(ent, sens, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_sensitivity_weights_and_protected_layers_follow_the_profile(llama):
    from tnkit.compress.recipes.sensitivity import ProfileRow

    rows = [ProfileRow("block 0", 0, None, 742.0), ProfileRow("block 1", 1, None, 1.2)]
    layers = tc.find_layers(llama)
    w = tc.sensitivity_weights(rows, layers)
    logs = np.log([742.0, 1.2])
    assert w["model.layers.0.mlp.up_proj"] == pytest.approx(logs[0] / logs.mean())
    assert w["model.layers.1.self_attn.q_proj"] == pytest.approx(logs[1] / logs.mean())
    assert tc.sensitivity_weights([ProfileRow("block 0", 0, None, 0.9)], layers)["model.layers.0.mlp.up_proj"] == 0.05
    assert tc.sensitive_layers(rows, layers, threshold=3.0) == [n for n in layers if ".layers.0." in n]


@pytest.mark.parametrize("allocation", ["uniform", "curve"])
def test_protected_layers_stay_dense_within_the_budget(llama, ids, allocation):
    layers = tc.find_layers(llama)
    protect = [n for n in layers if ".layers.0." in n]
    calib = tc.token_batches(ids, seq_len=32, batch_size=2, n_batches=2)
    res = tc.compress_model(llama, method="whiten", ratio=0.7, calibration=calib, allocation=allocation,
                            protect=protect, progress=False)
    forms = {r.name: r.form for r in res.layers}
    assert all(forms[n] == "dense" for n in protect)
    assert all(isinstance(dict(llama.named_modules())[n], torch.nn.Linear) for n in protect)
    assert any(forms[n] == "lowrank" for n in layers if n not in protect)
    original = sum(r.original_params for r in res.layers)
    assert 0.6 * original < sum(r.params for r in res.layers) <= 0.7 * original
    assert res.extra["ridge"] == tc.DEFAULT_RIDGE["whiten"]
    with pytest.raises(ValueError, match="`protect` names layers"):
        tc.compress_model(llama, method="svd", ratio=0.7, protect=["lm_head"], progress=False)
    with pytest.raises(ValueError, match="protected layers alone exceed"):
        tc.compress_model(tc.tiny_llama(seed=0), method="svd", ratio=0.1, allocation="uniform",
                          protect=list(tc.find_layers(tc.tiny_llama(seed=0)))[:7], progress=False)


def test_activation_stats_match_dense_reference(llama, ids):
    layers = tc.find_layers(llama, depth=(1, 2))
    seen: dict[str, list] = {n: [] for n in layers}
    hooks = [m.register_forward_hook(lambda mod, a, o, n=n: seen[n].append(a[0].detach().reshape(-1, a[0].shape[-1])))
             for n, m in layers.items()]
    calib = tc.token_batches(ids, seq_len=32, batch_size=2, n_batches=3)
    with torch.no_grad():
        for b in calib:
            llama(input_ids=b)
    for h in hooks:
        h.remove()
    stats = tc.collect_activation_stats(llama, layers, calib)
    for n in layers:
        x = torch.cat(seen[n]).double().numpy()
        np.testing.assert_allclose(stats[n].covariance, x.T @ x / len(x), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(stats[n].mean_abs, np.abs(x).mean(0), rtol=1e-5)
        assert stats[n].n_tokens == len(x)
    assert stats["model.layers.1.self_attn.q_proj"] is stats["model.layers.1.self_attn.v_proj"]  # shared input


def test_calibration_skips_lm_head_unless_observed(llama, ids):
    from tnkit.compress.calibrate.calibration import _trunk

    assert _trunk(llama, tc.find_layers(llama)) is llama.model
    assert _trunk(llama, {"lm_head": llama.lm_head}) is llama


def test_dequantised_model_copy_loads_identically(llama, ids, tmp_path):
    from tnkit.compress.storage.models import _save_float_model

    _save_float_model(llama, tmp_path)
    loaded, tok = tc.load_model(tmp_path)
    x = torch.as_tensor(ids[:40]).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, llama(input_ids=x).logits)
    assert tok is None and loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tc.load_model(tmp_path / "missing.gguf", cache=tmp_path / "cache")
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="could not load"):
        tc.load_model(tmp_path / "bad.gguf", cache=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/config.json"))  # nothing half-written


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_save_in_a_narrower_precision_loads_as_the_rounded_model(llama, ids, tmp_path, dtype):
    _mpo_and_lowrank(llama, ids)
    plain = tc.save_compressed(llama, tmp_path / "f32")
    narrow = tc.save_compressed(llama, tmp_path / "narrow", dtype=dtype)
    size = (narrow / "model.safetensors").stat().st_size
    assert size < 0.55 * (plain / "model.safetensors").stat().st_size
    loaded = tc.load_compressed(narrow)
    target = getattr(torch, dtype)
    assert {p.dtype for p in loaded.parameters()} == {target}
    assert loaded.config.to_dict().get("dtype", loaded.config.to_dict().get("torch_dtype")) in (dtype, target)
    before = {k: v.clone() for k, v in llama.state_dict().items()}
    tc.round_weights(llama, dtype)
    state = llama.state_dict()
    assert any(not torch.equal(state[k], before[k]) for k in state)  # something was rounded
    for k, v in loaded.state_dict().items():  # the file holds exactly the rounded values
        assert v.dtype == target and torch.equal(v.float(), state[k]), k
    tc.round_weights(llama, dtype)
    assert all(torch.equal(v, s) for v, s in zip(llama.state_dict().values(), state.values(), strict=True))
    x = torch.as_tensor(ids[:50])[None]
    with torch.no_grad():  # MPO and low-rank layers run in the narrow precision
        got, ref = loaded(x).logits.float(), llama(x).logits
    assert torch.isfinite(got).all()
    assert float((got - ref).abs().max()) < 0.05 * float(ref.abs().max())
    gen = loaded.generate(x[:, :5], max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert gen.shape == (1, 8)


def test_save_precision_is_checked(llama, tmp_path):
    with pytest.raises(ValueError, match="`dtype` must be None or one of"):
        tc.save_compressed(llama, tmp_path / "m", dtype="int8")
    with pytest.raises(ValueError, match="`dtype` must be None or one of"):
        tc.round_weights(llama, "float64")
    assert not (tmp_path / "m").exists()


def test_stored_dtype_reads_the_config_without_loading(tmp_path):
    import json

    cases = {"a": {"dtype": "bfloat16"}, "b": {"torch_dtype": "float16"}, "c": {},
             "d": {"model_type": "tnkit-compressed", "base_config": {"dtype": "bfloat16"}}, "e": {"dtype": "int8"}}
    for name, cfg in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    got = {name: tc.stored_dtype(tmp_path / name) for name in cases}
    assert got == {"a": "bfloat16", "b": "float16", "c": "float32", "d": "bfloat16", "e": "float32"}
    assert tc.stored_dtype(tmp_path / "model.gguf") == "float32"
    assert tc.stored_dtype(tmp_path / "a", gguf_file="x.gguf") == "float32"
