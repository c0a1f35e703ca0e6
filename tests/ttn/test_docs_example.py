"""The image-compression example works end to end (tests/test_docs.py runs the TTN guide's snippets)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_image_compression_example(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("ttn_image_compression", ROOT / "examples" / "ttn_image_compression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--mnist", str(tmp_path / "no-mnist-here")]) == 0
    out = capsys.readouterr().out
    assert "8x8 digit" in out and "TTN error" in out
    assert (tmp_path / "ttn_image_compression.png").stat().st_size > 10_000
