"""The full-set healing table of ``docs/compress.md`` quotes the rows kept in ``benchmarks/results``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = ROOT / "benchmarks" / "results" / "compress_full_eval.jsonl"
DOC = ROOT / "docs" / "compress.md"
KEEPS = (90, 80, 70, 60)


def _table() -> list[list[str]]:
    """The cells of the first table after the guide names the rows' file."""
    text = DOC.read_text()
    start = text.index(ROWS.name)
    lines = text[start:].splitlines()
    first = next(k for k, line in enumerate(lines) if line.startswith("| method"))
    rows = []
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _method(cell: str) -> str:
    return re.match(r"`([a-z]+)`", cell).group(1)


def _within_shown_digits(shown: str, value: float) -> bool:
    """``value`` rounds to ``shown`` (``27.08``, ``659``, ``1.97e+3``) at its last shown digit."""
    mantissa = shown.split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(shown.split("e")[1]) if "e" in shown else 0
    if "e" not in shown and decimals == 0:
        half_unit = 0.5
    else:
        half_unit = 0.5 * 10.0 ** (exponent - decimals)
    return math.isclose(float(shown), value, abs_tol=half_unit * 1.0001)


def test_every_measured_cell_is_a_saved_row():
    rows = {}
    for line in ROWS.read_text().splitlines():
        row = json.loads(line)
        rows[row["case"]] = row
    table = _table()
    assert {_method(r[0]) for r in table} >= {"auto", "prune", "whiten"}
    measured = 0
    for cells in table:
        method = _method(cells[0])
        for keep, cell in zip(KEEPS, cells[1:], strict=True):
            if cell == "not yet":
                continue
            before, after = (s.strip().strip("*") for s in cell.split("→"))
            case = f"perplexity_{method}_keep{keep}"
            assert _within_shown_digits(before, rows[case]["tnkit"]), (case, before, rows[case]["tnkit"])
            healed = rows[case + "_healed"]
            assert _within_shown_digits(after, healed["tnkit"]), (case, after, healed["tnkit"])
            assert rows[case]["window"] == 512 and rows[case]["stride"] == 256  # the full-set evaluation
            assert healed["heal_cpu_seconds"] >= 200  # the equal healing budget
            measured += 1
    assert measured >= 10


def test_the_shown_digits_rule():
    assert _within_shown_digits("27.08", 27.0812) and not _within_shown_digits("27.08", 27.09)
    assert _within_shown_digits("659", 658.72) and not _within_shown_digits("659", 657.9)
    assert _within_shown_digits("1.97e+3", 1969.09) and not _within_shown_digits("1.97e+3", 1960.0)
    assert _within_shown_digits("1.4e+6", 1411389.6) and not _within_shown_digits("1.4e+6", 1.5e6)
