"""``tnkit compress``, ``tnkit profile`` and ``tnkit eval``: the compression command line.

Each ``add_*_parser(sub)`` registers one subcommand (see :mod:`tnkit.cli`);
:func:`add_parser` registers all three. torch and transformers are imported only
when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..._argtypes import (
    existing_path,
    fraction,
    int_at_least,
    non_negative_float,
    positive_float,
    writable_dir,
)
from .cli_distributed import add_distributed_args
from .cli_heal import add_export_parser, add_heal_args, heal_settings_from_args, nonnegative_int
from ..recipes.run import CALIB_TOKENS
from ..storage.models import SAVE_DTYPE_NAMES

__all__ = ["add_parser", "add_compress_parser", "add_profile_parser", "add_eval_parser", "settings_from_args"]

_MODEL_HELP = ("MODEL is a Hugging Face model directory (config.json + weights), a directory written by "
               "'tnkit compress', or a .gguf file (4-bit GGUF weights are dequantised to float32).")


def add_parser(sub: Any) -> None:
    """Register ``compress``, ``profile`` and ``eval``."""
    add_compress_parser(sub)
    add_profile_parser(sub)
    add_eval_parser(sub)
    add_export_parser(sub)


def _model_args(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    p.add_argument("model", metavar="MODEL", nargs="?" if optional else None, help="model to load: " + _MODEL_HELP)
    p.add_argument("--gguf", default=None, metavar="FILE",
                   help="name of the GGUF file inside the MODEL directory (when MODEL is a directory holding one)")
    p.add_argument("--no-cache", action="store_true",
                   help="for a GGUF MODEL: load it afresh (about a minute) instead of through its dequantised "
                        "copy, which is kept under $TNKIT_CACHE or ~/.cache/tnkit/gguf and loads in seconds")


def _layer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", nargs="+", default=None, metavar="GLOB",
                   help="compress only layers whose full name matches one of these shell globs, e.g. "
                        "'*.mlp.*' or 'model.layers.1?.*' (default: every linear layer in the blocks)")
    p.add_argument("--roles", nargs="+", default=None, metavar="ROLE",
                   help="compress only these roles: q k v o qkv gate up down, or the groups attention, mlp")
    p.add_argument("--depth", nargs=2, type=int, default=None, metavar=("START", "STOP"),
                   help="compress only blocks START <= index < STOP")
    p.add_argument("--exclude", nargs="+", default=(), metavar="GLOB",
                   help="leave layers matching these globs dense (e.g. '*.down_proj')")


def _text_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-text", default=None, metavar="PATH", type=existing_path,
                   help="plain-text file or directory for perplexity; a WikiText-2 test file is cut to its "
                        "evaluation articles (from ' = Attalea ( palm ) = ' on)")
    p.add_argument("--eval-tokens", type=int_at_least(2), default=None, metavar="N",
                   help="evaluate on the first N tokens only")
    p.add_argument("--window", type=int_at_least(2), default=512,
                   help="perplexity sliding-window length in tokens (default 512)")
    p.add_argument("--stride", type=int_at_least(1), default=256, help="perplexity window step in tokens (default 256)")


def add_compress_parser(sub: Any) -> None:
    """Register ``tnkit compress``."""
    from ..recipes.methods import DEFAULT_METHOD, METHODS
    from ..numerics.search import FAMILIES

    p = sub.add_parser("compress", help="compress a causal LM's linear layers (factorised or width-pruned)",
                       description="Compress the linear layers of a causal language model (by default width "
                                   "pruning followed by a per-layer search over low-rank, MPO and dense forms for one "
                                   "global budget, the split between the two chosen on held-out calibration loss), "
                                   "optionally heal by a short fine-tune, evaluate before/after, and save to --out. "
                                   "Every option is checked before any work starts. " + _MODEL_HELP)
    _model_args(p, optional=True)  # MODEL and --out are checked by the runner: `--plan` needs neither
    p.add_argument("--out", metavar="DIR", type=writable_dir,
                   help="directory to write the compressed model to (checked writable before compressing)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--max-bond", type=int_at_least(1), default=None, metavar="N",
                      help="single-family methods: bond dimension of every MPO (rank for low-rank methods); must not "
                           "exceed what a layer admits")
    size.add_argument("--ratio", type=fraction, default=None, metavar="R",
                      help="fraction in (0, 1] of the compressed layers' weight parameters to keep; by default those "
                           "are every linear layer inside the transformer blocks (embeddings, norms and the output "
                           "head are not counted and not changed; the summary also prints the whole model's count). "
                           "Default 0.8")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS,
                   help=f"default {DEFAULT_METHOD}. auto: width pruning doing none, a quarter, half, three "
                        "quarters or all of the removal, then the search for the rest, each on a copy, the lowest "
                        "held-out calibration loss kept (the search alone on models without Llama-style blocks, "
                        "such as GPT-2); prune: width pruning of Llama-style models (MLP channels, attention "
                        "heads; the output loads in plain transformers); search: per-layer search over --families "
                        "and dense, one knapsack for the budget, layers weighted by their loss-gradient "
                        "sensitivity, sequential calibration; whiten (SVD-LLM), asvd, svd: low-rank baselines; "
                        "mpo: plain TT-SVD (CompactifAI); mpo-aware, mpo-whiten: data-aware MPOs")
    p.add_argument("--families", nargs="+", default=None, choices=FAMILIES, metavar="FAMILY",
                   help=f"candidates of the search besides dense: {', '.join(FAMILIES)} "
                        "(default: tnkit.compress.DEFAULT_FAMILIES)")
    p.add_argument("--prune", type=fraction, default=None, metavar="P",
                   help="first prune widths to this fraction of the block weights, then factorise down to --ratio")
    p.add_argument("--allocation", default=None, choices=("uniform", "curve"),
                   help="single-family methods: uniform = same fraction of every layer; curve = sizes from each "
                        "layer's error-versus-size curve for the global budget (default: curve for "
                        "mpo-aware/mpo-whiten, else uniform)")
    p.add_argument("--ridge", type=non_negative_float, default=None, metavar="LAMBDA",
                   help="relative ridge C + LAMBDA tr(C)/n I on the input second moments of whiten/mpo-whiten "
                        "(default: tnkit.compress.DEFAULT_RIDGE)")
    p.add_argument("--sequential", action=argparse.BooleanOptionalAction, default=None,
                   help="data-aware methods: compress block by block, each layer truncated for the inputs the "
                        "already-compressed blocks produce (default: on for search, off otherwise)")
    p.add_argument("--feedback-ridge", type=non_negative_float, default=None, metavar="LAMBDA",
                   help="with --sequential: also correct each weight toward the original layer's outputs, with this "
                        "relative ridge (error feedback; overfits a few thousand calibration tokens, off by default)")
    p.add_argument("--profile", default=None, metavar="JSON",
                   help="profile.json written by `tnkit profile`: its sensitivity rows weight the allocation "
                        "instead of the gradient sensitivity")
    p.add_argument("--protect-above", type=positive_float, default=None, metavar="RATIO",
                   help="with --profile: keep dense the layers whose unit multiplied the perplexity by more than "
                        "RATIO; they count in the --ratio budget")
    _layer_args(p)
    p.add_argument("--calib-text", default=None, metavar="PATH", type=existing_path,
                   help="text for activation statistics (data-aware methods); default: --heal-text, else --eval-text")
    p.add_argument("--calib-tokens", type=int_at_least(1), default=CALIB_TOKENS,
                   help=f"calibration tokens (default {CALIB_TOKENS}: the default method measures its statistics on "
                        "all of them but a held-out batch, which scores its candidates)")
    p.add_argument("--stats-precision", default=None, choices=("float32", "bfloat16"),
                   help="precision of the default method's statistics, sensitivity and held-out passes (default: "
                        "bfloat16 where the CPU multiplies it natively, else float32)")
    p.add_argument("--save-dtype", default="auto", choices=("auto", *SAVE_DTYPE_NAMES),
                   help="precision of the saved model (default auto: the input's, from its config.json; a "
                        "bfloat16 checkpoint stays bfloat16, so the output is never wider per parameter than the "
                        "input; GGUF input gives float32). Compression and healing compute in float32; the "
                        "compressed model is evaluated with its weights rounded to this precision")
    add_heal_args(p)
    p.add_argument("--seq-len", type=int_at_least(2), default=256,
                   help="tokens per training/calibration window (default 256)")
    _text_args(p)
    p.add_argument("--show-layers", action="store_true", help="also print the per-layer table")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_distributed_args(p, _run_compress)  # --plan, --world-size, --stream (tnkit.compress.front.cli_distributed)


def add_profile_parser(sub: Any) -> None:
    """Register ``tnkit profile``."""
    p = sub.add_parser("profile", help="layer sensitivity and weight-entanglement profiles of a causal LM",
                       description="Print the entanglement entropy of each weight as a 2-core MPO (no data needed) "
                                   "and, with --eval-text, the perplexity change when each block (or layer) alone is "
                                   "compressed; write a table (JSON) and a PNG plot. " + _MODEL_HELP)
    _model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for profile.json and profile.png")
    _layer_args(p)
    _text_args(p)
    p.add_argument("--unit", default="block", choices=("block", "layer", "role"),
                   help="what to compress at a time for sensitivity (default block)")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of a unit's parameters kept (default 0.5)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run_profile)


def add_eval_parser(sub: Any) -> None:
    """Register ``tnkit eval``."""
    p = sub.add_parser("eval", help="perplexity, size and speed of one or more causal LMs",
                       description="Measure each MODEL: parameters, bytes in memory and on disk, sliding-window "
                                   "perplexity and greedy tokens/s at batch 1; print a table and optionally write JSON. "
                                   + _MODEL_HELP)
    p.add_argument("models", nargs="+", metavar="MODEL", help="models to measure (the first is the baseline)")
    p.add_argument("--gguf", default=None, metavar="FILE", help="GGUF file name inside a MODEL directory")
    p.add_argument("--no-cache", action="store_true",
                   help="for a GGUF MODEL: load it afresh (about a minute) instead of through its dequantised "
                        "copy, which is kept under $TNKIT_CACHE or ~/.cache/tnkit/gguf and loads in seconds")
    _text_args(p)
    p.add_argument("--speed-tokens", type=nonnegative_int, default=32,
                   help="tokens generated to time (0 skips; default 32)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the reports to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run_eval)


# ---------------------------------------------------------------------- runners


def _say(text: str) -> None:
    print(text, flush=True)


def settings_from_args(args: argparse.Namespace) -> Any:
    """:class:`~tnkit.compress.recipes.run.CompressSettings` from parsed ``tnkit compress`` options.

    Raises ``ValueError`` for a combination of options that does not go together.
    """
    from ..recipes.run import CompressSettings

    if args.protect_above is not None and args.profile is None:
        raise ValueError("`--protect-above` needs `--profile` (a profile.json written by `tnkit profile`).")
    return CompressSettings(
        model=args.model, out=args.out, gguf=args.gguf, cache=not args.no_cache, method=args.method,
        ratio=args.ratio, max_bond=args.max_bond, families=args.families, prune=args.prune,
        allocation=args.allocation, ridge=args.ridge, sequential=args.sequential, feedback_ridge=args.feedback_ridge,
        profile=args.profile, protect_above=args.protect_above, layers=args.layers, roles=args.roles,
        depth=tuple(args.depth) if args.depth else None, exclude=tuple(args.exclude), calib_text=args.calib_text,
        calib_tokens=args.calib_tokens, seq_len=args.seq_len, stats_precision=args.stats_precision,
        heal=heal_settings_from_args(args),
        eval_text=args.eval_text, eval_tokens=args.eval_tokens, window=args.window, stride=args.stride,
        progress=not args.no_progress, save_dtype=args.save_dtype,
    )


def _run_compress(args: Any) -> int:
    from ..recipes.run import run_compress

    run = run_compress(settings_from_args(args), log=_say, show_layers=args.show_layers)
    print(run.summary)
    return 0


def _run_profile(args: Any) -> int:
    import json

    from ...io import atomic_write
    from ..storage.models import load_model
    from ..recipes.run import read_token_ids, select_layers
    from ..recipes.sensitivity import entanglement_profile, format_profile, plot_profile, sensitivity_profile

    model, tok = load_model(args.model, gguf_file=args.gguf, cache=not args.no_cache)
    layers = select_layers(model, layers=args.layers, roles=args.roles, depth=args.depth, exclude=args.exclude)
    ent = entanglement_profile(model, layers)
    print(format_profile(ent, "entropy"))
    sens = None
    eval_ids = read_token_ids(tok, args.eval_text, "eval")
    if eval_ids is not None:
        base, sens = sensitivity_profile(model, eval_ids, unit=args.unit, ratio=args.ratio, layers=layers,
                                         window=args.window, stride=args.stride, max_tokens=args.eval_tokens or 4096,
                                         progress=not args.no_progress)
        print(f"base perplexity {base:.3f}")
        print(format_profile(sens, "ppl ratio"))
    out = Path(args.out)
    png = plot_profile(ent, sens, out / "profile.png", title=str(args.model))
    table = {"entanglement": [r.__dict__ for r in ent], "sensitivity": [r.__dict__ for r in sens or []]}
    with atomic_write(out / "profile.json") as fh:
        fh.write(json.dumps(table, indent=2).encode())
    print(f"wrote {out / 'profile.json'} and {png}")
    return 0


def _run_eval(args: Any) -> int:
    from ..recipes.evaluate import evaluate_model, format_reports, write_reports
    from ..recipes.run import read_token_ids
    from ..storage.models import load_model

    reports = []
    for path in args.models:
        model, tok = load_model(path, gguf_file=args.gguf, cache=not args.no_cache)
        ids = read_token_ids(tok, args.eval_text, "eval")
        reports.append(evaluate_model(model, Path(path).name, ids=ids, window=args.window, stride=args.stride,
                                      max_tokens=args.eval_tokens, speed_tokens=args.speed_tokens, disk_path=path,
                                      progress=not args.no_progress))
        del model
    print(format_reports(reports))
    if args.json:
        write_reports(reports, args.json)
    return 0
