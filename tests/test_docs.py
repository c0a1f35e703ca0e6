"""Every Python snippet in the guides runs (in a fresh namespace, in order)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _snippets(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), re.S)


@pytest.mark.parametrize("name", ["engine.md", "index.md"])
def test_guide_snippets_run(name, capsys):
    matplotlib.use("Agg")
    snippets = _snippets(name)
    assert snippets, f"{name} has no python snippets"
    for k, code in enumerate(snippets):
        try:
            exec(compile("import os\n" + code, f"{name}[{k}]", "exec"), {"__name__": "__docs__"})
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"snippet {k} of {name} failed: {type(exc).__name__}: {exc}\n{code}")
    capsys.readouterr()


def test_api_reference_lists_every_public_name():
    import tnkit
    import tnkit.mps

    text = (DOCS / "api.md").read_text()
    missing = [n for n in set(tnkit.__all__) | set(tnkit.mps.__all__) if f"`{n}" not in text and n != "__version__"]
    assert not missing, f"docs/api.md does not document {sorted(missing)}"
