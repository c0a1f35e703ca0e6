"""Growing the ansatz: identity layers, residual states, Ran layers and the growing driver."""

from __future__ import annotations

import numpy as np
import pytest

from tnkit import MPS
from tnkit.aqc import Ansatz, Objective, brickwall_ansatz, circuit_fidelity, staircase_ansatz
from tnkit.aqc.ansatz import next_brick_layer
from tnkit.aqc.growth import (
    add_identity_layer,
    compile_growing,
    prepend_ran_layer,
    residual_state,
)
from tnkit.errors import ConvergenceWarning


def _state(ansatz, params):
    return Objective(ansatz, MPS.product_state("0" * ansatz.n_qubits)).state(params)


def _same_state(a, b):
    """``|<a|b>| = 1`` for normalised MPS (equal up to a global phase)."""
    return abs(complex(a.inner(b))) == pytest.approx(1.0, abs=1e-10)


def _dense_unitary(ansatz, params):
    """The ansatz's unitary as a dense ``2^n x 2^n`` matrix (qubit 0 the slowest index)."""
    from tnkit.aqc.ansatz import zxz_matrices

    n = ansatz.n_qubits
    first, _ = ansatz.split_params(params)
    u = np.eye(1)
    for z in zxz_matrices(first):
        u = np.kron(u, z)
    for (lo, hi), g in zip(ansatz.pairs, ansatz.block_tensors(params)):
        assert hi == lo + 1
        full = np.kron(np.kron(np.eye(2**lo), g.reshape(4, 4)), np.eye(2 ** (n - hi - 1)))
        u = full @ u
    return u


@pytest.fixture(scope="module")
def target5():
    """A state a known 3-layer brickwall on 5 qubits prepares."""
    ansatz = brickwall_ansatz(5, 3)
    return _state(ansatz, np.random.default_rng(7).uniform(-np.pi, np.pi, ansatz.n_params))


def test_next_brick_layer_alternates_parity_and_puts_the_centre_first():
    assert next_brick_layer(Ansatz(6, ())) == [(2, 3), (0, 1), (4, 5)]
    assert next_brick_layer(brickwall_ansatz(6, 1)) == [(1, 2), (3, 4)]
    assert next_brick_layer(brickwall_ansatz(7, 2)) == [(2, 3), (4, 5), (0, 1)]


def test_identity_layer_keeps_the_state_and_respects_the_budget():
    ansatz = brickwall_ansatz(6, 2)
    x = ansatz.random_params(3)
    bigger, y = add_identity_layer(ansatz, x)
    assert bigger.pairs == ansatz.pairs + ((0, 1), (2, 3), (4, 5))
    assert _same_state(_state(ansatz, x), _state(bigger, y))
    cut, z = add_identity_layer(ansatz, x, cnot_budget=ansatz.cnot_count + 7)  # room for 2 blocks
    assert cut.pairs[-2:] == ((0, 1), (2, 3)) and cut.cnot_count == ansatz.cnot_count + 6
    assert _same_state(_state(ansatz, x), _state(cut, z))
    with pytest.raises(ValueError, match="cnot_budget.*no room"):
        add_identity_layer(ansatz, x, cnot_budget=ansatz.cnot_count + 2)


def test_residual_state_is_the_target_pulled_back_through_the_circuit(target5, rng):
    ansatz = brickwall_ansatz(5, 2)
    x = ansatz.random_params(rng)
    res = residual_state(target5, ansatz, x)
    assert res.norm() == pytest.approx(1.0, abs=1e-12)
    # <0...0|C^dagger|t> = conj(<t|C|0...0>)
    overlap = Objective(ansatz, target5).overlap(x)
    assert complex(MPS.product_state("00000").inner(res)) == pytest.approx(np.conj(overlap), abs=1e-10)
    # dense reference: C^dagger |t> with C's dense matrix built gate by gate (tnkit order)
    u = _dense_unitary(ansatz, x)
    np.testing.assert_allclose(res.to_dense(), u.conj().T @ target5.to_dense(), atol=1e-10)
    with pytest.raises(ValueError, match="5 sites but the ansatz has 4"):
        residual_state(target5, brickwall_ansatz(4, 1), brickwall_ansatz(4, 1).zero_params())


def test_ran_layer_first_in_time_never_lowers_the_fidelity(target5, rng):
    ansatz = brickwall_ansatz(5, 1)
    x = ansatz.random_params(rng, scale=0.3)
    before = Objective(ansatz, target5).fidelity(x)
    bigger, y = prepend_ran_layer(target5, ansatz, x)
    assert bigger.pairs == ((0, 1), (1, 2), (2, 3), (3, 4)) + ansatz.pairs
    assert bigger.family == "brickwall"
    assert Objective(bigger, target5).fidelity(y) >= before - 1e-12
    # from no block at all, a bond-2 target is prepared exactly by one Ran layer
    bond2 = MPS.random(5, max_bond=2, seed=4, dtype=complex).normalized()
    one, z = prepend_ran_layer(bond2, Ansatz(5, ()), np.zeros(15))
    assert one.family == "staircase" and one.pairs == staircase_ansatz(5, 1).pairs
    assert Objective(one, bond2).fidelity(z) == pytest.approx(1.0, abs=1e-10)


