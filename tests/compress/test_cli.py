"""``tnkit compress`` / ``profile`` / ``eval`` end to end on a tiny model, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tnkit.compress as tc
from tnkit.compress.front.cli import add_parser
from tnkit.compress.storage.models import tiny_tokenizer
from tnkit.errors import OptionError
from torch_one_thread import one_torch_thread  # noqa: F401  (autouse: torch on one thread)


def _main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="tnkit")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tc.tiny_llama(seed=0).save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    text = d / "text.txt"
    text.write_text(" = A = \n" + "the cat sat on the mat . " * 120 + "\n = Attalea ( palm ) = \n" + "a palm tree grows . " * 80)
    return d


def test_compress_then_eval_end_to_end(model_dir, tmp_path, capsys):
    out = tmp_path / "c"
    rc = _main(["compress", str(model_dir), "--out", str(out), "--ratio", "0.5", "--heal-text",
                str(model_dir / "text.txt"), "--heal-tokens", "256", "--seq-len", "32", "--eval-text",
                str(model_dir / "text.txt"), "--window", "64", "--stride", "32", "--no-progress",
                "--heal-loss", "kl", "--ridge", "0.01"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tnkit compress: loading")
    assert "block linear weights" in printed and "whole model" in printed and "% kept" in printed
    assert "auto: held-out loss after width pruning to " in printed and "; chose " in printed
    assert "auto: held-out loss of the search built in one shot after width pruning to " in printed
    stages = next(line for line in printed.splitlines() if line.startswith("time per stage (wall s, CPU s): "))
    for stage in ("calibrate", "sensitivity", "one-shot splits", "pruning alone",
                  "held-out scores"):
        assert f" {stage} " in stages
    assert json.loads((out / "heal_checkpoint" / "heal_state.json").read_text())["loss"] == "kl"
    report = json.loads((out / "report.json").read_text())
    assert [r["label"] for r in report] == ["original", tc.DEFAULT_METHOD, f"{tc.DEFAULT_METHOD}+heal"]
    assert report[1]["params"] < report[0]["params"]
    rc = _main(["eval", str(model_dir), str(out), "--eval-text", str(model_dir / "text.txt"), "--window", "64",
                "--stride", "32", "--speed-tokens", "2", "--json", str(tmp_path / "e.json"), "--no-progress"])
    assert rc == 0 and "ppl/base" in capsys.readouterr().out
    loaded, tok = tc.load_model(out)
    assert tok is not None and loaded.generate(tok("the cat", return_tensors="pt")["input_ids"], max_new_tokens=3,
                                               do_sample=False, pad_token_id=0).shape[1] > 3


def test_profile_writes_table_and_png(model_dir, tmp_path):
    rc = _main(["profile", str(model_dir), "--out", str(tmp_path), "--eval-text", str(model_dir / "text.txt"),
                "--window", "64", "--stride", "64", "--eval-tokens", "256", "--no-progress"])
    assert rc == 0
    table = json.loads((tmp_path / "profile.json").read_text())
    assert len(table["entanglement"]) == 14 and len(table["sensitivity"]) == 2
    assert (tmp_path / "profile.png").read_bytes()[:4] == b"\x89PNG"
    # the profile drives `tnkit compress`: sensitivity-weighted allocation, the most sensitive block kept dense
    (low, lo_depth), (high, hi_depth) = sorted((r["value"], r["depth"]) for r in table["sensitivity"])
    assert low < high
    out = tmp_path / "c"
    rc = _main(["compress", str(model_dir), "--out", str(out), "--method", "svd", "--ratio", "0.8", "--allocation",
                "curve", "--profile", str(tmp_path / "profile.json"), "--protect-above", str((low + high) / 2),
                "--no-progress"])
    assert rc == 0
    spec = json.loads((out / "tnkit_layers.json").read_text())
    names = json.dumps(spec)
    assert f"layers.{hi_depth}." not in names and f"layers.{lo_depth}." in names
    with pytest.raises(ValueError, match="needs `--profile`"):
        _main(["compress", str(model_dir), "--out", str(out), "--method", "svd", "--protect-above", "2"])
    with pytest.raises(FileNotFoundError, match="--profile"):
        _main(["compress", str(model_dir), "--out", str(out), "--method", "svd", "--profile", str(tmp_path / "x")])


def test_compress_sequential_writes_a_loadable_model(model_dir, tmp_path):
    out = tmp_path / "s"
    rc = _main(["compress", str(model_dir), "--out", str(out), "--method", "whiten", "--ratio", "0.6", "--sequential",
                "--calib-text", str(model_dir / "text.txt"), "--calib-tokens", "256", "--seq-len", "32",
                "--no-progress"])
    assert rc == 0
    loaded, _ = tc.load_model(out)
    kinds = {type(m).__name__ for m in loaded.modules()}
    assert "LowRankLinear" in kinds
    with torch.no_grad():
        assert torch.isfinite(loaded(torch.arange(16)[None]).logits).all()
    with pytest.raises(ValueError, match="`sequential` needs a data-aware method"):
        _main(["compress", str(model_dir), "--out", str(tmp_path / "x"), "--method", "svd", "--sequential",
               "--no-progress"])


def test_cli_errors(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _main(["compress", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--method", "mpo"])
    with pytest.raises(ValueError, match="matches no linear layer"):
        _main(["compress", str(model_dir), "--out", str(tmp_path / "o"), "--method", "mpo", "--layers", "*.qproj"])
    with pytest.raises(ValueError, match="`max_bond` must be at most"):
        _main(["compress", str(model_dir), "--out", str(tmp_path / "o"), "--method", "mpo", "--max-bond", "99999",
               "--no-progress"])
    bad = tmp_path / "bad"
    tc.save_compressed(tc.tiny_llama(), bad)
    (bad / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt"):
        _main(["eval", str(bad), "--speed-tokens", "0"])


@pytest.mark.parametrize("bad", [["--max-bond", "-1"], ["--seq-len", "0"], ["--ratio", "0"], ["--ratio", "1.5"],
                                 ["--ratio", "nan"], ["--calib-tokens", "0"], ["--window", "1"], ["--lr", "0"],
                                 ["--ridge", "-1"], ["--prune", "2"], ["--method", "tucker"],
                                 ["--families", "tucker"], ["--eval-text", "/no/such/file"]])
def test_bad_options_exit_2_before_any_work(tmp_path, capsys, bad):
    # the model path does not exist: had any work started, the error would be a FileNotFoundError
    with pytest.raises(SystemExit) as exc:
        _main(["compress", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), *bad])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exc:
        _main(["compress", str(tmp_path / "missing"), "--out", str(blocker)])
    assert exc.value.code == 2 and "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main(["compress", str(tmp_path / "missing"), "--out", str(blocker / "sub")])


def test_prune_output_loads_in_plain_transformers(model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "p"
    rc = _main(["compress", str(model_dir), "--out", str(out), "--method", "prune", "--ratio", "0.7",
                "--calib-text", str(model_dir / "text.txt"), "--calib-tokens", "256", "--seq-len", "32",
                "--no-progress"])
    assert rc == 0 and "width pruning: MLP 96 ->" in capsys.readouterr().out
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    ours, _ = tc.load_model(out)
    ids = torch.arange(20)[None]
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, ours(ids).logits, atol=1e-5)
    assert plain.config.intermediate_size < 96


def test_help_explains_every_option(capsys):
    for cmd in ("compress", "profile", "eval"):
        with pytest.raises(SystemExit):
            _main([cmd, "--help"])
        text = capsys.readouterr().out
        assert "MODEL" in text and "--no-progress" in text


def test_the_library_recipe_gives_what_the_command_gives(model_dir, tmp_path, capsys):
    from safetensors.numpy import load_file

    text = str(model_dir / "text.txt")
    argv = ["compress", str(model_dir), "--out", str(tmp_path / "cli"), "--method", "whiten", "--ratio", "0.6",
            "--calib-tokens", "256", "--seq-len", "32", "--heal-text", text, "--heal-tokens", "64",
            "--heal-batch", "2", "--eval-text", text, "--eval-tokens", "128", "--window", "64", "--stride", "64",
            "--device", "cpu", "--no-progress"]
    assert _main(argv) == 0
    printed = capsys.readouterr().out
    lines = []
    run = tc.run_compress(tc.CompressSettings(
        model=model_dir, out=tmp_path / "lib", method="whiten", ratio=0.6, calib_tokens=256, seq_len=32,
        heal=tc.HealSettings(text=text, tokens=64, batch_size=2, device="cpu"), eval_text=text, eval_tokens=128,
        window=64, stride=64, progress=False), log=lines.append)
    assert lines[0] == printed.splitlines()[0] and run.summary.splitlines()[1] in printed
    cli, lib = load_file(tmp_path / "cli" / "model.safetensors"), load_file(run.out / "model.safetensors")
    assert cli.keys() == lib.keys()
    for name in cli:
        np.testing.assert_array_equal(cli[name], lib[name], err_msg=name)
    reports = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert [r["label"] for r in reports] == [r.label for r in run.reports] == ["original", "whiten", "whiten+heal"]
    assert [r["perplexity"] for r in reports] == [r.perplexity for r in run.reports]
    assert run.heal.steps > 0 and run.result.params_after < run.result.params_before


def test_settings_are_checked_on_construction(model_dir, tmp_path):
    with pytest.raises(OptionError, match="`method`"):
        tc.CompressSettings(model=model_dir, out=tmp_path, method="tucker")
    with pytest.raises(ValueError, match="not both"):
        tc.CompressSettings(model=model_dir, out=tmp_path, ratio=0.5, max_bond=4)
    with pytest.raises(ValueError, match="`ratio`"):
        tc.CompressSettings(model=model_dir, out=tmp_path, ratio=1.5)
    with pytest.raises(ValueError, match="`protect_above` needs `profile`"):
        tc.CompressSettings(model=model_dir, out=tmp_path, protect_above=2.0)
    with pytest.raises(FileNotFoundError, match="`eval_text`"):
        tc.CompressSettings(model=model_dir, out=tmp_path, eval_text=tmp_path / "missing.txt")
    with pytest.raises(TypeError, match="`heal`"):
        tc.CompressSettings(model=model_dir, out=tmp_path, heal={"tokens": 10})
    with pytest.raises(ValueError, match="needs `text`"):
        tc.HealSettings(data="mix")
    with pytest.raises(ValueError, match="`tokens`"):
        tc.HealSettings(text="x", tokens=0)
    assert tc.HealSettings(data="self").needs_teacher and tc.HealSettings(data="self").loss_name == "kl"
    assert not tc.HealSettings(text="x").needs_teacher
    settings = tc.CompressSettings(model=model_dir, out=tmp_path)
    assert settings.method == tc.DEFAULT_METHOD and settings.ratio == 0.8
    with pytest.raises(TypeError, match="`settings`"):
        tc.run_compress({"model": model_dir})


def test_the_compress_command_parses_and_checks_its_options_without_torch():
    """Its first line comes before torch is imported: building the parser and the settings needs no torch."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import argparse, sys\n"
            "from tnkit.compress.front.cli import add_parser, settings_from_args\n"
            "parser = argparse.ArgumentParser(prog='tnkit')\n"
            "add_parser(parser.add_subparsers(dest='command'))\n"
            "settings_from_args(parser.parse_args(['compress', 'MODEL', '--out', 'OUT']))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    root = Path(tc.__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)


