"""Regenerate the product part of ``docs/api.md`` from the code.

Run ``python docs/_generate_api.py`` after changing a public signature or docstring
of a product package. Everything between the markers ``<!-- products:begin -->`` and
``<!-- products:end -->`` in ``docs/api.md`` is replaced by, for each package below,
every name of its ``__all__`` with its signature and the first paragraph of its
docstring (and, for classes, their public methods). ``tests/test_docs.py`` checks
that the file is up to date.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

#: (module, section title), in the order they appear.
PACKAGES = (
    ("tnkit.algorithms", "Ground states and time evolution (`tnkit.algorithms`)"),
    ("tnkit.ttn", "Tree tensor networks (`tnkit.ttn`)"),
    ("tnkit.ml", "Estimators (`tnkit.ml`)"),
    ("tnkit.ml.explain", "Explaining generative models (`tnkit.ml.explain`)"),
    ("tnkit.datasets", "Datasets (`tnkit.datasets`)"),
    ("tnkit.aqc", "Approximate quantum compiling (`tnkit.aqc`)"),
    ("tnkit.compress", "LLM compression (`tnkit.compress`, needs the `llm` extra)"),
)
BEGIN, END = "<!-- products:begin -->", "<!-- products:end -->"
API = Path(__file__).with_name("api.md")


def first_paragraph(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj)).replace("'", "")
    except (TypeError, ValueError):
        return ""


def describe(qualname: str, obj: object) -> list[str]:
    """Markdown lines for one public name."""
    if inspect.isclass(obj):
        lines = [f"### `{qualname}{signature(obj)}`", "", first_paragraph(obj), ""]
        methods = [
            (name, member)
            for name, member in inspect.getmembers(obj)
            if not name.startswith("_")
            and (inspect.isfunction(member) or inspect.ismethod(member))
            and member.__qualname__.split(".")[0] == obj.__name__
        ]
        for name, member in methods:
            lines.append(f"- `{name}{signature(member)}`: {first_paragraph(member)}")
        return [*lines, ""]
    if callable(obj):
        return [f"### `{qualname}{signature(obj)}`", "", first_paragraph(obj), ""]
    return [f"### `{qualname}`", "", f"Constant: `{obj!r}`"[:300], ""]


def render() -> str:
    lines = [BEGIN, "", "## Products", ""]
    for module_name, title in PACKAGES:
        module = importlib.import_module(module_name)
        lines += [f"## {title}", "", first_paragraph(module), ""]
        for name in module.__all__:
            lines += describe(f"{module_name}.{name}", getattr(module, name))
    return "\n".join([*lines, END])


def updated(text: str) -> str:
    """``text`` (the current api.md) with the product part regenerated."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        return head + render() + tail
    return text.rstrip("\n") + "\n\n" + render() + "\n"


def main() -> int:
    API.write_text(updated(API.read_text()))
    print(f"wrote {API}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