def test_growing_brickwall_from_a_too_shallow_seed_recovers_the_state():
    known = brickwall_ansatz(4, 3)
    target = _state(known, np.random.default_rng(2).uniform(-np.pi, np.pi, known.n_params))
    seed = brickwall_ansatz(4, 1)
    stages = compile_growing(target, seed, grow="brickwall", target_fidelity=0.9999, max_bond=None,
                             max_iter=300, progress=False)
    assert stages[0].ansatz == seed and stages[0].fidelity < 0.9  # one layer cannot do it
    fids = [s.fidelity for s in stages]
    assert all(b >= a - 1e-9 for a, b in zip(fids, fids[1:]))  # a new layer never loses fidelity
    assert fids[-1] > 0.9999 and len(stages) <= 4
    qc = stages[-1].circuit()
    assert circuit_fidelity(qc, target) == pytest.approx(fids[-1], abs=1e-8)


def test_growing_stops_at_the_cnot_budget(target5):
    seed = brickwall_ansatz(5, 1)  # 2 one-CNOT preparation blocks
    with pytest.warns(ConvergenceWarning, match="below the target 1") as caught:
        stages = compile_growing(target5, seed, grow="brickwall", target_fidelity=1.0, cnot_budget=11,
                                 max_bond=None, max_iter=20, seed=0, progress=False)
    assert len(caught) == 1  # the last stage misses; intermediate stages never warn
    assert [s.cnot_count for s in stages] == [2, 8, 11]  # a full odd layer, then one central block
    assert stages[-1].ansatz.pairs[-1] == (2, 3)


def test_growing_ran_layers_from_no_seed(target5):
    stages = compile_growing(target5, grow="ran", target_fidelity=0.999, max_bond=None, max_iter=100,
                             method="sweep+lbfgs", max_sweeps=20, progress=False)
    assert all(s.ansatz.family == "staircase" for s in stages)
    assert [s.ansatz.n_blocks for s in stages] == [4 * k for k in range(1, len(stages) + 1)]
    assert stages[-1].fidelity > 0.999
    with pytest.warns(ConvergenceWarning):
        budgeted = compile_growing(target5, grow="ran", target_fidelity=1.0, cnot_budget=25, max_bond=None,
                                   max_iter=5, progress=False)
    assert len(budgeted) == 2 and budgeted[-1].cnot_count <= 25  # a third layer would need 12 more


def test_default_growth_kind_is_ran_without_a_seed_and_brickwall_after_one():
    """GHZ from no circuit: identity brick layers stay at a stationary point (F = 1/2); Ran's layer is exact."""
    n = 6
    ghz = np.zeros(2**n)
    ghz[0] = ghz[-1] = 2**-0.5
    target = MPS.from_dense(ghz, [2] * n)
    stages = compile_growing(target, target_fidelity=0.999, max_bond=None, seed=0, progress=False)
    assert all(s.ansatz.family == "staircase" for s in stages)
    assert stages[-1].fidelity > 0.999 and stages[-1].cnot_count <= 3 * (n - 1)
    with pytest.warns(ConvergenceWarning):
        bricks = compile_growing(target, grow="brickwall", target_fidelity=0.999, max_layers=2, max_bond=None,
                                 max_iter=50, seed=0, progress=False)
    assert bricks[-1].fidelity < 0.51
    with pytest.warns(ConvergenceWarning):
        seeded = compile_growing(target, brickwall_ansatz(n, 1), target_fidelity=0.9, max_layers=1,
                                 max_bond=None, max_iter=5, seed=0, progress=False)
    assert seeded[-1].ansatz.family == "brickwall"


def test_growing_from_a_ran_layer_recovers_a_shallow_circuit_state():
    """No seed: one Ran layer of the target, then identity brick layers, recovers a known 3-layer state."""
    known = brickwall_ansatz(5, 3)
    target = _state(known, np.random.default_rng(5).uniform(-np.pi, np.pi, known.n_params))
    stages = compile_growing(target, grow="ran-brickwall", target_fidelity=0.9999, max_bond=None, max_iter=300,
                             max_layers=6, progress=False)
    first = stages[0]
    assert first.ansatz.pairs == ((1, 2), (2, 3), (3, 4), (0, 1))  # the Ran layer alone, from the centre out
    # its starting fidelity is the overlap of the target with its bond-2 truncation (dense reference)
    psi = target.to_dense().reshape(2, 2, 2, 2, 2)
    approx = _dense_bond2_truncation(psi)
    assert first.initial_fidelity == pytest.approx(abs(np.vdot(approx, psi.ravel())) ** 2, abs=1e-8)
    fids = [s.fidelity for s in stages]
    assert all(b >= a - 1e-9 for a, b in zip(fids, fids[1:]))
    assert fids[-1] > 0.9999
    assert stages[-1].ansatz.pairs[:4] == first.ansatz.pairs and len(stages) >= 2  # brick layers after it
    assert circuit_fidelity(stages[-1].circuit(), target) == pytest.approx(fids[-1], abs=1e-8)


