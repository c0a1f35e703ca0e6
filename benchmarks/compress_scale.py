"""Streamed, multi-rank compression of a large random Llama: peak memory and factorisation time.

A random-weight ``LlamaForCausalLM`` (transformers config classes, nothing downloaded) is
written to a temporary directory as sharded safetensors, block by block (the full model is
never in memory), with a byte-level tokenizer and a calibration text. Then

    tnkit compress MODEL --out OUT --stream --method whiten --ratio 0.8 --calib-text TEXT

runs under ``python -m torch.distributed.run --standalone --nproc_per_node N`` for N = 1 and 2
(loopback only), each rank on one thread (``OMP_NUM_THREADS=1``, as torchrun sets for
several ranks), and the command's own report (``tnkit_stream.json``) gives

* the peak resident memory of each rank, against the model's float32 bytes (the goal is
  under 30%); ``runtime`` is the peak before the model is opened (Python, torch,
  transformers), which any process pays;
* the wall time of the factorisation stage (factorisations and broadcasts) with 1 and 2
  ranks, measured by the same script on the same files (the goal on 2 cores: 2 ranks at
  least 1.7x faster).

The files are deleted at the end (``--keep`` keeps them, and ``--model DIR`` compresses a kept
model again). ``--size`` picks the model
(``1b``: 1.1B parameters, TinyLlama's shape; ``300m``: 0.33B; ``--quick``: 30M);
``--blocks N`` writes only its first N blocks (same widths, embeddings and head), which
bounds the time while the memory, one block at a time, stays the whole model's; peak
memory is always given against the whole model's float32 bytes.
Timings depend on the machine's load: the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    "300m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=32000),
    "quick": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=32000),
}
SHARD_BYTES = 1 << 30


def write_random_llama(folder: Path, shape: dict, *, seed: int = 0) -> int:
    """Write a random Llama of ``shape`` block by block as sharded safetensors; returns its parameter count."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from tnkit.compress.storage.models import tiny_tokenizer
    from tnkit.compress.scale.plan import meta_model

    config = LlamaConfig(**shape, max_position_embeddings=2048, tie_word_embeddings=False)
    config.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    model = meta_model(config)
    gen = torch.Generator().manual_seed(seed)
    weight_map, shard, shard_bytes, n_shards, n_params = {}, {}, 0, 0, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, n_shards
        if shard:
            n_shards += 1
            name = f"model-{n_shards:05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
            shard, shard_bytes = {}, 0

    for name, p in model.named_parameters():
        t = torch.ones(p.shape) if name.endswith("norm.weight") else torch.randn(p.shape, generator=gen) * 0.02
        shard[name] = t
        shard_bytes += 4 * t.numel()
        n_params += t.numel()
        if shard_bytes >= SHARD_BYTES:
            flush()
    flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 4 * n_params},
                                                                     "weight_map": weight_map}))
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 9))) for _ in range(4000)]
    (folder / "calib.txt").write_text(" ".join(rng.choice(words, 60000)))
    return n_params


def count_parameters(shape: dict) -> int:
    """Parameters of the random Llama of ``shape`` (built on ``meta``: nothing allocated)."""
    from transformers import LlamaConfig

    from tnkit.compress.scale.plan import meta_model

    model = meta_model(LlamaConfig(**shape, max_position_embeddings=2048, tie_word_embeddings=False))
    return sum(p.numel() for p in model.parameters())


