"""Former home of the quimb adapters, which now sit beside their classes.

:mod:`tnkit.mps.quimb` converts MPS and MPO, :mod:`tnkit.ttn.quimb` tree tensor
networks. The former paths ``tnkit.interop.quimb`` and ``tnkit.interop.ttn_quimb``
still import, with a ``FutureWarning``, and give those modules
(:mod:`tnkit.core.moved`).
"""

from __future__ import annotations

from ..core.moved import alias_moved_modules

__all__: list[str] = []

alias_moved_modules({f"{__name__}.quimb": "tnkit.mps.quimb", f"{__name__}.ttn_quimb": "tnkit.ttn.quimb"})
