"""Streaming a GGUF file block by block: the tensors transformers loads, and the in-memory pipeline's result.

The GGUF file is written here with the ``gguf`` package from a tiny random Llama (block
weights in float16, norms in float32, query and key rows permuted as llama.cpp's converter
does); nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")
pytest.importorskip("transformers")

from lowrank_state import assert_same_products  # noqa: E402
from torch_one_thread import one_torch_thread  # noqa: E402,F401


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ordering of the query/key rows (the converter's ``permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model, path) -> None:
    """Write a transformers Llama as a GGUF file: 2-D weights float16, the rest float32."""
    c = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(c.vocab_size)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        base, suffix = name.rsplit(".", 1)
        a = t.detach().numpy()
        if name.endswith("q_proj.weight"):
            a = _permute(a, c.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            a = _permute(a, c.num_key_value_heads)
        w.add_tensor(f"{names.get_name(base)}.{suffix}", a.astype(np.float16 if a.ndim == 2 else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory):
    import tnkit.compress as tc

    original = tc.tiny_llama(num_hidden_layers=3, seed=4)
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_llama_gguf(original, path)
    return original, path


def test_a_streamed_gguf_block_holds_the_tensors_transformers_loads(gguf_model):
    import tnkit.compress as tc
    from tnkit.compress.scale.streaming import BlockStream

    original, path = gguf_model
    stream = BlockStream(path)
    assert stream.n_blocks == 3 and next(stream.model.parameters()).is_meta
    full, _ = tc.load_model(path, tokenizer=False, cache=False)
    for i in range(stream.n_blocks):
        got = stream.load_block(i).state_dict()
        for key, ref in full.model.layers[i].state_dict().items():
            torch.testing.assert_close(got[key], ref, rtol=0, atol=0)
            rounded = original.model.layers[i].state_dict()[key]
            rounded = rounded.half().float() if rounded.ndim == 2 else rounded
            torch.testing.assert_close(got[key], rounded, rtol=0, atol=0)  # the permutation is undone
        stream.release_block(i)
        assert next(stream.blocks[i].parameters()).is_meta


def test_streamed_gguf_compression_equals_the_in_memory_pipeline(gguf_model, tmp_path):
    import tnkit.compress as tc
    from tnkit.compress.scale.distributed import compress_streaming

    _, path = gguf_model
    ids = np.random.default_rng(0).integers(0, 256, 4096)
    calib = tc.token_batches(ids, seq_len=32, batch_size=2, n_batches=4, seed=0)
    result = compress_streaming(path, tmp_path / "out", method="whiten", ratio=0.6, calibration=calib,
                                progress=False)
    assert result.world_size == 1 and len(result.layers) == 21
    ref, _ = tc.load_model(path, tokenizer=False, cache=False)
    tc.compress_model(ref, method="whiten", ratio=0.6, calibration=calib, sequential=True, allocation="uniform",
                      progress=False)
    assert_same_products(tc.load_compressed(tmp_path / "out"), ref, rtol=1e-4, atol=1e-6)


def test_stream_command_reads_a_gguf_file(gguf_model, tmp_path):
    import tnkit.compress as tc
    from tnkit.cli import main

    _, path = gguf_model
    assert main(["compress", str(path), "--out", str(tmp_path / "out"), "--stream", "--method", "svd", "--ratio",
                 "0.5", "--no-progress"]) == 0
    model = tc.load_compressed(tmp_path / "out")
    assert bool(torch.isfinite(model(input_ids=torch.arange(8)[None]).logits).all())


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    from tnkit.compress.scale.streaming import BlockStream
    from tnkit.errors import SchemaError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 4)
    with pytest.raises(SchemaError, match="GGUF"):
        BlockStream(bad)
