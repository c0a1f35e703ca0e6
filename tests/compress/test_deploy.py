"""What a user gets out of a compressed model: memory, a format that never loads silently wrong,
``export --dense``, saves as a unit, and a loader that refuses bad files clearly."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch

import tnkit.compress as tc
from tnkit.compress.recipes.evaluate import model_bytes
from tnkit.compress.storage.models import tiny_tokenizer
from tnkit.errors import SchemaError
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)


def _compressed(kind="mixed", seed=0):
    model = tc.tiny_llama(seed=seed)
    layers = list(tc.find_layers(model).items())
    if kind in ("mixed", "mpo"):
        tc.compress_model(model, method="mpo", ratio=0.5, layers=dict(layers[::2]), progress=False)
    if kind in ("mixed", "lowrank"):
        tc.compress_model(model, method="svd", ratio=0.5, layers=dict(layers[1::2]), progress=False)
    return model


def _dense_held(layer):
    """Tensors of the dense weight's size held by a factorised layer, outside its factors."""
    factors = {id(p) for p in layer.parameters()} | {id(b) for b in layer.buffers()}
    size = layer.out_features * layer.in_features
    found = [v for v in vars(layer).values() if torch.is_tensor(v) and v.numel() >= size and id(v) not in factors]
    cache = getattr(layer, "_dense_cache", None)
    return found + ([cache[1]] if cache is not None else [])


# ---------------------------------------------------------------------- memory


@pytest.mark.parametrize("kind", ["mpo", "lowrank"])
def test_loaded_factorised_model_is_smaller_and_holds_no_dense_weight(tmp_path, kind):
    original = tc.tiny_llama(seed=0)
    model = _compressed(kind)
    loaded = tc.load_compressed(tc.save_compressed(model, tmp_path / "m"))
    kept = tc.count_params(loaded) / tc.count_params(original)
    assert kept < 0.95
    assert model_bytes(loaded) < model_bytes(original)
    assert model_bytes(loaded) <= (kept + 0.05) * model_bytes(original)
    x = torch.arange(12)[None]
    with torch.no_grad():
        loaded.generate(x, max_new_tokens=4, do_sample=False, pad_token_id=0)
        loaded(torch.arange(200)[None] % 256)  # a long input: the dense form may be chosen, never kept
    factorised = [m for m in loaded.modules() if isinstance(m, (tc.MPOLinear, tc.LowRankLinear))]
    assert factorised and all(not _dense_held(m) for m in factorised)
    assert all(not p.is_meta for p in loaded.parameters())


def test_dense_cache_is_opt_in_and_can_be_released():
    layer = tc.MPOLinear.from_linear(torch.nn.Linear(24, 16), n_cores=2, max_bond=2, forward_mode="dense")
    x = torch.randn(3, 24)
    with torch.no_grad():
        y = layer(x)
        assert layer._dense_cache is None
        model = torch.nn.Sequential(layer)
        assert tc.cache_dense_weights(model) == 1
        torch.testing.assert_close(layer(x), y)
        assert layer._dense_cache is not None and layer._dense_cache[1].shape == (16, 24)
        tc.cache_dense_weights(model, False)
        assert layer._dense_cache is None


def test_auto_forward_uses_the_factors_at_batch_one_when_cheaper():
    # a thin MPO (bond 1) is cheaper factored at every batch; a fat one only while W is not rebuilt
    thin = tc.MPOLinear.from_linear(torch.nn.Linear(64, 64), n_cores=2, max_bond=1)
    assert thin.choose_mode(1, cached=False) == "factored"
    fat = tc.MPOLinear.from_linear(torch.nn.Linear(64, 64), n_cores=2, max_bond=64)
    factored, dense = fat._flops(1)
    assert factored > dense  # why a fat MPO is slower than the dense matmul at batch 1
    assert fat.choose_mode(1, cached=False) == "factored"  # rebuilding W costs more than the factored pass
    assert fat.choose_mode(1, cached=True) == "dense"


# ---------------------------------------------------------------------- format and export


