"""What keeps the streamed compression's memory down: each weight read back just before its
factorisation, the factorisation in the weight's storage with only the kept eigenvectors,
large allocations mapped on their own."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch_one_thread import one_torch_thread  # noqa: E402,F401


@pytest.mark.parametrize("shape", [(30, 70), (70, 30), (40, 40)])
@pytest.mark.parametrize("rank", [1, 9, 40, 100])
def test_lean_truncated_factors_give_the_gram_truncation(shape, rank):
    from tnkit.core.linalg import gram_truncated_factors, lean_truncated_factors

    m = np.random.default_rng(rank).standard_normal(shape)
    left, right, discarded = lean_truncated_factors(m, max_bond=rank)
    ref_left, ref_right, ref_discarded = gram_truncated_factors(m, max_bond=rank)
    k = min(rank, *shape)
    assert left.shape == (shape[0], k) and right.shape == (k, shape[1])
    np.testing.assert_allclose(left @ right, ref_left @ ref_right, atol=1e-12 * np.abs(m).max() * max(shape))
    np.testing.assert_allclose(discarded, ref_discarded, atol=1e-12 * np.sum(m * m))
    s = np.linalg.svd(m, compute_uv=False)
    np.testing.assert_allclose(discarded, np.sum(s[k:] ** 2), atol=1e-12 * np.sum(m * m))


def test_lean_truncated_factors_refuse_what_is_not_a_matrix():
    from tnkit.core.linalg import lean_truncated_factors

    with pytest.raises(TypeError, match="`m` must be a 2-d numpy array"):
        lean_truncated_factors(np.ones(4), max_bond=2)


def _whitening_case(seed=0, out=24, inp=40, tokens=30):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, inp))
    return rng.standard_normal((out, inp)), x.T @ x / tokens  # fewer tokens than inputs: a singular moment


def test_whitened_factors_in_the_weights_storage_equal_the_default_ones():
    from tnkit.compress.layers.lowrank import lowrank_factors

    w, c = _whitening_case()
    u, v, err = lowrank_factors(w, 10, method="whiten", covariance=c)
    w_given, c_given = w.copy(), c.copy()
    u2, v2, err2 = lowrank_factors(w_given, 10, method="whiten", covariance=c_given, overwrite_covariance=True,
                                   overwrite_weight=True, low_memory=True)
    np.testing.assert_allclose(u2 @ v2, u @ v, rtol=1e-9, atol=1e-10 * np.abs(w).max())
    assert err2 == pytest.approx(err, rel=1e-9)
    assert not np.array_equal(w_given, w)  # its storage held W S


def test_a_weight_not_given_up_is_left_unchanged_by_the_low_memory_factorisation():
    from tnkit.compress.layers.lowrank import lowrank_factors

    w, c = _whitening_case(1)
    w_given, c_given = w.copy(), c.copy()
    lowrank_factors(w_given, 10, method="whiten", covariance=c_given, low_memory=True)
    assert np.array_equal(w_given, w) and np.array_equal(c_given, c)


def test_a_layer_is_read_back_from_disk_in_the_precision_asked(tmp_path):
    import tnkit.compress as tc
    from tnkit.compress.scale.streaming import BlockStream

    model = tc.tiny_llama(num_hidden_layers=2)
    model.save_pretrained(tmp_path / "model")
    stream = BlockStream(tmp_path / "model")
    layer = stream.load_layer(1, "mlp.down_proj", dtype=torch.float64)
    assert layer.weight.dtype == torch.float64
    assert torch.equal(layer.weight.to(torch.float32), model.model.layers[1].mlp.down_proj.weight)
    assert stream.blocks[1].mlp.up_proj.weight.is_meta  # nothing else of the block was read
    stream.release_module(layer)
    assert layer.weight.is_meta


def test_each_layer_is_factorised_with_no_other_dense_weight_of_its_block_in_memory(tmp_path, monkeypatch):
    import tnkit.compress as tc
    import tnkit.compress.scale.distributed as dist
    from tnkit.compress.layers.surgery import is_linear

    model = tc.tiny_llama(num_hidden_layers=2)
    model.save_pretrained(tmp_path / "model")
    streams, seen = [], []

    class Recorded(dist.BlockStream):
        def __init__(self, source):
            super().__init__(source)
            streams.append(self)

    build = dist.STREAM_METHODS["whiten"][0]

    def checked(layer, size, st, ridge, last):
        linears = [m for block in streams[0].blocks for m in block.modules() if is_linear(m)]
        seen.append(sum(not m.weight.is_meta for m in linears))  # before the read: none
        w, bias = layer.read()
        assert w.dtype == np.float64 and w.flags.c_contiguous and bias is None
        seen.append(sum(not m.weight.is_meta for m in linears))  # the read hands the weight over: still none
        return build(dist.DenseLayer(lambda: (w, bias), layer.dtype), size, st, ridge, last)

    monkeypatch.setattr(dist, "BlockStream", Recorded)
    monkeypatch.setitem(dist.STREAM_METHODS, "whiten", (checked, True))
    ids = np.random.default_rng(0).integers(0, 256, 2048)
    calib = tc.token_batches(ids, seq_len=32, batch_size=2, n_batches=2, seed=0)
    result = dist.compress_streaming(tmp_path / "model", tmp_path / "out", method="whiten", ratio=0.6,
                                     calibration=calib, progress=False)
    assert len(seen) == 2 * len(result.layers) == 2 * 14 and set(seen) == {0}


def test_large_allocations_are_mapped_on_their_own_where_glibc_runs():
    import platform

    from tnkit.compress.scale.distributed import map_large_allocations, return_freed_memory

    assert map_large_allocations() == (platform.libc_ver()[0] == "glibc")
    return_freed_memory()
