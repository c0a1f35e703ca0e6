"""Every Python snippet in the guides runs (in a fresh namespace, in order)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _snippets(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), re.S)


GUIDES = sorted(p.name for p in DOCS.glob("*.md") if _snippets(p.name))

#: What a guide's snippets must print, where the guide states a result.
EXPECTED_OUTPUT = {"generative.md": ["3.4012 3.4012", "True", "[6]"]}


@pytest.mark.parametrize("name", GUIDES)
def test_guide_snippets_run(name, capsys, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # snippets that write files write them here
    snippets = _snippets(name)
    assert snippets, f"{name} has no python snippets"
    namespace = {"__name__": "__docs__"}  # one per guide: later snippets build on earlier ones
    for k, code in enumerate(snippets):
        try:
            exec(compile("import os\n" + code, f"{name}[{k}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"snippet {k} of {name} failed: {type(exc).__name__}: {exc}\n{code}")
    out = capsys.readouterr().out
    for expected in EXPECTED_OUTPUT.get(name, []):
        assert expected in out, f"{name}'s snippets did not print {expected!r}"
