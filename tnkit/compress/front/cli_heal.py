"""Command-line pieces for healing (the ``tnkit compress`` heal options) and ``tnkit export``.

The healing options become a :class:`~tnkit.compress.recipes.run.HealSettings`, which
the library recipe :func:`~tnkit.compress.recipes.run.run_compress` follows. Every
option is checked when it is parsed or before the model is loaded: a bad value or an
unwritable ``--out`` fails in a second, not after minutes of compression.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..._argtypes import fraction, int_at_least, positive_float
from ..recipes.run import CHECKPOINT_SUBDIR

__all__ = ["add_heal_args", "heal_data", "heal_requested", "heal_settings_from_args", "add_export_parser",
           "positive_int", "nonnegative_int", "positive_float"]


#: argparse types of the healing options (see :mod:`tnkit._argtypes`).
positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def add_heal_args(p: argparse.ArgumentParser) -> None:
    """The healing options of ``tnkit compress``, as one argument group."""
    g = p.add_argument_group("healing", "fine-tune the compressed model after compression (off unless --heal-text "
                                        "or --heal-data self/mix is given)")
    g.add_argument("--heal-text", default=None, metavar="PATH",
                   help="plain-text file or directory to heal on; a WikiText-2 test file is cut to its healing "
                        "articles, never the evaluation ones")
    g.add_argument("--heal-data", default=None, choices=("text", "self", "mix"),
                   help="text: windows of --heal-text; self: text the original model writes itself (first token "
                        "random, then greedy, then sampled; unbounded); mix: self plus --text-fraction of rows from "
                        "--heal-text (default: text when --heal-text is given)")
    g.add_argument("--text-fraction", type=fraction, default=0.25, metavar="F",
                   help="with --heal-data mix: fraction of rows taken from --heal-text (default 0.25)")
    g.add_argument("--greedy-tokens", type=nonnegative_int, default=3, metavar="N",
                   help="self-generated text: greedy tokens after the random first one (default 3)")
    g.add_argument("--heal-tokens", type=positive_int, default=100_000, help="healing token budget (default 100000)")
    g.add_argument("--heal-seconds", type=positive_float, default=None, help="healing wall-time cap in seconds")
    g.add_argument("--heal-batch", type=positive_int, default=4, metavar="N", help="rows per healing step (default 4)")
    g.add_argument("--lr", type=positive_float, default=1e-4, help="AdamW learning rate for healing (default 1e-4)")
    g.add_argument("--heal-loss", default=None, choices=("lm", "kl"),
                   help="lm = next-token cross-entropy; kl = distillation, KL divergence from the original model's "
                        "next-token distribution (keeps an uncompressed copy in memory; default kl for --heal-data "
                        "self/mix, else lm)")
    g.add_argument("--checkpoint-every", type=positive_int, default=50, metavar="N",
                   help=f"write a healing checkpoint to OUT/{CHECKPOINT_SUBDIR} every N steps (default 50)")
    g.add_argument("--resume", action="store_true",
                   help=f"continue the healing run checkpointed in OUT/{CHECKPOINT_SUBDIR} (same data order, same "
                        "optimizer state); without it an existing checkpoint is an error, never overwritten")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to heal: auto = a CUDA GPU when available (bf16 autocast), else the CPU")
    g.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, about 30%% more time")


def heal_data(args: Any) -> str | None:
    """The healing data the options ask for: ``"text"``, ``"self"``, ``"mix"`` or ``None`` (no healing)."""
    if args.heal_data is not None:
        return args.heal_data
    return "text" if args.heal_text is not None else None


def heal_requested(args: Any) -> bool:
    """Whether ``tnkit compress`` heals."""
    return heal_data(args) is not None


def heal_settings_from_args(args: argparse.Namespace) -> Any:
    """:class:`~tnkit.compress.recipes.run.HealSettings` from the healing options (``None``: no healing).

    Raises ``ValueError`` for options that do not go together.
    """
    from ..recipes.run import HealSettings

    data = heal_data(args)
    if data in ("text", "mix") and args.heal_text is None:
        raise ValueError(f"`--heal-data {data}` needs --heal-text.")
    if data is None:
        if args.resume:
            raise ValueError("`--resume` continues a healing run: give --heal-text or --heal-data.")
        return None
    return HealSettings(data=data, text=args.heal_text, text_fraction=args.text_fraction,
                        greedy_tokens=args.greedy_tokens, tokens=args.heal_tokens, seconds=args.heal_seconds,
                        batch_size=args.heal_batch, lr=args.lr, loss=args.heal_loss,
                        checkpoint_every=args.checkpoint_every, resume=bool(args.resume), device=args.device,
                        gradient_checkpointing=args.grad_checkpointing)


def add_export_parser(sub: Any) -> None:
    """Register ``tnkit export``."""
    p = sub.add_parser("export", help="write a plain Hugging Face copy of a compressed model (needs tnkit[llm])",
                       description="Rebuild the dense weights of a compressed-model directory written by "
                                   "'tnkit compress' and write them as a plain Hugging Face model that "
                                   "transformers (and tools reading its checkpoints) load without tnkit. The copy "
                                   "has the original model's size.")
    p.add_argument("--dense", action="store_true", required=True,
                   help="write dense weights (the one export format; required)")
    p.add_argument("directory", metavar="DIR", help="compressed-model directory written by 'tnkit compress'")
    p.add_argument("out", metavar="OUT", help="directory to write the Hugging Face model to")
    p.set_defaults(func=_run_export)


def _run_export(args: Any) -> int:
    from ..storage.export import export_dense

    out = export_dense(args.directory, args.out)
    print(f"wrote a plain Hugging Face model to {out}")
    return 0
