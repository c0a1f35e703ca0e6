"""Former module paths kept importable: one import hook for every module that moved.

A package whose modules moved calls :func:`alias_moved_modules` with a map from each
former dotted path to the path now. Importing a former path then warns
(:class:`FutureWarning`) and gives the very module at its new path (``former is now``),
so monkeypatching either name patches both. No file is left at the former path, so
version control follows the move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["alias_moved_modules", "moved_modules"]


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers a former module path with the module at its new path."""

    def __init__(self) -> None:
        self.moved: dict[str, str] = {}
        self._specs: dict[str, Any] = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.moved:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = self.moved[spec.name]
        package = new.split(".")[0]
        warnings.warn(
            f"{spec.name} has moved to {new}; import it from there (or import its public names from the "
            f"package); the former path will be removed in a future release of {package}",
            FutureWarning,
            stacklevel=2,  # the importing line: warnings skips the import machinery's frames
        )
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # The import system has set __spec__ to the alias' spec: give the module back its own.
        module.__spec__ = self._specs.pop(module.__spec__.name)


def _finder() -> _MovedModuleFinder:
    for finder in sys.meta_path:
        if isinstance(finder, _MovedModuleFinder):
            return finder
    finder = _MovedModuleFinder()
    sys.meta_path.insert(0, finder)
    return finder


def alias_moved_modules(moved: Mapping[str, str]) -> None:
    """Keep each former dotted module path of ``moved`` importable as the module at its new path.

    Parameters
    ----------
    moved : mapping of str to str
        Former path -> path now, both absolute (``"tnkit.compress.lowrank"`` ->
        ``"tnkit.compress.layers.lowrank"``).
    """
    for old, new in moved.items():
        if not (isinstance(old, str) and isinstance(new, str)) or old == new:
            raise ValueError(f"`moved` must map a former module path to a different path now, got {old!r} -> {new!r}.")
    _finder().moved.update(moved)


def moved_modules() -> dict[str, str]:
    """Every former module path registered so far -> its path now."""
    return dict(_finder().moved)
