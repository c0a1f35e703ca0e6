"""``tnkit compress --plan`` and ``tnkit compress --stream``: planning and out-of-core, multi-rank compression.

:func:`add_distributed_args` adds the options to the ``compress`` parser and wraps its
runner: ``--plan MODEL_OR_CONFIG`` prints :func:`tnkit.compress.scale.plan.plan_compression`
(no weights read, no MODEL or ``--out`` needed); ``--stream`` runs
:func:`tnkit.compress.scale.distributed.compress_streaming` on every rank ``torchrun`` started
(one rank without it). Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..._argtypes import int_at_least

__all__ = ["add_distributed_args", "STREAM_REPORT"]

#: Written by ``--stream`` into the output directory: the run's figures, per rank.
STREAM_REPORT = "tnkit_stream.json"
#: options of ``tnkit compress`` that ``--stream`` does not take, with their defaults
_NOT_STREAMED = {"max_bond": None, "prune": None, "families": None, "allocation": None, "profile": None,
                 "protect_above": None, "layers": None, "roles": None, "depth": None, "exclude": (),
                 "feedback_ridge": None, "eval_text": None, "show_layers": False}


def add_distributed_args(p: argparse.ArgumentParser, run: Callable[[Any], int]) -> None:
    """Add ``--plan``, ``--world-size``, ``--stream`` and ``--plan-json`` to ``p``; ``run`` is the plain runner."""
    p.add_argument("--plan", default=None, metavar="MODEL_OR_CONFIG",
                   help="print the plan of a streamed compression from a config.json (or model directory) alone: "
                        "layers, their rank, memory per rank; reads no weights (MODEL and --out not needed)")
    p.add_argument("--plan-json", default=None, metavar="FILE", help="with --plan: also write the plan as JSON")
    p.add_argument("--world-size", type=int_at_least(1), default=None, metavar="N",
                   help="with --plan: number of ranks to plan for (default: $WORLD_SIZE or 1); with --stream the "
                        "ranks are those torchrun started, and N, if given, must match")
    p.add_argument("--stream", action="store_true",
                   help="out-of-core: read MODEL (a safetensors checkpoint directory or a GGUF file) one block at a "
                        "time, compress "
                        "and write it (methods svd, asvd, whiten, mpo, mpo-whiten, every layer keeping --ratio); under "
                        "torchrun the ranks share the calibration text and the factorisations")
    p.set_defaults(method=None, func=lambda args: _dispatch(args, run))


def _dispatch(args: Any, run: Callable[[Any], int]) -> int:
    from ..recipes.methods import DEFAULT_METHOD

    if args.plan is not None:
        return _run_plan(args)
    if args.stream:
        return _run_stream(args)
    missing = [what for what, value in (("MODEL", args.model), ("--out", args.out)) if value is None]
    if missing or args.world_size is not None or args.plan_json is not None:
        text = (f"the following arguments are required: {', '.join(missing)}" if missing
                else "--world-size and --plan-json go with --plan or --stream")
        print(f"tnkit compress: error: {text}", file=sys.stderr)
        return 2
    args.method = args.method or DEFAULT_METHOD
    return run(args)


def _world_size(args: Any) -> int:
    import os

    return args.world_size or int(os.environ.get("WORLD_SIZE", "1"))


def _run_plan(args: Any) -> int:
    import json

    from ...io import atomic_write
    from ..scale.plan import plan_compression

    ratio = 0.8 if args.ratio is None else args.ratio
    plan = plan_compression(args.plan, world_size=_world_size(args), method=args.method or "whiten", ratio=ratio,
                            calib_tokens=args.calib_tokens)
    print(plan.table())
    if args.plan_json:
        with atomic_write(args.plan_json) as fh:
            fh.write(json.dumps(plan.to_dict(), indent=1).encode())
    return 0


def _check_stream_args(args: Any) -> None:
    from .cli_heal import heal_requested

    given = [name for name, default in _NOT_STREAMED.items() if getattr(args, name, default) != default]
    if heal_requested(args):
        given.append("heal_text")
    if given:
        raise ValueError(f"--stream does not take {', '.join('--' + g.replace('_', '-') for g in given)}.")
    if args.model is None or args.out is None:
        raise ValueError("--stream needs MODEL (a safetensors checkpoint directory or a .gguf file) and --out.")


def _stream_source(args: Any) -> Any:
    """MODEL, or the GGUF file ``--gguf`` names inside the MODEL directory."""
    from pathlib import Path

    gguf = getattr(args, "gguf", None)
    return Path(args.model) / gguf if gguf else Path(args.model)


def _run_stream(args: Any) -> int:
    from ..scale.distributed import STREAM_METHODS, close_ranks, init_ranks

    _check_stream_args(args)
    method = args.method or "whiten"
    if method not in STREAM_METHODS:
        raise ValueError(f"--stream runs methods {sorted(STREAM_METHODS)}, got --method {method}.")
    ranks = init_ranks()
    try:
        rc = _stream_on_ranks(args, method, ranks)
    except BaseException:
        close_ranks(synchronise=False)
        raise
    close_ranks()
    return rc


def _stream_on_ranks(args: Any, method: str, ranks: Any) -> int:
    import json
    import resource
    import time
    from pathlib import Path

    from transformers import AutoModelForCausalLM  # noqa: F401 - imported before the runtime's memory is read

    from ..scale.distributed import STREAM_METHODS, compress_streaming

    runtime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.world_size is not None and args.world_size != ranks.world_size:
        raise ValueError(f"--world-size {args.world_size} but torchrun started {ranks.world_size} rank(s).")
    say = print if ranks.is_main else (lambda *a, **k: None)
    say(f"tnkit compress --stream: {args.model} on {ranks.world_size} rank(s), method {method}", flush=True)
    start = time.perf_counter()
    source = _stream_source(args)
    tok, calib = _calibration(args, source, method, STREAM_METHODS[method][1])
    ratio = 0.8 if args.ratio is None else args.ratio
    sequential = True if args.sequential is None else args.sequential
    result = compress_streaming(source, args.out, method=method, ratio=ratio, calibration=calib,
                                sequential=sequential, ridge=args.ridge, tokenizer=tok,
                                progress=not args.no_progress)
    peaks = _gather_ints(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    runtimes = _gather_ints(runtime)
    cpu = _gather_ints(int(result.factorise_cpu_seconds * 1000))
    if ranks.is_main:
        from ...io import atomic_write

        report = {**result.__dict__, "peak_rss_bytes": peaks, "runtime_rss_bytes": runtimes,
                  "factorise_cpu_seconds_per_rank": [c / 1000 for c in cpu],
                  "total_seconds": time.perf_counter() - start}
        with atomic_write(Path(args.out) / STREAM_REPORT) as fh:
            fh.write(json.dumps(report, indent=1).encode())
        kept = result.block_weights_after / max(result.block_weights_before, 1)
        say(f"block linear weights: {result.block_weights_before:,} -> {result.block_weights_after:,} ({kept:.1%} "
            f"kept) in {len(result.layers)} layers; statistics {result.stats_seconds:.1f} s, factorisation "
            f"{result.factorise_seconds:.1f} s, total {report['total_seconds']:.1f} s; peak RSS per rank "
            + ", ".join(f"{p / 2**30:.2f} GiB" for p in peaks) + f"; saved to {args.out}")
    return 0


def _calibration(args: Any, source: Any, method: str, needs_data: bool) -> tuple[Any, Any]:
    """The model's tokenizer and the calibration batches (``None`` for the data-free methods)."""
    from ..storage.models import load_tokenizer
    from ..tuning.corpus import EVAL_FIRST_HEADING, heal_eval_split, read_text, token_batches, tokenize

    gguf = source.suffix == ".gguf" and source.is_file()
    tok = load_tokenizer(source.parent, source.name) if gguf else load_tokenizer(source, None)
    if not needs_data:
        return tok, None
    if args.calib_text is None:
        raise ValueError(f"method {method!r} needs calibration text: give --calib-text.")
    if tok is None:
        raise ValueError(f"{args.model!r} has no tokenizer, so --calib-text cannot be tokenised.")
    text = read_text(args.calib_text)
    if EVAL_FIRST_HEADING in text:
        text = heal_eval_split(text)[0]
    ids = _tokenize_in_pieces(tok, text, tokenize)
    seq = min(args.seq_len, len(ids))
    return tok, token_batches(ids, seq_len=seq, batch_size=4, n_batches=max(1, args.calib_tokens // (4 * seq)), seed=0)


def _tokenize_in_pieces(tok: Any, text: str, tokenize: Callable, piece: int = 1 << 16) -> Any:
    """Token ids of ``text``, tokenised ``piece`` characters at a time (cut before a space).

    A fast tokenizer holds offsets and strings for every token of its input: on a whole
    corpus that is hundreds of MB, more than a streamed block needs.
    """
    import numpy as np

    parts, start = [], 0
    while start < len(text):
        stop = len(text) if len(text) - start <= piece else text.rfind(" ", start + 1, start + piece)
        stop = start + piece if stop <= start else stop
        parts.append(tokenize(tok, text[start:stop]))
        start = stop
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _gather_ints(mine: int) -> list[int]:
    """Every rank's ``mine`` (rank order)."""
    import torch

    from ..scale.distributed import comm_device, current_ranks

    ranks = current_ranks()
    if ranks.world_size == 1:
        return [int(mine)]
    import torch.distributed as dist

    out = [torch.zeros(1, dtype=torch.int64, device=comm_device()) for _ in range(ranks.world_size)]
    dist.all_gather(out, torch.tensor([int(mine)], dtype=torch.int64, device=comm_device()))
    return [int(t.item()) for t in out]
