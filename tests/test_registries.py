"""Choices come from registries of functions (unknown names list them); option rules live in the library."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tnkit import MPS
from tnkit.aqc.targets import INITIAL_STATES, initial_bits


def _listed(message: str, names) -> bool:
    return all(re.search(rf"\b{re.escape(name)}\b", message) for name in names)


@pytest.mark.parametrize("n", [1, 4, 5])
def test_every_initial_state_gives_n_bits(n):
    expected = {"neel": ("01" * n)[:n], "zeros": "0" * n}
    assert {name: initial_bits(n, name) for name in INITIAL_STATES} == expected
    assert initial_bits(n, "1" * n) == "1" * n


def test_an_unknown_initial_state_lists_the_names():
    with pytest.raises(ValueError, match="`initial`") as info:
        initial_bits(4, "up")
    assert _listed(str(info.value), INITIAL_STATES)


def test_every_coupling_map_connects_the_line():
    from tnkit.aqc.recipe import COUPLING_MAPS, resolve_coupling_map

    line = [(q, q + 1) for q in range(4)]
    assert resolve_coupling_map("linear", 5) == line
    assert resolve_coupling_map("ring", 5) == sorted(line + [(0, 4)])
    assert set(COUPLING_MAPS) == {"linear", "ring"}
    with pytest.raises(ValueError, match="`coupling_map`") as info:
        resolve_coupling_map("zigzag", 5)
    assert _listed(str(info.value), COUPLING_MAPS)


def test_every_fidelity_method_agrees_and_unknown_ones_are_listed():
    pytest.importorskip("qiskit")
    from tnkit.aqc.circuits import FIDELITY_METHODS, circuit_fidelity
    from tnkit.aqc.targets import initial_circuit

    circuit = initial_circuit(4, "neel")
    circuit.h(0)
    target = MPS.product_state([0, 1, 0, 1])
    values = {name: circuit_fidelity(circuit, target, method=name) for name in FIDELITY_METHODS}
    np.testing.assert_allclose(list(values.values()), 0.5, rtol=1e-12)
    with pytest.raises(ValueError, match="`method`") as info:
        circuit_fidelity(circuit, target, method="tebd")
    assert _listed(str(info.value), FIDELITY_METHODS)


def test_options_set_on_purpose_that_the_target_ignores_are_refused():
    """``check_given_options`` sees what the value checks cannot: a default chosen explicitly."""
    import dataclasses

    from tnkit.aqc.recipe import AQCSettings, check_given_options

    options = {f.name: f.default for f in dataclasses.fields(AQCSettings)} | {"out": "x.qasm"}
    check_given_options(options, {"n_sites", "time", "delta"})  # a Trotter quench of the XXZ chain
    cases = [
        ({"mps": "s.npz"}, {"n_sites"}, "`n_sites`: model options"),
        ({"model": "tfim"}, {"delta"}, "`delta` applies to `model` xxz only"),
        ({"mps": "s.npz"}, {"target_bond"}, "`target_bond`: options that build a model's target"),
        ({"ground_state": True}, {"time"}, "`time`: time-evolution options"),
        ({}, {"dt"}, "`dt`: apply to `evolve` tdvp"),
        ({"evolve": "tdvp"}, {"target_steps"}, "`target_steps`: Trotter steps"),
    ]
    for changed, given, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_given_options(options | changed, given)