def _dense_bond2_truncation(psi):
    """Left-to-right SVD truncation to bond 2 of a dense state (TT-SVD), normalised."""
    rest, out, bond = psi.reshape(1, -1), np.ones((1, 1)), 1
    for _ in range(psi.ndim - 1):
        u, s, vh = np.linalg.svd(rest.reshape(bond * 2, -1), full_matrices=False)
        k = min(2, len(s))
        out = out.reshape(-1, bond) @ u[:, :k].reshape(bond, 2 * k)
        rest, bond = s[:k, None] * vh[:k], k
    out = (out.reshape(-1, bond) @ rest).ravel()
    return out / np.linalg.norm(out)


def test_ran_brickwall_checks_the_budget(target5):
    with pytest.raises(ValueError, match="cnot_budget.*first Ran layer"):
        compile_growing(target5, grow="ran-brickwall", cnot_budget=5, progress=False)
    with pytest.warns(ConvergenceWarning):
        stages = compile_growing(target5, grow="ran-brickwall", target_fidelity=1.0, cnot_budget=16, max_bond=None,
                                 max_iter=5, progress=False)
    assert [s.cnot_count for s in stages] == [10, 16]  # 1 + 3 x 3 CNOTs of the Ran layer, then 2 brick blocks


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_centred_unitaries_prepare_a_bond2_state_with_half_the_depth(n):
    from tnkit.aqc.ansatz import ansatz_from_gates
    from tnkit.aqc.born import centred_unitaries, sequential_unitaries

    target = MPS.random(n, max_bond=2, seed=n, dtype=complex).normalized()
    gates = centred_unitaries(target)
    psi = np.zeros(2**n, dtype=complex)
    psi[0] = 1.0
    for qubits, u in gates:  # dense reference, gate by gate
        if len(qubits) == 1:
            psi = np.kron(np.kron(np.eye(2 ** qubits[0]), u), np.eye(2 ** (n - qubits[0] - 1))) @ psi
            continue
        lo, hi = sorted(qubits)
        assert hi == lo + 1
        g = u.reshape(2, 2, 2, 2) if qubits[0] == lo else u.reshape(2, 2, 2, 2).transpose(1, 0, 3, 2)
        psi = np.kron(np.kron(np.eye(2**lo), g.reshape(4, 4)), np.eye(2 ** (n - hi - 1))) @ psi
    assert abs(np.vdot(target.to_dense().ravel(), psi)) == pytest.approx(1.0, abs=1e-10)
    centred, _ = ansatz_from_gates(n, gates)
    staircase, _ = ansatz_from_gates(n, sequential_unitaries(target))
    assert centred.n_blocks == staircase.n_blocks == n - 1
    assert centred.cnot_depth <= 3 * (n // 2) + 1 <= staircase.cnot_depth + 3
    with pytest.raises(ValueError, match="bonds at most 2"):
        centred_unitaries(MPS.random(6, max_bond=4, seed=0, dtype=complex).normalized())


def test_growing_checks_its_arguments(target5):
    with pytest.raises(ValueError, match="`grow`"):
        compile_growing(target5, grow="spiral")
    with pytest.raises(ValueError, match="initial_params"):
        compile_growing(target5, None, np.zeros(15))
    with pytest.raises(ValueError, match="cnot_budget.*below"):
        compile_growing(target5, brickwall_ansatz(5, 3), cnot_budget=5)
    with pytest.raises(TypeError, match="`ansatz` must be an Ansatz"):
        compile_growing(target5, "brickwall")


def test_next_brick_layer_reads_the_last_layer_not_the_last_block():
    # topological order in which the last block listed sits in an earlier layer
    ansatz = Ansatz(6, ((0, 1), (2, 3), (1, 2), (4, 5), (3, 4)))  # layers: even, odd
    assert next_brick_layer(ansatz) == [(2, 3), (0, 1), (4, 5)]
    ansatz = Ansatz(6, ((1, 2), (3, 4), (2, 3), (0, 1), (4, 5)))  # odd, then even; (0, 1) listed late
    assert next_brick_layer(ansatz) == [(1, 2), (3, 4)]


def test_circuit_ansatz_fuses_pair_runs_interleaved_with_other_pairs():
    """A Suzuki-Trotter step visits each odd bond forwards and backwards: one block per bond."""
    from qiskit import QuantumCircuit

    from tnkit.aqc import ansatz_from_circuit

    qc = QuantumCircuit(6)
    qc.x([1, 3, 5])
    for sweep in ((0, 2, 4), (1, 3), (3, 1), (0, 2, 4)):  # even/2, odd/2 forwards, odd/2 backwards, even/2
        for q in sweep:
            qc.rxx(0.3 + q / 10, q, q + 1)
            qc.rzz(0.2, q, q + 1)
    ansatz, x = ansatz_from_circuit(qc)
    assert ansatz.n_blocks == 3 + 2 + 3
    target = MPS.from_qiskit(qc)
    assert Objective(ansatz, target).fidelity(x) == pytest.approx(1.0, abs=1e-10)
