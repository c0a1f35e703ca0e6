"""The package's architecture, checked over every module: floors and private names.

tnkit is built in floors; a module may import from its own floor and the floors
below it, never from a floor above (imports inside functions count too, they are
dependencies all the same). The map of the floors is ``docs/architecture.md``.

0. base: ``tnkit.core`` (contraction, linear algebra, validation, threads),
   ``tnkit.errors``, ``tnkit.io`` (arrays, schema, atomic writes; each class owns
   its format and registers its loader) and ``tnkit._argtypes`` (argparse types).
1. engine: ``tnkit.mps``, ``tnkit.ttn``, their adapters ``tnkit.interop`` and the
   test helpers ``tnkit.testing``.
2. products: ``tnkit.ml``, ``tnkit.compress``, ``tnkit.aqc``, ``tnkit.algorithms``
   and ``tnkit.datasets`` (the data the products read).
3. front: the package facade ``tnkit``, ``tnkit.cli``, ``tnkit.__main__``,
   ``tnkit.demo`` and ``tnkit.describe`` (``tnkit inspect``; ``tnkit.inspect`` is
   its deprecation shim).

A module never imports another module's underscore names (``from .x import _y``),
nor reaches into the underscore attributes of a class or module it imported
(``Imported._y``): what crosses a module boundary is public and documented.

The ALLOWLISTs hold exactly the violations that remain; the tests fail when a new
one appears and also when a listed one disappears, so the lists stay exact (remove
an entry when its violation is fixed).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import tnkit

PACKAGE_ROOT = Path(tnkit.__file__).parent

#: Floor of each module, by longest matching prefix (a subpackage covers its modules).
FLOORS: dict[str, int] = {
    "tnkit.core": 0,
    "tnkit.errors": 0,
    "tnkit.io": 0,
    "tnkit._argtypes": 0,
    "tnkit.mps": 1,
    "tnkit.ttn": 1,
    "tnkit.interop": 1,
    "tnkit.testing": 1,
    "tnkit.ml": 2,
    "tnkit.compress": 2,
    "tnkit.aqc": 2,
    "tnkit.algorithms": 2,
    "tnkit.datasets": 2,
    "tnkit": 3,  # the package facade (tnkit/__init__.py)
    "tnkit.cli": 3,
    "tnkit.__main__": 3,
    "tnkit.demo": 3,
    "tnkit.describe": 3,
    "tnkit.inspect": 3,
}

#: Names that any floor may import from the facade: metadata, not code.
FACADE_METADATA = {"__version__"}

#: Upward imports that remain, as "importer -> imported". None today.
FLOOR_ALLOWLIST: set[str] = set()

#: Underscore names imported across modules, as "importer: module.name" (none remain; a
#: new entry needs a comment saying why it cannot be a public, documented name).
PRIVATE_IMPORT_ALLOWLIST: set[str] = set()

#: Underscore attributes of imported classes or modules, as "importer: Name._attr".
PRIVATE_ATTRIBUTE_ALLOWLIST: set[str] = set()


# ---------------------------------------------------------------------- reading the package


def _module_files() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _module_files()


def _resolve(importer: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module named by ``node`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@functools.lru_cache(maxsize=1)
def _parsed() -> list[tuple[str, Path, ast.Module]]:
    return [(m, p, ast.parse(p.read_text(encoding="utf-8"))) for m, p in MODULES.items()]


def _imports(importer: str, path: Path, tree: ast.Module):
    """``(module, name or None)`` for every tnkit import of a module, in functions too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tnkit":
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, path, node)
            if module.split(".")[0] != "tnkit":
                continue
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                yield (submodule, None) if submodule in MODULES else (module, alias.name)


