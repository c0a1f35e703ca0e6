"""``tnkit aqc --ground-state`` (DMRG targets) and ``--evolve tdvp`` (TDVP targets)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy.sparse.linalg import expm_multiply

from tnkit.aqc.recipe import EVOLVE_METHODS, TARGET_BUILDERS, AQCSettings, run_aqc
from tnkit.aqc.targets import SpinChain

from .test_recipe_cli import _aqc, _parser, _usage_error


def _big_endian(qc) -> np.ndarray:
    """The state of a Qiskit circuit with qubit 0 as the most significant bit (tnkit's order)."""
    from qiskit.quantum_info import Statevector

    n = qc.num_qubits
    return Statevector(qc).data.reshape([2] * n).transpose(range(n - 1, -1, -1)).reshape(-1)


def test_cli_compiles_a_dmrg_ground_state_checked_against_exact_diagonalisation(tmp_path):
    import qiskit.qasm2

    n = 8
    out = tmp_path / "gs.qasm"
    argv = ["--ground-state", "--model", "heisenberg", "--n-sites", str(n), "--target-bond", "16"]
    status = _aqc([*argv, "--depth", "3", "--target-fidelity", "0.99", "--out", str(out), "--no-progress"])
    assert status == 0
    report = json.loads(out.with_suffix(".json").read_text())
    target = report["target"]
    assert target["kind"] == "ground-state" and target["model"] == "heisenberg" and target["converged"]
    assert "delta" not in target and (target["j"], target["h"]) == (1.0, 0.0)  # only what the model reads
    assert report["ansatz"] == "hva"  # the default for a Heisenberg ground state
    h = SpinChain.heisenberg(n).mpo().to_dense()
    energies, vectors = np.linalg.eigh(h)
    assert energies[1] - energies[0] > 0.1  # a unique ground state to compare with
    assert abs(target["energy"] - energies[0]) < 1e-8
    assert 0.0 <= target["truncation_error"] < 1e-10 and abs(target["variance"]) < 1e-8
    # the written circuit, simulated by Qiskit, prepares the exact ground state
    prepared = _big_endian(qiskit.qasm2.load(str(out)))
    fidelity = abs(np.vdot(vectors[:, 0], prepared)) ** 2
    assert fidelity >= 0.99
    assert abs(fidelity - report["circuit_fidelity"]) < 1e-6


def _settings(**kwargs) -> AQCSettings:
    return AQCSettings(out="unused.qasm", n_sites=8, progress=False, **kwargs)


@pytest.mark.parametrize("t", [0.6, -0.4])
def test_tdvp_target_matches_expm_multiply_and_the_trotter_target(t):
    s = _settings(time=t, evolve="tdvp", dt=0.02, target_bond=32)
    chain = SpinChain.xxz(8, delta=0.5)
    psi, info = TARGET_BUILDERS["tdvp"](s, chain)
    assert info["method"] == "tdvp" and info["steps"] == round(abs(t) / 0.02)
    start = np.zeros(2**8, dtype=complex)
    start[int("01010101", 2)] = 1.0
    exact = expm_multiply(-1j * t * chain.mpo().to_dense(), start)
    vector = psi.to_dense().reshape(-1)
    assert abs(np.linalg.norm(vector) - 1) < 1e-12
    assert 1 - abs(np.vdot(exact, vector)) ** 2 < 1e-6
    trotter, _ = TARGET_BUILDERS["trotter"](_settings(time=t, target_steps=60), chain)
    assert 1 - abs(trotter.inner(psi)) ** 2 < 1e-3


def test_cli_tdvp_target_is_compiled_and_reported(tmp_path):
    out = tmp_path / "xxz.qasm"
    argv = ["--n-sites", "6", "--time", "0.5", "--evolve", "tdvp", "--dt", "0.05", "--depth", "2"]
    assert _aqc([*argv, "--target-fidelity", "0.99", "--out", str(out), "--no-progress"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["target"]["kind"] == "tdvp" and report["target"]["method"] == "tdvp"
    assert report["target"]["steps"] == 10 and report["settings"]["evolve"] == "tdvp"
    assert report["fidelity"] >= 0.99 and report["circuit_fidelity"] >= 0.99
    # the default is still the Trotter target
    run = run_aqc(
        AQCSettings(
            out=tmp_path / "t.qasm", n_sites=6, time=0.5, depth=2, progress=False, target_fidelity=0.99
        )
    )
    assert run.report["target"]["kind"] == "trotter" and run.report["target"]["method"] == "trotter"


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--ground-state", "--time", "1"],
            r"--time: time-evolution options, which do not apply to --ground-state",
        ),
        (["--ground-state", "--initial", "zeros"], r"--initial: time-evolution options"),
        (["--ground-state", "--evolve", "tdvp"], r"--evolve: time-evolution options"),
        (["--ground-state", "--dt", "0.1"], r"--dt: time-evolution options"),
        (["--ground-state", "--ansatz", "trotter"], r"--ansatz 'trotter' is the circuit of a time evolution"),
        (["--evolve", "tdvp", "--target-steps", "10"], r"--target-steps: .* do not apply to --evolve tdvp"),
        (["--dt", "0.1"], r"--dt: apply to --evolve tdvp"),
        (["--target-bond", "8"], r"--target-bond: apply to --evolve tdvp"),
        (["--evolve", "tdvp", "--dt", "0"], r"argument --dt"),
        (["--evolve", "tdvp", "--dt", "-0.1"], r"argument --dt"),
        (["--evolve", "rk4"], r"argument --evolve: invalid choice"),
        (["--ground-state", "--target-bond", "0"], r"argument --target-bond"),
    ],
)
def test_bad_target_combinations_are_usage_errors(capsys, tmp_path, no_work, extra, message):
    line = _usage_error(capsys, ["--n-sites", "6", "--out", str(tmp_path / "c.qasm"), *extra])
    assert re.search(message, line), line


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--ground-state"],
            r"--ground-state: options that build a model's target, which do not apply to --mps",
        ),
        (["--evolve", "tdvp"], r"--evolve: options that build a model's target"),
        (["--target-bond", "4"], r"--target-bond: options that build a model's target"),
    ],
)
def test_model_targets_are_refused_with_a_saved_mps(capsys, tmp_path, state_file, no_work, extra, message):
    line = _usage_error(capsys, ["--mps", str(state_file), "--out", str(tmp_path / "c.qasm"), *extra])
    assert re.search(message, line), line


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(evolve="rk4"), ValueError, "`evolve` must be one of"),
        (dict(dt=0.0), ValueError, "`dt` must be a positive time step"),
        (dict(dt=float("inf")), ValueError, "`dt` must be a finite number"),
        (dict(target_bond=0), ValueError, "`target_bond` must be an integer from 1"),
        (dict(ground_state=1), TypeError, "`ground_state` must be a bool"),
        (dict(ground_state=True), ValueError, "`ansatz` 'trotter' is the circuit of a time evolution"),
        (dict(ground_state=True, ansatz="ran", evolve="tdvp"), ValueError, "`evolve` 'tdvp' does not apply"),
        (dict(mps="x.npz", ansatz="ran", ground_state=True), ValueError, "`ground_state` builds a model"),
        (dict(mps="x.npz", ansatz="ran", evolve="tdvp"), ValueError, "`evolve` 'tdvp' builds a model"),
    ],
)
def test_settings_check_the_target_fields(kwargs, error, match):
    with pytest.raises(error, match=match):
        _settings(**kwargs)


def test_help_and_registries_name_the_new_targets():
    assert set(EVOLVE_METHODS) | {"ground-state"} == set(TARGET_BUILDERS)
    text = " ".join(_parser()._subparsers._group_actions[0].choices["aqc"].format_help().split())
    for option in ("--ground-state", "--evolve {trotter,tdvp}", "--dt", "--target-bond", "DMRG", "TDVP"):
        assert option in text, option
