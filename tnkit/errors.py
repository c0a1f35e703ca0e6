"""Exceptions and warnings raised by tnkit."""

from __future__ import annotations

__all__ = ["TnkitError", "OptionError", "ConvergenceWarning", "SchemaError"]


class TnkitError(Exception):
    """Base class of tnkit's own exceptions."""


class OptionError(TnkitError, KeyError, ValueError):
    """An option name is not one of the registered names.

    Subclasses both :class:`KeyError` (registry look-up) and :class:`ValueError`
    (bad argument value), so either ``except`` clause catches it.
    """

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class SchemaError(TnkitError, ValueError):
    """A file does not follow the schema tnkit writes (wrong kind, version or keys)."""


class ConvergenceWarning(UserWarning):
    """An iterative routine stopped before reaching its tolerance."""
