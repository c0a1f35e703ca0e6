"""Healing that scales: self-generated distillation data, streams, resumable checkpoints, devices."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import tnkit.compress as tc
from tnkit.compress.storage.models import tiny_tokenizer
from tnkit.compress.tuning.distill import MixedStream, SelfGenerated, TextWindows
from tnkit.errors import SchemaError
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)

ROOT = Path(__file__).resolve().parents[2]


def _pair(seed=0, ratio=0.5):
    teacher = tc.tiny_llama(seed=seed)
    student = copy.deepcopy(teacher)
    tc.compress_model(student, method="svd", ratio=ratio, progress=False)
    return teacher, student


# ---------------------------------------------------------------------- data streams


def test_text_windows_cover_every_window_once_per_epoch():
    ids = np.arange(10 * 9)
    stream = TextWindows(ids, seq_len=8, seed=3)
    first = [int(stream.row(j)[0]) // 9 for j in range(10)]
    second = [int(stream.row(j)[0]) // 9 for j in range(10, 20)]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second  # reshuffled each epoch
    assert stream.batch(1, 4).shape == (4, 9)
    np.testing.assert_array_equal(stream.batch(1, 4)[0].numpy(), stream.row(4))
    with pytest.raises(ValueError, match="too short"):
        TextWindows(np.arange(5), seq_len=8)


def test_mixture_takes_an_exact_fraction_in_every_prefix():
    a, b = TextWindows(np.zeros(900, int), seq_len=8), TextWindows(np.ones(900, int), seq_len=8)
    mixed = MixedStream(a, b, fraction=0.25)
    from_b = np.array([mixed.row(j)[0] for j in range(400)])
    assert all(from_b[:m].sum() == m // 4 for m in range(1, 401))
    with pytest.raises(ValueError, match="`fraction`"):
        MixedStream(a, b, fraction=1.5)
    with pytest.raises(ValueError, match="seq_len"):
        MixedStream(a, TextWindows(np.ones(900, int), seq_len=4), fraction=0.5)


def test_self_generated_text_is_greedy_then_sampled_and_reproducible():
    teacher = tc.tiny_llama(seed=0)
    seqs = tc.self_generate(teacher, 6, length=12, greedy_tokens=3, seed=5)
    assert seqs.shape == (6, 12) and seqs.dtype == torch.int64
    torch.testing.assert_close(tc.self_generate(teacher, 6, length=12, greedy_tokens=3, seed=5), seqs)
    with torch.no_grad():
        logits = teacher(seqs).logits
    greedy = logits[:, :-1].argmax(-1)
    assert torch.equal(seqs[:, 1:4], greedy[:, 0:3])  # tokens 1..3: the teacher's most likely
    assert not torch.equal(seqs[:, 4:], greedy[:, 3:])  # then sampled
    assert len(set(seqs[:, 0].tolist())) > 1  # first tokens drawn at random
    state = torch.get_rng_state()
    stream = SelfGenerated(teacher, seq_len=11, chunk=4, seed=2)
    rows = stream.rows(2, 5)  # spans two chunks
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    np.testing.assert_array_equal(SelfGenerated(teacher, seq_len=11, chunk=4, seed=2).row(5), rows[3])
    assert stream.generated_tokens == 2 * 4 * 12
    assert next(iter(stream)).shape == (8, 12)  # an endless iterator of batches


# ---------------------------------------------------------------------- resuming


def _heal_kw(ckpt, steps):
    return dict(max_tokens=steps * 2 * 16, batch_size=2, lr=3e-3, loss="kl", checkpoint_dir=ckpt,
                checkpoint_every=1, trainable="compressed", progress=False)


def _stream(teacher):
    text = np.random.default_rng(1).integers(0, 256, 2000)
    return tc.distillation_stream(teacher, seq_len=16, text_ids=text, text_fraction=0.5, chunk=4, seed=7)


_KILLED_RUN = textwrap.dedent("""
    import copy, sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    import tnkit.compress as tc
    sys.path.insert(0, {tests!r})
    from test_heal import _heal_kw, _pair, _stream
    teacher, student = _pair()
    stream = _stream(teacher)
    batch = stream.batch
    def slow(step, size):
        time.sleep(0.15)
        return batch(step, size)
    stream.batch = slow
    tc.heal(student, stream, teacher=teacher, **_heal_kw({ckpt!r}, 40))
