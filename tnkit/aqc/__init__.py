"""Approximate quantum compiling (AQC): a target MPS to a short parametrised circuit.

Modules: :mod:`~tnkit.aqc.targets` (target states, spin chains, accurate time
evolution), :mod:`~tnkit.aqc.ansatz` (brickwall, staircase and from-circuit
ansätze of KAK blocks), :mod:`~tnkit.aqc.objective` (fidelity and exact gradient by
environments), :mod:`~tnkit.aqc.sweeps` (polar-decomposition sweeps),
:mod:`~tnkit.aqc.initial` (Trotter and Ran initialisations, CNOT budget),
:mod:`~tnkit.aqc.compiler` (L-BFGS-B driver), :mod:`~tnkit.aqc.growth` (growing
the ansatz layer by layer: identity brick layers or Ran's analytic layers), :mod:`~tnkit.aqc.circuits` (Qiskit
output, parametrised circuits, transpilation, QASM, independent checks), :mod:`~tnkit.aqc.born` (exact
MPS-to-circuit by sequential isometries), :mod:`~tnkit.aqc.recipe` (compile, verify and
write QASM + report from one settings object) and :mod:`~tnkit.aqc.cli` (``tnkit aqc``).

Importing :mod:`tnkit.aqc` needs numpy only; qiskit and scipy are imported by the
functions that use them (a missing Qiskit is one line: ``pip install 'tnkit[aqc]'``).
"""

from ..core.moved import alias_moved_modules
from .ansatz import Ansatz, ansatz_from_circuit, ansatz_from_gates, brickwall_ansatz, staircase_ansatz
from .born import centred_unitaries, mps_to_circuit, sequential_unitaries
from .circuits import (
    ansatz_circuit,
    circuit_fidelity,
    gate_counts,
    read_qasm,
    to_qasm,
    to_qiskit,
    transpile_circuit,
    write_qasm,
)
from .compiler import AQCResult, compile_sequence, compile_state, initial_angles
from .growth import add_identity_layer, compile_growing, prepend_ran_layer, residual_state
from .initial import extend_ansatz, fill_cnot_budget, ran_initialization, trotter_initialization
from .objective import Objective, ScheduledGate
from .recipe import AQCRun, AQCSettings, run_aqc
from .sweeps import sweep_compile
from .targets import EvolutionReport, SpinChain, as_target, time_evolved_state

# tnkit.aqc.init read like the package's __init__: its former path gives tnkit.aqc.initial
alias_moved_modules({f"{__name__}.init": f"{__name__}.initial"})

__all__ = [
    "Ansatz",
    "brickwall_ansatz",
    "staircase_ansatz",
    "ansatz_from_circuit",
    "ansatz_from_gates",
    "Objective",
    "ScheduledGate",
    "AQCResult",
    "compile_state",
    "compile_sequence",
    "initial_angles",
    "AQCSettings",
    "AQCRun",
    "run_aqc",
    "compile_growing",
    "add_identity_layer",
    "prepend_ran_layer",
    "residual_state",
    "trotter_initialization",
    "ran_initialization",
    "extend_ansatz",
    "fill_cnot_budget",
    "sweep_compile",
    "SpinChain",
    "EvolutionReport",
    "as_target",
    "time_evolved_state",
    "to_qiskit",
    "ansatz_circuit",
    "transpile_circuit",
    "circuit_fidelity",
    "gate_counts",
    "to_qasm",
    "write_qasm",
    "read_qasm",
    "mps_to_circuit",
    "sequential_unitaries",
    "centred_unitaries",
]
