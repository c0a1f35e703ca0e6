"""The shared helpers of the benchmark scripts: units in the progress lines, and which tnkit they measure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
COMMON = CHECKOUT / "benchmarks" / "_common.py"

pytestmark = pytest.mark.skipif(not COMMON.is_file(), reason="the benchmarks are not part of this copy")


@pytest.fixture
def common(monkeypatch):
    """``benchmarks/_common.py`` imported with the checkout absent from ``sys.path`` (restored afterwards)."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != CHECKOUT])
    spec = importlib.util.spec_from_file_location("_bench_common_under_test", COMMON)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_importing_puts_this_checkout_before_site_packages(common):
    assert common.CHECKOUT == CHECKOUT
    assert sys.path[1] == str(CHECKOUT)


def test_child_processes_import_this_checkouts_tnkit(common, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = common.run_python("import tnkit; print(tnkit.__file__)")
    assert Path(out.strip()).resolve() == CHECKOUT / "tnkit" / "__init__.py"


@pytest.mark.parametrize(
    "value, metric, text",
    [
        (0.0123, "seconds", "12.30ms"),
        (2.5, "seconds", "2.50s"),
        (512, "bytes", "512 B"),
        (3 * 2**20, "peak_bytes", "3.00 MiB"),
        (0.9912, "fidelity", "0.991 fidelity"),
        (12345, "parameters", "12,345 parameters"),
        (None, "bytes", "-"),
    ],
)
def test_values_carry_the_unit_of_their_metric(common, value, metric, text):
    assert common.fmt_value(value, metric) == text


def test_progress_lines_name_the_unit_of_each_row(common, capsys):
    reporter = common.Reporter(False)
    reporter.emit(common.make_row("b", "size", 2048, "ref", 4096, metric="bytes"))
    reporter.emit(common.make_row("b", "time", 0.5, "ref", 1.0))
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "  size: tnkit 2.00 KiB, ref 4.00 KiB, ratio 0.500"
    assert err[1] == "  time: tnkit 500.00ms, ref 1.00s, ratio 0.500"
