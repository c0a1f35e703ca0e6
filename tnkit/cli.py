"""The ``tnkit`` command line.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which
registers the subcommand and sets ``func``). The root parser knows every command by
name and one-line summary from :data:`COMMANDS` and imports only the module of the
command being run, so ``tnkit --help`` and the numpy-only commands start without
torch, qiskit or matplotlib installed. A command that needs an optional stack that
is missing ends with one line naming the extra to install (``pip install
'tnkit[llm]'``) and exit status 1; any other failure of a command is one line on
standard error, never a traceback (``TNKIT_DEBUG=1`` shows it).

``main`` returns the process exit status: 0 on success, 1 when a command failed,
2 for a usage error (as argparse does).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["main", "build_parser", "COMMANDS", "EXTRAS", "missing_extra_message"]


class Command(NamedTuple):
    """A subcommand: the module that registers it and its one-line summary."""

    module: str
    summary: str


#: Every subcommand, in the order ``--help`` lists them. The module is imported only
#: when its command runs (or when ``build_parser(full=True)`` is asked for).
COMMANDS: dict[str, Command] = {
    "demo": Command("tnkit.demo", "a 30-second tour of every product on built-in examples"),
    "inspect": Command("tnkit.describe", "describe a file written by tnkit (MPS, MPO, TTN, models)"),
    "compress": Command("tnkit.compress.front.cli", "compress a causal LM's linear layers (needs tnkit[llm])"),
    "profile": Command("tnkit.compress.front.cli", "layer sensitivity profiles of a causal LM (needs tnkit[llm])"),
    "eval": Command("tnkit.compress.front.cli", "perplexity, size and speed of causal LMs (needs tnkit[llm])"),
    "export": Command("tnkit.compress.front.cli", "write a plain Hugging Face copy of a compressed model (needs tnkit[llm])"),
    "aqc": Command("tnkit.aqc.cli", "compile a target MPS into a short quantum circuit (needs tnkit[aqc])"),
}

#: Which ``pip install 'tnkit[EXTRA]'`` brings a missing top-level module.
EXTRAS: dict[str, str] = {
    "torch": "llm", "transformers": "llm", "gguf": "llm", "accelerate": "llm", "safetensors": "llm",
    "tokenizers": "llm", "qiskit": "aqc", "qiskit_qasm3_import": "aqc", "sklearn": "ml",
    "matplotlib": "plot", "quimb": "quimb", "cotengra": "quimb",
}


def missing_extra_message(exc: ImportError) -> str | None:
    """One line naming the extra that provides what ``exc`` could not import, if tnkit knows it.

    ``exc`` is either Python's own ``ModuleNotFoundError`` for a module of an optional
    stack, or an ``ImportError`` raised by tnkit whose message already names the extra.
    """
    if "pip install 'tnkit[" in str(exc):
        return str(exc)
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return None
    package = {"sklearn": "scikit-learn"}.get(name, name)
    return f"this needs {package}, which is not installed: pip install 'tnkit[{extra}]'"


def _root_parser() -> argparse.ArgumentParser:

    return argparse.ArgumentParser(
        prog="tnkit",
        description=(
            "tnkit: tensor networks for physics, machine learning, model compression and "
            "quantum compiling. Run 'tnkit COMMAND --help' for a command's options."
        ),
        epilog="Set TNKIT_DEBUG=1 to see the full traceback when a command fails.",
    )


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument not starting with '-')."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None, *, full: bool = False) -> argparse.ArgumentParser:
    """The argument parser.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments about to be parsed: the command they name gets its full parser,
        the others a summary line only (so their modules are not imported).
    full : bool, default False
        Register every command's full parser (imports every command module, and so
        needs every optional stack whose command module imports it at top level).
    """
    from . import __version__

    parser = _root_parser()
    parser.add_argument("--version", action="version", version=f"tnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    named = _command_in(argv or [])
    wanted = {c.module for n, c in COMMANDS.items() if full or n == named}
    registered: set[str] = set()
    for name, cmd in COMMANDS.items():
        if cmd.module in wanted and cmd.module not in registered:
            importlib.import_module(cmd.module).add_parser(sub)
            registered.add(cmd.module)
        if name not in sub.choices:
            sub.add_parser(name, help=cmd.summary, description=cmd.summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    try:
        parser = build_parser(argv)
    except ImportError as exc:
        msg = missing_extra_message(exc)
        if msg is None:
            raise
        print(f"tnkit {command}: {msg}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly, like Unix tools
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"tnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        msg = missing_extra_message(exc)
        if msg is None or os.environ.get("TNKIT_DEBUG"):
            raise
        print(f"tnkit {args.command}: {msg}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, KeyError, RuntimeError, MemoryError) as exc:
        if os.environ.get("TNKIT_DEBUG"):
            raise
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"tnkit {args.command}: error: {text or type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
