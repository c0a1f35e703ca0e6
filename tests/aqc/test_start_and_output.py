"""Where the optimiser starts, what a missed target says, and the circuits handed back."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import Statevector

from tnkit import MPS
from tnkit.aqc import (
    SpinChain,
    ansatz_circuit,
    brickwall_ansatz,
    circuit_fidelity,
    compile_state,
    initial_angles,
    time_evolved_state,
    to_qasm,
    to_qiskit,
    trotter_initialization,
)
from tnkit.errors import ConvergenceWarning


@pytest.fixture(scope="module")
def real_target():
    """A real random state: all-zero angles are a stationary point of its fidelity."""
    return MPS.random(6, 4, seed=3).normalized()


def test_zero_angles_are_a_stationary_point_that_the_optimiser_leaves(real_target):
    from tnkit.aqc import Objective

    ansatz = brickwall_ansatz(6, 3)
    f0, g0 = Objective(ansatz, real_target).fidelity_and_gradient(ansatz.zero_params())
    assert f0 < 0.1 and np.max(np.abs(g0)) < 1e-12  # L-BFGS-B would stop here with 0 iterations
    result = compile_state(
        real_target, ansatz, ansatz.zero_params(), max_bond=None, max_iter=30, seed=1, progress=False
    )
    assert "stationary" in result.message and result.n_iterations > 5
    assert result.fidelity > 0.5 > f0


def test_default_start_is_small_random_angles_not_zero(real_target):
    ansatz = brickwall_ansatz(6, 3)
    x0 = initial_angles(ansatz, seed=0)
    assert 0 < np.max(np.abs(x0)) <= 0.3 and x0.shape == (ansatz.n_params,)
    np.testing.assert_array_equal(x0, initial_angles(ansatz, seed=0))  # seeded
    result = compile_state(real_target, ansatz, max_bond=None, max_iter=30, seed=0, progress=False)
    assert "stationary" not in result.message and result.n_iterations > 5 and result.fidelity > 0.5


def test_a_missed_target_warns_and_is_recorded(real_target):
    ansatz = brickwall_ansatz(6, 1)  # one layer cannot reach a bond-4 state
    with pytest.warns(ConvergenceWarning, match=r"below the target 0\.999"):
        result = compile_state(
            real_target, ansatz, max_bond=None, max_iter=10, target_fidelity=0.999, seed=0, progress=False
        )
    assert result.target_fidelity == 0.999 and result.target_reached is False
    reached = compile_state(
        real_target, ansatz, max_bond=None, max_iter=10, target_fidelity=0.01, seed=0, progress=False
    )  # no warning (warnings are errors in the tests)
    assert reached.target_reached and reached.fidelity >= 0.01
    free = compile_state(real_target, ansatz, max_bond=None, max_iter=3, seed=0, progress=False)
    assert free.target_fidelity is None and free.target_reached


class _Bar:
    """Records what the compiler does with its progress bar."""

    def __init__(self, total):
        self.total, self.n, self.closed = total, 0, False

    def update(self, k):
        self.n += k

    def set_postfix(self, **kwargs):
        pass

    def refresh(self):
        pass

    def close(self):
        self.closed = True


def test_progress_bar_is_completed_and_closed_when_the_optimiser_stops_early(monkeypatch):
    from tnkit.aqc import compiler

    bars = []
    monkeypatch.setattr(
        compiler, "_progress_bar", lambda total, enabled, desc="AQC": bars.append(_Bar(total)) or bars[-1]
    )
    chain = SpinChain.xxz(6, delta=0.5)
    target, _ = time_evolved_state(chain, 0.5, steps=10)
    ansatz, x0 = trotter_initialization(chain, 0.5, 2)
    result = compile_state(
        target, ansatz, x0, max_bond=None, max_iter=200, target_fidelity=0.999, progress=True
    )
    assert result.n_iterations < 200 and result.target_reached
    (bar,) = bars
    assert bar.closed and bar.n == bar.total == result.n_iterations  # finished, not frozen at n/200


def test_emitted_circuit_has_no_no_op_rotations_and_the_same_state():
    chain = SpinChain.xxz(5, delta=0.5)
    ansatz, x0 = trotter_initialization(chain, 0.5, 1)  # exact zeros in the first-layer angles
    assert np.sum(np.abs(x0) < 1e-12) > 3
    qc = to_qiskit(ansatz, x0)
    for inst in qc.data:
        if inst.operation.name in ("rx", "ry", "rz"):
            angle = float(inst.operation.params[0])
            assert abs(np.remainder(angle + np.pi, 2 * np.pi) - np.pi) > 1e-10, inst
    assert "(0)" not in to_qasm(qc) and "(0.0)" not in to_qasm(qc)
    full, values = ansatz_circuit(ansatz, x0)
    assert full.size() > qc.size()  # the parametrised circuit keeps every slot
    v, w = Statevector(qc).data, Statevector(full.assign_parameters(values)).data
    assert abs(np.vdot(v, w)) ** 2 == pytest.approx(1.0, abs=1e-12)
    assert abs(np.vdot(Statevector(chain.trotter_circuit(0.5, 1)).data, v)) ** 2 == pytest.approx(
        1.0, abs=1e-10
    )


def test_ansatz_circuit_is_parametrised_and_binds_to_the_compiled_state(real_target):
    ansatz = brickwall_ansatz(6, 2)
    result = compile_state(real_target, ansatz, max_bond=None, max_iter=20, seed=2, progress=False)
    qc, values = result.ansatz_circuit()
    assert qc.num_parameters == len(values) and isinstance(values, np.ndarray)
    (vector,) = {p.vector for p in qc.parameters}
    assert isinstance(vector, ParameterVector) and vector.name == "theta" and len(vector) == len(values)
    assert qc.count_ops()["cx"] == result.cnot_count  # one-CNOT preparations kept as such
    bound = qc.assign_parameters(values)
    compiled = Statevector(result.circuit()).data
    assert abs(np.vdot(compiled, Statevector(bound).data)) ** 2 == pytest.approx(1.0, abs=1e-12)
    assert circuit_fidelity(bound, real_target) == pytest.approx(result.fidelity, abs=1e-10)
    # another point of the ansatz is another state: the parameters are live
    other = Statevector(qc.assign_parameters(values + 0.3)).data
    assert abs(np.vdot(compiled, other)) ** 2 < 0.99


def test_time_evolved_state_refuses_a_huge_number_of_steps_at_once():
    chain = SpinChain.xxz(6, delta=0.5)
    with pytest.raises(ValueError, match=r"4e\+10 Trotter steps.*max_steps"):
        time_evolved_state(chain, 1e9)
    with pytest.raises(ValueError, match="steps"):
        time_evolved_state(chain, 1.0, steps=10**9)
    with pytest.raises(ValueError, match="finite"):
        time_evolved_state(chain, float("nan"))
    with pytest.raises(ValueError, match="steps"):
        chain.trotter_circuit(1.0, 10**7)
