"""Tree tensor networks: states and vector-valued maps on the leaves of a tree.

Modules: :mod:`~tnkit.ttn.tree` (the immutable :class:`Tree` structure),
:mod:`~tnkit.ttn.ttn` (the :class:`TreeTensorNetwork` class and its index
conventions), :mod:`~tnkit.ttn.canonical` (QR gauge moves and bookkeeping),
:mod:`~tnkit.ttn.network` (whole-network contractions, batched product inputs),
:mod:`~tnkit.ttn.compress` (hierarchical SVD and truncation),
:mod:`~tnkit.ttn.measure` (density matrices, expectation values, entropies) and
:mod:`~tnkit.ttn.sampling` (exact sampling). quimb interop lives in
:mod:`tnkit.interop.ttn_quimb`.
"""

from .tree import Tree
from .ttn import TTN, TreeTensorNetwork

__all__ = ["Tree", "TreeTensorNetwork", "TTN"]
