"""Qiskit, imported on first use with a one-line hint when it is missing.

Importing :mod:`tnkit.aqc` needs numpy only; the functions that build, transpile or
write circuits import Qiskit through :func:`import_qiskit`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_qiskit", "QISKIT_HINT"]

#: What to install when Qiskit is missing.
QISKIT_HINT = "pip install 'tnkit[aqc]'"


def import_qiskit(module: str = "qiskit") -> ModuleType:
    """Import ``module`` (``"qiskit"`` or one of its submodules).

    Raises
    ------
    ImportError
        One line naming the extra to install, when Qiskit is not installed.
    """
    try:
        importlib.import_module("qiskit")
    except ImportError:
        raise ImportError(f"tnkit.aqc needs Qiskit, which is not installed: {QISKIT_HINT}") from None
    return importlib.import_module(module)
