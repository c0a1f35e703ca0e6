"""Run by ``torchrun`` from tests/compress/test_distributed.py: the work of every rank, results to files.

Usage: ``python -m torch.distributed.run --standalone --nproc_per_node 2 distributed_ranks.py MODEL_DIR OUT_DIR``.
Each rank compresses the streamed tiny Llama (two methods), takes one FSDP2 healing step,
and runs ``tnkit compress --stream``; rank 0 writes what the test compares with one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from tnkit.compress.scale.distributed import compress_streaming, heal_sharded, init_ranks

# the inputs, shared with the test module (one definition)
sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import CASES, calibration_batches, fsdp_case  # noqa: E402


def main(model_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    out_dir = Path(out)
    ranks = init_ranks()
    report = {"world_size": ranks.world_size}
    for name, kwargs in CASES.items():
        result = compress_streaming(model_dir, out_dir / name, calibration=calibration_batches(), progress=False,
                                    **kwargs)
        report[name] = sorted({rank for *_, rank in result.layers})
    model, ids, opts = fsdp_case()
    healed = heal_sharded(model, ids, **opts)
    full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
            for k, v in model.state_dict().items()}
    report["losses"] = list(healed.losses)
    if ranks.is_main:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in full.items() if k != "lm_head.weight"}, str(out_dir / "fsdp.safetensors"))
    from tnkit.cli import main as tnkit_main

    rc = tnkit_main(["compress", model_dir, "--out", str(out_dir / "cli"), "--stream", "--method", "whiten",
                     "--ratio", "0.6", "--calib-text", str(Path(model_dir) / "text.txt"), "--calib-tokens", "512",
                     "--seq-len", "32", "--no-progress", "--world-size", "2"])
    report["cli_rc"] = rc
    if ranks.is_main:
        (out_dir / f"report-{ranks.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:3])
