"""``tnkit inspect FILE``: describe a saved MPS or MPO."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

__all__ = ["add_parser", "describe"]


def add_parser(sub: Any) -> None:
    """Register the ``inspect`` subcommand."""
    p = sub.add_parser(
        "inspect",
        help="describe a saved MPS or MPO file",
        description="Print the sites, dimensions, bonds, norm and (for states) the entanglement "
        "profile of a .npz file written by MPS.save or MPO.save.",
    )
    p.add_argument("file", help="path of a .npz file written by tnkit")
    p.set_defaults(func=_run)


def describe(obj: Any) -> str:
    """A multi-line description of an MPS or MPO."""
    from .mps import MatrixProductState

    lines = [repr(obj), f"  bond dims : {list(obj.bond_dims)}", f"  parameters: {obj.num_params:,}"]
    if isinstance(obj, MatrixProductState):
        lines.append(f"  norm      : {obj.norm():.12g}")
        if obj.n_sites > 1:
            s = obj.entanglement_entropy()
            lines.append(f"  entropy   : max {s.max():.4f} at bond {int(np.argmax(s))}, mean {s.mean():.4f} (nats)")
    else:
        lines.append(f"  shape     : {obj.shape}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from .errors import SchemaError
    from .mps import MatrixProductOperator, MatrixProductState

    try:
        obj = MatrixProductState.load(args.file)
    except SchemaError as exc:
        if "holds a MatrixProductOperator" not in str(exc):
            raise
        obj = MatrixProductOperator.load(args.file)
    print(describe(obj))
    return 0
