"""The documentation site builds without a warning, and its API pages cover every public name.

The site is built with Sphinx (``docs/conf.py``: myst-parser for the Markdown guides,
autodoc for the API pages, the pydata theme) with ``-W``: every warning fails the
build, including a link to a missing page or heading and an unresolved cross-reference
to a tnkit name. Skipped when the ``docs`` extra is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Packages whose every ``__all__`` name must be on the API pages.
PUBLIC_PACKAGES = (
    "tnkit",
    "tnkit.mps",
    "tnkit.ttn",
    "tnkit.ml",
    "tnkit.ml.explain",
    "tnkit.datasets",
    "tnkit.aqc",
    "tnkit.algorithms",
    "tnkit.compress",
    "tnkit.io",
    "tnkit.errors",
    "tnkit.testing",
)

_DOCS_PACKAGES = ("sphinx", "myst_parser", "pydata_sphinx_theme")
_MISSING = [m for m in _DOCS_PACKAGES if importlib.util.find_spec(m) is None]
needs_sphinx = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"the docs extra is not installed (missing {', '.join(_MISSING)}): pip install '.[docs]'",
)


def _sphinx(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run ``sphinx-build -W --keep-going -b html`` with ``docs/conf.py``; return the finished process."""
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-E",
        "-q",
        "-b",
        "html",
        "-c",
        str(DOCS),
        *extra,
        str(source),
        str(out),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _automodules() -> set[str]:
    pages = [DOCS / "api.md", *sorted((DOCS / "api").glob("*.md"))]
    return {m for page in pages for m in re.findall(r"\.\. automodule:: (\S+)", page.read_text())}


def test_api_pages_document_every_public_package():
    """Each public package has an ``automodule`` on the API pages (checked without Sphinx)."""
    missing = sorted(set(PUBLIC_PACKAGES) - _automodules())
    assert not missing, f"docs/api/*.md has no automodule for {missing}"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = _sphinx(DOCS, out)
    return proc, out


@needs_sphinx
def test_site_builds_without_warnings(built_site):
    proc, out = built_site
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-6000:]}"
    assert not proc.stderr.strip(), f"sphinx-build warned:\n{proc.stderr[-6000:]}"
    for page in ["index", "engine", "gallery", "benchmarks", "api", "api/engine", "api/compress"]:
        assert (out / f"{page}.html").is_file(), f"{page}.html was not built"
    # the gallery's figures are copied into the site
    assert (out / "_images" / "heisenberg_entanglement.png").is_file()


@needs_sphinx
def test_api_pages_document_every_public_name(built_site):
    """Every name in a public package's ``__all__`` has an entry in the site's object inventory.

    A name counts as documented under its own package, or under another public package
    that exports the same object (``tnkit.MPS`` documents ``tnkit.mps.MPS``).
    """
    from sphinx.util.inventory import InventoryFile

    proc, out = built_site
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "objects.inv", "rb") as fh:
        inventory = InventoryFile.load(fh, "", lambda base, uri: uri)
    documented = {name for kind, entries in inventory.items() if kind.startswith("py:") for name in entries}
    modules = {name: importlib.import_module(name) for name in PUBLIC_PACKAGES}
    missing = []
    for name, module in modules.items():
        for attr in getattr(module, "__all__", []):
            if attr == "__version__":
                continue
            obj = getattr(module, attr)
            if not any(
                f"{other}.{attr}" in documented and getattr(mod, attr, None) is obj
                for other, mod in modules.items()
            ):
                missing.append(f"{name}.{attr}")
    assert not missing, f"not on the API pages (does each have a docstring?): {missing}"


@needs_sphinx
def test_build_fails_on_broken_internal_links(tmp_path):
    """The build settings turn a broken page link, heading link or tnkit cross-reference into a failure."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "index.md").write_text(
        textwrap.dedent("""\
        # Title

        ## A heading

        See [the guide](missing.md), [a section](#no-such-heading),
        {py:func}`tnkit.no_such_function` and [a section that exists](#a-heading).
        """)
    )
    proc = _sphinx(source, tmp_path / "out")
    assert proc.returncode != 0, "a page with broken links built without an error"
    for complaint in ["missing", "no-such-heading", "tnkit.no_such_function"]:
        assert complaint in proc.stderr, f"no warning names {complaint!r}:\n{proc.stderr}"
    assert "a-heading" not in proc.stderr.replace("no-such-heading", "")
