"""The ``tnkit`` command line.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which
registers the subcommand and sets ``func``) and imports its heavy dependencies
only when it runs. ``main`` returns the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

#: Modules that register a subcommand, in the order ``--help`` lists them.
SUBCOMMAND_MODULES = ("tnkit.demo", "tnkit.inspect", "tnkit.compress.cli", "tnkit.aqc.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="tnkit",
        description=(
            "tnkit: tensor networks for physics, machine learning, model compression and "
            "quantum compiling. Run 'tnkit COMMAND --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly, like Unix tools
        sys.stderr.close()
        return 0
    except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        print(f"tnkit {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