def test_plain_transformers_refuses_a_factorised_directory(tmp_path):
    from transformers import AutoModelForCausalLM

    out = tc.save_compressed(_compressed(), tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "tnkit-compressed" and config["base_config"]["model_type"] == "llama"
    with pytest.raises(ValueError, match="tnkit-compressed"):
        AutoModelForCausalLM.from_pretrained(out)
    assert "load_compressed" in (out / "README.md").read_text()


def test_a_directory_without_factorised_layers_is_a_plain_transformers_model(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tc.tiny_llama(seed=2)
    out = tc.save_compressed(model, tmp_path / "plain")
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    x = torch.arange(30)[None]
    with torch.no_grad():
        torch.testing.assert_close(plain(x).logits, model(x).logits, rtol=0, atol=0)
        torch.testing.assert_close(tc.load_compressed(out)(x).logits, model(x).logits, rtol=0, atol=0)


@pytest.mark.parametrize("make", [tc.tiny_llama, tc.tiny_gpt2])
def test_export_dense_gives_a_transformers_model_with_the_same_logits(tmp_path, make):
    from transformers import AutoModelForCausalLM

    from tnkit.cli import main

    model = make(seed=1)
    tc.compress_model(model, method="mpo", ratio=0.5, progress=False)
    src = tc.save_compressed(model, tmp_path / "c", tokenizer=tiny_tokenizer())
    assert main(["export", "--dense", str(src), str(tmp_path / "e")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "e").eval()
    x = torch.arange(40)[None]
    with torch.no_grad():
        torch.testing.assert_close(exported(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, tc.MPOLinear) for m in exported.modules())
    assert (tmp_path / "e" / "tokenizer.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert main(["export", "--dense", str(src), str(src)]) == 1  # refused, one line, nothing overwritten
    with pytest.raises(SystemExit):  # --dense is required: the one export format, named
        main(["export", str(src), str(tmp_path / "f")])


def test_export_refuses_an_output_that_is_a_file(tmp_path):
    src = tc.save_compressed(_compressed(), tmp_path / "c")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        tc.export_dense(src, tmp_path / "file")


# ---------------------------------------------------------------------- saves as a unit


def test_failed_save_keeps_the_previous_model_and_leaves_nothing(tmp_path):
    first = _compressed(seed=0)
    out = tc.save_compressed(first, tmp_path / "m")
    (out / "heal_checkpoint").mkdir()
    (out / "heal_checkpoint" / "heal_state.json").write_text("{}")

    class Exploding:
        def save_pretrained(self, path):
            (tmp_path / "seen").write_text(str(path))
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        tc.save_compressed(_compressed(seed=1), out, tokenizer=Exploding())  # dies after the weights were written
    assert "tnkit-partial" in (tmp_path / "seen").read_text()  # written beside, never into the target
    x = torch.arange(20)[None]
    with torch.no_grad():
        torch.testing.assert_close(tc.load_compressed(out)(x).logits, first(x).logits, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "seen"]
    second = _compressed(seed=1)
    tc.save_compressed(second, out)  # a later save keeps what it does not write (a checkpoint, a report)
    assert (out / "heal_checkpoint" / "heal_state.json").is_file()
    with torch.no_grad():
        torch.testing.assert_close(tc.load_compressed(out)(x).logits, second(x).logits, rtol=0, atol=0)


def test_next_save_cleans_up_after_a_killed_one(tmp_path):
    model = _compressed()
    out = tc.save_compressed(model, tmp_path / "m")
    # killed while writing: a partial copy; killed between the two renames: the target gone, the old one aside
    (tmp_path / ".m.tnkit-partial-abc").mkdir()
    (tmp_path / ".m.tnkit-partial-abc" / "model.safetensors").write_bytes(b"half")
    os.rename(out, tmp_path / ".m.tnkit-previous-xyz")
    with pytest.raises(FileNotFoundError, match="tnkit-previous-xyz"):
        tc.load_compressed(out)  # the error says where the previous model is
    tc.save_compressed(model, tmp_path / "other")  # another target's save leaves these alone
    assert (tmp_path / ".m.tnkit-previous-xyz").is_dir()
    tc.save_compressed(model, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "other"]
    tc.load_compressed(out)


def test_output_checked_before_work(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        tc.save_compressed(tc.tiny_llama(), tmp_path / "f")
    with pytest.raises(NotADirectoryError):
        tc.save_compressed(tc.tiny_llama(), tmp_path / "f" / "sub")


# ---------------------------------------------------------------------- loader refuses bad files


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return tc.save_compressed(_compressed(), tmp_path_factory.mktemp("saved") / "m")


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _rewrite_tensor(path, name, fn):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    tensors[name] = fn(tensors[name])
    save_file(tensors, str(path))


def test_loader_refuses_nan_weights(saved, tmp_path):
    d = _copy(saved, tmp_path / "d")
    name = "model.layers.0.self_attn.k_proj.v"

    def poison(t):
        t = t.clone()
        t.view(-1)[3] = float("nan")
        return t

    _rewrite_tensor(d / "model.safetensors", name, poison)
    with pytest.raises(SchemaError, match="NaN or infinite") as err:
        tc.load_compressed(d)
    assert str(d) in str(err.value) and name in str(err.value)


def test_loader_refuses_a_device_file_without_reading_it(saved, tmp_path):
    d = _copy(saved, tmp_path / "d")
    (d / "model.safetensors").unlink()
    os.symlink("/dev/zero", d / "model.safetensors")
    with pytest.raises(SchemaError, match="not a regular file"):
        tc.load_compressed(d)
    (d / "tnkit_layers.json").unlink()
    os.symlink("/dev/zero", d / "tnkit_layers.json")
    with pytest.raises(SchemaError, match="not a regular file"):
        tc.load_compressed(d)


@pytest.mark.parametrize("payload", [
    b"\xff" * 8 + b"{}",                                  # header size beyond the file
    struct.pack("<Q", 2) + b"[]",                         # header not a table
    struct.pack("<Q", 2) + b"{}" + b"\x00" * 16,          # data the header does not describe
])
def test_loader_refuses_corrupt_safetensors(saved, tmp_path, payload):
    d = _copy(saved, tmp_path / "d")
    (d / "model.safetensors").write_bytes(payload)
    with pytest.raises(SchemaError, match="corrupt"):
        tc.load_compressed(d)


def test_loader_refuses_truncated_weights(saved, tmp_path):
    d = _copy(saved, tmp_path / "d")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(SchemaError, match="corrupt"):
        tc.load_compressed(d)


@pytest.mark.parametrize("edit, match", [
    (lambda m: [], "not a tnkit compressed-model file"),
    (lambda m: {**m, "schema": 1.5}, "not a tnkit compressed-model file"),
    (lambda m: {**m, "layers": {"model.layers.0.mlp.up_proj": 5}}, "unknown type"),
    (lambda m: {**m, "layers": {"model.layers.0.mlp.up_proj": {"type": "lowrank"}}}, "bad spec"),
    (lambda m: {**m, "layers": {"model.nowhere": {"type": "lowrank", "out": 4, "in": 4, "rank": 2, "bias": False}}},
     "does not fit"),
])
def test_loader_answers_bad_layer_files_with_schema_error(saved, tmp_path, edit, match):
    d = _copy(saved, tmp_path / "d")
    meta = json.loads((d / "tnkit_layers.json").read_text())
    (d / "tnkit_layers.json").write_text(json.dumps(edit(meta)))
    with pytest.raises(SchemaError, match=match):
        tc.load_compressed(d)


def test_loader_refuses_shapes_that_do_not_match_the_config(saved, tmp_path):
    d = _copy(saved, tmp_path / "d")
    meta = json.loads((d / "tnkit_layers.json").read_text())
    name, spec = next((n, s) for n, s in meta["layers"].items() if s["type"] == "lowrank")
    meta["layers"][name] = {**spec, "rank": spec["rank"] + 1}  # the file holds the old rank
    (d / "tnkit_layers.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="wrong shapes"):
        tc.load_compressed(d)
    meta["layers"][name] = {**spec, "out": spec["out"] * 2}  # the architecture does not have that layer size
    (d / "tnkit_layers.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="features"):
        tc.load_compressed(d)
    config = json.loads((d / "config.json").read_text())
    config["base_config"]["hidden_size"] = 64  # the weights no longer fit the architecture
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(SchemaError):
        tc.load_compressed(d)


def test_loader_refuses_a_config_without_its_base(saved, tmp_path):
    d = _copy(saved, tmp_path / "d")
    (d / "config.json").write_text(json.dumps({"model_type": "tnkit-compressed"}))
    with pytest.raises(SchemaError, match="base_config"):
        tc.load_compressed(d)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))  # a plain config for factorised layers
    with pytest.raises(SchemaError, match="tnkit-compressed"):
        tc.load_compressed(d)


def test_schema_one_directories_still_load(saved, tmp_path):
    d = _copy(saved, tmp_path / "d")
    config = json.loads((d / "config.json").read_text())["base_config"]
    (d / "config.json").write_text(json.dumps(config))
    meta = json.loads((d / "tnkit_layers.json").read_text())
    (d / "tnkit_layers.json").write_text(json.dumps({**meta, "schema": 1}))
    x = torch.arange(10)[None]
    with torch.no_grad():
        torch.testing.assert_close(tc.load_compressed(d)(x).logits, tc.load_compressed(saved)(x).logits)


@pytest.mark.parametrize("mmap", [False, True])
def test_read_safetensors_round_trip(tmp_path, mmap):
    from safetensors.torch import save_file

    from tnkit.compress.storage.serialize import read_safetensors

    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).to(torch.bfloat16),
               "d": torch.zeros(0, 3), "e": torch.tensor(1.5, dtype=torch.float64),
               "f": torch.randn(70_000)}  # larger than a page and than a checking chunk
    save_file(tensors, str(tmp_path / "t.safetensors"))
    back = read_safetensors(tmp_path / "t.safetensors", mmap=mmap)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)
    np.testing.assert_equal(back["b"].numpy(), np.arange(5))


def _handmade_safetensors(path, entries, data):
    """A safetensors file with the given header entries and data bytes (header padded to 8 bytes)."""
    head = json.dumps(entries).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def test_mapped_read_copies_a_tensor_not_aligned_for_its_dtype(tmp_path):
    from tnkit.compress.storage.serialize import read_safetensors

    floats = np.array([1.5, -2.0], dtype="<f4")
    entries = {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}}
    _handmade_safetensors(tmp_path / "t.safetensors", entries, b"\x07" + floats.tobytes())
    back = read_safetensors(tmp_path / "t.safetensors", mmap=True)
    assert back["a"].tolist() == [7] and back["b"].tolist() == [1.5, -2.0]
    _handmade_safetensors(tmp_path / "n.safetensors", entries, b"\x07" + np.array([1.0, np.nan], "<f4").tobytes())
    with pytest.raises(SchemaError, match="NaN"):
        read_safetensors(tmp_path / "n.safetensors", mmap=True)


def _mapped_files(t):
    """Paths of the file mappings holding the data of ``t`` (Linux)."""
    ptr, found = t.data_ptr(), []
    with open("/proc/self/maps") as fh:
        for line in fh:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= ptr < hi and len(fields) > 5:
                found.append(fields[5])
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_loaded_weights_are_mapped_from_the_file_and_writes_stay_in_the_process(tmp_path):
    from tnkit.compress.storage.serialize import WEIGHTS_FILE, read_safetensors

    d = tc.save_compressed(_compressed(), tmp_path / "m")
    stored = read_safetensors(d / WEIGHTS_FILE)
    loaded = tc.load_compressed(d)
    big = max(loaded.parameters(), key=lambda p: p.numel())
    assert str((d / WEIGHTS_FILE).resolve()) in _mapped_files(big)  # a view of the file, read on use
    x = torch.arange(12)[None]
    before = loaded(x).logits.detach()
    opt = torch.optim.SGD(loaded.parameters(), lr=0.1)
    loaded(x).logits.square().mean().backward()
    opt.step()  # writing the weights copies their pages; the file stays as saved
    for k, v in read_safetensors(d / WEIGHTS_FILE).items():
        assert torch.equal(v, stored[k])
    with torch.no_grad():
        torch.testing.assert_close(tc.load_compressed(d)(x).logits, before)
        assert not torch.allclose(loaded(x).logits, before)
    tc.save_compressed(loaded, d)  # saving over the directory it was mapped from
    with torch.no_grad():
        torch.testing.assert_close(tc.load_compressed(d)(x).logits, loaded(x).logits)


def _rss_file_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssFile"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_mapped_read_leaves_the_file_in_the_page_cache_not_in_the_process(tmp_path):
    """Checking a mapped file for NaN reads every page; none may stay resident in the process
    (the kernel's fault-around mapped about a quarter of a file of many tensors back in before
    the whole mapping was released at the end)."""
    from safetensors.torch import save_file

    from tnkit.compress.storage.serialize import read_safetensors

    g = torch.Generator().manual_seed(0)
    weights = {f"t{i}": torch.randn(500 + 37 * i, 300, generator=g) for i in range(40)}
    save_file(weights, tmp_path / "w.safetensors")
    size_kib = os.path.getsize(tmp_path / "w.safetensors") / 1024
    assert torch.isfinite(torch.ones(4)).all()  # the check's kernels, loaded before the baseline
    before = _rss_file_kib()
    tensors = read_safetensors(tmp_path / "w.safetensors", mmap=True)
    assert len(tensors) == 40
    assert _rss_file_kib() - before < 0.05 * size_kib


def test_save_errors_name_the_target_not_the_temporary_directory(tmp_path, monkeypatch):
    import errno

    import safetensors.torch

    def full(tensors, path, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError, match="No space left") as err:
        tc.save_compressed(_compressed(), tmp_path / "m")
    assert str(tmp_path / "m") in str(err.value) and "tnkit-partial" not in str(err.value)
    assert not list(tmp_path.iterdir())
