"""Streaming, multi-rank compression and FSDP2 healing: two gloo ranks against one process.

The two-rank side runs once per module, under ``torchrun --standalone --nproc_per_node 2``
on loopback (``tests/compress/distributed_ranks.py``); every test compares its files with
the same computation in this process.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lowrank_state import assert_same_products  # noqa: E402
from torch_one_thread import one_torch_thread  # noqa: E402,F401

pytestmark = pytest.mark.distributed

#: streamed compressions the ranks run: output folder -> options of compress_streaming
CASES = {
    "whiten-seq": {"method": "whiten", "ratio": 0.6, "sequential": True},
    "mpo-whiten": {"method": "mpo-whiten", "ratio": 0.6, "sequential": False},
}
HERE = Path(__file__).parent


def calibration_batches() -> list:
    import tnkit.compress as tc

    ids = np.random.default_rng(0).integers(0, 256, 4096)
    return tc.token_batches(ids, seq_len=32, batch_size=2, n_batches=4, seed=0)


def fsdp_case():
    """A tiny Llama, its training tokens and the options of one healing step."""
    import tnkit.compress as tc

    ids = np.random.default_rng(1).integers(0, 256, 2048)
    return tc.tiny_llama(seed=1), ids, {"steps": 1, "batch_size": 4, "seq_len": 32, "lr": 1e-3, "seed": 3}


def _model_dir(folder: Path) -> Path:
    import tnkit.compress as tc
    from tnkit.compress.storage.models import tiny_tokenizer

    model = tc.tiny_llama(num_hidden_layers=3)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    rng = np.random.default_rng(2)
    (folder / "text.txt").write_text(" ".join("".join(rng.choice(list("abcdefgh"), 5)) for _ in range(600)))
    return folder


@pytest.fixture(scope="module")
def ranks_run(tmp_path_factory):
    """The model directory and the two ranks' output folder (torchrun runs once)."""
    root = tmp_path_factory.mktemp("dist")
    model_dir = _model_dir(root / "model")
    out = root / "out"
    out.mkdir()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "distributed_ranks.py"), str(model_dir), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return model_dir, out, json.loads((out / "report-0.json").read_text())


def _assert_same_weights(a, b, *, rtol=1e-4, atol=1e-6):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_allclose(sa[k].detach().numpy(), sb[k].detach().numpy(), rtol=rtol, atol=atol, err_msg=k)


def test_two_ranks_share_the_factorisations(ranks_run):
    _, _, report = ranks_run
    assert report["world_size"] == 2
    for name in CASES:
        assert report[name] == [0, 1]


def test_two_ranks_give_the_in_memory_pipeline_weights_sequential_whiten(ranks_run):
    import tnkit.compress as tc

    model_dir, out, _ = ranks_run
    ref, _ = tc.load_model(model_dir, tokenizer=False)
    tc.compress_model(ref, method="whiten", ratio=0.6, calibration=calibration_batches(), sequential=True,
                      allocation="uniform", progress=False)
    assert_same_products(tc.load_compressed(out / "whiten-seq"), ref, rtol=1e-4, atol=1e-6)


def test_two_ranks_equal_one_rank_for_the_whitened_mpo(ranks_run, tmp_path):
    import tnkit.compress as tc
    from tnkit.compress.scale.distributed import compress_streaming

    model_dir, out, _ = ranks_run
    one = compress_streaming(model_dir, tmp_path / "one", calibration=calibration_batches(), progress=False,
                             **CASES["mpo-whiten"])
    assert one.world_size == 1 and {r for *_, r in one.layers} == {0}
    _assert_same_weights(tc.load_compressed(out / "mpo-whiten"), tc.load_compressed(tmp_path / "one"))


def test_one_fsdp2_step_on_two_ranks_equals_the_single_process_step(ranks_run):
    from safetensors.torch import load_file

    from tnkit.compress.scale.distributed import heal_sharded

    _, out, report = ranks_run
    model, ids, opts = fsdp_case()
    before = copy.deepcopy(model.state_dict())
    result = heal_sharded(model, ids, **opts)
    got = load_file(str(out / "fsdp.safetensors"))
    moved = 0
    # Adam's first step moves each entry by lr * g / (|g| + eps): where |g| is near eps, rounding in the
    # gradient's reduction order shows at a small fraction of lr, so the tolerance is 1% of the step
    for k, v in got.items():
        np.testing.assert_allclose(v.numpy(), model.state_dict()[k].numpy(), rtol=0, atol=1e-2 * opts["lr"],
                                   err_msg=k)
        moved += int(not torch.equal(before[k], v))
    assert moved == len(got)  # every parameter took the step
    np.testing.assert_allclose(report["losses"], result.losses, rtol=1e-5)


def test_stream_command_under_torchrun_writes_a_loadable_model_and_report(ranks_run):
    import tnkit.compress as tc
    from tnkit.compress.front.cli_distributed import STREAM_REPORT

    _, out, report = ranks_run
    assert report["cli_rc"] == 0
    figures = json.loads((out / "cli" / STREAM_REPORT).read_text())
    assert figures["world_size"] == 2 and len(figures["peak_rss_bytes"]) == 2
    assert 0.55 < figures["block_weights_after"] / figures["block_weights_before"] <= 0.6
    model = tc.load_compressed(out / "cli")
    logits = model(input_ids=torch.arange(10)[None]).logits
    assert bool(torch.isfinite(logits).all())
