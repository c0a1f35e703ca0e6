"""Heal the 70%-kept SmolLM2-135M by distillation on text the original model writes itself.

The original model (the teacher) writes the healing text (LLM-QAT recipe: a random
first token, three greedy tokens, then sampling), optionally mixed with the healing
articles of WikiText-2, and the compressed model is trained to match the teacher's
next-token distributions (KL). The run is bounded by ``--minutes`` of healing, is
checkpointed every ``--checkpoint-every`` steps into ``--out`` and continues after an
interruption with ``--resume``. It reports the tokens used, the tokens/s and the
perplexity on the WikiText-2 evaluation articles before and after (window 512,
stride 256; healing never sees them).

On a GPU (the intended use; bf16 autocast):

    python benchmarks/heal_gpu.py --device cuda --minutes 60 --data DIR --out heal-run

A quick end-to-end check on the CPU:

    python benchmarks/heal_gpu.py --device cpu --minutes 0.5 --eval-tokens 2048 --batch 2 --seq-len 64

The same script heals any recipe on the CPU under a CPU-time budget (process seconds, the
fair budget on a shared machine): ``--heal-data text`` is what ``tnkit compress
--heal-text FILE`` does by default (windows of the healing articles, next-token loss,
batches of 4 rows of 256 tokens, AdamW at 1e-4), e.g. 30 minutes on 2 cores:

    python benchmarks/heal_gpu.py --device cpu --threads 2 --model DIR --heal-data text --batch 4 \
        --cpu-seconds 3600 --minutes 1000 --data DATA --out heal-run

``--data`` (or ``TNKIT_DATA``) is a directory holding
``text/wikitext-2-raw/wiki.test.raw`` (calibration, optional mixed-in text and the
perplexity); the model is then compressed by the default recipe (``tnkit compress --ratio KEEP
--calib-text``); without it the compression is plain SVD and no perplexity is reported.
``--skip-before`` leaves out the two evaluations before healing (the original and the
compressed model) when they are known.
``--model DIR`` starts from an already compressed directory instead. One JSON line
goes to stdout at the end.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's tnkit, not an installed one


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--minutes", type=float, default=60.0, help="healing wall time (default 60)")
    p.add_argument("--keep", type=float, default=0.7, help="fraction of the block linear weights kept (default 0.7)")
    p.add_argument("--model", default=None, help="start from this compressed-model directory instead")
    p.add_argument("--data", default=None, help="data directory (default: $TNKIT_DATA)")
    p.add_argument("--out", default="heal-gpu-run", help="checkpoints and the healed model (default heal-gpu-run)")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    p.add_argument("--batch", type=int, default=16, help="rows per step (default 16)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per row (default 256)")
    p.add_argument("--chunk", type=int, default=64, help="sequences the teacher writes at once (default 64)")
    p.add_argument("--text-fraction", type=float, default=0.0,
                   help="fraction of rows from the WikiText-2 healing articles (default 0: self-generated only)")
    p.add_argument("--heal-data", default="self", choices=("self", "text"),
                   help="self: text the original writes, mixed with --text-fraction of the healing articles "
                        "(default); text: windows of the healing articles only")
    p.add_argument("--loss", default=None, choices=("lm", "kl"),
                   help="kl: distillation from the original (default for self); lm: next-token loss (default for text)")
    p.add_argument("--cpu-seconds", type=float, default=None,
                   help="healing budget in process CPU seconds (besides --minutes of wall time)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    p.add_argument("--eval-tokens", type=int, default=None, help="evaluate on the first N tokens only (default: all)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations (less memory)")
    p.add_argument("--skip-before", action="store_true",
                   help="evaluate only the healed model (skip the original's and the unhealed model's perplexity, "
                        "two full evaluations, when they are known)")
    args = p.parse_args()
    for name in ("minutes", "keep", "lr"):
        if not getattr(args, name) > 0:
            p.error(f"--{name} must be > 0, got {getattr(args, name)}")
    for name in ("batch", "seq_len", "chunk", "checkpoint_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.eval_tokens is not None and args.eval_tokens < 2:
        p.error(f"--eval-tokens must be >= 2, got {args.eval_tokens}")
    if not 0 <= args.text_fraction <= 1:
        p.error(f"--text-fraction must lie in [0, 1], got {args.text_fraction}")
    if args.cpu_seconds is not None and not args.cpu_seconds > 0:
        p.error(f"--cpu-seconds must be > 0, got {args.cpu_seconds}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.heal_data == "text" and args.data is None and os.environ.get("TNKIT_DATA") is None:
        p.error("--heal-data text needs the healing articles: give --data (or set TNKIT_DATA)")
    return args


def _wikitext(data: str | None) -> Path | None:
    root = data or os.environ.get("TNKIT_DATA")
    f = None if root is None else Path(root) / "text" / "wikitext-2-raw" / "wiki.test.raw"
    return f if f is not None and f.is_file() else None


def _log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def main() -> None:
    args = _args()
    import torch

    import tnkit.compress as tc
    from tnkit.compress.recipes.run import CALIB_TOKENS
    from tnkit.compress.tuning.distill import TextWindows
    from tnkit.compress.tuning.healing import resolve_device

    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0, cpu0 = time.perf_counter(), time.process_time()
    teacher, tok = tc.load_model(tc.smollm2_gguf_path(), cache=True)
    text = _wikitext(args.data)
    heal_ids = eval_ids = None
    if text is not None:
        heal_text, eval_text = tc.heal_eval_split(text.read_text(encoding="utf-8"))
        heal_ids, eval_ids = tc.tokenize(tok, heal_text), tc.tokenize(tok, eval_text)
    if args.model is not None:
        student = tc.load_compressed(args.model)
        method = "loaded"
    else:
        student = copy.deepcopy(teacher)
        if heal_ids is not None:  # the default recipe, calibrated as `tnkit compress --calib-text` does
            method = "auto"
            calib = tc.calibration_batches(heal_ids, seq_len=256, batch_size=4,
                                           n_batches=CALIB_TOKENS // (4 * 256))
            tc.compress_model(student, ratio=args.keep, calibration=calib, progress=False)
        else:
            method = "svd"
            tc.compress_model(student, method=method, ratio=args.keep, allocation="uniform", progress=False)
    _log(f"compressed ({method}): {tc.count_params(student):,} of {tc.count_params(teacher):,} parameters "
         f"[{time.perf_counter() - t0:.0f} s]")
    ppl = {}
    teacher.to(device)
    student.to(device)
    if eval_ids is not None and not args.skip_before:
        ppl["original"] = tc.perplexity(teacher, eval_ids, max_tokens=args.eval_tokens)
        ppl["before"] = tc.perplexity(student, eval_ids, max_tokens=args.eval_tokens)
        _log(f"perplexity: original {ppl['original']:.2f}, compressed {ppl['before']:.2f}")
    if args.heal_data == "text":
        if heal_ids is None:
            raise SystemExit("--heal-data text: no healing articles found (give --data)")
        stream = TextWindows(heal_ids, seq_len=args.seq_len)
    else:
        stream = tc.distillation_stream(teacher, seq_len=args.seq_len, chunk=args.chunk,
                                        text_ids=heal_ids if args.text_fraction > 0 else None,
                                        text_fraction=args.text_fraction)
    loss = args.loss or ("lm" if args.heal_data == "text" else "kl")
    out = Path(args.out)
    h = tc.heal(student, stream, max_tokens=10**12, max_seconds=60 * args.minutes, max_cpu_seconds=args.cpu_seconds,
                batch_size=args.batch, lr=args.lr, loss=loss, teacher=teacher if loss == "kl" else None,
                device=device, checkpoint_dir=out / "heal_checkpoint",
                checkpoint_every=args.checkpoint_every, resume=True if args.resume else None,
                gradient_checkpointing=args.grad_checkpointing, progress=sys.stderr.isatty())
    _log(f"healed {h.steps} steps, {h.tokens:,} tokens at {h.tokens_per_s:,.1f} tokens/s on {h.device} "
         f"({h.cpu_seconds:,.0f} CPU s, {h.seconds:,.0f} s)")
    if eval_ids is not None:
        ppl["after"] = tc.perplexity(student, eval_ids, max_tokens=args.eval_tokens)
        _log(f"perplexity after healing: {ppl['after']:.2f}")
    student.to("cpu")
    tc.save_compressed(student, out / "model", tokenizer=tok)
    print(json.dumps({
        "benchmark": "heal_gpu", "device": h.device, "gpu": torch.cuda.get_device_name() if device.type == "cuda"
        else None, "method": method, "keep": args.keep, "minutes": args.minutes, "steps": h.steps,
        "tokens": h.tokens, "tokens_per_s": round(h.tokens_per_s, 1), "heal_data": args.heal_data, "loss": loss,
        "final_loss": h.final_loss, "heal_cpu_seconds": round(h.cpu_seconds, 1), "heal_seconds": round(h.seconds, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1), "load_average": os.getloadavg(),
        "resumed_from_step": h.resumed_from_step, "batch": args.batch, "seq_len": args.seq_len, "lr": args.lr,
        "text_fraction": args.text_fraction, "eval_tokens": args.eval_tokens,
        "perplexity": {k: round(v, 3) for k, v in ppl.items()}, "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
