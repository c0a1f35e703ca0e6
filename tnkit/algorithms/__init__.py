"""Ground states and time evolution of MPO Hamiltonians: DMRG, TDVP and TEBD.

* :func:`dmrg`: two-site (or one-site with subspace expansion) DMRG, excited states
  by orthogonal projection, energy variance check;
* :func:`tdvp`: one- and two-site TDVP in real or imaginary time, for any MPO;
* :func:`tebd`: second- and fourth-order TEBD for nearest-neighbour Hamiltonians;
* :mod:`~tnkit.algorithms.krylov`: Lanczos eigensolver and Krylov exponential on
  matrix-free operators; :mod:`~tnkit.algorithms.environments`: cached MPO
  environments and effective Hamiltonians.
"""

from .dmrg import DMRGResult, dmrg, energy_variance
from .krylov import KrylovInfo, expm_krylov, lanczos_ground
from .tdvp import EvolutionResult, tdvp
from .tebd import nearest_neighbour_terms, tebd

__all__ = [
    "dmrg",
    "DMRGResult",
    "energy_variance",
    "tdvp",
    "tebd",
    "nearest_neighbour_terms",
    "EvolutionResult",
    "lanczos_ground",
    "expm_krylov",
    "KrylovInfo",
]
