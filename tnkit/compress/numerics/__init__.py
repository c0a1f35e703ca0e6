"""Numerics of LLM compression on numpy arrays, no torch: MPO factorisations of weight
matrices (``factorize``), the whitened MPO (``whitened_mpo``), size curves and the budget
allocation (``allocate``), the per-layer search over factorisations (``search``); and the precisions of
method ``"auto"``'s forward passes (``precision``, which imports torch when used)."""
