"""Plans from a configuration alone, out-of-core streaming and the one-process side of tnkit.compress.scale.distributed."""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lowrank_state import assert_same_products  # noqa: E402
from torch_one_thread import one_torch_thread  # noqa: E402,F401

from tnkit.errors import OptionError, SchemaError  # noqa: E402

LLAMA_70B = dict(vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                 num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=8192)


def _calib():
    import tnkit.compress as tc

    ids = np.random.default_rng(0).integers(0, 256, 4096)
    return tc.token_batches(ids, seq_len=32, batch_size=2, n_batches=4, seed=0)


@pytest.mark.distributed
def test_the_70b_llama_plan_runs_from_its_config_in_seconds_under_1_gib(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(**LLAMA_70B).save_pretrained(tmp_path / "cfg")
    # CPU seconds, not wall time: on a loaded machine the wall time says more about the load than the plan
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
             "u = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.returncode, u.ru_utime + u.ru_stime, u.ru_maxrss)")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "tnkit", "compress", "--plan", str(tmp_path / "cfg"),
           "--world-size", "8", "--plan-json", str(tmp_path / "plan.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path.cwd()).stdout.split()
    rc, seconds, peak_kib = int(out[-3]), float(out[-2]), int(out[-1])
    assert rc == 0
    assert seconds < 60 and peak_kib * 1024 < 2**30, (seconds, peak_kib)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["n_params"] == 70_553_706_496 and plan["n_blocks"] == 80 and len(plan["layers"]) == 560
    assert sorted({t["rank"] for t in plan["layers"]}) == list(range(7))  # 7 layers a block over 8 ranks
    assert all(r["peak_bytes"] > 4 * 2 * 128256 * 8192 for r in plan["ranks"])  # at least the embedding and head


def test_assign_layers_is_longest_processing_time_first_and_within_4_3_of_the_optimum():
    from tnkit.compress.scale.plan import assign_layers

    rng = np.random.default_rng(0)
    for n, ranks in [(5, 2), (7, 3), (6, 2)]:
        costs = {f"l{i}": float(c) for i, c in enumerate(rng.uniform(1, 10, n))}
        owner = assign_layers(costs, ranks)
        assert list(owner) == list(costs) and set(owner.values()) <= set(range(ranks))
        makespan = max(sum(c for k, c in costs.items() if owner[k] == r) for r in range(ranks))
        best = min(max(sum(c for c, a in zip(costs.values(), combo, strict=True) if a == r) for r in range(ranks))
                   for combo in itertools.product(range(ranks), repeat=n))
        assert best <= makespan <= 4 / 3 * best
    assert assign_layers({"a": 3.0, "b": 2.0, "c": 2.0}, 2) == {"a": 0, "b": 1, "c": 1}
    assert assign_layers({"a": 1.0}, 1) == {"a": 0}


def test_plan_of_a_tiny_llama_lists_every_layer_with_the_pipelines_uniform_sizes():
    import tnkit.compress as tc
    from tnkit.compress.scale.plan import plan_compression, uniform_size

    model = tc.tiny_llama(num_hidden_layers=3)
    plan = plan_compression(model.config, world_size=2, method="whiten", ratio=0.6)
    layers = tc.find_layers(model)
    assert [t.name for t in plan.layers] == list(layers)
    for t in plan.layers:
        out, inp = tc.linear_weight(layers[t.name]).shape
        assert (t.out_features, t.in_features, t.size) == (out, inp, uniform_size("whiten", out, inp, 0.6))
    assert {t.rank for t in plan.layers} == {0, 1} and 0.5 < plan.balance <= 1.0
    assert plan.n_params == tc.count_params(model)
    assert "rank" in plan.table() and json.dumps(plan.to_dict())


@pytest.mark.parametrize("kwargs, error", [
    ({"world_size": 0}, ValueError), ({"ratio": 1.5}, ValueError), ({"method": "prune"}, OptionError),
    ({"world_size": 2.0}, TypeError),
])
def test_plan_refuses_bad_options_by_name(kwargs, error):
    import tnkit.compress as tc
    from tnkit.compress.scale.plan import plan_compression

    with pytest.raises(error, match=next(iter(kwargs))):
        plan_compression(tc.tiny_llama().config, **kwargs)


def test_plan_refuses_a_path_without_a_config(tmp_path):
    from tnkit.compress.scale.plan import plan_compression

    with pytest.raises(FileNotFoundError, match="config.json"):
        plan_compression(tmp_path)
    (tmp_path / "config.json").write_text("{\"model_type\": \"no-such-model\"}")
    with pytest.raises(ValueError, match="not a transformers model configuration"):
        plan_compression(tmp_path)


def _sharded(tmp_path: Path, n_layers: int = 2):
    import tnkit.compress as tc

    model = tc.tiny_llama(num_hidden_layers=n_layers)
    model.save_pretrained(tmp_path / "model", max_shard_size="20KB")
    assert (tmp_path / "model" / "model.safetensors.index.json").is_file()
    return model, tmp_path / "model"


def test_streaming_a_sharded_checkpoint_gives_the_in_memory_compression(tmp_path):
    import tnkit.compress as tc
    from tnkit.compress.scale.distributed import compress_streaming

    model, folder = _sharded(tmp_path)
    ref = copy.deepcopy(model)
    tc.compress_model(ref, method="svd", ratio=0.5, progress=False)
    result = compress_streaming(folder, tmp_path / "out", method="svd", ratio=0.5, progress=False)
    got = tc.load_compressed(tmp_path / "out")
    for k, v in ref.state_dict().items():
        assert torch.equal(v, got.state_dict()[k]), k
    assert result.directory == str(tmp_path / "out") and len(result.layers) == len(tc.find_layers(model))
    assert not list(tmp_path.glob(".out.*"))  # staging and temporary directories are gone


def test_streaming_a_model_in_memory_compresses_it_in_place_like_compress_model():
    import tnkit.compress as tc
    from tnkit.compress.scale.distributed import compress_streaming

    model = tc.tiny_llama()
    ref = copy.deepcopy(model)
    tc.compress_model(ref, method="whiten", ratio=0.6, calibration=_calib(), sequential=True, allocation="uniform",
                      progress=False)
    compress_streaming(model, method="whiten", ratio=0.6, calibration=_calib(), progress=False)
    assert_same_products(model, ref, rtol=1e-5, atol=1e-7)


def test_streaming_refuses_a_checkpoint_that_does_not_fit_its_config(tmp_path):
    from safetensors.torch import load_file, save_file

    from tnkit.compress.scale.distributed import compress_streaming
    from tnkit.compress.scale.streaming import BlockStream

    _, folder = _sharded(tmp_path)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = "model.layers.1.mlp.down_proj.weight"
    shard = folder / index["weight_map"][name]
    tensors = load_file(str(shard))
    tensors[name] = tensors[name][:, :5].contiguous()
    save_file(tensors, str(shard), metadata={"format": "pt"})
    stream = BlockStream(folder)
    stream.load_block(0)
    with pytest.raises(SchemaError, match="down_proj.weight.*shape"):
        stream.load_block(1)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        compress_streaming(folder, tmp_path / "out", method="svd", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "prune"}, OptionError, "method"),
    ({"method": "whiten"}, ValueError, "calibration"),
    ({"method": "svd", "ratio": 0.0}, ValueError, "ratio"),
])
def test_streaming_refuses_bad_options_before_reading_the_model(tmp_path, kwargs, error, match):
    from tnkit.compress.scale.distributed import compress_streaming

    with pytest.raises(error, match=match):
        compress_streaming(tmp_path / "missing", tmp_path / "out", progress=False, **kwargs)


