"""Where the example scripts find data sets and write their output.

Data sets are never downloaded. A script that reads one takes ``--data DIR``, or the
environment variable ``TNKIT_DATA``: a directory holding

* ``mnist/``: the four MNIST IDX files ``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
  ``t10k-labels-idx1-ubyte.gz`` (as published by Yann LeCun, Corinna Cortes and
  Christopher Burges; plain or gzip-compressed);
* ``text/wikitext-2-raw/wiki.test.raw``: the test split of WikiText-2 (raw).

Without either, the loaders' own default applies (see
:func:`tnkit.datasets.default_mnist_dir`). Figures go to ``--out DIR`` (default
``examples/output``, which git ignores); nothing is written anywhere else.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: Default output directory of every example.
OUTPUT = Path(__file__).resolve().parent / "output"

DATA_HELP = (
    "directory holding the data sets: mnist/ with the four MNIST IDX files "
    "(train-images-idx3-ubyte.gz, ...) and text/wikitext-2-raw/wiki.test.raw "
    "(default: $TNKIT_DATA)"
)


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data DIR`` (default ``$TNKIT_DATA``)."""
    parser.add_argument("--data", type=Path, default=None, metavar="DIR", help=DATA_HELP)


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--out DIR`` (default ``examples/output``)."""
    parser.add_argument(
        "--out",
        type=Path,
        default=OUTPUT,
        metavar="DIR",
        help="directory for the figures (default: examples/output)",
    )


def data_dir(data: Path | None) -> Path | None:
    """``data``, else ``$TNKIT_DATA``, else ``None`` (the loaders' default)."""
    if data is not None:
        return Path(data)
    env = os.environ.get("TNKIT_DATA")
    return Path(env) if env else None


def mnist_dir(data: Path | None) -> Path | None:
    """The ``mnist/`` directory under :func:`data_dir`, or ``None`` for the loader's default."""
    base = data_dir(data)
    return None if base is None else base / "mnist"
