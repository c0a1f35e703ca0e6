"""Tree tensor networks: states and vector-valued maps on the leaves of a tree.

Modules: :mod:`~tnkit.ttn.tree` (the immutable :class:`Tree` structure),
:mod:`~tnkit.ttn.ttn` (the :class:`TreeTensorNetwork` class and its index
conventions), :mod:`~tnkit.ttn.canonical` (QR gauge moves and bookkeeping),
:mod:`~tnkit.ttn.network` (whole-network contractions, batched product inputs),
:mod:`~tnkit.ttn.truncation` (hierarchical SVD and truncation),
:mod:`~tnkit.ttn.measure` (density matrices, expectation values, entropies) and
:mod:`~tnkit.ttn.sampling` (exact sampling). quimb interop lives in
:mod:`~tnkit.ttn.quimb`.

``tnkit.ttn.compress`` is the former name of :mod:`~tnkit.ttn.truncation` (it read like the
LLM compression of :mod:`tnkit.compress`): importing it warns and gives that module.
"""

from ..core.moved import alias_moved_modules
from .tree import Tree
from .ttn import TTN, TreeTensorNetwork

# the truncation module's former name read like the LLM compression of tnkit.compress
alias_moved_modules({f"{__name__}.compress": f"{__name__}.truncation"})

__all__ = ["Tree", "TreeTensorNetwork", "TTN"]
