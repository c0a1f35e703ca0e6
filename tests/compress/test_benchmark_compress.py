"""``benchmarks/compress.py --quick``: the baselines share one statistics pass, rows are saved and plotted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_script

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

CHECKOUT = Path(__file__).resolve().parents[2]
SCRIPT = CHECKOUT / "benchmarks" / "compress.py"

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="the benchmarks are not part of this copy")


@pytest.fixture
def bench(monkeypatch):
    """``benchmarks/compress.py`` imported as a module."""
    return load_script(monkeypatch, SCRIPT, "_bench_compress_under_test")


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


def test_pareto_plot_draws_one_line_per_method_and_healing_budget(bench, monkeypatch, tmp_path):
    """Healed rows of one nominal budget (201 and 213 CPU s spent) form one line, labelled by the budget."""
    import matplotlib.axes

    def row(case, value, **extra):
        return json.dumps({"case": case, "tnkit": value, "ratio": extra.pop("ratio", None),
                           "reference_value": 20.0, **extra})

    lines = [row("params_whiten_keep90", 1.0, ratio=0.92), row("params_whiten_keep70", 1.0, ratio=0.76),
             row("perplexity_whiten_keep90", 71.0), row("perplexity_whiten_keep70", 245.0),
             row("perplexity_whiten_keep90_healed", 42.0, heal_loss="lm", heal_cpu_seconds=201.0),
             row("perplexity_whiten_keep70_healed", 78.0, heal_loss="lm", heal_cpu_seconds=213.0)]
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("\n".join(lines) + "\n")
    drawn = []
    real = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        drawn.append((kwargs.get("label"), len(args[0]) if args and hasattr(args[0], "__len__") else None))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    png = tmp_path / "pareto.png"
    bench.plot_pareto([rows_file], png)
    assert png.stat().st_size > 0
    assert ("whiten", 2) in drawn
    assert ("whiten + healing (lm, ~200 CPU s)", 2) in drawn
