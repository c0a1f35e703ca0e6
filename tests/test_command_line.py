"""The root command line: it starts without the optional stacks and fails in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tnkit.cli import COMMANDS, EXTRAS, build_parser, main

#: Runs ``tnkit.cli.main`` in a fresh interpreter in which the optional stacks cannot be
#: imported, as after ``pip install tnkit`` with no extras.
_CORE_ONLY = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {blocked!r}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, Blocker())
    from tnkit.cli import main
    try:
        status = main({argv!r})
    except SystemExit as exc:
        status = exc.code
    heavy = sorted(m for m in BLOCKED | {{"scipy"}} if m in sys.modules)
    print("IMPORTED:" + ",".join(heavy), file=sys.stderr)
    sys.exit(status)
    """
)


def _run_core_only(argv: list[str], blocked=frozenset(EXTRAS)) -> subprocess.CompletedProcess:
    code = _CORE_ONLY.format(blocked=set(blocked), argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_without_optional_stacks():
    out = _run_core_only(["--help"])
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert name in out.stdout
    # --help imports no command module's heavy stack, and not even scipy
    assert out.stderr.strip().endswith("IMPORTED:"), out.stderr


@pytest.mark.parametrize("argv, extra", [
    (["compress", "model-dir", "--out", "out-dir"], "llm"),
    (["eval", "model-dir"], "llm"),
    (["profile", "model-dir", "--out", "out-dir"], "llm"),
])
def test_command_needing_an_extra_names_it_in_one_line(argv, extra):
    out = _run_core_only(argv)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if not ln.startswith("IMPORTED:")]
    assert len(lines) == 1, out.stderr
    assert f"pip install 'tnkit[{extra}]'" in lines[0]
    assert "Traceback" not in out.stderr


def test_inspect_runs_without_optional_stacks(tmp_path):
    import tnkit

    path = tmp_path / "psi.npz"
    tnkit.MPS.random(6, max_bond=4, seed=0).save(path)
    out = _run_core_only(["inspect", str(path)])
    assert out.returncode == 0, out.stderr
    assert "bond" in out.stdout


def test_command_help_imports_only_that_command(monkeypatch):
    imported = []
    real = __import__("importlib").import_module

    def spy(name, *args, **kwargs):
        imported.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr("tnkit.cli.importlib.import_module", spy)
    build_parser(["inspect", "x.npz"])
    assert imported == ["tnkit.describe"]


def test_full_parser_registers_every_command():
    parser = build_parser(full=True)
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_failure_is_one_line_and_status_1(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tnkit inspect: error:")


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def _failing_command(args):
    raise ValueError("`--thing` must be positive, got -1")


def test_failure_escaping_a_command_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr("tnkit.describe._run", _failing_command)
    assert main(["inspect", "x.npz"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tnkit inspect: error: `--thing` must be positive, got -1"]


def test_debug_variable_shows_the_traceback(monkeypatch):
    monkeypatch.setattr("tnkit.describe._run", _failing_command)
    monkeypatch.setenv("TNKIT_DEBUG", "1")
    with pytest.raises(ValueError, match="--thing"):
        main(["inspect", "x.npz"])


def test_importing_the_compression_package_does_not_import_torch():
    code = "import sys, tnkit.compress, tnkit.compress.front.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compression_package_names_resolve_lazily():
    import tnkit.compress as tc

    assert set(tc.__all__) == set(tc._SUBMODULE_OF)
    assert tc.MPOLinear.__module__ == "tnkit.compress.layers.mpo_linear"
    with pytest.raises(AttributeError, match="no attribute"):
        tc.not_a_name  # noqa: B018


def test_demo_runs_its_engine_part_and_skips_missing_products_without_optional_stacks():
    out = _run_core_only(["demo", "--sections", "engine,tree,aqc,compress", "--n-sites", "8",
                          "--samples", "200", "--sim-bond", "16"])
    assert out.returncode == 0, out.stderr
    assert "Trotter gates applied with tnkit" in out.stdout
    assert "samples with total Sz = 0: 100.0%" in out.stdout
    for extra in ("ml", "aqc", "llm"):
        assert "skipped: " in out.stdout and f"pip install 'tnkit[{extra}]'" in out.stdout
    assert "Traceback" not in out.stderr


def test_aqc_without_qiskit_names_the_extra_in_one_line(tmp_path):
    out = _run_core_only(["aqc", "--n-sites", "6", "--out", str(tmp_path / "c.qasm")])
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if not ln.startswith("IMPORTED:")]
    assert len(lines) == 1 and "pip install 'tnkit[aqc]'" in lines[0], out.stderr


def test_demo_state_by_tnkit_gates_equals_the_qiskit_circuit_state():
    pytest.importorskip("qiskit")
    from tnkit import MPS
    from tnkit.demo import _quenched_state_by_gates, xxz_trotter_circuit

    by_gates, _, _ = _quenched_state_by_gates(8, 0.7, 3, 0.5, 64)
    by_qiskit = MPS.from_qiskit(xxz_trotter_circuit(8, 0.7, 3, 0.5))
    assert by_gates.fidelity(by_qiskit) == pytest.approx(1.0, abs=1e-12)


def test_no_compression_submodule_shadows_a_public_name():
    """A submodule named like a public function would replace it on the package once imported."""
    import pkgutil

    import tnkit.compress as tc

    submodules = {m.name for m in pkgutil.iter_modules(tc.__path__)}
    assert not submodules & set(tc.__all__)