def run_ranks(model: Path, out: Path, n: int, args: argparse.Namespace) -> dict:
    """``tnkit compress --stream`` on ``n`` ranks; the command's report."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), "-m", "tnkit",
           "compress", str(model), "--out", str(out), "--stream", "--method", args.method, "--ratio", str(args.ratio),
           "--calib-text", str(model / "calib.txt"), "--calib-tokens", str(args.calib_tokens), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    report = json.loads((out / "tnkit_stream.json").read_text())
    shutil.rmtree(out)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="300m",
                   help="random-weight Llama to write and compress: 1b (about 1.1B parameters), 300m (0.34B), "
                        "quick (30M); default 300m")
    p.add_argument("--quick", action="store_true", help="the 30M model (under a minute)")
    p.add_argument("--method", default="whiten",
                   help="streamed method (svd, asvd, whiten, mpo, mpo-whiten); default whiten")
    p.add_argument("--ratio", type=float, default=0.8,
                   help="fraction of the block linear weights kept; default 0.8")
    p.add_argument("--calib-tokens", type=int, default=4096,
                   help="calibration tokens, read from a generated text of random words beside the model; default 4096")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2],
                   help="torchrun world sizes to run, one run each; default 1 2")
    p.add_argument("--blocks", type=int, default=None, metavar="N",
                   help="only the first N blocks of the model (same widths, embeddings and head): memory per block "
                        "is that of the whole model, time about N / depth of it; default: every block")
    p.add_argument("--dir", default=None, help="where to write the model (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the written model")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="compress the model an earlier --keep run wrote to DIR instead of writing one (same --size "
                        "and --blocks)")
    p.add_argument("--json", action="store_true", help="one JSON object per case on stdout, nothing else")
    args = p.parse_args(argv)
    size = "quick" if args.quick else args.size
    root = Path(tempfile.mkdtemp(prefix="tnkit-scale-", dir=args.dir))
    say = (lambda *a: None) if args.json else print
    try:
        load = os.getloadavg()
        t0 = time.perf_counter()
        shape = dict(SIZES[size])
        if args.blocks is not None:
            if not 1 <= args.blocks <= shape["num_hidden_layers"]:
                raise SystemExit(f"--blocks must lie in [1, {shape['num_hidden_layers']}] for --size {size}")
            shape["num_hidden_layers"] = args.blocks
            size = f"{size}-{args.blocks}blocks"
        model = Path(args.model) if args.model else root / "model"
        if args.model:
            if json.loads((model / "config.json").read_text())["num_hidden_layers"] != shape["num_hidden_layers"]:
                raise SystemExit(f"--model {model} does not hold the {size} model")
            n_params = count_parameters(shape)
        else:
            n_params = write_random_llama(model, shape)
        f32 = 4 * count_parameters(SIZES["quick" if args.quick else args.size])  # the whole model's, as the goal
        made = f"in {model}" if args.model else f"written in {time.perf_counter() - t0:.0f} s"
        say(f"{size}: {n_params:,} parameters {made}; the whole model "
            f"{f32 / 2**30:.2f} GiB in float32; load average {load[0]:.1f}")
        rows, reports = [], {}
        for n in args.ranks:
            rep = reports[n] = run_ranks(model, root / f"out-{n}", n, args)
            for rank, peak in enumerate(rep["peak_rss_bytes"]):
                rows.append({"benchmark": "compress_scale", "case": f"stream_{size}_{n}ranks_rank{rank}",
                             "metric": "peak_rss_bytes", "tnkit": peak, "reference": "float32 model bytes",
                             "reference_value": f32, "ratio": peak / f32,
                             "runtime_rss_bytes": rep["runtime_rss_bytes"][rank]})
            say(f"{n} rank(s): peak RSS " + ", ".join(f"{b / 2**30:.2f} GiB ({b / f32:.0%})"
                                                    for b in rep["peak_rss_bytes"])
                + f" (runtime {max(rep['runtime_rss_bytes']) / 2**30:.2f} GiB); factorisation "
                  f"{rep['factorise_seconds']:.1f} s (CPU s per rank: "
                  + ", ".join(f"{c:.1f}" for c in rep["factorise_cpu_seconds_per_rank"])
                + f"), statistics {rep['stats_seconds']:.1f} s, total {rep['total_seconds']:.1f} s")
        if 1 in reports and 2 in reports:
            t1, t2 = reports[1]["factorise_seconds"], reports[2]["factorise_seconds"]
            rows.append({"benchmark": "compress_scale", "case": f"factorise_{size}_2ranks", "metric": "seconds",
                         "tnkit": t2, "reference": "1 rank", "reference_value": t1, "ratio": t2 / t1,
                         "cpu_seconds_per_rank": reports[2]["factorise_cpu_seconds_per_rank"],
                         "load_average": os.getloadavg()[0]})
            say(f"factorisation stage: 1 rank {t1:.1f} s, 2 ranks {t2:.1f} s: {t1 / t2:.2f}x faster")
        say(f"load average after: {os.getloadavg()[0]:.1f}")
        if args.json:
            for row in rows:
                print(json.dumps(row))
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
