"""The guides state the same defaults and options as the code.

Three checks over the Markdown guides in ``docs/``:

* a default stated in prose, "`alpha` (..., default `1e-4`)" or "`alpha=0.003` (the
  default)", equals the default in the signature of one of the guide's main callables
  that has a parameter of that name (``GUIDE_CALLABLES``);
* an inline signature such as `tnkit.tfim_mpo(n, j=1.0, h=1.0)` (a code span calling a
  tnkit callable with two or more literal keyword values) shows the signature's defaults;
* the tables of methods in the engine guide list exactly the methods the code accepts.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: For each guide, the callables whose parameters its prose describes (dotted paths).
GUIDE_CALLABLES = {
    "engine.md": [
        "tnkit.MPS.compress",
        "tnkit.MPS.from_dense",
        "tnkit.MPS.from_qiskit",
        "tnkit.apply_mpo",
        "tnkit.mpo_product",
        "tnkit.MPS.sample",
        "tnkit.MPS.entanglement_entropy",
        "tnkit.contract",
    ],
    "ttn.md": ["tnkit.TTN.compress", "tnkit.TTN.from_dense", "tnkit.TTN.random", "tnkit.TTN.sample"],
    "classifiers.md": ["tnkit.ml.MPSClassifier", "tnkit.ml.TTNClassifier"],
    "generative.md": ["tnkit.ml.MPSBornMachine", "tnkit.ml.TTNBornMachine"],
    "aqc.md": [
        "tnkit.aqc.compile_state",
        "tnkit.aqc.compile_growing",
        "tnkit.aqc.compile_sequence",
        "tnkit.aqc.time_evolved_state",
    ],
    "compress.md": ["tnkit.compress.compress_model", "tnkit.compress.heal", "tnkit.compress.perplexity"],
}

#: Defaults stated in prose known to disagree with the code, with the reason (xfail, strict:
#: when the page is fixed the test says so, and the entry must go).
KNOWN_MISMATCHES: dict[str, str] = {}

_LITERAL = r"(?:-?[0-9][0-9._e+-]*|None|True|False|\"[^\"`]*\"|'[^'`]*')"
#: "`name` (anything, default `value`" and "`name` (default value".
PROSE_DEFAULT = re.compile(
    r"`(?P<name>[a-z_][a-z0-9_]*)` \([^()]*?\bdefault:? `?(?P<value>" + _LITERAL + r")`?"
)
#: "`name=value` (the default)" and "`name=value` (default)".
INLINE_DEFAULT = re.compile(r"`(?P<name>[a-z_][a-z0-9_]*)=(?P<value>" + _LITERAL + r")` \((?:the )?default\)")
#: "`tnkit.something(args)`" in prose.
SIGNATURE_SPAN = re.compile(r"`(?P<path>tnkit(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\((?P<args>[^`()]*)\)`")


def _prose(name: str) -> str:
    """The guide without its fenced code blocks."""
    return re.sub(r"```.*?```", "", (DOCS / name).read_text(), flags=re.S)


def _resolve(path: str) -> object:
    """The object at ``path``, by attribute access from ``tnkit`` (importing submodules only when needed)."""
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for k, part in enumerate(parts[1:], start=1):
        obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(".".join(parts[: k + 1]))
    return obj


#: Methods that pass their keyword arguments on, and the function that takes them.
FORWARDS = {"tnkit.MPS.from_qiskit": "tnkit.mps.qiskit.from_qiskit"}


def _same(documented: object, default: object) -> bool:
    if (
        isinstance(documented, (int, float))
        and isinstance(default, (int, float))
        and not isinstance(default, bool)
    ):
        return math.isclose(documented, default, rel_tol=1e-12)
    return documented == default


def _defaults(obj: object) -> dict[str, object]:
    params = inspect.signature(obj).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _stated_defaults(text: str) -> list[tuple[str, str]]:
    return [
        (m["name"], m["value"]) for pattern in (PROSE_DEFAULT, INLINE_DEFAULT) for m in pattern.finditer(text)
    ]


def _mismatches(name: str) -> list[str]:
    callables = {path: _defaults(_resolve(path)) for path in GUIDE_CALLABLES[name]}
    problems = []
    for param, raw in _stated_defaults(_prose(name)):
        documented = ast.literal_eval(raw)
        candidates = {path: d[param] for path, d in callables.items() if d.get(param, None) is not None}
        if candidates and not any(_same(documented, v) for v in candidates.values()):
            problems.append(f"{name} says `{param}` defaults to {raw}; the code: {candidates}")
    return problems


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[n]))
        if n in KNOWN_MISMATCHES
        else n
        for n in sorted(GUIDE_CALLABLES)
    ],
)
def test_defaults_stated_in_prose_match_the_signatures(name):
    problems = _mismatches(name)
    assert not problems, "\n".join(problems)


def test_the_prose_patterns_find_stated_defaults():
    """The patterns read both ways of stating a default (so the check above cannot pass vacuously)."""
    text = (
        "`alpha` (L2 regularisation, default `1e-4`) and `max_bond` (default 10); "
        '`method="svd"` (the default)'
    )
    assert _stated_defaults(text) == [("alpha", "1e-4"), ("max_bond", "10"), ("method", '"svd"')]
    assert any(_stated_defaults(_prose(page.name)) for page in DOCS.glob("*.md")), (
        "no guide states a default in prose any more: update the check"
    )


def test_inline_signatures_show_the_defaults():
    problems, checked = [], 0
    for page in sorted(DOCS.glob("*.md")):
        for match in SIGNATURE_SPAN.finditer(_prose(page.name)):
            literals = {}
            for arg in match["args"].split(","):
                key, sep, value = arg.strip().partition("=")
                if sep and re.fullmatch(_LITERAL, value.strip()):
                    literals[key.strip()] = ast.literal_eval(value.strip())
            if len(literals) < 2:
                continue  # an example call, not a signature
            defaults = _defaults(_resolve(FORWARDS.get(match["path"], match["path"])))
            checked += 1
            for key, value in literals.items():
                if key not in defaults:
                    problems.append(f"{page.name}: `{match[0]}`: no parameter {key!r}")
                elif not _same(value, defaults[key]):
                    problems.append(f"{page.name}: `{match[0]}`: {key} defaults to {defaults[key]!r}")
    assert checked >= 3, "the engine guide's signatures were not found"
    assert not problems, "\n".join(problems)


def _table_methods(name: str, heading: str) -> set[str]:
    """The quoted names in the first column of the first table after ``heading``."""
    text = (DOCS / name).read_text()
    section = text[text.index(heading) :]
    table = re.search(r"\n(\|.*\|\n)+", section)[0]
    return set(re.findall(r'^\| `"([a-z-]+)"`', table, re.M))


def test_engine_guide_lists_every_compression_and_application_method():
    import tnkit
    from tnkit.errors import OptionError
    from tnkit.mps.apply import APPLY_METHODS

    psi = tnkit.MPS.random(4, 2, seed=0)
    with pytest.raises(OptionError) as err:
        psi.compress(method="no-such-method")
    accepted = set(re.findall(r"'([a-z-]+)'", str(err.value).split("got")[0]))
    assert _table_methods("engine.md", "### The compression methods") == accepted
    assert _table_methods("engine.md", "## Applying an MPO to an MPS") == set(APPLY_METHODS)