""")


def test_resume_after_kill_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    steps = 12
    teacher, reference = _pair()
    tc.heal(reference, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path / "ref", steps))
    ckpt = tmp_path / "killed"
    script = _KILLED_RUN.format(tests=str(Path(__file__).parent), ckpt=str(ckpt))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            state = ckpt / "heal_state.json"
            if state.is_file() and json.loads(state.read_text())["step"] >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.kill()  # kill -9, somewhere in the middle of a step or a checkpoint write
    finally:
        proc.wait()
        proc.stderr.close()
    teacher2, student = _pair()
    h = tc.heal(student, _stream(teacher2), teacher=teacher2, **{**_heal_kw(ckpt, steps), "checkpoint_every": 50})
    assert 3 <= h.resumed_from_step < steps and h.steps == steps
    ref = dict(reference.named_parameters())
    for n, p in student.named_parameters():
        torch.testing.assert_close(p, ref[n], rtol=0, atol=0, msg=n)
    assert not list(ckpt.glob("*.tmp")) and len(list(ckpt.glob("heal-*.safetensors"))) == 1


def test_torn_or_foreign_checkpoints_are_refused(tmp_path):
    teacher, student = _pair()
    tc.heal(student, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path, 2))
    state = json.loads((tmp_path / "heal_state.json").read_text())
    tensors = tmp_path / state["tensors"]
    # a model of another rank: refused, never broadcast
    _, other = _pair(ratio=0.3)
    with pytest.raises(ValueError, match="shape"):
        tc.heal(other, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path, 4))
    # another data stream: refused (the data order would differ)
    with pytest.raises(ValueError, match="other data"):
        tc.heal(student, TextWindows(np.arange(900) % 256, seq_len=16), teacher=teacher, **_heal_kw(tmp_path, 4))
    # resume=False never overwrites a checkpoint; resume=True needs one
    with pytest.raises(FileExistsError, match="resume"):
        tc.heal(student, _stream(teacher), teacher=teacher, resume=False, **_heal_kw(tmp_path, 4))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        tc.heal(student, _stream(teacher), teacher=teacher, resume=True, **_heal_kw(tmp_path / "none", 4))
    # the tensor file of a later save next to the JSON of an earlier one (a torn checkpoint)
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(SchemaError, match="torn"):
        tc.heal(student, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path, 4))
    tensors.unlink()
    with pytest.raises(SchemaError, match="torn"):
        tc.heal(student, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path, 4))
    (tmp_path / "heal_state.json").write_text(json.dumps({"step": 3, "tokens": 9, "losses": []}))
    with pytest.raises(SchemaError, match="format"):  # an old or foreign state file
        tc.heal(student, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path, 4))


def test_orphan_temporary_files_are_removed_on_resume(tmp_path):
    teacher, student = _pair()
    tc.heal(student, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path, 1))
    (tmp_path / ".heal-000000002.safetensors.123.tmp").write_bytes(b"half")
    (tmp_path / ".heal_state.json.abc.tmp").write_bytes(b"{")
    h = tc.heal(student, _stream(teacher), teacher=teacher, **_heal_kw(tmp_path, 2))
    assert h.resumed_from_step == 1 and not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------------- budgets and devices


def test_budgets_and_devices_are_checked_before_work():
    teacher, student = _pair()
    ids = np.arange(600) % 256
    for bad in ({"max_seconds": -1}, {"max_seconds": float("nan")}, {"max_cpu_seconds": 0}):
        with pytest.raises(ValueError, match="max_"):
            tc.heal(student, ids, seq_len=16, progress=False, **bad)
    with pytest.raises(ValueError, match="`max_tokens`"):
        tc.heal(student, ids, seq_len=16, max_tokens=0, progress=False)
    with pytest.raises(ValueError, match="`checkpoint_every`"):
        tc.heal(student, ids, seq_len=16, checkpoint_every=0, progress=False)
    with pytest.raises(ValueError, match="`device`"):
        tc.heal(student, ids, seq_len=16, device="tpu", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            tc.heal(student, ids, seq_len=16, device="cuda", progress=False)


def test_gradient_checkpointing_gives_the_same_training_and_reports_speed():
    teacher, a = _pair()
    b = copy.deepcopy(a)
    ids = np.random.default_rng(0).integers(0, 256, 1000)
    kw = dict(max_tokens=3 * 2 * 16, seq_len=16, batch_size=2, lr=1e-3, progress=False, device="auto")
    ha = tc.heal(a, ids, **kw)
    hb = tc.heal(b, ids, gradient_checkpointing=True, **kw)
    np.testing.assert_allclose(ha.losses, hb.losses, rtol=1e-5)
    assert ha.tokens_per_s > 0 and ha.device == "cpu" and ha.tokens == 96


# ---------------------------------------------------------------------- command line


def _main(argv):
    from tnkit.cli import main

    return main(argv)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tc.tiny_llama(seed=0).save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    (d / "text.txt").write_text("the cat sat on the mat . " * 80)
    return d


def test_cli_heals_on_self_generated_text_and_resumes(model_dir, tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["compress", str(model_dir), "--out", str(out), "--method", "svd", "--ratio", "0.5", "--heal-data", "mix",
            "--heal-text", str(model_dir / "text.txt"), "--heal-tokens", "64", "--seq-len", "16", "--heal-batch", "2",
            "--checkpoint-every", "1", "--device", "cpu", "--no-progress"]
    assert _main(argv) == 0
    printed = capsys.readouterr().out
    assert "tokens/s on cpu" in printed
    state = json.loads((out / "heal_checkpoint" / "heal_state.json").read_text())
    assert state["loss"] == "kl" and state["step"] == 2 and state["data"]["source"] == "mixed"
    assert _main(argv) == 1  # an existing checkpoint is never overwritten silently
    assert "--resume" in capsys.readouterr().err
    assert _main([*argv[:-1], "--heal-tokens", "96", "--resume", "--no-progress"]) == 0
    assert json.loads((out / "heal_checkpoint" / "heal_state.json").read_text())["step"] == 3
    tc.load_compressed(out)


@pytest.mark.parametrize("args, match", [
    (["--heal-seconds", "-1"], "--heal-seconds"),
    (["--heal-seconds", "nan"], "--heal-seconds"),
    (["--seq-len", "0"], "--seq-len"),
    (["--heal-tokens", "0"], "--heal-tokens"),
    (["--lr", "-1e-3"], "--lr"),
    (["--text-fraction", "2"], "--text-fraction"),
])
def test_cli_rejects_bad_heal_options_when_parsing(model_dir, tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as exc:
        _main(["compress", str(model_dir), "--out", str(tmp_path / "o"), *args])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_cli_rejects_bad_combinations_before_loading(model_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exc:  # an --out that is a file is a usage error
        _main(["compress", str(tmp_path / "missing-model"), "--out", str(tmp_path / "file"), "--heal-data", "self"])
    assert exc.value.code == 2 and "not a directory" in capsys.readouterr().err
    cases = [
        (["--out", str(tmp_path / "o"), "--heal-data", "mix"], "needs --heal-text"),
        (["--out", str(tmp_path / "o"), "--resume"], "--resume"),
        (["--out", str(tmp_path / "o"), "--heal-data", "self", "--resume"], "no healing checkpoint"),
    ]
    for args, match in cases:
        assert _main(["compress", str(tmp_path / "missing-model"), *args]) == 1  # the model is never loaded
        assert match in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main(["eval", str(model_dir), "--speed-tokens", "-1"])
    assert "--speed-tokens" in capsys.readouterr().err


def test_no_public_name_is_shadowed_by_a_submodule():
    import importlib
    import pkgutil

    import tnkit.compress as pkg

    modules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    assert not modules & set(pkg._SUBMODULE_OF)  # importing such a module would bind it over the name
    importlib.import_module("tnkit.compress.tuning.healing")
    assert callable(pkg.heal)
