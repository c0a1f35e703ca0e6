"""The Hamiltonian variational ansatz (``hva``) of Heisenberg/XXZ ground states."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import expm

from tnkit.algorithms import dmrg
from tnkit.aqc import Objective, SpinChain, compile_state
from tnkit.aqc.cli import settings_from_args
from tnkit.aqc.initial import HVAStage, hva_ansatz, hva_initialization
from tnkit.aqc.initial import _TiedHVA as TiedHVA

from .test_physics_targets import _big_endian
from .test_recipe_cli import _parser

_X = np.array([[0.0, 1.0], [1.0, 0.0]])
_Y = np.array([[0.0, -1j], [1j, 0.0]])
_Z = np.diag([1.0, -1.0])


def _same_up_to_phase(a: np.ndarray, b: np.ndarray) -> bool:
    overlap = np.vdot(a.ravel(), b.ravel())
    return abs(abs(overlap) - np.linalg.norm(a) * np.linalg.norm(b)) < 1e-10


@pytest.mark.parametrize("n", [6, 7])
def test_hva_start_is_the_singlet_product_state(n):
    ansatz, params = hva_ansatz(n, 2)
    assert ansatz.n_blocks == len(range(0, n - 1, 2)) * 3 + len(range(1, n - 1, 2)) * 2
    assert set(ansatz.state_prep_blocks) == set(range(n // 2))  # the singlets cost one CNOT each
    singlet = np.array([0.0, 1.0, -1.0, 0.0]) / np.sqrt(2)
    expected = np.array([1.0])
    for _ in range(n // 2):
        expected = np.kron(expected, singlet)
    if n % 2:
        expected = np.kron(expected, [1.0, 0.0])  # the spare qubit stays in |0>
    prepared = Objective(ansatz, np.eye(2**n)[0]).state(params).to_dense()
    assert _same_up_to_phase(prepared, expected)


def test_tied_blocks_are_xxz_rotations_and_the_tied_gradient_is_exact():
    n, layers = 6, 2
    tied = TiedHVA.build(n, layers)
    rng = np.random.default_rng(0)
    theta = rng.uniform(-0.5, 0.5, 4 * layers)
    x = tied.params(theta)
    blocks = tied.ansatz.block_tensors(x)[n // 2 :]
    ab = theta.reshape(-1, 2)[tied.half_layer]
    for g, (a, b) in zip(blocks, ab, strict=True):
        h = a * (np.kron(_X, _X) + np.kron(_Y, _Y)).real + b * np.kron(_Z, _Z)
        assert _same_up_to_phase(g.reshape(4, 4), expm(-1j * h))
    target = dmrg(SpinChain.xxz(n, delta=0.5).mpo(), max_bond=8, seed=0, progress=False).state.normalized()
    objective = Objective(tied.ansatz, target)
    _, g = objective.fidelity_and_gradient(x)
    grad = tied.gradient(g)
    eps = 1e-6
    for k in range(len(theta)):
        step = np.zeros_like(theta)
        step[k] = eps
        up = objective.fidelity(tied.params(theta + step))
        down = objective.fidelity(tied.params(theta - step))
        fd = (up - down) / (2 * eps)
        assert abs(fd - grad[k]) < 1e-7


def test_hva_compiles_the_heisenberg_ground_state_checked_by_statevector():
    from qiskit.quantum_info import Statevector  # noqa: F401  (needed by _big_endian)

    n = 12
    gs = dmrg(SpinChain.heisenberg(n).mpo(), max_bond=32, seed=0, progress=False)
    assert gs.converged and abs(gs.variance) < 1e-8  # the exact ground state (DMRG is tested against ED)
    target = gs.state.normalized()
    ansatz, params, stages = hva_initialization(target, 3, return_stages=True)
    assert [s.n_layers for s in stages] == [1, 2, 3]
    assert all(isinstance(s, HVAStage) and s.angles.shape == (2 * s.n_layers, 2) for s in stages)
    assert stages[0].fidelity < stages[1].fidelity < stages[2].fidelity  # each stage starts from the last
    assert stages[-1].fidelity > 0.98 and stages[-1].cnots == ansatz.cnot_count == 105
    result = compile_state(target, ansatz, params, target_fidelity=0.99, progress=False)
    prepared = _big_endian(result.circuit())
    assert abs(np.vdot(target.to_dense(), prepared)) ** 2 >= 0.99
    assert abs(result.fidelity - stages[-1].fidelity) < 0.02  # refinement starts where the tied stage ended


def test_hva_stops_at_the_first_stage_that_reaches_the_target_fidelity():
    target = dmrg(SpinChain.heisenberg(8).mpo(), max_bond=16, seed=0, progress=False).state.normalized()
    _, _, stages = hva_initialization(target, 8, target_fidelity=0.9, return_stages=True)
    assert stages[-1].fidelity >= 0.9 and stages[-1].n_layers < 8
    assert all(s.fidelity < 0.9 for s in stages[:-1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_layers=0), ValueError, "`n_layers`"),
        (dict(n_layers=2, target_fidelity=1.5), ValueError, "`target_fidelity` must lie in"),
        (dict(n_layers=2, max_bond=0), ValueError, "`max_bond`"),
        (dict(n_layers=2, max_iter=-1), ValueError, "`max_iter`"),
    ],
)
def test_hva_initialization_checks_its_options(kwargs, error, match):
    target = np.eye(16)[1]
    with pytest.raises(error, match=match):
        hva_initialization(target, **kwargs)


@pytest.mark.parametrize(
    "argv, ansatz",
    [
        (["--ground-state", "--model", "heisenberg"], "hva"),
        (["--ground-state", "--model", "xxz"], "hva"),
        (["--ground-state", "--model", "tfim"], "ran"),
        (["--model", "xxz"], "trotter"),
    ],
)
def test_cli_default_ansatz_of_ground_states_is_hva(tmp_path, argv, ansatz):
    args = _parser().parse_args(["aqc", *argv, "--out", str(tmp_path / "x.qasm")])
    assert settings_from_args(args).ansatz == ansatz


def test_hva_checks_the_target_fidelity_at_every_iteration():
    target = dmrg(SpinChain.heisenberg(12).mpo(), max_bond=32, seed=0, progress=False).state.normalized()
    _, _, free = hva_initialization(target, 3, return_stages=True)
    _, _, stopped = hva_initialization(target, 3, target_fidelity=0.985, return_stages=True)
    assert free[-1].fidelity > 0.985 and stopped[-1].n_layers == 3
    assert 0.985 <= stopped[-1].fidelity < free[-1].fidelity  # left the last stage once there
    assert stopped[-1].iterations < free[-1].iterations


def test_cli_ground_state_defaults_reach_the_target_checked_by_statevector(tmp_path):
    """``tnkit aqc --ground-state --model heisenberg --n-sites 10`` with every other option at its default."""
    import qiskit.qasm2

    from tnkit.aqc.initial import hva_default_layers
    from tnkit.aqc.recipe import GROUND_STATE_DEFAULTS

    from .test_recipe_cli import _aqc

    n, out = 10, tmp_path / "gs.qasm"
    argv = ["--ground-state", "--model", "heisenberg", "--n-sites", str(n), "--out", str(out)]
    argv.append("--no-progress")
    assert _aqc(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    settings = report["settings"]
    assert settings["ansatz"] == "hva" and settings["depth"] == hva_default_layers(n) == 3
    assert settings["max_bond"] == GROUND_STATE_DEFAULTS["max_bond"]
    assert settings["target_fidelity"] == GROUND_STATE_DEFAULTS["target_fidelity"] == 0.995
    energies, vectors = np.linalg.eigh(SpinChain.heisenberg(n).mpo().to_dense())
    prepared = _big_endian(qiskit.qasm2.load(str(out)))  # Qiskit's Statevector of the written circuit
    fidelity = abs(np.vdot(vectors[:, 0], prepared)) ** 2
    assert fidelity >= 0.995 and report["target_reached"]
    assert fidelity == pytest.approx(report["circuit_fidelity"], abs=1e-6)
    assert report["cnots"] == 86  # 5 singlets of one CNOT, then 3 layer pairs of 9 blocks


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--ground-state", "--n-sites", "50"], {"ansatz": "hva", "depth": 16, "max_bond": 32}),
        (
            ["--ground-state", "--depth", "2", "--max-bond", "16", "--target-fidelity", "0.9"],
            dict(ansatz="hva", depth=2, max_bond=16, target_fidelity=0.9),
        ),
        (["--ground-state", "--model", "tfim"], {"ansatz": "ran", "depth": 3, "target_fidelity": 0.995}),
        (
            ["--model", "heisenberg", "--n-sites", "50"],
            dict(ansatz="trotter", depth=3, max_bond=64, target_fidelity=0.999),
        ),
    ],
)
def test_cli_ground_state_defaults_apply_only_to_options_not_given(tmp_path, argv, expected):
    args = _parser().parse_args(["aqc", *argv, "--out", str(tmp_path / "x.qasm")])
    settings = settings_from_args(args)
    assert {k: getattr(settings, k) for k in expected} == expected
