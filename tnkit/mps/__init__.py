"""Matrix product states and operators.

Modules: :mod:`~tnkit.mps.mps` (the state class), :mod:`~tnkit.mps.mpo` (the
operator class), :mod:`~tnkit.mps.canonical`, :mod:`~tnkit.mps.truncation`,
:mod:`~tnkit.mps.overlap`, :mod:`~tnkit.mps.measure`, :mod:`~tnkit.mps.sampling`,
:mod:`~tnkit.mps.gates`, :mod:`~tnkit.mps.apply` (MPO on MPS),
:mod:`~tnkit.mps.builders` (Hamiltonians), :mod:`~tnkit.mps.qiskit` (circuits) and
:mod:`~tnkit.mps.quimb` (conversion to and from quimb).

``tnkit.mps.compress`` is the former name of :mod:`~tnkit.mps.truncation` (it read like the
LLM compression of :mod:`tnkit.compress`): importing it warns and gives that module.
"""

from ..core.moved import alias_moved_modules
from .apply import apply_mpo, mpo_product
from .builders import heisenberg_mpo, mpo_from_terms, pauli_operators, spin_operators, tfim_mpo, xxz_mpo
from .truncation import TruncationReport
from .mpo import MPO, MatrixProductOperator, balanced_factors
from .mps import MPS, MatrixProductState

alias_moved_modules({f"{__name__}.compress": f"{__name__}.truncation"})

__all__ = [
    "MatrixProductState",
    "MPS",
    "MatrixProductOperator",
    "MPO",
    "TruncationReport",
    "apply_mpo",
    "mpo_product",
    "balanced_factors",
    "mpo_from_terms",
    "heisenberg_mpo",
    "xxz_mpo",
    "tfim_mpo",
    "spin_operators",
    "pauli_operators",
]
