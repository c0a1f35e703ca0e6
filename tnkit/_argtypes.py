"""``type=`` functions for the subcommands' argparse options.

Each raises :class:`argparse.ArgumentTypeError`, so a bad value is reported by
argparse itself (usage and one line naming the option, exit status 2) before the
command starts any work.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["int_in", "finite_float"]


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
