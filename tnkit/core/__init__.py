"""The layer every tensor network in tnkit stands on: contraction, factorisation, checks.

:mod:`~tnkit.core.contract` (planned, compiled, cached contractions),
:mod:`~tnkit.core.paths` (path optimizers), :mod:`~tnkit.core.linalg` (truncated
factorisations), :mod:`~tnkit.core.threads` (BLAS threads),
:mod:`~tnkit.core.validate` (argument checks), :mod:`~tnkit.core.rng` (seeds).
"""
