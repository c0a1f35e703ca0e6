"""Exceptions and warnings raised by tnkit."""

from __future__ import annotations

__all__ = ["TnkitError", "OptionError", "ConvergenceWarning", "SchemaError", "NormRangeError"]


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


class NormRangeError(TnkitError, OverflowError):
    """A state's norm left the float range while it was gathered on one tensor.

    Canonical forms put the whole norm on the orthogonality centre; a chain of a
    thousand sites can carry a norm such as ``1e1000`` spread over its tensors that
    no float can hold in one. ``normalize_`` is safe at any norm.
    """


class ConvergenceWarning(UserWarning):
    """An iterative routine stopped before reaching its tolerance."""