def test_heal_sharded_on_one_process_lowers_the_loss_and_checks_its_options():
    import tnkit.compress as tc
    from tnkit.compress.scale.distributed import heal_sharded

    ids = np.tile(np.arange(32), 64)  # a repeating pattern the model can learn
    result = heal_sharded(tc.tiny_llama(), ids, steps=8, batch_size=2, seq_len=16, lr=3e-3)
    assert result.world_size == 1 and len(result.losses) == 8 and result.losses[-1] < result.losses[0]
    with pytest.raises(ValueError, match="seq_len"):
        heal_sharded(tc.tiny_llama(), ids[:10], steps=1, seq_len=16)
    with pytest.raises(TypeError, match="steps"):
        heal_sharded(tc.tiny_llama(), ids, steps=1.5)


def test_compress_command_plans_from_a_config_and_checks_its_arguments(tmp_path, capsys):
    import tnkit.compress as tc
    from tnkit.cli import main

    tc.tiny_llama().config.save_pretrained(tmp_path / "cfg")
    assert main(["compress", "--plan", str(tmp_path / "cfg"), "--world-size", "2"]) == 0
    assert "rank" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "cfg")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "cfg"), "--out", str(tmp_path / "o"), "--stream", "--prune", "0.9"]) == 1
    assert "--stream does not take --prune" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "cfg"), "--out", str(tmp_path / "o"), "--world-size", "2"]) == 2


def test_layers_fed_the_same_input_share_one_statistics_object():
    import tnkit.compress as tc
    from tnkit.compress.calibrate.sequential import capture_first_block_inputs
    from tnkit.compress.layers.surgery import is_linear
    from tnkit.compress.scale.distributed import _forward

    model = tc.tiny_llama()
    block = model.model.layers[0]
    layers = {n: m for n, m in block.named_modules() if is_linear(m)}
    with torch.no_grad():
        hidden = capture_first_block_inputs(model, block, _calib())
        _, stats = _forward(block, hidden, layers)
    groups = {id(st): sorted(n.split(".")[-1] for n in stats if stats[n] is st) for st in stats.values()}
    assert sorted(groups.values()) == [["down_proj"], ["gate_proj", "up_proj"], ["k_proj", "q_proj", "v_proj"],
                                       ["o_proj"]]
    assert stats["self_attn.q_proj"].n_tokens == sum(int(ids.numel()) for ids in _calib())
