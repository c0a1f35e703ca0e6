"""``tnkit aqc`` and the library recipe behind it: options checked before work, outputs, exit codes."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tnkit import MPS
from tnkit.aqc.cli import EXIT_TARGET_MISSED, add_parser
from tnkit.aqc.recipe import ANSATZ_BUILDERS, GROW_CHOICES, AQCSettings, run_aqc
from tnkit.errors import ConvergenceWarning

DOCS = Path(__file__).resolve().parents[2] / "docs" / "aqc.md"


def _parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tnkit")
    add_parser(root.add_subparsers(dest="command"))
    return root


def _aqc(argv, capsys=None):
    """Run ``tnkit aqc ARGV`` through the subcommand's own parser; return the exit status."""
    args = _parser().parse_args(["aqc", *argv])
    return args.func(args)


def _usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        _aqc(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: tnkit aqc") and lines[-1].startswith("tnkit aqc: error: ")
    return lines[-1]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--basis", "foo,bar"], r"--basis names unknown gates \['foo', 'bar'\]"),
        (["--basis", "rz"], r"--basis rz cannot express"),
        (["--depth", "100000"], r"argument --depth: must be an integer from 0 to 1000"),
        (["--depth", "0"], r"--depth 0 .* needs --grow"),
        (["--target-fidelity", "1.5"], r"argument --target-fidelity: must lie in \(0, 1\]"),
        (["--max-bond", "0"], r"argument --max-bond"),
        (["--coupling-map", "0-1,2-3"], r"--coupling-map must connect qubits 0..5"),
        (["--coupling-map", "0-0"], r"two different"),
        (["--coupling-map", "zigzag"], r"argument --coupling-map"),
        (["--coupling-map", "0-2,2-4,1-3,3-5,0-1", "--ansatz", "ran"], r"lacks the pairs .* of the line"),
        (["--cnot-budget", "30", "--depth", "2"], r"--cnot-budget applies to the 'trotter' ansatz"),
        (["--ansatz", "trotter"], r"'trotter' needs a spin-chain model, not --mps"),
        (["--delta", "0.3"], r"--delta: model options, which do not apply to --mps"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(capsys, tmp_path, state_file, no_work, extra, message):
    line = _usage_error(capsys, ["--mps", str(state_file), "--out", str(tmp_path / "c.qasm"), *extra])
    assert re.search(message, line), line


def test_model_options_are_checked_before_the_target_is_simulated(capsys, tmp_path, no_work):
    out = str(tmp_path / "c.qasm")
    line = _usage_error(capsys, ["--n-sites", "1000", "--depth", "1000", "--out", out])
    assert "more than 10000 (MAX_BLOCKS)" in line and "--depth 1000" in line
    assert "--n-sites" in _usage_error(capsys, ["--n-sites", "1", "--out", out])
    assert "--time" in _usage_error(capsys, ["--time", "inf", "--out", out])
    assert "--initial" in _usage_error(capsys, ["--n-sites", "4", "--initial", "012", "--out", out])
    assert "--delta applies to --model xxz only" in _usage_error(
        capsys, ["--model", "tfim", "--delta", "1", "--out", out]
    )


def test_unusable_mps_files_are_usage_errors(capsys, tmp_path, no_work):
    out = str(tmp_path / "c.qasm")
    unnormalised = tmp_path / "big.npz"
    (MPS.random(4, 2, seed=1) * 3.0).save(unnormalised)
    assert "must be normalised" in _usage_error(capsys, ["--mps", str(unnormalised), "--out", out])
    qutrits = tmp_path / "qutrits.npz"
    MPS.random(4, 2, phys_dim=3, seed=1).normalized().save(qutrits)
    assert "physical dimension 2" in _usage_error(capsys, ["--mps", str(qutrits), "--out", out])
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    assert "--mps" in _usage_error(capsys, ["--mps", str(junk), "--out", out])


def test_a_cnot_budget_below_the_seed_is_refused_before_any_work(capsys, tmp_path, no_work):
    out = str(tmp_path / "c.qasm")
    line = _usage_error(capsys, ["--n-sites", "8", "--depth", "3", "--cnot-budget", "20", "--out", out])
    assert re.search(r"--cnot-budget 20 is below the \d+ CNOTs of the 'trotter' ansatz", line), line
    line = _usage_error(
        capsys,
        [
            "--n-sites",
            "8",
            "--ansatz",
            "brickwall",
            "--depth",
            "4",
            "--grow",
            "brickwall",
            "--cnot-budget",
            "10",
            "--out",
            out,
        ],
    )
    assert "below the 34 CNOTs of the 'brickwall' ansatz" in line


def test_clashing_or_unwritable_outputs_are_refused_before_any_work(capsys, tmp_path, state_file, no_work):
    base = ["--mps", str(state_file)]
    assert "ends in .json" in _usage_error(capsys, [*base, "--out", str(tmp_path / "x.json")])
    same = str(tmp_path / "c.qasm")
    assert "same file" in _usage_error(capsys, [*base, "--out", same, "--report", same])
    assert "same file" in _usage_error(
        capsys, [*base, "--out", same, "--report", str(tmp_path / "." / "c.qasm")]
    )
    assert "input MPS" in _usage_error(capsys, [*base, "--out", str(state_file)])
    assert "does not exist" in _usage_error(capsys, [*base, "--out", str(tmp_path / "nope" / "c.qasm")])
    assert "is a directory" in _usage_error(capsys, [*base, "--out", str(tmp_path)])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if not os.access(locked, os.W_OK):  # root may write anywhere
            assert "not writable" in _usage_error(capsys, [*base, "--out", str(locked / "c.qasm")])
    finally:
        locked.chmod(0o700)
    assert not list(tmp_path.glob("*.qasm")) and not list(tmp_path.glob("*.json"))


def test_a_missed_target_warns_and_exits_non_zero_unless_allowed(capsys, tmp_path, state_file):
    """The issue's case: a brickwall from an MPS file that cannot reach 0.999; exit 3, files still written."""
    out = tmp_path / "s.qasm"
    argv = [
        "--mps",
        str(state_file),
        "--ansatz",
        "brickwall",
        "--depth",
        "2",
        "--max-iter",
        "15",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert _aqc(argv) == EXIT_TARGET_MISSED
    err = capsys.readouterr().err
    assert "warning: fidelity" in err and "misses --target-fidelity 0.999" in err and "--allow-miss" in err
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["target_reached"] is False and report["fidelity"] < 0.999
    assert report["iterations"] > 5 and report["fidelity"] > 10 * report["initial_fidelity"]  # it did move
    assert _aqc([*argv, "--allow-miss"]) == 0
    assert "warning: fidelity" in capsys.readouterr().err


def test_report_keeps_the_requested_and_the_circuit_depth(tmp_path, state_file):
    out = tmp_path / "s.qasm"
    assert (
        _aqc(
            [
                "--mps",
                str(state_file),
                "--depth",
                "2",
                "--max-iter",
                "5",
                "--allow-miss",
                "--out",
                str(out),
                "--report",
                str(tmp_path / "r.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["depth"] == 2 and report["ansatz"] == "ran"  # ran is the default for --mps
    from tnkit.aqc import read_qasm

    assert report["circuit_depth"] == read_qasm(out).depth() > report["depth"]
    assert report["settings"]["depth"] == 2 and report["settings"]["mps"] == str(state_file)
    assert not out.with_suffix(".json").exists()


@pytest.mark.parametrize(
    "spec", ["ring", "0-1,1-2,2-3,3-4,4-5,5-0", "[[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [0, 5]]"]
)
def test_coupling_map_builds_the_brickwall_and_the_circuit_respects_it(tmp_path, state_file, spec):
    from tnkit.aqc import circuit_fidelity, read_qasm

    out = tmp_path / "ring.qasm"
    assert (
        _aqc(
            [
                "--mps",
                str(state_file),
                "--ansatz",
                "brickwall",
                "--depth",
                "3",
                "--coupling-map",
                spec,
                "--basis",
                "cz,rz,sx,x",
                "--max-iter",
                "10",
                "--allow-miss",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    qc = read_qasm(out)
    ring = {frozenset((q, (q + 1) % 6)) for q in range(6)}
    pairs = {
        frozenset(qc.find_bit(q).index for q in inst.qubits)
        for inst in qc.data
        if inst.operation.num_qubits == 2
    }
    assert pairs <= ring and frozenset((0, 5)) in pairs  # the ring's closing pair is used
    assert set(qc.count_ops()) <= {"cz", "rz", "sx", "x"}
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["circuit_fidelity"] == pytest.approx(report["fidelity"], abs=1e-8)
    assert circuit_fidelity(qc, MPS.load(state_file)) == pytest.approx(report["fidelity"], abs=1e-8)


def test_coupling_map_from_a_file_and_on_a_larger_device(tmp_path, state_file):
    path = tmp_path / "device.json"
    path.write_text(json.dumps([[q, q + 1] for q in range(9)]))  # a 10-qubit line; the circuit uses 6
    out = tmp_path / "c.qasm"
    assert (
        _aqc(
            [
                "--mps",
                str(state_file),
                "--coupling-map",
                str(path),
                "--depth",
                "1",
                "--max-iter",
                "3",
                "--allow-miss",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["settings"]["coupling_map"][:2] == [[0, 1], [1, 2]]
    assert report["circuit_fidelity"] == pytest.approx(report["fidelity"], abs=1e-8)


def test_grow_choices_match_the_library_and_the_docs():
    (aqc,) = [a for a in _parser()._subparsers._group_actions[0].choices["aqc"]._actions if a.dest == "grow"]
    assert tuple(aqc.choices) == GROW_CHOICES == ("none", "brickwall", "ran", "ran-brickwall")
    documented = set(re.findall(r'grow="([a-z-]+)"', DOCS.read_text()))
    assert documented and documented <= set(GROW_CHOICES)
    assert set(GROW_CHOICES) - {"none"} <= documented
    cli_section = DOCS.read_text().split("## Command line", 1)[1]
    for option in ("--coupling-map", "--allow-miss", "--grow", "ran-brickwall"):
        assert option in cli_section


def test_help_explains_every_option():
    sub = _parser()._subparsers._group_actions[0].choices["aqc"]
    for action in sub._actions:
        assert action.help and len(action.help) > 10, action.dest
    text = sub.format_help()
    assert "Exit status" in text and str(EXIT_TARGET_MISSED) in text


def test_recipe_is_a_library_call_with_a_registry_of_ansatz_builders(tmp_path, monkeypatch):
    from tnkit.aqc import brickwall_ansatz

    calls = []

    def two_layers(request):
        calls.append(request.settings.depth)
        ansatz = brickwall_ansatz(request.target.n_sites, 2)
        return ansatz, np.full(ansatz.n_params, 0.1)

    monkeypatch.setitem(ANSATZ_BUILDERS, "mine", two_layers)
    settings = AQCSettings(
        out=tmp_path / "m.qasm",
        n_sites=4,
        time=0.3,
        target_steps=10,
        ansatz="mine",
        depth=5,
        max_iter=40,
        target_fidelity=0.95,
        progress=False,
    )
    run = run_aqc(settings)
    assert calls == [5] and run.result.ansatz.n_blocks == 3 and run.target_reached
    assert run.qasm_path.exists() and json.loads(run.report_path.read_text()) == run.report
    with pytest.warns(ConvergenceWarning, match="below the target"):
        missed = run_aqc(
            AQCSettings(
                out=tmp_path / "n.qasm",
                n_sites=4,
                time=0.3,
                target_steps=10,
                ansatz="brickwall",
                depth=1,
                max_iter=3,
                target_fidelity=1.0,
                progress=False,
            )
        )
    assert not missed.target_reached and missed.report["target_reached"] is False


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(depth=100000), ValueError, "`depth` must be an integer from 0 to 1000"),
        (dict(depth=2.5), TypeError, "`depth` must be an integer"),
        (dict(ansatz="nope"), ValueError, "`ansatz` must be one of"),
        (dict(grow="ran-staircase"), ValueError, "`grow` must be one of"),
        (dict(time=float("nan")), ValueError, "`time` must be a finite number"),
        (dict(basis="ecr,rz"), TypeError, "`basis` must be a non-empty sequence"),
        (dict(coupling_map="star"), ValueError, "`coupling_map` must be 'linear', 'ring'"),
        (dict(target_fidelity=0.0), ValueError, r"`target_fidelity` must lie in \(0, 1\]"),
    ],
)
def test_settings_check_every_field_on_construction(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        AQCSettings(out=tmp_path / "c.qasm", **kwargs)


def test_without_torch_and_without_qiskit(tmp_path):
    """``tnkit aqc`` never imports torch; a missing Qiskit is one line naming the extra."""
    code = f"""
import sys
sys.modules["torch"] = None
import argparse
from tnkit.aqc.cli import add_parser
root = argparse.ArgumentParser(prog="tnkit")
add_parser(root.add_subparsers())
args = root.parse_args(["aqc", "--n-sites", "4", "--depth", "1", "--max-iter", "2", "--allow-miss",
                        "--no-progress", "--out", {str(tmp_path / "c.qasm")!r}])
assert args.func(args) == 0
assert "torch" not in [m.split(".")[0] for m, v in sys.modules.items() if v is not None]
for name in [m for m in sys.modules if m == "qiskit" or m.startswith("qiskit.")]:
    del sys.modules[name]
sys.modules["qiskit"] = None
try:
    args.func(args)
except ImportError as exc:
    print("IMPORT:", exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("IMPORT:")]
    assert "pip install 'tnkit[aqc]'" in line
    assert (tmp_path / "c.qasm").exists()


def _ghz_file(tmp_path: Path, n: int) -> Path:
    """``(|0...0> + |1...1>) / sqrt 2`` as a saved bond-2 MPS."""
    first = np.zeros((1, 2, 2))
    first[0, 0, 0] = first[0, 1, 1] = 2**-0.5
    middle = np.zeros((2, 2, 2))
    middle[0, 0, 0] = middle[1, 1, 1] = 1.0
    last = np.zeros((2, 2, 1))
    last[0, 0, 0] = last[1, 1, 0] = 1.0
    path = tmp_path / "ghz.npz"
    MPS([first] + [middle] * (n - 2) + [last]).save(path)
    return path


def test_mps_default_grows_ran_layers_to_the_target_instead_of_a_fixed_depth(tmp_path):
    """A GHZ state needs one staircase; three fixed Ran layers triple its CNOTs."""
    target = _ghz_file(tmp_path, 6)
    reports = {}
    for name, extra in [("default", []), ("fixed", ["--depth", "3"])]:
        out = tmp_path / f"{name}.qasm"
        assert _aqc(["--mps", str(target), "--out", str(out), "--no-progress", *extra]) == 0
        reports[name] = json.loads(out.with_suffix(".json").read_text())
    default, fixed = reports["default"], reports["fixed"]
    assert default["settings"]["grow"] == "ran" and default["settings"]["depth"] == 0
    assert fixed["settings"]["grow"] == "none" and fixed["settings"]["depth"] == 3
    assert default["fidelity"] > 0.999 and fixed["fidelity"] > 0.999
    assert default["cnots"] <= 15 < 40 <= fixed["cnots"]  # one layer of 5 blocks, against three


def test_mps_default_growth_stops_at_the_cnot_budget(tmp_path, state_file):
    out = tmp_path / "c.qasm"
    status = _aqc(["--mps", str(state_file), "--out", str(out), "--no-progress", "--cnot-budget", "15",
                   "--target-fidelity", "1", "--allow-miss"])
    report = json.loads(out.with_suffix(".json").read_text())
    assert status == 0 and report["settings"]["grow"] == "ran" and 0 < report["cnots"] <= 15
