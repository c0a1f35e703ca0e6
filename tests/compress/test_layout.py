"""The layout of ``tnkit.compress``: subpackages by concern, the former flat paths kept as
warning aliases of the very same modules, a light package import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import tnkit.compress as pkg


@pytest.mark.parametrize("old", sorted(pkg.MOVED_MODULES))
def test_a_former_module_path_warns_and_is_the_module_at_its_new_path(old):
    new = pkg.MOVED_MODULES[old]
    sys.modules.pop(old, None)  # import afresh so that the warning is emitted
    with pytest.warns(FutureWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new  # the alias leaves the module's own spec


def test_the_former_path_works_in_import_statements_and_points_the_warning_at_the_importer():
    sys.modules.pop("tnkit.compress.profile", None)
    with pytest.warns(FutureWarning, match="recipes.sensitivity") as record:
        from tnkit.compress.profile import sensitivity_profile
    assert sensitivity_profile is pkg.sensitivity_profile
    assert record[0].filename == __file__


def test_new_paths_do_not_warn_and_unknown_paths_still_fail():
    importlib.import_module("tnkit.compress.numerics.factorize")  # filterwarnings=error
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tnkit.compress.not_a_module")


def test_every_public_name_lives_in_a_subpackage_module():
    for name, module in pkg._SUBMODULE_OF.items():
        assert "." in module, f"{name} is mapped to {module!r}, not to a module of a subpackage"
        assert getattr(pkg, name) is getattr(importlib.import_module(f"tnkit.compress.{module}"), name)


def test_importing_a_former_path_imports_no_more_than_its_module():
    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); "
        "import tnkit.compress.factorize; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_single_family_method_has_a_layer_builder_and_a_size_curve():
    from tnkit.compress.recipes import pipeline

    single = {name for name, spec in pipeline.METHOD_SPECS.items() if not spec.plans_sizes}
    assert single == set(pipeline.METHODS) - {"auto", "search", "prune"}
    assert set(pipeline._LAYER_BUILDERS) == single and set(pipeline._SIZE_CURVES) == single
    # a method that plans its own sizes is either a recipe of its own or the search
    planners = {name for name, spec in pipeline.METHOD_SPECS.items() if spec.plans_sizes}
    searches = {name for name, spec in pipeline.METHOD_SPECS.items() if spec.search}
    assert set(pipeline._RECIPE_RUNNERS) | searches == planners and not set(pipeline._RECIPE_RUNNERS) & searches


def test_method_specs_decide_the_option_rules():
    import tnkit.compress as tc
    from tnkit.compress.recipes import pipeline

    assert tc.METHODS == tuple(tc.METHOD_SPECS) and tc.METHOD_SPECS["whiten"] == tc.MethodSpec(needs_data=True)
    assert pipeline.NEEDS_DATA == ("auto", "search", "asvd", "whiten", "mpo-aware", "mpo-whiten", "prune")
    model = tc.tiny_llama()
    for method, spec in tc.METHOD_SPECS.items():
        if spec.plans_sizes:  # a fixed bond is refused before any work
            with pytest.raises(ValueError, match="plans sizes for a `ratio`"):
                tc.compress_model(model, method=method, max_bond=4, progress=False)
        if spec.needs_data and method not in ("auto",):
            with pytest.raises(ValueError, match="data-aware|calibration"):
                tc.compress_model(model, method=method, ratio=0.5, progress=False)


@pytest.mark.parametrize("package", ["mps", "ttn"])
def test_the_former_truncation_module_path_is_the_truncation_module(package):
    truncation = importlib.import_module(f"tnkit.{package}.truncation")

    sys.modules.pop(f"tnkit.{package}.compress", None)
    with pytest.warns(FutureWarning, match=f"tnkit.{package}.compress has moved to tnkit.{package}.truncation"):
        module = importlib.import_module(f"tnkit.{package}.compress")
    assert module is truncation


def test_alias_moved_modules_refuses_a_bad_map():
    from tnkit.core.moved import alias_moved_modules, moved_modules

    with pytest.raises(ValueError, match="`moved`"):
        alias_moved_modules({"tnkit.x": "tnkit.x"})
    assert moved_modules()["tnkit.compress.lowrank"] == "tnkit.compress.layers.lowrank"
