"""tnkit: tensor networks for physics, machine learning, model compression and quantum compiling.

The engine: :class:`MatrixProductState` (alias :class:`MPS`),
:class:`MatrixProductOperator` (alias :class:`MPO`) and the contraction layer
:func:`contract`, through which every contraction in tnkit runs.
"""

from .algorithms import DMRGResult, EvolutionResult, dmrg, tdvp, tebd
from .core.moved import alias_moved_modules
from .core.contract import (
    ContractionInfo,
    clear_contract_cache,
    contract,
    contract_cache_info,
    contract_strategy,
    contraction_info,
)
from .core.paths import available_optimizers, register_optimizer
from .core.sliced import SlicedContraction, contract_sliced, plan_sliced
from .core.threads import get_num_threads, set_num_threads
from .mps import (
    MPO,
    MPS,
    MatrixProductOperator,
    MatrixProductState,
    TruncationReport,
    apply_mpo,
    heisenberg_mpo,
    mpo_product,
    tfim_mpo,
    xxz_mpo,
)
from .ttn import TTN, TreeTensorNetwork

# tnkit.inspect shadowed the standard library's inspect: its former path gives tnkit.describe
alias_moved_modules({"tnkit.inspect": "tnkit.describe"})

__version__ = "0.1.0"

__all__ = [
    "contract",
    "contraction_info",
    "contract_strategy",
    "contract_cache_info",
    "clear_contract_cache",
    "ContractionInfo",
    "contract_sliced",
    "plan_sliced",
    "SlicedContraction",
    "available_optimizers",
    "register_optimizer",
    "set_num_threads",
    "get_num_threads",
    "MatrixProductState",
    "MPS",
    "MatrixProductOperator",
    "MPO",
    "TruncationReport",
    "apply_mpo",
    "mpo_product",
    "heisenberg_mpo",
    "xxz_mpo",
    "tfim_mpo",
    "TreeTensorNetwork",
    "TTN",
    "dmrg",
    "tdvp",
    "tebd",
    "DMRGResult",
    "EvolutionResult",
    "__version__",
]
