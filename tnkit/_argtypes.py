"""``type=`` functions for the subcommands' argparse options.

Each raises :class:`argparse.ArgumentTypeError`, so a bad value is reported by
argparse itself (usage and one line naming the option, exit status 2) before the
command starts any work.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "int_in", "int_at_least", "finite_float", "positive_float", "non_negative_float", "fraction",
    "writable_dir", "existing_path",
]


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """A parser of integers from ``lo`` to ``hi`` inclusive."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer from {lo} to {hi}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer from {lo} to {hi}, got {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    """A finite real number (no ``nan`` or ``inf``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A parser of integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _bounded(text: str, ok: Callable[[float], bool], expected: str) -> float:
    value = finite_float(text)
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number ``> 0``."""
    return _bounded(text, lambda v: v > 0.0, "a number > 0")


def non_negative_float(text: str) -> float:
    """A finite number ``>= 0``."""
    return _bounded(text, lambda v: v >= 0.0, "a number >= 0")


def fraction(text: str) -> float:
    """A number in ``(0, 1]``."""
    return _bounded(text, lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]")


def writable_dir(text: str) -> str:
    """A directory that exists and is writable, or can be created (its nearest existing parent is writable)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written ({str(probe)!r} is not a writable directory)")
    return text


def existing_path(text: str) -> str:
    """A path that exists."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {text!r}")
    return text
