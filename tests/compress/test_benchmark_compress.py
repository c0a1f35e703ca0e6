"""``benchmarks/compress.py --quick``: the baselines share one statistics pass, rows are saved and plotted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

CHECKOUT = Path(__file__).resolve().parents[2]
SCRIPT = CHECKOUT / "benchmarks" / "compress.py"

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="the benchmarks are not part of this copy")


@pytest.fixture
def bench(monkeypatch):
    """``benchmarks/compress.py`` imported as a module (``sys.path`` restored afterwards)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("_bench_compress_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_quick_run_shares_statistics_saves_rows_and_plots(bench, monkeypatch, tmp_path, capsys):
    import tnkit.compress as tc
    from tnkit.compress.calibrate import calibration
    from tnkit.compress.recipes import pipeline

    passes = []
    real = tc.collect_activation_stats

    def counted(*args, **kwargs):
        passes.append(1)
        return real(*args, **kwargs)

    # the benchmark's own pass, and any pass compress_model or prune_width would make
    monkeypatch.setattr(tc, "collect_activation_stats", counted)
    monkeypatch.setattr(pipeline, "collect_activation_stats", counted)
    monkeypatch.setattr(calibration, "collect_activation_stats", counted)
    rows_file = tmp_path / "rows.jsonl"
    assert bench.main(["--quick", "--methods", "whiten,prune", "--speed-tokens", "0", "--json",
                       "--save-rows", str(rows_file)]) == 0
    capsys.readouterr()
    assert len(passes) == 1, "width pruning and the factorisations must reuse the benchmark's statistics"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    cases = {r["case"]: r for r in rows}
    for method in ("whiten", "prune"):
        assert cases[f"params_{method}_keep60"]["tnkit"] < cases[f"params_{method}_keep60"]["reference_value"]
        assert cases[f"perplexity_{method}_keep60"]["tnkit"] > 1.0
    assert cases["compress_seconds_whiten_keep60"]["lowrank_layers"] > 0
    assert cases["weight_error_prune_keep60"]["reference"] is None  # pruning has no weight error to compare
    png = tmp_path / "pareto.png"
    assert bench.main(["--plot", str(png), "--plot-rows", str(rows_file)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_families_are_checked_before_any_work(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--families", "lowrank,tucker"])
    assert exc.value.code == 2
    assert "--families" in capsys.readouterr().err
