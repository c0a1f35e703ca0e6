"""Every Python snippet of docs/generative.md runs and prints what the guide says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generative_guide_snippets_run(capsys):
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "generative.md").read_text(), re.S)
    assert len(snippets) >= 3
    for k, code in enumerate(snippets):
        try:
            exec(compile(code, f"generative.md[{k}]", "exec"), {"__name__": "__docs__"})
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"snippet {k} of generative.md failed: {type(exc).__name__}: {exc}\n{code}")
    out = capsys.readouterr().out
    assert "3.4012 3.4012" in out and "True" in out and "[6]" in out