def test_a_bfloat16_checkpoint_gives_a_bfloat16_output_smaller_than_it(model_dir, tmp_path, capsys):
    import shutil

    import torch

    src = tmp_path / "bf16"
    tc.tiny_llama(seed=0).to(torch.bfloat16).save_pretrained(src)
    for f in model_dir.glob("tokenizer*"):
        shutil.copy(f, src)
    assert tc.stored_dtype(src) == "bfloat16"
    common = ["--ratio", "0.6", "--calib-text", str(model_dir / "text.txt"), "--calib-tokens", "1024",
              "--seq-len", "32", "--no-progress"]
    assert _main(["compress", str(src), "--out", str(tmp_path / "auto"), *common]) == 0
    printed = capsys.readouterr().out
    assert "stored as bfloat16, the output will be bfloat16" in printed and "(bfloat16 -> bfloat16)" in printed
    assert _main(["compress", str(src), "--out", str(tmp_path / "f32"), "--save-dtype", "float32", *common]) == 0
    size = {name: (tmp_path / name / "model.safetensors").stat().st_size for name in ("auto", "f32")}
    assert size["auto"] < (src / "model.safetensors").stat().st_size < size["f32"]
    assert {p.dtype for p in tc.load_compressed(tmp_path / "auto").parameters()} == {torch.bfloat16}
    assert {p.dtype for p in tc.load_compressed(tmp_path / "f32").parameters()} == {torch.float32}
    # the working loader (compress, eval, profile) computes in float32 whatever is stored
    assert {p.dtype for p in tc.load_model(tmp_path / "auto", tokenizer=False)[0].parameters()} == {torch.float32}
