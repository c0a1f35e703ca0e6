"""Package structure: public names, layering, import cost, command line."""

from __future__ import annotations

import ast
import importlib
import math
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tnkit

PACKAGE_ROOT = Path(tnkit.__file__).parent


def _modules():
    for info in pkgutil.walk_packages([str(PACKAGE_ROOT)], prefix="tnkit."):
        if info.name != "tnkit.__main__":
            yield info.name


#: Former module names kept by the import hook of ``tnkit.core.moved``: importing one
#: warns (FutureWarning) and gives the module that replaced it.
RENAMED_MODULES = {"tnkit.aqc.init": "tnkit.aqc.initial", "tnkit.inspect": "tnkit.describe",
                   "tnkit.interop.quimb": "tnkit.mps.quimb", "tnkit.interop.ttn_quimb": "tnkit.ttn.quimb"}


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_has_docstring_and_valid_all(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    for public in getattr(module, "__all__", []):
        assert hasattr(module, public), f"{name}.__all__ names missing {public!r}"


@pytest.mark.parametrize("name", sorted(RENAMED_MODULES))
def test_a_former_module_name_gives_the_module_that_replaced_it(name):
    sys.modules.pop(name, None)  # import afresh so that the warning is emitted
    with pytest.warns(FutureWarning, match=RENAMED_MODULES[name]):
        module = importlib.import_module(name)
    assert module is importlib.import_module(RENAMED_MODULES[name])
    assert not (PACKAGE_ROOT.parent / (name.replace(".", "/") + ".py")).exists()


def test_top_level_all():
    for name in tnkit.__all__:
        assert hasattr(tnkit, name)
    assert tnkit.MPS is tnkit.MatrixProductState
    assert tnkit.MPO is tnkit.MatrixProductOperator
    assert tnkit.TTN is tnkit.TreeTensorNetwork


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found.add("." * node.level + base)
    return found


def test_core_imports_nothing_above_it():
    """Layering: tnkit.core depends on no other tnkit subpackage and no optional stack."""
    for path in (PACKAGE_ROOT / "core").glob("*.py"):
        for imp in _imports(path):
            assert not imp.startswith(("..mps", "..ml", "..aqc", "..compress", "..ttn", "tnkit.")), (path, imp)
            assert imp.split(".")[0] not in {"torch", "qiskit", "quimb", "sklearn"}, (path, imp)


def test_static_check_finds_no_undefined_or_unused_names():
    """pyflakes' rules (ruff ``F``: undefined names, unused imports and variables, bad format strings) over the repository.

    The test extra installs ruff; a user who installed only the package skips this.
    """
    pytest.importorskip("ruff", reason="ruff is in the test extra: pip install -e '.[test]'")
    from ruff.__main__ import find_ruff_bin

    repo = PACKAGE_ROOT.parent
    paths = [str(repo / p) for p in ("tnkit", "tests", "benchmarks", "examples", "docs") if (repo / p).exists()]
    out = subprocess.run([find_ruff_bin(), "check", "--no-cache", "--select", "F", *paths],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"ruff check --select F:\n{out.stdout}{out.stderr}"


def test_import_is_light():
    code = (
        "import sys, tnkit; heavy = [m for m in ('scipy', 'quimb', 'qiskit', 'torch', 'matplotlib') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing tnkit pulled in {out.stdout.strip()}"


def test_cli_version_and_help():
    from tnkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    for command in ("demo", "inspect"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0


def test_cli_demo_runs_and_reports(tmp_path, capsys):
    from tnkit.cli import main

    status = main(["demo", "--sections", "engine", "--n-sites", "10", "--samples", "500", "--sim-bond", "16",
                   "--max-bond", "4", "--out", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "samples with total Sz = 0: 100.0%" in out
    assert (tmp_path / "xxz_quench.npz").exists() and (tmp_path / "xxz_entropy.png").exists()
    assert main(["inspect", str(tmp_path / "xxz_quench.npz")]) == 0
    assert "bond dims" in capsys.readouterr().out


def test_demo_product_tour_reports_every_product(capsys):
    from tnkit.demo import SECTIONS, run_tour

    results = run_tour(SECTIONS, seed=0)
    out = capsys.readouterr().out
    for name in ("tree", "classifier", "generative", "inpaint", "tree-born", "aqc", "compress"):
        assert f"] {name}" in out, f"the tour printed no {name!r} step"
    assert results["born_valid_fraction"] == 1.0
    assert results["ttn_born_nll"] < math.log(30) + 0.05
    assert results["classifier_accuracy"] > 0.8
    assert results["aqc_fidelity"] > 0.95
    assert results["ttn_error_bond8"] < results["ttn_error_bond4"]


def test_cli_demo_rejects_unknown_sections(capsys):
    from tnkit.cli import main

    with pytest.raises(SystemExit) as exc:  # an argparse usage error, before the tour starts
        main(["demo", "--sections", "engine,nope"])
    assert exc.value.code == 2
    assert "--sections" in capsys.readouterr().err


def test_cli_reports_missing_file(tmp_path, capsys):
    from tnkit.cli import main

    assert main(["inspect", str(tmp_path / "nope.npz")]) == 1
    assert "no such file" in capsys.readouterr().err