def floor(module: str) -> int:
    """The floor of ``module`` (longest prefix in :data:`FLOORS`)."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise KeyError(module)


def floor_violations(parsed) -> set[str]:
    """``"importer -> imported"`` for every import from a higher floor."""
    found = set()
    for importer, path, tree in parsed:
        for module, name in _imports(importer, path, tree):
            if module == "tnkit" and name in FACADE_METADATA:
                continue
            if floor(module) > floor(importer):
                found.add(f"{importer} -> {module}")
    return found


def private_imports(parsed) -> set[str]:
    """``"importer: module._name"`` for every underscore name imported from another module."""
    found = set()
    for importer, path, tree in parsed:
        for module, name in _imports(importer, path, tree):
            if name and name.startswith("_") and not name.startswith("__") and module != importer:
                found.add(f"{importer}: {module}.{name}")
    return found


def private_attributes(parsed) -> set[str]:
    """``"importer: Name._attr"`` where ``Name`` was imported from another tnkit module."""
    found = set()
    for importer, path, tree in parsed:
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = _resolve(importer, path, node)
                if module.split(".")[0] == "tnkit" and module != importer:
                    imported |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {
                    (a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "tnkit"
                }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.add(f"{importer}: {node.value.id}.{node.attr}")
    return found


#: Subpackages of ``tnkit.compress`` in the order of dependence: each imports only from itself
#: and those before it (``docs/architecture.md``), so there is no import circle among them.
COMPRESS_ORDER = ("numerics", "layers", "calibrate", "storage", "tuning", "recipes", "scale", "front")

#: Imports against that order that remain, as "importer -> imported" (modules).
COMPRESS_ORDER_ALLOWLIST: set[str] = {
    # the spectral helpers and the ridge of the second moment still live beside LowRankLinear
    "tnkit.compress.numerics.allocate -> tnkit.compress.layers.lowrank",
    "tnkit.compress.numerics.factorize -> tnkit.compress.layers.lowrank",
    "tnkit.compress.numerics.search -> tnkit.compress.layers.lowrank",
    "tnkit.compress.numerics.whitened_mpo -> tnkit.compress.layers.lowrank",
}


def compress_order_violations(parsed) -> set[str]:
    """``"importer -> imported"`` for every import of a later ``tnkit.compress`` subpackage."""

    def rank(module: str) -> int | None:
        parts = module.split(".")
        if parts[:2] != ["tnkit", "compress"] or len(parts) < 3 or parts[2] not in COMPRESS_ORDER:
            return None
        return COMPRESS_ORDER.index(parts[2])

    found = set()
    for importer, path, tree in parsed:
        own = rank(importer)
        if own is None:
            continue
        for module, _ in _imports(importer, path, tree):
            other = rank(module)
            if other is not None and other > own:
                found.add(f"{importer} -> {module}")
    return found


def _exact(found: set[str], allowed: set[str], what: str) -> None:
    new, gone = sorted(found - allowed), sorted(allowed - found)
    assert not new and not gone, (
        f"{what}: new violations {new} (make the name public and documented, or move the code "
        f"to the floor where it belongs); fixed, so remove from the allowlist: {gone}."
    )


# ---------------------------------------------------------------------- the rules


def test_every_module_has_a_floor():
    """A new top-level module or subpackage must be placed in a floor explicitly."""
    unplaced = [
        m for m in MODULES if m != "tnkit" and ".".join(m.split(".")[:2]) not in FLOORS
    ]
    assert not unplaced, f"add these to FLOORS (and docs/architecture.md): {unplaced}"


def test_no_module_imports_from_a_floor_above_it():
    _exact(floor_violations(_parsed()), FLOOR_ALLOWLIST, "upward imports")


def test_no_module_imports_another_modules_underscore_names():
    _exact(private_imports(_parsed()), PRIVATE_IMPORT_ALLOWLIST, "underscore names imported across modules")


def test_no_module_reaches_into_underscore_attributes_of_what_it_imported():
    _exact(
        private_attributes(_parsed()), PRIVATE_ATTRIBUTE_ALLOWLIST, "underscore attributes of imported names"
    )


def test_compress_subpackages_import_only_those_before_them():
    _exact(compress_order_violations(_parsed()), COMPRESS_ORDER_ALLOWLIST, "tnkit.compress subpackage order")


def test_every_compress_module_is_in_an_ordered_subpackage():
    loose = [m for m in MODULES if m.startswith("tnkit.compress.") and m.split(".")[2] not in COMPRESS_ORDER]
    assert not loose, f"put these in a subpackage of tnkit.compress listed in COMPRESS_ORDER: {loose}"


def test_the_subpackage_order_check_catches_an_import_of_a_later_subpackage():
    source = """
from ..layers.lowrank import LowRankLinear
from .factorize import mpo_factorize
from ...core.linalg import svd

def f():
    from ..recipes import pipeline
"""
    parsed = [
        ("tnkit.compress.numerics.fake", PACKAGE_ROOT / "compress" / "numerics" / "fake.py", ast.parse(source))
    ]
    assert compress_order_violations(parsed) == {
        "tnkit.compress.numerics.fake -> tnkit.compress.layers.lowrank",
        "tnkit.compress.numerics.fake -> tnkit.compress.recipes.pipeline",
    }


def test_the_checks_catch_each_kind_of_violation():
    """The scanners on a made-up engine module that breaks every rule once (and keeps some allowed forms)."""
    source = """
from ..ml.models import Model
from .chain import _hidden, public
from . import chain
from tnkit import __version__
import tnkit.core.linalg

def f(psi):
    from ..compress.recipes import pipeline
    return Model._private, chain._y, psi._local, public.__doc__, tnkit.core.linalg._svd
"""
    parsed = [("tnkit.mps.fake", PACKAGE_ROOT / "mps" / "fake.py", ast.parse(source))]
    assert floor_violations(parsed) == {
        "tnkit.mps.fake -> tnkit.ml.models",
        "tnkit.mps.fake -> tnkit.compress.recipes.pipeline",
    }
    assert private_imports(parsed) == {"tnkit.mps.fake: tnkit.mps.chain._hidden"}
    assert private_attributes(parsed) == {
        "tnkit.mps.fake: Model._private",
        "tnkit.mps.fake: chain._y",
    }
