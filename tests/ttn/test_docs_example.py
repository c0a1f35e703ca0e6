"""The TTN guide's snippets run, and the image-compression example works end to end."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_guide_snippets_run(capsys):
    import matplotlib

    matplotlib.use("Agg")
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "ttn.md").read_text(), re.S)
    assert len(snippets) >= 8
    for k, code in enumerate(snippets):
        try:
            exec(compile(code, f"ttn.md[{k}]", "exec"), {"__name__": "__docs__"})
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"snippet {k} of docs/ttn.md failed: {type(exc).__name__}: {exc}\n{code}")
    capsys.readouterr()


def test_image_compression_example(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("ttn_image_compression", ROOT / "examples" / "ttn_image_compression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--mnist", str(tmp_path / "no-mnist-here")]) == 0
    out = capsys.readouterr().out
    assert "8x8 digit" in out and "TTN error" in out
    assert (tmp_path / "ttn_image_compression.png").stat().st_size > 10_000
