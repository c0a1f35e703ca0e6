"""Sphinx configuration of tnkit's documentation site.

Build the site with::

    pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The guides are the Markdown files of this directory (read by myst-parser); the API
pages (``api/*.md``) pull every public name from the docstrings with autodoc, so they
follow the code. ``-W`` turns every warning into an error: a broken link between pages,
a link to a missing heading, an unknown ``tnkit`` name in a docstring cross-reference,
a docstring that does not parse. ``tests/test_docs_site.py`` runs that build.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout, not an installed copy

import tnkit  # noqa: E402

project = "tnkit"
author = "tnkit developers"
copyright = "tnkit developers"  # noqa: A001 - Sphinx's name
release = version = tnkit.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# ------------------------------------------------------------------ Markdown (myst-parser)
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 4  # `page.md#a-heading` links are checked against the headings
suppress_warnings: list[str] = []

# ------------------------------------------------------------------ API pages (autodoc)
autodoc_default_options = {"member-order": "bysource"}  # each automodule names `:members:`
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True  # show `dtype=np.float64`, not its repr
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_preprocess_types = False

# The compression package needs the `llm` extra (torch, transformers); without it
# its API page is still built, from the docstrings, against stand-in modules.
autodoc_mock_imports = [
    name
    for name in ("torch", "transformers", "gguf", "accelerate", "safetensors")
    if importlib.util.find_spec(name) is None
]

# Every cross-reference to a tnkit name must resolve (nitpicky); names from numpy,
# scipy, typing and the other libraries tnkit takes or returns are not in this site.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!tnkit\.).*")]

# ------------------------------------------------------------------ cross-references
# Docstrings name objects where they are defined (``tnkit.aqc.targets.as_target``); the
# API pages document them where users import them (``tnkit.aqc.as_target``). A reference
# that Sphinx cannot find is resolved to the page entry of the *same object* under its
# public name, and a reference to an undocumented submodule to its nearest documented
# package. A name that does not exist in tnkit stays a warning (and fails ``-W``).


def _import_dotted(path: str) -> object:
    """The object at a dotted ``path`` (a module, or attributes of the longest importable module)."""
    import importlib

    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _identity(obj: object) -> object:
    """What two references to one function, method or class share."""
    obj = getattr(obj, "__func__", obj)  # bound class methods are new objects on each access
    return getattr(obj, "fget", obj)  # properties


def _documented_objects(env) -> dict[int, str]:
    """``id`` of each documented tnkit object -> its documented dotted name (built once per build)."""
    cache = getattr(env, "_tnkit_documented", None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            if entry.objtype == "module" or getattr(entry, "aliased", False):
                continue
            try:
                cache.setdefault(id(_identity(_import_dotted(name))), name)
            except (ImportError, AttributeError):
                pass
        env._tnkit_documented = cache
    return cache


def _resolve_tnkit_reference(app, env, node, contnode):
    if node.get("refdomain") != "py" or not node.get("reftarget", "").startswith("tnkit."):
        return None
    import typing

    target = node["reftarget"]
    domain = env.get_domain("py")
    try:  # a submodule, found without running it (it may need an extra that is absent)
        is_module = importlib.util.find_spec(target) is not None
    except (ImportError, ValueError):
        is_module = False
    try:
        obj = None if is_module else _import_dotted(target)
    except (ImportError, AttributeError):
        return None  # a name that does not exist: leave the warning
    if isinstance(obj, typing.TypeVar):
        return contnode  # a type variable of a signature: plain text
    if is_module:
        modules = {n for n, e in domain.objects.items() if e.objtype == "module"}
        parent = target
        while parent and parent not in modules:
            parent = parent.rpartition(".")[0]
        name, role = parent, "mod"
    else:
        name, role = _documented_objects(env).get(id(_identity(obj))), "obj"
    if not name:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, role, name, node, contnode)


def _select_members(app, what, name, obj, skip, options):
    """Every name of a module's ``__all__``, documented or not; no scikit-learn generated methods.

    A documented module's members are its ``__all__``, so a constant without a doc comment
    (``tnkit.compress.METHODS``) still gets its entry; class members that scikit-learn
    generates (``set_fit_request`` and the like) are left out.
    """
    if what == "module" and not name.startswith("_"):
        listed = getattr(options, "members", None)
        excluded = getattr(options, "exclude_members", None) or ()
        if name in excluded or (isinstance(listed, (list, tuple)) and name not in listed):
            return True
        return False
    if what == "class" and getattr(obj, "__module__", "").startswith("sklearn"):
        return True
    return None


def _drop_type_docstrings(app, what, name, obj, options, lines):
    """A constant without a doc comment shows its value, not the docstring of ``dict`` or ``tuple``."""
    import inspect

    type_doc = (inspect.getdoc(type(obj)) or "").strip()
    if what in ("data", "attribute") and lines and "\n".join(lines).strip() == type_doc:
        lines.clear()


def setup(app):
    app.connect("autodoc-process-docstring", _drop_type_docstrings)
    app.connect("missing-reference", _resolve_tnkit_reference)
    app.connect("autodoc-skip-member", _select_members)


# ------------------------------------------------------------------ HTML
html_theme = "pydata_sphinx_theme"
html_title = f"tnkit {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path: list[str] = []
html_show_sourcelink = False
